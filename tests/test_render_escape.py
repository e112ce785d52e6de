"""The escaping helpers, the templates' use of them, and the refusals a user sees (exit 2).

The hostile-input claims are proven by the property tests (tests/test_render_properties.py);
these tests pin the contracts those rely on: every template output goes through an
escaping filter, no regex in builder/ is anchored with ^...$ and used with match, and
each class of refused value is exit 2 through the CLI, naming the key and the fix.
"""

from __future__ import annotations

import ast
from pathlib import Path

import jinja2
import pytest
from jinja2 import nodes

from builder.cli import main
from builder.infra import labels
from builder.render import context as render
from builder.render import escape
from builder.spec import loader as spec
from builder.spec.text import TFIMG_LABEL_PREFIX, TFIMG_LABELS
from tests.render_shape import instructions, pairs

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = sorted((ROOT / "templates").rglob("*.j2"))


def _outputs(tree: nodes.Node) -> list[nodes.Expr]:
    return [expr for out in tree.find_all(nodes.Output) for expr in out.nodes
            if not isinstance(expr, nodes.TemplateData)]


def _escaped(expr: nodes.Expr) -> bool:
    if isinstance(expr, nodes.Const):
        return True
    if isinstance(expr, nodes.CondExpr):
        return _escaped(expr.expr1) and (expr.expr2 is None or _escaped(expr.expr2))
    return isinstance(expr, nodes.Filter) and expr.name in escape.FILTERS


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_template_output_goes_through_an_escaping_filter(template: Path) -> None:
    tree = jinja2.Environment().parse(template.read_text())
    bad = [expr for expr in _outputs(tree) if not _escaped(expr)]
    assert not bad, f"{template.name}: printed without one of {sorted(escape.FILTERS)}: {bad}"


def test_no_anchored_regex_is_used_with_match_in_builder() -> None:
    """``re.match(r"^...$")`` accepts a trailing newline: builder/ uses re.fullmatch without anchors.
    The one exception is pydantic's ``Field(pattern=...)`` (Rust regex, where ``$`` is the end of the
    text; the anchors stay for the JSON Schema)."""
    offenders = []
    for path in (ROOT / "builder").rglob("*.py"):
        tree = ast.parse(path.read_text())
        as_pattern = {id(k.value) for k in ast.walk(tree) if isinstance(k, ast.keyword) and k.arg == "pattern"}
        pattern_names = {k.value.id for k in ast.walk(tree)
                         if isinstance(k, ast.keyword) and k.arg == "pattern" and isinstance(k.value, ast.Name)}
        other_uses = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)} \
            - {k.value.id for k in ast.walk(tree) if isinstance(k, ast.keyword) and isinstance(k.value, ast.Name)}
        for node in ast.walk(tree):
            value = getattr(node, "value", None)
            if isinstance(node, ast.Assign) and isinstance(value, ast.Constant):
                name = node.targets[0].id if isinstance(node.targets[0], ast.Name) else ""
                if name in pattern_names and name not in other_uses:
                    as_pattern.add(id(value))
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in as_pattern \
                    and node.value.startswith("^") and node.value.endswith("$") and not node.value.endswith("\\$"):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value}")
    assert not offenders, offenders


@pytest.mark.parametrize("value", ["a\nb", "a\rb", "a\x00b", "a\u2028b", "a\x85b", "a\u202eb"])
def test_helpers_refuse_what_they_cannot_write(value: str) -> None:
    for helper in (escape.dockerfile_value, escape.shell_word, escape.sshd_word, escape.dockerfile_name,
                   escape.dockerfile_word):
        with pytest.raises(escape.UnsafeValue):
            helper(value)
    assert "\n" not in escape.comment(value) and "\r" not in escape.comment(value)
    assert ast.literal_eval(escape.python_literal(value)) == value


def test_dockerfile_value_and_argref() -> None:
    assert escape.dockerfile_value('a"b$c\\d') == '"a\\"b\\$c\\\\d"'
    assert escape.dockerfile_value(escape.ArgRef("TFIMG_CREATED")) == '"${TFIMG_CREATED}"'
    with pytest.raises(escape.UnsafeValue):
        escape.ArgRef("X}; RUN id")
    assert escape.buildx_csv("id=netrc", "src=/a,src=/b") == 'id=netrc,"src=/a,src=/b"'


def test_labels_tfimg_sets_are_the_reserved_ones(tmp_path: Path) -> None:
    """Every label tfimg writes itself is one a variant may not set (models.TFIMG_LABELS, io.tfimg.*)."""
    v = tmp_path / "v.yaml"
    v.write_text("description: d\n")
    dockerfile = render.render(spec.load(v)).dockerfile
    keys = {k for i in instructions(dockerfile) if i["instruction"] == "LABEL" for k, _ in pairs(i["value"])}
    assert len(keys) >= 10, dockerfile
    for key in keys:
        assert key in TFIMG_LABELS or key.startswith(TFIMG_LABEL_PREFIX), key
    for const in (labels.VARIANT, labels.PROFILE, labels.SPEC_HASH, labels.USER, labels.INPUT_HASH,
                  labels.TEMPORARY, labels.RUN, labels.SUBJECT):
        assert const.startswith(TFIMG_LABEL_PREFIX)


REFUSED = {
    # the YAML, what the message must say (key and fix), what it must not echo
    "label_override": ("labels: {org.opencontainers.image.title: mine}\n",
                       ["labels", "org.opencontainers.image.title", "set by tfimg", "remove it"], None),
    "label_tfimg": ("labels: {io.tfimg.input-hash: forged}\n", ["io.tfimg.input-hash", "set by tfimg"], "forged"),
    "label_grammar": ("labels: {'My Label': x}\n", ["labels", "'My Label'", "reverse-DNS"], None),
    "label_newline": ("labels: {\"com.example.a\\nRUN id\": x}\n", ["labels", "line break (U+000A)"], None),
    "label_value_cr": ("labels: {com.example.a: \"ok\\rRUN id\"}\n", ["labels", "line break (U+000D)"], "RUN id"),
    "env_trailing_newline": ("env: {\"FOO\\n\": x}\n", ["env", "line break"], None),
    "env_value_nul": ("env: {FOO: \"secret-ish\\0tail\"}\n", ["env", "NUL"], "secret-ish"),
    "env_tfimg": ("env: {TFIMG_VARIANT: other}\n", ["env", "TFIMG_VARIANT", "tfimg's"], None),
    "apt_trailing_newline": ("apt: {packages: [\"vim\\n\"]}\n", ["apt.packages", "line break"], None),
    "home_space": ("user: {home: /home/a b}\n", ["user.home", "absolute path inside the container"], None),
    "home_dotdot": ("user: {home: /home/../etc}\n", ["user.home", "no '..'"], None),
    "shell_injection": ("user: {shell: '/bin/bash; touch /x'}\n", ["user.shell", "absolute path"], None),
    "keys_file_newline": ("ssh: {enabled: true, authorized_keys_file: \"/run/k\\nPasswordAuthentication yes\"}\n",
                          ["ssh.authorized_keys_file", "line break"], None),
    "keys_file_token": ("ssh: {enabled: true, authorized_keys_file: '%h/.ssh/authorized_keys'}\n",
                        ["ssh.authorized_keys_file", "'%'"], None),
    "hash_file_subst": ("jupyter: {enabled: true, password_hash_file: '/run/$(id)'}\n",
                        ["jupyter.password_hash_file", "absolute path"], None),
    "argon2_trailing_newline": ("jupyter: {password_hash: \"argon2:$argon2id$v=19$m=8,t=1,p=1$c2FsdA$aGFzaA\\n\"}\n",
                                ["jupyter.password_hash", "line break"], "aGFzaA"),
    "description_multiline": ("description: |\n  two\n  lines\n", ["description", "line break", ">-"], None),
    "bidi": ("description: \"safe\\u202e evil\"\n", ["description", "bidirectional"], None),
    "image_trailing_newline": ("base: {image: \"ubuntu:22.04\\n\"}\n", ["base.image", "line break"], None),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_refused_values_exit_2_naming_key_and_fix(case: str, tmp_path: Path, capsys) -> None:
    text, fragments, secret = REFUSED[case]
    v = tmp_path / "v.yaml"
    v.write_text(text)
    rc = main(["render", str(v), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "Traceback" not in err and not (tmp_path / "out").exists()
    for fragment in fragments:
        assert fragment in err, f"{case}: {fragment!r} not in:\n{err}"
    if secret:
        assert secret not in err
    assert not any(ch in err for ch in "\r\x00\u2028\u202e")


def test_requirements_file_name_is_allowlisted(tmp_path: Path, capsys) -> None:
    (tmp_path / "reqs; touch x.txt").write_text("six\n")
    v = tmp_path / "v.yaml"
    v.write_text("python: {requirements: ['reqs; touch x.txt']}\n")
    assert main(["validate", str(v)]) == 2
    err = capsys.readouterr().err
    assert "python.requirements" in err and "rename the file" in err
