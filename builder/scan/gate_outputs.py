"""Renderers of a :class:`~builder.scan.gate.GateResult`: rich table, SARIF 2.1.0, Markdown (gate.json
is the result's own ``model_dump_json``).

All are pure functions of the result, linear in time and size in the number of findings (60,000
findings: ``make bench``). None of them prints secret material: findings carry rule ids, files and
line numbers only. The table and the Markdown list the first :data:`TABLE_ROWS` / :data:`MD_ROWS`
blocking findings and say how many more gate.json and gate.sarif hold.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from rich.table import Table

from builder import __version__
from builder.scan.gate import GateResult
from builder.scan.trivy_report import SEVERITIES, Finding

TABLE_ROWS = 40    # blocking findings shown in the terminal
MD_ROWS = 200      # ... and in gate.md (a CI page: GitHub's step summary takes at most 1 MiB)

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
# GitHub code scanning sorts by this (0.1-10, like CVSS).
SECURITY_SEVERITY = {"CRITICAL": "9.5", "HIGH": "8.0", "MEDIUM": "5.5", "LOW": "2.0", "UNKNOWN": "0.0"}
LEVEL = {"CRITICAL": "error", "HIGH": "error", "MEDIUM": "warning", "LOW": "note", "UNKNOWN": "note"}
COLOUR = {"pass": "green", "block": "bold red", "unscanned": "bold yellow"}


def headline(result: GateResult) -> str:
    why = f": {result.reasons[0]}" if result.reasons else ""
    return f"gate {result.label} (policy {result.policy}){why}"


def table(result: GateResult) -> Table:
    """What blocks and why, one row per blocking finding (empty when nothing blocks)."""
    t = Table(title=f"[{COLOUR[result.decision]}]{headline(result)}[/]", title_justify="left",
              show_lines=False, expand=False)
    for col in ("Severity", "ID", "In", "Fix", "Why it blocks"):
        t.add_column(col, overflow="fold")
    for b in result.blocking[:TABLE_ROWS]:
        f = b.finding
        ident = f.id if f.kind == "vulnerability" else f"{f.kind}: {f.id}"
        t.add_row(f.severity, ident, f.subject, f.fixed or "-", b.reason)
    if len(result.blocking) > TABLE_ROWS:
        t.add_row("", f"... {len(result.blocking) - TABLE_ROWS} more", "", "", "every one is in gate.md and gate.json")
    for note in result.reasons:
        if not note.endswith(f"block under policy '{result.policy}'"):
            t.add_row("", "policy", "", "", note)
    return t


def counts_line(result: GateResult) -> str:
    vulns = result.counts.get("vulnerability", {})
    parts = []
    for origin in ("new", "inherited"):
        row = vulns.get(origin, {})
        parts.append(f"{origin}: " + ", ".join(f"{s} {row.get(s, 0)}" for s in reversed(SEVERITIES) if row.get(s)))
    secrets = sum(sum(v.values()) for v in result.counts.get("secret", {}).values())
    return "; ".join(p if not p.endswith(": ") else p + "none" for p in parts) + f"; secrets: {secrets}"


# --------------------------------------------------------------------------- SARIF

def sarif(result: GateResult) -> dict[str, Any]:
    """SARIF 2.1.0 for code-scanning dashboards: blocking findings are errors, waived ones suppressed."""
    rules: dict[str, int] = {}         # rule id -> its index in the driver's rules, each rule once
    rule_list: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    blocking = {b.finding.key: b.reason for b in result.blocking}
    waived = {w.finding.key: w for w in result.waived}
    for f, origin in result.findings:
        rule_id = f"{f.kind}/{f.id}"
        if rule_id not in rules:
            rules[rule_id] = len(rule_list)
            rule_list.append(_rule(rule_id, f))
        level = "error" if f.key in blocking else ("note" if f.kind == "license" else LEVEL[f.severity])
        if f.key not in blocking and level == "error":
            level = "warning"
        text = f"{f.severity} {f.kind} {f.id} in {f.subject} ({origin})"
        if f.fixed:
            text += f"; fixed in {f.fixed}"
        text += f". Blocks: {blocking[f.key]}" if f.key in blocking else ". Does not block under this policy."
        item: dict[str, Any] = {
            "ruleId": rule_id, "ruleIndex": rules[rule_id], "level": level,
            "message": {"text": text},
            "locations": [{"physicalLocation": {
                "artifactLocation": {"uri": _uri(f)},
                "region": {"startLine": f.line or 1}}}],
            "partialFingerprints": {"tfimgFinding/v1": f.key},
            "properties": {"origin": origin, "severity": f.severity, "blocking": f.key in blocking},
        }
        if f.key in waived:
            w = waived[f.key]
            item["suppressions"] = [{"kind": "external", "status": "accepted",
                                     "justification": f"{w.reason} (owner {w.owner}, until {_until(w.expires)})"}]
        results.append(item)
    return {
        "$schema": SARIF_SCHEMA, "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": "tfimg-gate", "version": __version__, "semanticVersion": __version__,
                                "informationUri": "https://github.com/aquasecurity/trivy",
                                "rules": rule_list}},
            "results": results,
            "invocations": [{"executionSuccessful": True,
                             "toolExecutionNotifications": [{"level": "error" if result.decision == "block" else "note",
                                                             "message": {"text": r}} for r in result.reasons]}],
            "properties": {"decision": result.decision, "policy": result.policy,
                           "artifact": result.artifact, "trivyVersion": result.trivy_version},
        }],
    }


def _rule(rule_id: str, f: Finding) -> dict[str, Any]:
    rule: dict[str, Any] = {
        "id": rule_id, "name": f.kind.title().replace(" ", ""),
        "shortDescription": {"text": (f.title or f.id)[:1000]},
        "defaultConfiguration": {"level": LEVEL[f.severity]},
        "properties": {"security-severity": SECURITY_SEVERITY[f.severity],
                       "tags": ["security", f.kind, f.severity]},
    }
    if f.url:
        rule["helpUri"] = f.url
    return rule


def _uri(f: Finding) -> str:
    where = (f.path or f.target or "image").split(" (")[0].lstrip("/")
    return where or "image"


# --------------------------------------------------------------------------- Markdown

def markdown(result: GateResult) -> str:
    """A summary for CI job pages (GitHub step summary, GitLab MR notes)."""
    icon = {"pass": "✅", "block": "❌", "unscanned": "⚠️"}[result.decision]
    lines = [f"## {icon} Vulnerability gate: {result.label}", "",
             f"Policy **{result.policy}**" + (f" on `{_md(result.artifact)}`" if result.artifact else "")
             + (f", Trivy {result.trivy_version}" if result.trivy_version else "") + ".", ""]
    lines += [f"- {_md(r)}" for r in result.reasons] + ([""] if result.reasons else [])
    if result.counts:
        lines += ["| Findings | " + " | ".join(reversed(SEVERITIES)) + " |",
                  "|---|" + "---:|" * len(SEVERITIES)]
        for kind, by_origin in result.counts.items():
            for origin, row in by_origin.items():
                if any(row.values()):
                    lines.append(f"| {kind} ({origin}) | " + " | ".join(str(row[s]) for s in reversed(SEVERITIES)) + " |")
        if not result.base_layers_known:
            lines += ["", "_Base image layers unknown: every finding counts as new._"]
        lines.append("")
    if result.blocking:
        lines += ["### What blocks", "", "| Severity | ID | In | Origin | Fix | Why |", "|---|---|---|---|---|---|"]
        lines += [f"| {b.finding.severity} | {_md(b.finding.id)} | `{_md(b.finding.subject)}` | {b.origin} "
                  f"| {_md(b.finding.fixed or '-')} | {_md(b.reason)} |" for b in result.blocking[:MD_ROWS]]
        lines += _more(len(result.blocking), "blocking findings")
    if result.waived:
        lines += ["### Waived", "", "| ID | In | Owner | Until | Reason |", "|---|---|---|---|---|"]
        lines += [f"| {_md(w.finding.id)} | `{_md(w.finding.subject)}` | {_md(w.owner)} | {_until(w.expires)} | {_md(w.reason)} |"
                  for w in result.waived[:MD_ROWS]]
        lines += _more(len(result.waived), "waived findings")
    for title, notes in (("Expired waivers (blocking)", result.expired_waivers),
                         ("Stale waivers (matched nothing; remove them)", result.stale_waivers)):
        if notes:
            lines += [f"### {title}", ""] + [f"- {_md(w.id)}: owner {_md(w.owner)}, expires {w.expires}"
                                              for w in notes] + [""]
    return "\n".join(lines).rstrip() + "\n"


def _more(total: int, what: str) -> list[str]:
    if total <= MD_ROWS:
        return [""]
    return ["", f"_The first {MD_ROWS} of {total} {what}; gate.json and gate.sarif list every one._", ""]


def _until(day: dt.date) -> str:
    """A waiver's last day; a VEX statement's waiver has none (``date.max``)."""
    return "no expiry (VEX)" if day == dt.date.max else str(day)


def _md(text: str | None) -> str:
    return (text or "").replace("|", "\\|").replace("\n", " ")
