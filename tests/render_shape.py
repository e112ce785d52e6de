"""Structural comparison of two rendered build contexts, with real parsers (test helper).

``compare(base, other, b, h)`` checks that ``other`` (rendered with the value ``h``
in one place) is ``base`` (rendered with the harmless value ``b`` there), with ``b``
replaced by ``h`` and nothing else changed:

* Dockerfile: parsed with ``dockerfile-parse``; the same instructions in the same
  order; ENV and LABEL pairs decoded with BuildKit's double-quote rules (``\\\\``,
  ``\\"``, ``\\$`` are escapes, nothing else) give back the value; every RUN passes
  ``bash -n`` and has the same words;
* shell scripts: ``bash -n``, ``shellcheck`` clean, the same words (split and unquoted by
  bash's quoting rules) and no word that bash would expand where the value was put;
* sshd_config: the same keywords, line by line;
* Python files: ``ast.parse`` gives the same tree, the value as a string constant;
* every file: the same number of lines, the same file names.

``b=None`` (no harmless value known for a field) checks the shape only.
The decoders here are written from the languages' rules, not from
:mod:`builder.render.escape`.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import io
import re
import shutil
import subprocess
from collections.abc import Callable

import pytest
from dockerfile_parse import DockerfileParser

Files = dict[str, str]
PAIR = re.compile(r'\s*([^\s="]+)="((?:[^"\\]|\\.)*)"')
BASH_LITERAL = re.compile(r"[A-Za-z0-9_@%+=:,./-]")   # what bash takes literally outside quotes
SCRIPTS = ("entrypoint.sh", "python/pip-install.sh")


class Mismatch(AssertionError):
    pass


def compare(base: Files, other: Files, b: str | None, h: str | None) -> None:
    """Raise Mismatch when ``other`` is not ``base`` with ``b`` replaced by ``h``."""
    sub: Callable[[str], str] = (lambda s: s.replace(b, h)) if b is not None and h is not None else (lambda s: s)
    names = {sub(n): n for n in base}
    _check(set(other) == set(names), f"file names differ: {sorted(set(other) ^ set(names))}")
    for name, text in other.items():
        want = base[names[name]]
        _check(text.count("\n") == want.count("\n") and len(text.splitlines()) == len(want.splitlines()),
               f"{name}: the number of lines changed")
        if name == "Dockerfile":
            _dockerfile(want, text, sub, exact=b is not None)
        elif name in SCRIPTS or name.endswith(".sh"):
            _script(name, want, text, sub, exact=b is not None)
        elif name.endswith("sshd_config"):
            _sshd(want, text, sub, exact=b is not None)
        elif name.endswith(".py"):
            _python(name, want, text, b, h)
        elif b is not None:
            _check(text == sub(want), f"{name}: content differs beyond the value")


def _check(ok: bool, msg: str) -> None:
    if not ok:
        raise Mismatch(msg)


# --------------------------------------------------------------------------- Dockerfile

def instructions(text: str) -> list[dict[str, str]]:
    parser = DockerfileParser(fileobj=io.BytesIO(text.encode("utf-8", "surrogateescape")))
    return list(parser.structure)


EXPANDS = "\ue000"   # stands for a '$' that BuildKit expands (a build arg), never for a literal '$'


def buildkit_dq(quoted: str) -> str:
    """The value of a double-quoted word as BuildKit's lexer reads it (shell/lex.go, processDoubleQuote):
    ``\\"``, ``\\$`` and ``\\\\`` are escapes, any other backslash is kept, an unescaped ``$`` expands."""
    out, i = [], 0
    while i < len(quoted):
        ch = quoted[i]
        if ch == "\\" and i + 1 < len(quoted) and quoted[i + 1] in '"$\\':
            out.append(quoted[i + 1])
            i += 2
            continue
        _check(ch != '"', "unescaped '\"' inside a double-quoted Dockerfile value")
        out.append(EXPANDS if ch == "$" else ch)
        i += 1
    return "".join(out)


def pairs(value: str) -> list[tuple[str, str]]:
    """``k="v" k2="v2"`` as (key, decoded value); every pair must be of that form."""
    out, pos = [], 0
    while pos < len(value.rstrip()):
        m = PAIR.match(value, pos)
        _check(m is not None, f"not a key=\"value\" list at {value[pos:pos + 40]!r}")
        assert m is not None
        out.append((m.group(1), buildkit_dq(m.group(2))))
        pos = m.end()
    return out


def _dockerfile(want: str, got: str, sub: Callable[[str], str], exact: bool) -> None:
    a, g = instructions(want), instructions(got)
    _check([i["instruction"] for i in a] == [i["instruction"] for i in g],
           f"Dockerfile instructions differ: {[i['instruction'] for i in g]}")
    for x, y in zip(a, g, strict=True):
        kind = x["instruction"]
        if kind in ("ENV", "LABEL"):
            px, py = pairs(x["value"]), pairs(y["value"])
            _check([k for k, _ in py] == [k for k, _ in px] or sorted(k for k, _ in py) == sorted(sub(k) for k, _ in px),
                   f"{kind} keys differ")
            if exact:
                _check(sorted(py) == sorted((sub(k), sub(v)) for k, v in px), f"{kind} values differ beyond the value")
        elif kind == "RUN":
            bash_n(y["value"], "a RUN instruction")
            _words(x["value"], y["value"], sub, exact, "a RUN instruction")
        elif kind == "COMMENT":
            continue   # the line count is compared for the whole file
        elif kind == "ARG":
            _check(x["value"].split("=")[0] == y["value"].split("=")[0], "ARG names differ")
            if exact:
                _check(y["value"] == sub(x["value"]), "ARG value differs beyond the value")
        else:
            _check(y["value"] == (sub(x["value"]) if exact else x["value"]), f"{kind} differs")


# --------------------------------------------------------------------------- shell

def bash_n(script: str, what: str) -> None:
    res = subprocess.run(["bash", "-n"], input=script.encode("utf-8", "surrogateescape"), capture_output=True,
                         timeout=30)
    _check(res.returncode == 0, f"bash -n refuses {what}: {res.stderr.decode(errors='replace')[-300:]}")


@functools.lru_cache(maxsize=256)
def shellcheck(script_sha: str, script: str) -> str:
    if not shutil.which("shellcheck"):
        pytest.fail("shellcheck is needed to check rendered scripts: scripts/deps.sh installs it "
                    "(apt-get install shellcheck)")
    # SC1003 ("want to escape a single quote?") is a style note on any single-quoted word that ends in a
    # backslash: shlex.quote's 'a\\' is exactly that, and bash reads it as the value (bash -n and the word
    # comparison check that); every other finding must stay the same.
    res = subprocess.run(["shellcheck", "--format=gcc", "--exclude=SC1003", "-"],
                         input=script.encode("utf-8", "surrogateescape"), capture_output=True, timeout=60)
    return res.stdout.decode(errors="replace")


def shellcheck_findings(script: str) -> str:
    return shellcheck(hashlib.sha256(script.encode("utf-8", "surrogateescape")).hexdigest(), script)


def raw_words(script: str) -> list[str]:
    """Split a script into words (as written, quotes kept) and operators, by bash's quoting rules:
    ``'...'`` is literal, ``"..."`` ends at an unescaped ``"`` (a ``$(...)`` inside it nests),
    ``\\`` escapes one character, ``#`` at the start of a word starts a comment."""
    out: list[str] = []
    word: list[str] = []
    i, n = 0, len(script)

    def flush() -> None:
        if word:
            out.append("".join(word))
            word.clear()

    while i < n:
        ch = script[i]
        if ch in " \t\n":
            flush()
            i += 1
        elif ch in ";|&()<>":
            flush()
            out.append(ch)
            i += 1
        elif ch == "#" and not word:
            i = script.find("\n", i)
            i = n if i < 0 else i
        elif ch == "'":
            j = script.find("'", i + 1)
            _check(j >= 0, "unterminated single quote")
            word.append(script[i:j + 1])
            i = j + 1
        elif ch == '"':
            j = _dq_end(script, i + 1)
            word.append(script[i:j + 1])
            i = j + 1
        elif ch == "\\":
            word.append(script[i:i + 2])
            i += 2
        else:
            word.append(ch)
            i += 1
    flush()
    return out


def _dq_end(s: str, i: int) -> int:
    """Index of the '"' that closes a double-quoted string opened before ``i``."""
    while i < len(s):
        if s[i] == "\\":
            i += 2
        elif s[i] == '"':
            return i
        elif s.startswith("$(", i):
            i = _paren_end(s, i + 2) + 1
        else:
            i += 1
    raise Mismatch("unterminated double quote")


def _paren_end(s: str, i: int) -> int:
    depth = 1
    while i < len(s):
        ch = s[i]
        if ch == "\\":
            i += 2
            continue
        if ch == "'":
            i = s.index("'", i + 1)
        elif ch == '"':
            i = _dq_end(s, i + 1)
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise Mismatch("unterminated $(")


def unquote(raw: str) -> str:
    """Bash's quote removal on one word."""
    out, i = [], 0
    while i < len(raw):
        ch = raw[i]
        if ch == "'":
            j = raw.index("'", i + 1)
            out.append(raw[i + 1:j])
            i = j + 1
        elif ch == '"':
            j = _dq_end(raw, i + 1)
            out.append(re.sub(r'\\([$`"\\\n])', r"\1", raw[i + 1:j]))
            i = j + 1
        elif ch == "\\":
            out.append(raw[i + 1:i + 2])
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


OPERATORS = set(";|&()<>")


def _words(want: str, got: str, sub: Callable[[str], str], exact: bool, what: str) -> None:
    """The same operators at the same places and the same words (as a multiset: tfimg sorts some
    lists, such as apt packages, so a value may move); where a word changed, bash expands nothing."""
    ra, rg = raw_words(want), raw_words(got)
    _check(len(ra) == len(rg), f"{what}: the number of shell words changed")
    _check([i for i, w in enumerate(ra) if w in OPERATORS] == [i for i, w in enumerate(rg) if w in OPERATORS],
           f"{what}: shell operators moved")
    if not exact:
        return
    _check(sorted(unquote(w) for w in rg) == sorted(sub(unquote(w)) for w in ra),
           f"{what}: shell words differ beyond the value")
    for raw in set(rg) - set(ra):
        literal_word(raw, what)


def literal_word(raw: str, what: str) -> None:
    """Where a value was put, bash must expand nothing: outside single quotes only literal characters
    (and ``"'"``, the way to write a single quote)."""
    i, n = 0, len(raw)
    while i < n:
        if raw[i] == "'":
            j = raw.find("'", i + 1)
            _check(j >= 0, f"{what}: unterminated quote in {raw!r}")
            i = j + 1
        elif raw.startswith("\"'\"", i):
            i += 3
        else:
            _check(bool(BASH_LITERAL.fullmatch(raw[i])), f"{what}: bash would expand {raw[i]!r} in {raw!r}")
            i += 1


def _script(name: str, want: str, got: str, sub: Callable[[str], str], exact: bool) -> None:
    if got == want:
        return
    bash_n(got, name)
    _check(shellcheck_findings(got) == shellcheck_findings(want), f"{name}: shellcheck findings changed:\n"
           + shellcheck_findings(got)[-600:])
    _words(want, got, sub, exact, name)


# --------------------------------------------------------------------------- sshd_config, Python

def sshd_keywords(text: str) -> list[str]:
    return [ln.split()[0] for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


def _sshd(want: str, got: str, sub: Callable[[str], str], exact: bool) -> None:
    _check(sshd_keywords(got) == sshd_keywords(want), "sshd_config keywords differ")
    for x, y in zip(want.splitlines(), got.splitlines(), strict=True):
        if x.lstrip().startswith("#") or not x.strip():
            continue
        _check(len(y.split()) == len(x.split()), f"sshd_config: {x.split()[0]} has another number of arguments")
        if exact:
            _check(y == sub(x), f"sshd_config: {x.split()[0]} differs beyond the value")


class _Blank(ast.NodeTransformer):
    def visit_Constant(self, node: ast.Constant) -> ast.Constant:
        return ast.Constant(value="" if isinstance(node.value, str) else node.value)


def _python(name: str, want: str, got: str, b: str | None, h: str | None) -> None:
    try:
        ta, tg = ast.parse(want), ast.parse(got)
    except SyntaxError as exc:
        raise Mismatch(f"{name} is no longer valid Python: {exc}") from None
    _check(ast.dump(_Blank().visit(ast.parse(want))) == ast.dump(_Blank().visit(ast.parse(got))),
           f"{name}: the Python code differs beyond string constants")
    if b is not None and h is not None:
        _check(ast.dump(tg) == ast.dump(ta).replace(repr(b), repr(h)), f"{name}: string constants differ")
