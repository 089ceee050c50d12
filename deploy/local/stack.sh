#!/usr/bin/env bash
# The local stack: the Tansu broker and the five services as separate processes, run with exactly
# the commands and settings docker-compose.yml ships (read from it by compose-env.py), with state
# and logs under state/.
#
# usage: stack.sh start|stop|status      (LOOP_LOCAL_BROKER_PORT, default 9092; LOOP_BUILD, default release)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
port="${LOOP_LOCAL_BROKER_PORT:-9092}"
build="${LOOP_BUILD:-release}"
config="${LOOP_LOCAL_CONFIG:-$root/examples/elec2/loop.yaml}"
state="$root/state"
services=(feature-store scorer feedback retrainer ingest)   # started in this order, stopped in reverse
mkdir -p "$state/logs" "$state/run"

log() { printf '[stack] %s\n' "$*" >&2; }
pid_of() { cat "$state/run/$1.pid" 2>/dev/null || true; }
alive() { local pid; pid="$(pid_of "$1")"; [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; }
admin_port() { python3 deploy/local/compose-env.py --lenient "$1" x x x | sed -n 's/^LOOP_ADMIN_PORT=//p'; }

# Local API keys: one key with every role, its hash handed to the services like compose's .env does.
ensure_keys() {
  if [ ! -f "$state/api-key" ]; then
    (umask 077; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$state/api-key")
  fi
  local hash; hash="$(tr -d '\n' < "$state/api-key" | sha256sum | cut -d' ' -f1)"
  export LOOP_API_KEYS="local producer,reviewer,operator,viewer sha256:$hash"
  if [ ! -f "$state/pii-key" ]; then
    (umask 077; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$state/pii-key")
  fi
  LOOP_PII_KEY="$(cat "$state/pii-key")"
  export LOOP_PII_KEY
}

wait_ready() {
  local name="$1" port="$2"
  for _ in $(seq 1 600); do
    if curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; then return 0; fi
    alive "$name" || { log "$name exited; last lines of state/logs/$name.log:"; tail -n 20 "$state/logs/$name.log" >&2; return 1; }
    sleep 0.1
  done
  log "$name not ready after 60 s (see state/logs/$name.log)"; return 1
}

start() {
  "$root/deploy/local/broker.sh" start "$port" >&2
  ensure_keys
  for name in "${services[@]}"; do
    if alive "$name"; then log "$name already running (pid $(pid_of "$name"))"; continue; fi
    local lines command
    mapfile -t lines < <(python3 deploy/local/compose-env.py "$name" "127.0.0.1:$port" "$config" "$state/$name")
    command="${lines[0]}"
    (
      for line in "${lines[@]:1}"; do export "${line?}"; done
      exec "$root/.build/$build/$command"
    ) >>"$state/logs/$name.log" 2>&1 &
    echo $! > "$state/run/$name.pid"
    wait_ready "$name" "$(admin_port "$name")"
    log "$name ready on :$(admin_port "$name") (pid $(pid_of "$name"), log state/logs/$name.log)"
  done
}

stop() {
  for ((i=${#services[@]}-1; i>=0; i--)); do
    local name="${services[$i]}"
    if alive "$name"; then
      kill -TERM "$(pid_of "$name")"
      for _ in $(seq 1 300); do alive "$name" || break; sleep 0.1; done
      alive "$name" && { log "$name did not stop in 30 s; killing it"; kill -KILL "$(pid_of "$name")"; }
      log "$name stopped"
    fi
    rm -f "$state/run/$name.pid"
  done
  "$root/deploy/local/broker.sh" stop "$port" >&2
}

status() {
  local failed=0
  "$root/deploy/local/broker.sh" status "$port" || failed=1
  for name in "${services[@]}"; do
    local port_; port_="$(admin_port "$name")"
    if alive "$name" && curl -fsS "http://127.0.0.1:$port_/readyz" >/dev/null 2>&1; then
      echo "$name ready on :$port_ (pid $(pid_of "$name"))"
    elif alive "$name"; then echo "$name running on :$port_ but not ready"; failed=1
    else echo "$name not running"; failed=1; fi
  done
  return $failed
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
