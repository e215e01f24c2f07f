#!/usr/bin/env python3
"""Validates compose.yaml offline: against the Compose Specification's JSON
schema (compose-spec.json, from github.com/compose-spec/compose-spec), then
what the schema cannot see: files mounted that do not exist, services that
depend on services not there. Usage: check.py [compose.yaml]
"""

import json
import pathlib
import sys

import jsonschema
import yaml

HERE = pathlib.Path(__file__).resolve().parent


def problems(path):
    compose = yaml.safe_load(path.read_text())
    schema = json.loads((HERE / "compose-spec.json").read_text())
    for error in jsonschema.Draft7Validator(schema).iter_errors(compose):
        where = ".".join(str(part) for part in error.absolute_path) or "(top)"
        yield f"{where}: {error.message}"
    services = compose.get("services", {})
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0] if isinstance(volume, str) else volume.get("source", "")
            if source.startswith(("./", "../")) and not (path.parent / source).exists():
                yield f"services.{name}.volumes: {source} does not exist"
        depends = service.get("depends_on", [])
        for other in depends if isinstance(depends, list) else depends.keys():
            if other not in services:
                yield f"services.{name}.depends_on: no service {other}"


def main(args):
    path = pathlib.Path(args[0] if args else HERE / "compose.yaml")
    found = list(problems(path))
    for problem in found:
        print(f"{path}: {problem}", file=sys.stderr)
    print(f"{path.name}: {len(found)} problems", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
