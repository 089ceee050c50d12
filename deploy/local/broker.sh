#!/usr/bin/env bash
# Starts, stops or checks the local Tansu broker (memory storage) on a port.
# usage: broker.sh start|stop|status [PORT]   (default port 9092; state and logs in state/)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
tansu="${TANSU_BIN:-$root/.local/tansu/bin/tansu}"
port="${2:-9092}"
state="$root/state"
pidfile="$state/broker-$port.pid"
logfile="$state/broker-$port.log"
mkdir -p "$state"

running() { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; }

case "${1:-}" in
  start)
    if running; then echo "broker already running on port $port (pid $(cat "$pidfile"))"; exit 0; fi
    [ -x "$tansu" ] || { echo "no Tansu binary at $tansu: run ./loop setup" >&2; exit 1; }
    if listening; then echo "port $port is already in use by another process" >&2; exit 1; fi
    nohup "$tansu" broker --listener-url "tcp://127.0.0.1:$port" \
      --advertised-listener-url "tcp://127.0.0.1:$port" --storage-engine "memory://tansu/" \
      >"$logfile" 2>&1 &
    echo $! > "$pidfile"
    for _ in $(seq 1 100); do
      listening && { echo "broker listening on 127.0.0.1:$port (pid $(cat "$pidfile"), log $logfile)"; exit 0; }
      running || break
      sleep 0.1
    done
    echo "broker did not start; last lines of $logfile:" >&2; tail -n 20 "$logfile" >&2; exit 1 ;;
  stop)
    if running; then kill "$(cat "$pidfile")"; echo "broker on port $port stopped"; else echo "no broker running on port $port"; fi
    rm -f "$pidfile" ;;
  status)
    if running; then echo "broker running on port $port (pid $(cat "$pidfile"))"; else echo "no broker running on port $port"; exit 1; fi ;;
  *) echo "usage: $0 start|stop|status [PORT]" >&2; exit 2 ;;
esac
