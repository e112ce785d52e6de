"""Gate policy files: shipped policies, threshold forms, and errors that say where and how to fix."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from pydantic import ValidationError

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


# The exported schema (policies/policy.schema.json, `tfimg schema --policy`): current, and it accepts exactly
# what the loader accepts, so an editor never flags a policy tfimg takes (nor misses one it refuses).

def _schema_validator() -> Draft202012Validator:
    return Draft202012Validator(json.loads((ROOT / "policies/policy.schema.json").read_text()))


def test_shipped_policy_schema_is_current():
    shipped = json.loads((ROOT / "policies/policy.schema.json").read_text())
    assert shipped == policy.schema(), "policies/policy.schema.json is stale: run `make schema`"


def test_tfimg_schema_policy_writes_the_shipped_file(tmp_path: Path):
    out = tmp_path / "policy.schema.json"
    res = subprocess.run([sys.executable, "-m", "builder", "schema", "--policy", "-o", str(out)],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert out.read_text() == (ROOT / "policies/policy.schema.json").read_text()
    both = subprocess.run([sys.executable, "-m", "builder", "schema", "--policy", "--report"],
                          capture_output=True, text=True, timeout=60)
    assert both.returncode == 2 and "at most one" in both.stderr and "Traceback" not in both.stderr


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "policies").glob("*.yaml")))
def test_every_shipped_policy_is_valid_under_the_schema(name: str):
    data = yaml.safe_load((ROOT / "policies" / name).read_text())
    as_an_editor_sees_it = json.loads(json.dumps(data, default=str))   # YAML dates are strings to an editor
    errors = [e.message for e in _schema_validator().iter_errors(as_an_editor_sees_it)]
    assert errors == []
    policy.load(ROOT / "policies" / name)


def _severity_in_any_case() -> st.SearchStrategy[str]:
    return st.tuples(st.sampled_from(["unknown", "low", "medium", "high", "critical", "none"]),
                     st.lists(st.booleans(), min_size=8, max_size=8)).map(
        lambda t: "".join(c.upper() if up else c for c, up in zip(t[0], t[1], strict=False)))


_scalars = st.one_of(st.none(), st.booleans(), st.integers(-3, 10**12), _severity_in_any_case(), st.text(max_size=12),
                     # a float with a fraction: JSON Schema counts 2.0 as an integer, YAML and the loader do not
                     st.floats(allow_nan=False).filter(lambda f: not f.is_integer()))
_thresholds = st.recursive(_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4),
    st.dictionaries(st.one_of(_severity_in_any_case(), st.text(max_size=8)), inner, max_size=4)), max_leaves=8)


@settings(max_examples=400, deadline=None)
@given(value=_thresholds, where=st.sampled_from([("vulnerabilities", "new", "fixed"),
                                                 ("vulnerabilities", "inherited", "unfixed"),
                                                 ("misconfigurations", "block")]))
def test_the_schema_accepts_a_threshold_exactly_when_the_loader_does(value: object, where: tuple[str, ...]):
    doc: dict = json.loads(json.dumps(value))   # what a YAML file can hold, as an editor reads it
    for key in reversed(where):
        doc = {key: doc}
    try:
        policy.Policy.model_validate(doc)
        loader_accepts = True
    except ValidationError:
        loader_accepts = False
    assert _schema_validator().is_valid(doc) == loader_accepts, doc
