"""Property tests: no string in a variant can change the structure of what tfimg renders.

For every string field of the variant model (found by walking the pydantic models,
so a new field is covered without editing this file; dict keys, list items, file
names of requirements and of the variant itself included), hypothesis generates
hostile strings: line breaks, CR, NUL, quotes, backslashes, ``$()``, ``${}``,
heredoc markers, Jinja syntax, Unicode line separators, bidi controls, and values
close to each allowlist. For each, either

* loading refuses it cleanly (:class:`SpecErrors`; exit 2 through the CLI, with a
  message that holds no raw control character), or
* the value is kept exactly, and the render is the render of a harmless value with
  that value in its place and nothing else changed (``tests/render_shape.py``: the
  Dockerfile parsed with dockerfile-parse, scripts through ``bash -n`` and
  ``shellcheck``, sshd_config keywords, Python ASTs).

Numbers of examples: the ``ci`` hypothesis profile (the default) runs 25 examples
per field, derandomized so CI is repeatable (about 1,300 renders, under a minute);
``TFIMG_HYPOTHESIS_PROFILE=deep`` runs 500 per field with fresh randomness.
"""

from __future__ import annotations

import functools
import os
import re
import tempfile
import types
import unicodedata
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import pytest
import yaml
from hypothesis import HealthCheck, assume, event, given, seed, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from builder.cli import main
from builder.errors import SpecErrors
from builder.render import context as render
from builder.spec import loader as spec
from builder.spec import passwords, profiles, text
from builder.spec.models import NAME_RE, PATH_KEYS, Variant
from tests.render_shape import compare

pytestmark = pytest.mark.slow
settings.register_profile("ci", max_examples=40, deadline=None, database=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
settings.register_profile("deep", max_examples=500, deadline=None, database=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
PROFILE_NAME = os.environ.get("TFIMG_HYPOTHESIS_PROFILE", "ci")
PROFILE = settings.get_profile(PROFILE_NAME)
FIXED_SEED = PROFILE_NAME == "ci"   # CI repeats itself: a seed per test (and per field), none in "deep"
ci_seed = seed(20261204) if FIXED_SEED else (lambda f: f)

PUB = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHhgRkVt0x5vm3mg0R3SbD1Xl0XlVX9nUVpG8Mj0fHkn hz@host\n"
HASH = passwords.hash_password("hz-password")
# The harmless variant: every string field holds a value that appears nowhere else.
BASELINE: dict[str, Any] = {
    "name": "hzname",
    "description": "hzdescription words",
    "source": "https://hzsource.example/repo",
    "base": {"image": "hzregistry.example/hzimage:1", "digest": "sha256:" + "c" * 64, "profile": "ngc-22.07",
             "expect": {"hzcomponent": ">=0.1"}},
    "user": {"name": "hzuser", "uid": 1234, "gid": 1235, "home": "/opt/hzhome", "shell": "/bin/hzshell",
             "sudo": True},
    "apt": {"packages": ["hzpackage"]},
    "python": {"requirements": ["hzreq.txt"], "index_url": "https://hzindex.example/simple",
               "extra_index_urls": ["https://hzextra.example/simple"], "protected": ["hzprotected-*"]},
    "secrets": {"pip_index_url": {"env": "HZ_PIP_INDEX", "required": False},
                "pip_extra_index_url": {"env": "HZ_PIP_EXTRA", "required": False},
                "netrc": {"file": "hznetrc", "required": False},
                "ca_bundle": {"file": "hzca.pem", "required": False}},
    "ssh": {"enabled": True, "port": 2222, "authorized_keys": ["hzkey.pub"], "authorized_keys_file": "/run/hzkeysfile"},
    "jupyter": {"enabled": True, "port": 8888, "password_hash": HASH, "password_hash_env": "HZ_HASH_ENV",
                "password_hash_file": "/run/hzhashfile", "app": "lab"},
    "env": {"HZ_ENV_KEY": "hzenvvalue"},
    "labels": {"com.example.hzlabel": "hzlabelvalue"},
    "ports": [6006],
    "tags": {"immutable": "{variant}-hzimmutable-{date}", "moving": ["{variant}-hzmoving"]},
    "checks": {"python_packages": {"hzdist": ">=1"}, "commands": ["hzcommand"]},
    "policy": "hzpolicy.yaml",
}
HOST_FILES = {"hzreq.txt": "six\n", "hzkey.pub": PUB, "hznetrc": "machine x\n", "hzca.pem": "pem\n",
              "hzpolicy.yaml": "{}\n"}
HOST_PATHS = {tuple(k) for k in PATH_KEYS} | {("secrets", s, "file") for s in ("pip_index_url", "pip_extra_index_url",
                                                                              "netrc", "ca_bundle")}


@dataclass(frozen=True)
class Slot:
    """One place a string goes in a variant: a field, a list item, a dict key or a dict value."""

    loc: tuple[str, ...]
    kind: str                      # str, item, key, value
    choices: tuple[str, ...] = ()  # a Literal's allowed values

    def __str__(self) -> str:
        return ".".join(self.loc) + ("" if self.kind == "str" else f"[{self.kind}]")


def _is_str(ann: Any) -> bool:
    return ann is str or (get_origin(ann) is Annotated and get_args(ann)[0] is str)


def slots(model: type[BaseModel] = Variant, loc: tuple[str, ...] = ()) -> list[Slot]:
    """Every string slot of ``model``, derived from its fields' annotations."""
    out: list[Slot] = []
    for name, field in model.model_fields.items():
        out += _slots(field.annotation, (*loc, name))
    return out


def _slots(ann: Any, loc: tuple[str, ...]) -> list[Slot]:
    origin, args = get_origin(ann), get_args(ann)
    if origin in (Union, types.UnionType):
        return [s for a in args if a is not type(None) for s in _slots(a, loc)]
    if _is_str(ann):
        return [Slot(loc, "str")]
    if origin is Literal:
        return [Slot(loc, "str", tuple(str(a) for a in args))]
    if origin is list and _is_str(args[0]):
        return [Slot(loc, "item")]
    if origin is dict:
        return [Slot(loc, "key")] + ([Slot(loc, "value")] if _is_str(args[1]) else [])
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return slots(ann, loc)
    return []   # int, bool, lists of int: not strings


SLOTS = slots()


def _node(data: dict[str, Any], loc: tuple[str, ...]) -> Any:
    for part in loc:
        data = data.get(part) if isinstance(data, dict) else None
    return data


def harmless(slot: Slot) -> str | None:
    """The baseline's value in that slot (None: the baseline has none, compare the shape only)."""
    node = _node(BASELINE, slot.loc)
    if slot.choices:
        return None   # "lab" is not distinctive; accepted values are checked against the Literal
    if slot.loc[0] == "secrets":
        return "hzsecretref"   # put() replaces the whole reference; secrets are never rendered
    if slot.kind == "str":
        return node if isinstance(node, str) else None
    if slot.kind == "item":
        return node[0] if node else None
    if slot.kind in ("key", "value") and node:
        k, v = next(iter(node.items()))
        return k if slot.kind == "key" else v
    return None


def put(slot: Slot, value: str) -> dict[str, Any]:
    """The baseline with ``value`` in ``slot``."""
    data = yaml.safe_load(yaml.safe_dump(BASELINE))
    parent = _node(data, slot.loc[:-1])
    last = slot.loc[-1]
    if slot.loc[0] == "secrets":   # a reference holds a file or an env, never both
        _node(data, slot.loc[:-2])[slot.loc[-2]] = {last: value, "required": False}
    elif slot.kind == "str":
        parent[last] = value
    elif slot.kind == "item":
        parent[last] = [value, *(parent.get(last) or [])[1:]]
    else:
        old = parent.get(last) or {"hzfill": "hzfill"}
        k, v = next(iter(old.items()))
        parent[last] = {value: v} if slot.kind == "key" else {k: value}
    return data


# --------------------------------------------------------------------------- strategies

SPECIAL = [
    "\n", "\r", "\r\n", "\x00", "\t", "\x0b", "\x0c", "\x1b[31m", "\x7f", "\x85", "\u2028", "\u2029", "\u202e",
    "\u2066", "\ud800", "\ufeff", "'", '"', "\\", "$", "`", "$(touch /tmp/pwned)", "${HOME}", "$HOME", "`id`",
    "<<EOF\nRUN id\nEOF\n", "<<-EOF", "{{ 7*7 }}", "{% if 1 %}x{% endif %}", "{#", "\\\n", "\nRUN touch /pwned\n",
    "\nPasswordAuthentication yes\n", "';touch /tmp/x;'", '";touch /tmp/x;"', "%h", "%%", "# escape=`\n", "#",
    ";", "&&", "|", ">", "<", " ", "=", ",", "@", ":", "/", "..", "~", "*", "?", "[", "]", "{", "}", "!", "\\n",
    "\\\"", "é", "日本", "\u00a0", "a" * 300,
]

def _patterns(model: type[BaseModel] = Variant) -> list[re.Pattern[str]]:
    """The ``pattern=`` constraints of the models' fields (pydantic anchors them with ^...$)."""
    out = []
    for field in model.model_fields.values():
        out += [re.compile(m.pattern.removeprefix("^").removesuffix("$")) for m in field.metadata
                if getattr(m, "pattern", None)]
        for ann in (field.annotation, *get_args(field.annotation)):
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                out += _patterns(ann)
    return out


# Grammars that values are checked against: the models' patterns, tfimg's allowlists, URLs,
# PEP 440 specifiers; and the names of catalogs (profiles).
ALLOWLISTS = [*_patterns(), text.CONTAINER_PATH, text.APT_PACKAGE, text.LABEL_KEY, text.ENV_NAME, text.FILE_NAME,
              text.IMAGE_REF, text.ARGON2_HASH, re.compile(r"https://[a-z0-9.-]+/[!-~]*"),
              re.compile(r"(==|>=|<=|~=|!=|<|>)[0-9]{1,3}(\.[0-9]{1,3}){0,2}")]
VOCABULARY = st.sampled_from(profiles.names())
# What each target language treats specially, without control characters: free-text fields accept
# these, so they test the escaping rather than the refusal.
META = [c for c in SPECIAL if not any(unicodedata.category(ch) in ("Cc", "Cs", "Zl", "Zp") for ch in c)]
fragment = st.sampled_from(SPECIAL) | st.text(max_size=6)
CORE = ["$", "$(touch /tmp/pwned)", "${HOME}", "`id`", '"', "'", "\\", '\\"', "{{ 7*7 }}", "<<EOF", "%h", ";"]
meta = st.lists(st.sampled_from(CORE) | st.sampled_from(META) | st.text("abcXYZ019-_./", max_size=4),
                min_size=2, max_size=6).map("".join)
hostile = st.lists(fragment, min_size=1, max_size=5).map("".join)
one_line = st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), min_size=1, max_size=40)


def valid(grammars: list[re.Pattern[str]]) -> st.SearchStrategy[str]:
    return st.sampled_from(grammars).flatmap(lambda rx: st.from_regex(rx, fullmatch=True).filter(lambda v: len(v) < 80))


def near(grammars: list[re.Pattern[str]]) -> st.SearchStrategy[str]:
    """Values of one of ``grammars``, as they are and with a hostile fragment inside."""
    inside = st.sampled_from(SPECIAL) | st.sampled_from(META)
    return valid(grammars) | st.tuples(valid(grammars), inside, valid(grammars)).map("".join)


def values_for(slot: Slot) -> st.SearchStrategy[str]:
    """Hostile strings, and values close to the slot's own grammar (its field's pattern, else the
    grammars its harmless value fits), so that accepted values, the ones rendered, are drawn often."""
    b = harmless(slot)
    own = _patterns_of(slot)
    fits = own or _narrowest([rx for rx in ALLOWLISTS if b is not None and rx.fullmatch(b)])
    tail = st.sampled_from(CORE) | st.sampled_from(META)   # a valid value with something after it
    choices = [hostile, meta, meta, one_line, near(ALLOWLISTS), VOCABULARY] + (
        [near(fits), st.tuples(valid(fits), tail).map("".join)] + [valid(fits)] * 3 if fits else [])
    if slot.choices:
        choices.append(st.sampled_from(slot.choices))
    return st.one_of(*choices)


def _narrowest(grammars: list[re.Pattern[str]]) -> list[re.Pattern[str]]:
    """The grammars that fit the fewest of the baseline's values (the likeliest to be the field's own)."""
    probes = [h for s in SLOTS if (h := harmless(s)) is not None]
    count = {rx: sum(1 for p in probes if rx.fullmatch(p)) for rx in grammars}
    return [rx for rx in grammars if count[rx] == min(count.values())]


def _default(slot: Slot) -> Any:
    return _node(Variant.model_validate({"name": "x"}).model_dump(), slot.loc)


def _patterns_of(slot: Slot) -> list[re.Pattern[str]]:
    model: Any = Variant
    for part in slot.loc[:-1]:
        ann = model.model_fields[part].annotation
        model = next(a for a in (ann, *get_args(ann)) if isinstance(a, type) and issubclass(a, BaseModel))
    if slot.kind != "str":
        return []
    return [re.compile(m.pattern.removeprefix("^").removesuffix("$"))
            for m in model.model_fields[slot.loc[-1]].metadata if getattr(m, "pattern", None)]


VALUES = st.one_of(hostile, meta, one_line, near(ALLOWLISTS), VOCABULARY)
# File names a file system can hold (no '/', no NUL, encodable).
FILE_NAMES = st.one_of(near([text.FILE_NAME, re.compile(NAME_RE.strip("^$"))]), hostile, one_line).map(lambda s: s.replace("/", "_").replace("\x00", "_")).filter(
    lambda s: s not in ("", ".", "..") and _encodable(s) and len(os.fsencode(s)) < 200)


def _encodable(name: str) -> bool:
    try:
        os.fsencode(name)
    except UnicodeEncodeError:
        return False
    return True


# --------------------------------------------------------------------------- load and render

def write_variant(folder: Path, data: dict[str, Any], filename: str = "hzvariant.yaml",
                  files: dict[str, str] | None = None) -> Path:
    for name, body in {**HOST_FILES, **(files or {})}.items():
        (folder / name).write_text(body)
    path = folder / filename
    path.write_text(yaml.safe_dump(data, allow_unicode=False, sort_keys=False))
    return path


@functools.lru_cache(maxsize=1)
def baseline() -> render.Rendered:
    with tempfile.TemporaryDirectory(prefix="tfimg-prop-") as folder:
        return render.render(spec.load(write_variant(Path(folder), BASELINE)))


def rendered_files(r: render.Rendered) -> dict[str, str]:
    """The rendered files, with the spec hash (it changes with any value) set to the baseline's."""
    return {name: body.replace(r.spec_hash, baseline().spec_hash) for name, (body, _) in r.files.items()}


def load_or_refuse(path: Path) -> spec.LoadedVariant | None:
    try:
        return spec.load(path)
    except SpecErrors as exc:
        message = exc.render()
        bad = [ch for ch in message if ch != "\n" and unicodedata.category(ch) in ("Cc", "Cs", "Zl", "Zp")]
        assert not bad, f"the error message holds raw control characters {bad!r}: {message!r}"
        return None


def check_render(loaded: spec.LoadedVariant, b: str | None, h: str) -> None:
    got = render.render(loaded)   # never raises for a loaded variant: that would be exit 3
    compare(rendered_files(baseline()), rendered_files(got), b, h)


# --------------------------------------------------------------------------- the properties

def test_every_string_field_is_covered() -> None:
    """The slot list is derived from the models; the baseline gives nearly every slot a distinctive value."""
    names = {str(s) for s in SLOTS}
    assert {"env[key]", "env[value]", "labels[key]", "labels[value]", "user.home", "user.shell",
            "ssh.authorized_keys_file", "jupyter.password_hash_file", "python.requirements[item]",
            "apt.packages[item]", "description"} <= names
    shown = [harmless(s) for s in SLOTS if harmless(s) is not None]
    assert [str(s) for s in SLOTS if harmless(s) is None] == ["jupyter.app"]   # a Literal
    for a in shown:    # a harmless value must not hide inside another one
        assert not any(a != b and a in b for b in shown if a not in ("ngc-22.07", ">=1")), a


@pytest.mark.parametrize("slot", SLOTS, ids=str)
def test_a_string_in_any_field_is_refused_or_inert(slot: Slot) -> None:
    test = settings(PROFILE)(given(value=values_for(slot))(_refused_or_inert))
    if FIXED_SEED:
        test = seed(zlib.crc32(str(slot).encode()))(test)
    test(slot)


def _refused_or_inert(slot: Slot, value: str) -> None:
    data = put(slot, value)
    files: dict[str, str] = {}
    if slot.loc in HOST_PATHS:   # a file name: create the file it names, when a file system can hold it
        assume("/" not in value and "\x00" not in value and value not in ("", ".", "..") and _encodable(value)
               and len(os.fsencode(value)) < 200)
        files[value] = HOST_FILES.get(harmless(slot) or "", "{}\n")
    with tempfile.TemporaryDirectory(prefix="tfimg-prop-") as tmp:
        path = write_variant(Path(tmp), data, files=files)
        assume(yaml.safe_load(path.read_text()) == data)   # PyYAML kept the string as it is
        loaded = load_or_refuse(path)
        event("refused" if loaded is None else "accepted")
        if loaded is None:
            return
        if slot.choices:
            assert value in slot.choices
        stored = _node(loaded.spec.model_dump(), slot.loc)
        if slot.loc not in HOST_PATHS:   # accepted values are kept exactly (host paths are resolved)
            kept = [stored] if slot.kind == "str" else stored if slot.kind == "item" else \
                list(stored) if slot.kind == "key" else list(stored.values())
            assert value in kept, (value, stored)
        unset = slot.kind == "str" and value == _default(slot)   # "" is "no description": a default is rendered
        check_render(loaded, None if unset else harmless(slot), value)


@ci_seed
@settings(PROFILE)
@given(filename=FILE_NAMES)
def test_the_variant_file_name_is_inert(filename: str) -> None:
    with tempfile.TemporaryDirectory(prefix="tfimg-prop-") as tmp:
        path = write_variant(Path(tmp), BASELINE, filename=filename)
        loaded = load_or_refuse(path)
        assert loaded is not None   # the name is given in the file: any file name loads
        got = rendered_files(render.render(loaded))
        want = rendered_files(baseline())
        first = got["Dockerfile"].split("\n", 1)
        assert first[1] == want["Dockerfile"].split("\n", 1)[1]
        assert first[0] in (f"# Rendered by tfimg from {filename}: do not edit, edit the variant.",
                            f"# Rendered by tfimg from {ascii(filename)}: do not edit, edit the variant.")
        compare(want, got, None, None)


@ci_seed
@settings(PROFILE)
@given(filename=FILE_NAMES)
def test_a_variant_named_by_its_file_gets_a_valid_name_or_exit_2(filename: str) -> None:
    data = {k: v for k, v in BASELINE.items() if k != "name"}
    with tempfile.TemporaryDirectory(prefix="tfimg-prop-") as tmp:
        loaded = load_or_refuse(write_variant(Path(tmp), data, filename=filename))
        if loaded is not None:
            assert re.fullmatch(NAME_RE.strip("^$"), loaded.name)
            check_render(loaded, "hzname", loaded.name)


@ci_seed
@settings(PROFILE, max_examples=PROFILE.max_examples * 2)
@given(slot=st.sampled_from(SLOTS), value=VALUES)
def test_the_cli_answers_0_or_2_never_a_traceback(slot: Slot, value: str) -> None:
    assume(slot.loc not in HOST_PATHS)
    with tempfile.TemporaryDirectory(prefix="tfimg-prop-") as tmp:
        path = write_variant(Path(tmp), put(slot, value))
        out = Path(tmp) / "out"
        with _captured() as err:
            rc = main(["render", str(path), "--out", str(out)])
        assert rc in (0, 2), (rc, err.getvalue()[-2000:])
        assert "Traceback" not in err.getvalue()
        assert (rc == 2) == ("tfimg: invalid spec:" in err.getvalue()), err.getvalue()[-2000:]
        assert (rc == 0) == (out / "Dockerfile").is_file()


class _captured:
    """stderr of an in-process CLI call (pytest's capsys is function-scoped, hypothesis runs many)."""

    def __enter__(self) -> Any:
        import contextlib
        import io
        self.buf = io.StringIO()
        self._cm = contextlib.redirect_stderr(self.buf)
        self._cm.__enter__()
        return self.buf

    def __exit__(self, *exc: object) -> None:
        self._cm.__exit__(*exc)
