"""A large Trivy report for the gate's scale test and `make bench`: the rows of real Trivy reports
(tests/data/trivy, written by Trivy's own integration tests) replicated with distinct ids and
packages, every kind of finding in it, no two findings the same.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

DATA = Path(__file__).parent / "data" / "trivy"
# (golden, list key, the id keys made distinct per copy); vulnerabilities dominate, as in a real image
SEEDS = (("fluentd-gems.json.golden", "Vulnerabilities", ("VulnerabilityID", "PkgName", "PkgID")),
         ("debian-buster.json.golden", "Vulnerabilities", ("VulnerabilityID", "PkgName", "PkgID")),
         ("secrets.json.golden", "Secrets", ("RuleID",)),
         ("dockerfile.json.golden", "Misconfigurations", ("ID",)),
         ("license-cyclonedx.json.golden", "Licenses", ("Name", "PkgName")))


def _rows() -> list[tuple[dict[str, Any], str, dict[str, Any], tuple[str, ...]]]:
    """(result without findings, list key, one finding, id keys) for every finding of the seeds."""
    out = []
    for name, key, ids in SEEDS:
        data = json.loads((DATA / name).read_text())
        for result in data.get("Results") or []:
            shell = {k: v for k, v in result.items() if k not in ("Vulnerabilities", "Secrets",
                                                                   "Misconfigurations", "Licenses", "Packages")}
            out += [(shell, key, row, ids) for row in result.get(key) or []]
    return out


def generate(n: int) -> dict[str, Any]:
    """A SchemaVersion 2 image report with ``n`` distinct findings, 9 in 10 of them vulnerabilities."""
    report = json.loads((DATA / "fluentd-gems.json.golden").read_text())
    rows = _rows()
    vulns = [r for r in rows if r[1] == "Vulnerabilities"]
    others = [r for r in rows if r[1] != "Vulnerabilities"]
    results: dict[tuple[str, str], dict[str, Any]] = {}
    for i in range(n):
        shell, key, row, ids = others[(i // 10) % len(others)] if i % 10 == 9 else vulns[i % len(vulns)]
        item = copy.deepcopy(row)
        for k in ids:
            if item.get(k):
                item[k] = f"{item[k]}-{i}"
        target = shell.get("Target", "")
        res = results.setdefault((target, key), {**copy.deepcopy(shell), key: []})
        res[key].append(item)
    report["Results"] = list(results.values())
    return report
