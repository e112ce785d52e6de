"""Renderers of a :class:`~builder.scan.watch.WatchReport`: rich tables, Markdown (an issue or a chat
message), SARIF 2.1.0 (one run per digest, as :func:`builder.scan.gate_outputs.sarif` writes a gate) and
JSON (the report's own ``model_dump_json``). Pure and linear in the number of findings."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from builder.scan import gate_outputs
from builder.scan.watch import DigestWatch, WatchReport

MD_ROWS = 50   # new findings listed per digest in the Markdown (an issue body: GitHub takes 65,536 characters)
ICON = {"pass": "✅", "block": "❌", "unscanned": "⚠️", "error": "⚠️"}
WORD = {"pass": "still passes", "block": "now BLOCKS", "unscanned": "UNSCANNED", "error": "NOT WATCHED"}


def short(d: DigestWatch) -> str:
    ref = d.published.reference
    name, _, digest = ref.partition("@")
    return f"{name.rsplit('/', 1)[-1]}@{digest[:19]}"


def headline(report: WatchReport) -> str:
    n, bad = len(report.digests), len(report.alerts)
    new = sum(len(d.new) for d in report.digests)
    state = f"{bad} of {n} digest(s) no longer pass" if bad else f"all {n} digest(s) still pass"
    return (f"watch {report.namespace}: {state}; {new} finding(s) new since publishing "
            f"(policy {report.policy}, DB {report.db or 'unknown'})")


def table(report: WatchReport) -> Table:
    """One row per digest: what it decides now, what is new, which waivers need an owner's attention."""
    t = Table(title=headline(report), title_justify="left", expand=False)
    for col in ("Digest", "Now", "New since publishing", "Known", "Waivers", "Why"):
        t.add_column(col, overflow="fold")
    for d in report.digests:
        new = ", ".join(f"{f.id} {f.severity} {f.package}@{f.installed} ({f.origin})" for f in d.new[:6])
        if len(d.new) > 6:
            new += f", ... {len(d.new) - 6} more"
        waivers = "; ".join(f"{w.id} {w.state} {w.expires} (owner {w.owner})" for w in d.waivers)
        t.add_row(short(d), WORD[d.status], new or "-", str(len(d.findings) - len(d.new)), waivers or "-",
                  "; ".join(d.reasons[:3]) or "-")
    return t


def markdown(report: WatchReport) -> str:
    """An issue body (or a chat message): alerts first, every new finding, waivers to renew."""
    lines = [f"## {'❌' if report.alerts else '✅'} tfimg watch: {report.namespace}", "",
             f"{headline(report)}. Watched {report.watched_at}.", ""]
    for d in sorted(report.digests, key=lambda d: (not d.alert, d.published.reference)):
        p = d.published
        lines += [f"### {ICON[d.status]} `{_md(short(d))}` {WORD[d.status]}", "",
                  f"`{_md(p.reference)}`" + (f" ({_md(', '.join(p.tags[:4]))})" if p.tags else "")
                  + (f", published {p.published_at}" if p.published_at else "") + ".", ""]
        lines += [f"- {_md(r)}" for r in d.reasons] + ([""] if d.reasons else [])
        if d.new:
            lines += ["| New since publishing | Severity | In | Origin | Fix | Under the policy |",
                      "|---|---|---|---|---|---|"]
            lines += [f"| {_md(f.id)} | {f.severity} | `{_md(f.package)}@{_md(f.installed)}` | {f.origin} "
                      f"| {_md(f.fixed or '-')} | {_md(f.blocking or (f'waived ({f.waived_by})' if f.waived_by else 'reported'))} |"
                      for f in d.new[:MD_ROWS]]
            lines += ["", f"_{len(d.new) - MD_ROWS} more in the JSON output._"] if len(d.new) > MD_ROWS else []
            lines.append("")
        lines.append(f"Known at publishing: {len(d.findings) - len(d.new)}"
                     + (f"; resolved since: {_md(', '.join(d.resolved))}" if d.resolved else "") + ".")
        if d.waivers:
            lines += ["", "| Waiver | Owner | Expires | |", "|---|---|---|---|"]
            lines += [f"| {_md(w.id)} | {_md(w.owner)} | {w.expires} | {w.state}"
                      f"{f' ({-w.days_left} days ago)' if w.days_left < 0 else f' in {w.days_left} days'} |"
                      for w in d.waivers]
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def sarif(report: WatchReport) -> dict[str, Any]:
    """SARIF 2.1.0: one run per watched digest, as the gate writes one; each result says whether it is
    new since publishing (``properties.since``)."""
    runs = []
    for d in report.digests:
        if d.gate is None:
            runs.append({"tool": {"driver": {"name": "tfimg-watch", "rules": []}}, "results": [],
                         "invocations": [{"executionSuccessful": False, "toolExecutionNotifications": [
                             {"level": "error", "message": {"text": r}} for r in d.reasons]}],
                         "properties": {"reference": d.published.reference, "status": d.status}})
            continue
        run = gate_outputs.sarif(d.gate)["runs"][0]
        since = {(f.id, f.package, f.installed): f.since for f in d.findings}
        for res, (f, _) in zip(run["results"], d.gate.findings, strict=True):
            res["properties"]["since"] = since.get((f.id, f.package, f.installed), "known") \
                if f.kind == "vulnerability" else "known"
        run["tool"]["driver"]["name"] = "tfimg-watch"
        run["automationDetails"] = {"id": f"tfimg-watch/{d.published.reference}"}
        run["properties"].update(reference=d.published.reference, status=d.status)
        runs.append(run)
    return {"$schema": gate_outputs.SARIF_SCHEMA, "version": "2.1.0", "runs": runs}


def _md(text: str | None) -> str:
    return (text or "").replace("|", "\\|").replace("\n", " ")
