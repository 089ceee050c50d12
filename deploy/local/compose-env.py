#!/usr/bin/env python3
"""Prints a service's command and environment from docker-compose.yml, adapted to the local stack.

usage: compose-env.py SERVICE BROKERS CONFIG STATE_DIR
The local stack runs exactly the commands and settings compose ships; only the values that name
places differ (the broker address, the loop.yaml path, the state directory), and `${VAR:-default}`
interpolations take the value from the environment as compose would. Output: the command on the
first line, then one KEY=VALUE line per setting.
"""
import os
import pathlib
import re
import sys

import yaml

service, brokers, config, state_dir = sys.argv[1:5]
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
        if operator == ":?" and not current:
            sys.exit(f"{name} must be set: {rest}")
        return current
    return re.sub(r"\$\{(\w+)(:-|:\?)?([^}]*)\}", substitute, str(value))


print(" ".join(spec["command"]))
for key, value in spec.get("environment", {}).items():
    print(f"{key}={local.get(key, interpolate(value))}")
