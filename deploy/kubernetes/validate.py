#!/usr/bin/env python3
"""Validates rendered manifests offline, strictly: every built-in kind
against Kubernetes' own schema (kubernetes-validate), every custom kind
(CloudNativePG's, the Prometheus operator's) against its CRD's schema kept
in schemas/ (see its README); a field that is not in the schema is an
error, as the API server would make it.

Usage: kubectl kustomize overlays/single | validate.py -
       validate.py --rules        (the PrometheusRule holds crm.rules.yml's groups)
       validate.py --write-rules  (writes it so)
"""

import json
import pathlib
import sys

import jsonschema
import kubernetes_validate
import yaml

KUBERNETES_VERSION = "1.33.0"
HERE = pathlib.Path(__file__).resolve().parent
SCHEMAS = HERE / "schemas"
RULES = HERE.parent / "monitoring" / "prometheus" / "crm.rules.yml"
PROMETHEUS_RULE = HERE / "components" / "monitoring" / "prometheus-rule.yaml"


def prometheus_rule():
    """crm.rules.yml's groups as the Prometheus operator's PrometheusRule."""
    groups = yaml.safe_load(RULES.read_text())["groups"]
    header = (
        "# Generated from deploy/monitoring/prometheus/crm.rules.yml by\n"
        "# `deploy/kubernetes/validate.py --write-rules`; .ci/run checks they agree.\n"
    )
    resource = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "crm", "labels": {"app.kubernetes.io/name": "crm"}},
        "spec": {"groups": groups},
    }
    return header + yaml.safe_dump(resource, sort_keys=False, width=1000)


def rules_agree():
    if yaml.safe_load(PROMETHEUS_RULE.read_text()) == yaml.safe_load(prometheus_rule()):
        print(f"{PROMETHEUS_RULE.name} holds crm.rules.yml's groups", file=sys.stderr)
        return 0
    print(f"{PROMETHEUS_RULE} differs from {RULES}: run validate.py --write-rules", file=sys.stderr)
    return 1


def strict(schema):
    """The schema with unknown fields refused wherever it lists its fields
    (as the API server's strict field validation does)."""
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    schema = {key: strict(value) for key, value in schema.items()}
    if (
        "properties" in schema
        and "additionalProperties" not in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        schema["additionalProperties"] = False
    return schema


def custom_schemas():
    found = {}
    for path in sorted(SCHEMAS.glob("*.json")):
        entry = json.loads(path.read_text())
        found[(entry["apiVersion"], entry["kind"])] = strict(entry["schema"])
    return found


def problems(document, schemas):
    key = (document.get("apiVersion"), document.get("kind"))
    if key in schemas:
        validator = jsonschema.Draft7Validator(schemas[key])
        return [
            f"{'.'.join(str(part) for part in error.absolute_path) or '(top)'}: {error.message}"
            for error in validator.iter_errors(document)
        ]
    if key[0] and "." in key[0].split("/")[0]:
        group = key[0].split("/")[0]
        if not group.endswith(".k8s.io") and group not in ("apps", "batch", "policy", "autoscaling"):
            return [f"no schema for {key[0]} {key[1]}: add its CRD's schema to {SCHEMAS}"]
    try:
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as error:
        # The first problem only: kubernetes-validate stops at it.
        path = ".".join(str(part) for part in error.absolute_path) or "(top)"
        return [f"{path}: {error.message}"]
    except kubernetes_validate.SchemaNotFoundError as error:
        return [str(error.message)]
    return []


def pods(documents):
    """(labels, named ports) of the pods each Deployment or Job makes."""
    for document in documents:
        if document.get("kind") in ("Deployment", "Job"):
            template = document["spec"]["template"]
            ports = {
                port["name"]
                for container in template["spec"]["containers"]
                for port in container.get("ports", [])
                if "name" in port
            }
            yield document, template["metadata"].get("labels", {}), ports


def selects(selector, labels):
    """Whether a label selector (a Service's plain one, or matchLabels and
    matchExpressions with In) chooses pods with these labels."""
    if "matchLabels" not in selector and "matchExpressions" not in selector:
        selector = {"matchLabels": selector}
    if any(labels.get(key) != value for key, value in selector.get("matchLabels", {}).items()):
        return False
    return all(
        labels.get(expression["key"]) in expression["values"]
        for expression in selector.get("matchExpressions", [])
        if expression["operator"] == "In"
    )


def references(documents):
    """What a schema cannot see: selectors that select nothing, ports named
    but not declared, autoscalers of nothing."""
    made = list(pods(documents))
    names = {(document["kind"], document["metadata"]["name"]) for document in documents}
    found = []
    for document in documents:
        kind, name = document.get("kind"), document.get("metadata", {}).get("name")
        spec = document.get("spec", {})
        if kind == "Service":
            chosen = [ports for _, labels, ports in made if selects(spec["selector"], labels)]
            if not chosen:
                found.append((f"{kind}/{name}", "its selector selects no pod"))
            for port in spec["ports"]:
                target = port.get("targetPort")
                if isinstance(target, str) and not all(target in ports for ports in chosen):
                    found.append((f"{kind}/{name}", f"targetPort {target} is not a port of its pods"))
        elif kind in ("PodDisruptionBudget", "NetworkPolicy"):
            selector = spec.get("selector") if kind == "PodDisruptionBudget" else spec.get("podSelector")
            chosen = [ports for _, labels, ports in made if selects(selector, labels)]
            if not chosen and kind == "PodDisruptionBudget":
                found.append((f"{kind}/{name}", "its selector selects no pod"))
            for rule in spec.get("ingress", []):
                for port in rule.get("ports", []):
                    named = port.get("port")
                    if isinstance(named, str) and not any(named in ports for ports in chosen):
                        found.append((f"{kind}/{name}", f"port {named} is not a port of the pods it selects"))
        elif kind == "HorizontalPodAutoscaler":
            target = spec["scaleTargetRef"]
            if (target["kind"], target["name"]) not in names:
                found.append((f"{kind}/{name}", f"scales {target['kind']}/{target['name']}, which is not here"))
    return found


def main(paths):
    schemas = custom_schemas()
    failed = checked = 0
    for path in paths:
        text = sys.stdin.read() if path == "-" else pathlib.Path(path).read_text()
        documents = [document for document in yaml.safe_load_all(text) if document]
        for document in documents:
            checked += 1
            name = f"{document.get('kind')}/{document.get('metadata', {}).get('name')}"
            for problem in problems(document, schemas):
                failed += 1
                print(f"{path}: {name}: {problem}", file=sys.stderr)
        for name, problem in references(documents):
            failed += 1
            print(f"{path}: {name}: {problem}", file=sys.stderr)
    print(f"{checked} resources checked, {failed} problems", file=sys.stderr)
    return 1 if failed or not checked else 0


if __name__ == "__main__":
    if sys.argv[1:] == ["--rules"]:
        sys.exit(rules_agree())
    if sys.argv[1:] == ["--write-rules"]:
        PROMETHEUS_RULE.write_text(prometheus_rule())
        sys.exit(0)
    sys.exit(main(sys.argv[1:] or ["-"]))
