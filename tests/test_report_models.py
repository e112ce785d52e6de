"""The contract between stages: report.json's sections as models, and the shipped JSON Schema."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from builder.errors import TfimgError
from builder.infra import report, report_models
from builder.infra.report_models import (
    BuildSection,
    ChecksSection,
    FactsSection,
    GateFiles,
    LocalTags,
    Report,
    TagsSection,
    Timings,
)
from builder.pipeline import record
from builder.scan import gate, policy
from tests import reports

ROOT = Path(__file__).resolve().parents[1]


def test_shipped_schema_is_the_models_schema() -> None:
    shipped = json.loads((ROOT / "docs/report.schema.json").read_text())
    assert shipped == report_models.schema(), \
        "docs/report.schema.json is stale: run `make schema` (tfimg schema --report -o docs/report.schema.json)"


def test_schema_is_written_by_tfimg_schema_report(tmp_path: Path) -> None:
    out = tmp_path / "report.schema.json"
    res = subprocess.run([sys.executable, "-m", "builder", "schema", "--report", "-o", str(out)],
                         capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert res.returncode == 0, res.stderr
    assert out.read_text() == (ROOT / "docs/report.schema.json").read_text()
    res = subprocess.run([sys.executable, "-m", "builder", "schema", "--report"], capture_output=True, text=True,
                         cwd=ROOT, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout == out.read_text()


def test_schema_names_every_section_and_refuses_unknown_keys() -> None:
    sch = report_models.schema()
    assert set(sch["properties"]) == {"build", "checks", "facts", "scan", "gate", "tags", "local_tags",
                                      "publish", "published", "timings"}
    assert sch["additionalProperties"] is False
    assert sch["$defs"]["BuildSection"]["additionalProperties"] is False
    assert "image_id" in sch["$defs"]["BuildSection"]["required"]
    assert sch["$defs"]["GateSection"]["required"] == ["decision", "policy"]


def test_a_section_has_exactly_the_keys_its_writer_set(tmp_path: Path) -> None:
    record.write_section(tmp_path, ChecksSection(passed=None, skipped="--no-test"))
    record.write_section(tmp_path, LocalTags([]))
    record.write_section(tmp_path, Timings({"render": 0.1}))
    raw = json.loads((tmp_path / report.REPORT).read_text())
    assert raw == {"checks": {"passed": None, "skipped": "--no-test"}, "local_tags": [], "timings": {"render": 0.1}}
    rep = report.load(tmp_path)
    assert rep.checks.passed is None and list(rep.local_tags) == [] and rep.timings.root == {"render": 0.1}
    assert record.save(tmp_path, rep).to_json() == raw          # loading and saving changes nothing


def test_gate_section_keeps_todays_keys(tmp_path: Path) -> None:
    result = gate.unscanned(policy.load(None), "trivy not found")
    section = result.summary(files=GateFiles(json_="gate.json", sarif="gate.sarif", markdown="gate.md"))
    record.write_section(tmp_path, section)
    raw = json.loads((tmp_path / report.REPORT).read_text())["gate"]
    assert set(raw) == {"decision", "policy", "policy_file", "artifact", "trivy_version", "evaluated_on", "reasons",
                        "blocking", "blocking_ids", "counts", "waived", "expired_waivers", "stale_waivers",
                        "base_layers_known", "base_digest_pinned", "scanners", "scanners_from", "files"}
    assert raw["files"] == {"json": "gate.json", "sarif": "gate.sarif", "markdown": "gate.md"}


def test_a_typo_fails_where_it_is_made() -> None:
    good = reports.build("sha256:" + "1" * 64).model_dump()
    with pytest.raises(ValidationError, match="image_idd"):
        BuildSection.model_validate({**good, "image_idd": "x"})
    with pytest.raises(ValidationError, match="frozen"):
        TagsSection(immutable="a", moving=[]).immutable = "b"  # type: ignore[misc]
    with pytest.raises(ValidationError):
        ChecksSection(passed="yes")  # type: ignore[arg-type]   # only a real true passes


@pytest.mark.parametrize("text,why", [
    ('{"bulid": {}}', "bulid: Extra inputs are not permitted"),
    ('{"gate": {"decision": "fail", "policy": "default"}}', "gate.decision: Input should be"),
    ("not json", "Expecting value"),
])
def test_a_report_tfimg_did_not_write_is_refused_clearly(tmp_path: Path, text: str, why: str) -> None:
    (tmp_path / report.REPORT).write_text(text)
    with pytest.raises(TfimgError, match="is not a tfimg report") as info:
        report.load(tmp_path)
    assert why in info.value.message and info.value.exit_code == 2


def test_facts_written_by_another_tool_are_read_by_their_long_names() -> None:
    facts = FactsSection.model_validate({"tf": "2.9.1", "python_version": "3.8.10", "cuda_version": "11.7"})
    assert (facts.tensorflow, facts.python, facts.cuda) == ("2.9.1", "3.8.10", "11.7")
    assert facts.model_dump(exclude_unset=True) == {"tensorflow": "2.9.1", "python": "3.8.10", "cuda": "11.7"}


def test_a_missing_report_is_an_empty_one(tmp_path: Path) -> None:
    assert report.load(tmp_path / "nowhere") == Report()
