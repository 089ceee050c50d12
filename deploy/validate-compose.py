#!/usr/bin/env python3
"""Validates a Compose file against the Compose Specification JSON schema.

usage: validate-compose.py COMPOSE_FILE [SCHEMA]   (default schema: docs/reference/compose/compose-spec.json)
Prints every violation with its path and exits 1 if there is one. Uses the `jsonschema` package.
"""
import json
import pathlib
import sys

import jsonschema
import yaml

root = pathlib.Path(__file__).resolve().parent.parent
compose_path = pathlib.Path(sys.argv[1])
schema_path = pathlib.Path(sys.argv[2]) if len(sys.argv) > 2 else root / "docs/reference/compose/compose-spec.json"
schema = json.loads(schema_path.read_text())
document = yaml.safe_load(compose_path.read_text())
validator = jsonschema.Draft7Validator(schema)  # the schema declares draft-07
errors = sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
for error in errors:
    path = ".".join(str(p) for p in error.absolute_path) or "(top level)"
    print(f"{compose_path}: {path}: {error.message}")
if errors:
    sys.exit(1)
print(f"{compose_path}: valid against {schema_path.name}")
