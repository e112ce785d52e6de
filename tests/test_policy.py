"""Gate policy files: shipped policies, threshold forms, and errors that say where and how to fix."""

from __future__ import annotations

import datetime as dt
import textwrap
from pathlib import Path

import pytest

from builder.errors import SpecErrors
from builder.scan import policy

ROOT = Path(__file__).parent.parent


def write(tmp_path: Path, text: str, name: str = "p.yaml") -> Path:
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


def errors_of(path: Path) -> list:
    with pytest.raises(SpecErrors) as exc:
        policy.load(path)
    assert exc.value.exit_code == 2
    return exc.value.errors


def test_default_policy_is_used_when_none_is_named():
    p = policy.load(None)
    assert p.name == "default" and Path(p.file) == ROOT / "policies" / "default.yaml"
    assert p.vulnerabilities.new.fixed == {"HIGH": 0, "CRITICAL": 0}
    assert p.vulnerabilities.new.unfixed == {} and p.vulnerabilities.inherited.fixed == {}
    assert p.scan.required is True and p.require_base_digest is False


def test_strict_policy_by_name():
    p = policy.load("strict")
    assert p.require_base_digest is True
    assert p.vulnerabilities.inherited.fixed == {"CRITICAL": 0}
    assert p.misconfigurations.block == {"HIGH": 0, "CRITICAL": 0}


def test_waiver_example_is_valid():
    p = policy.load(ROOT / "policies" / "waivers.example.yaml")
    assert {w.id for w in p.waivers} >= {"CVE-2019-18224", "DS-0002"}
    assert all(isinstance(w.expires, dt.date) and w.owner for w in p.waivers)


@pytest.mark.parametrize("value,expected", [
    ("HIGH", {"HIGH": 0, "CRITICAL": 0}),
    ("low", {"LOW": 0, "MEDIUM": 0, "HIGH": 0, "CRITICAL": 0}),
    ("[CRITICAL]", {"CRITICAL": 0}),
    ("{CRITICAL: 0, HIGH: 5}", {"CRITICAL": 0, "HIGH": 5}),
    ("none", {}),
    ("null", {}),
])
def test_threshold_forms(tmp_path, value, expected):
    p = policy.load(write(tmp_path, f"vulnerabilities:\n  new:\n    fixed: {value}\n"))
    assert p.vulnerabilities.new.fixed == expected


def test_unknown_key_names_file_line_and_suggests(tmp_path):
    path = write(tmp_path, """\
        vulnerabilities:
          new:
            fixd: HIGH
        """)
    [err] = errors_of(path)
    assert err.key == "vulnerabilities.new.fixd" and err.line == 3
    assert "did you mean 'fixed'" in err.message and "fixed, unfixed" in err.hint


def test_bad_severity_and_negative_allowance(tmp_path):
    path = write(tmp_path, """\
        vulnerabilities:
          new: {fixed: SEVERE}
        misconfigurations:
          block: {HIGH: -1}
        """)
    errs = {e.key: e for e in errors_of(path)}
    assert "'SEVERE' is not a severity" in errs["vulnerabilities.new.fixed"].message
    assert errs["vulnerabilities.new.fixed"].line == 2
    assert ">= 0" in errs["misconfigurations.block"].message


def test_waiver_needs_owner_reason_and_a_real_date(tmp_path):
    path = write(tmp_path, """\
        waivers:
          - id: CVE-2024-0001
            reason: accepted
            expires: 2027-01-01
          - id: CVE-2024-0002
            reason: accepted
            owner: bob
            expires: next year
        """)
    errs = {e.key: e for e in errors_of(path)}
    assert errs["waivers[0].owner"].message.endswith("this key is required (every waiver names id, reason, owner and expires)")
    assert errs["waivers[0].owner"].line == 2
    assert "YYYY-MM-DD" in errs["waivers[1].expires"].message and errs["waivers[1].expires"].line == 8


def test_bad_purl(tmp_path):
    path = write(tmp_path, """\
        waivers:
          - {id: CVE-1, purl: "deb/ubuntu/openssl", reason: why not, owner: me, expires: 2027-01-01}
        """)
    [err] = errors_of(path)
    assert err.key == "waivers[0].purl" and "pkg:" in err.message


def test_secrets_cannot_be_switched_off(tmp_path):
    [err] = errors_of(write(tmp_path, "secrets: {block: false}\n"))
    assert err.key == "secrets" and err.line == 1 and "waiver" in err.hint


def test_yaml_syntax_error_has_a_line(tmp_path):
    [err] = errors_of(write(tmp_path, "vulnerabilities:\n  new: [\n"))
    assert "YAML syntax error" in err.message and err.line


def test_missing_policy_lists_shipped_ones(tmp_path):
    [err] = errors_of(tmp_path / "none.yaml")
    assert "not found" in err.message and "strict" in err.hint


def test_not_a_mapping(tmp_path):
    [err] = errors_of(write(tmp_path, "- a\n- b\n"))
    assert "mapping" in err.message


def test_schema_has_no_internal_keys():
    sch = policy.schema()
    assert "waivers" in sch["properties"] and "name" not in sch["properties"]
