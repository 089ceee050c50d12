#!/usr/bin/env python3
"""Prints a service's command and environment from docker-compose.yml, adapted to the local stack.

usage: compose-env.py [--lenient] SERVICE BROKERS CONFIG STATE_DIR
The local stack runs exactly the commands and settings compose ships; only the values that name
places differ (the broker address, the loop.yaml path, the state directory), and `${VAR:-default}`
interpolations take the value from the environment as compose would. Output: the command on the
first line, then one KEY=VALUE line per setting. `--lenient` leaves a required `${VAR:?...}` that is
not set empty instead of failing, for callers that only read a setting that is not secret (the port).
"""
import os
import pathlib
import re
import sys

import yaml

arguments = sys.argv[1:]
lenient = arguments[:1] == ["--lenient"]
service, brokers, config, state_dir = arguments[1:5] if lenient else arguments[0:4]
root = pathlib.Path(__file__).resolve().parent.parent.parent
compose = yaml.safe_load((root / "docker-compose.yml").read_text())
spec = compose["services"][service]
local = {"LOOP_BROKERS": brokers, "LOOP_CONFIG": config, "LOOP_STATE_DIR": state_dir}


def interpolate(value: str) -> str:
    def substitute(match: re.Match) -> str:
        name, operator, rest = match.group(1), match.group(2) or "", match.group(3) or ""
        current = os.environ.get(name, "")
        if operator == ":-":
            return current or rest
        if operator == ":?" and not current and not lenient:
            sys.exit(f"{name} must be set: {rest}")
        return current
    return re.sub(r"\$\{(\w+)(:-|:\?)?([^}]*)\}", substitute, str(value))


print(" ".join(spec["command"]))
for key, value in spec.get("environment", {}).items():
    print(f"{key}={local.get(key, interpolate(value))}")
