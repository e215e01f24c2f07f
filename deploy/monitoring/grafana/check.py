#!/usr/bin/env python3
"""Checks the dashboards offline: each is JSON whose panels read the
provisioned data source; every query parses as PromQL (written into a
scratch rules file for `promtool check rules`); and every series a query
names is one the suite exports or a recording rule of crm.rules.yml.
Usage: check.py (promtool on the PATH)
"""

import json
import pathlib
import re
import subprocess
import sys
import tempfile

import yaml

HERE = pathlib.Path(__file__).resolve().parent
RULES = HERE.parent / "prometheus" / "crm.rules.yml"
DATA_SOURCE = "prometheus"
# What the suite exports (libs/platform/src/metrics.rs), as Prometheus names them.
EXPORTED = {
    "crm_rpc_requests_total", "crm_rpc_errors_total", "crm_rpc_duration_seconds_bucket",
    "crm_rpc_duration_seconds_count", "crm_rpc_duration_seconds_sum", "crm_consumer_events_total",
    "crm_consumer_delay_seconds_bucket", "crm_database_ready", "crm_db_pool_connections",
    "crm_db_pool_max_connections", "crm_slo_objective", "crm_slo_sli", "crm_slo_error_budget_remaining",
    "crm_slo_burn_rate", "crm_slo_alert_firing", "up",
}


def main():
    recorded = {rule["record"] for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"] if "record" in rule}
    problems, queries = [], []
    for board in sorted((HERE / "dashboards").glob("*.json")):
        dashboard = json.loads(board.read_text())
        for panel in dashboard["panels"]:
            if panel.get("datasource", {}).get("uid") != DATA_SOURCE:
                problems.append(f"{board.name}: panel {panel['title']!r} does not read the data source {DATA_SOURCE}")
            for target in panel.get("targets", []):
                expr = target["expr"].replace("$server", "contacts")
                queries.append((board.name, panel["title"], expr))
                for name in re.findall(r"\b(crm[:_][a-z0-9_:]+|up)\b(?=\s*[{\[)]|\s*$)", expr):
                    if name not in EXPORTED and name not in recorded:
                        problems.append(f"{board.name}: panel {panel['title']!r} reads {name}, which nothing exports or records")
    with tempfile.NamedTemporaryFile("w", suffix=".yml") as scratch:
        rules = [{"record": f"dashboard:query:{index}", "expr": expr} for index, (_, _, expr) in enumerate(queries)]
        yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}, scratch)
        scratch.flush()
        checked = subprocess.run(["promtool", "check", "rules", scratch.name], capture_output=True, text=True)
        if checked.returncode != 0:
            problems.append(f"a query does not parse:\n{checked.stdout}{checked.stderr}")
    for problem in problems:
        print(problem, file=sys.stderr)
    print(f"{len(queries)} queries checked, {len(problems)} problems", file=sys.stderr)
    return 1 if problems or not queries else 0


if __name__ == "__main__":
    sys.exit(main())
