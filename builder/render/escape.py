"""One escaping helper per language a rendered file is written in (pure).

Every value of a variant reaches a template through one of these, registered as
Jinja filters by :mod:`builder.render.context`; ``tests/test_render_properties.py``
checks that no template prints anything else. Each helper either returns text
that the target language reads back as exactly the value, or raises
:class:`UnsafeValue`: a value the spec models should have refused got here
(a bug in tfimg, exit 3), never a half-escaped file.

========== ============================ ===========================================
filter     language                     how
========== ============================ ===========================================
``dq``     Dockerfile ENV/LABEL value   ``"..."`` with ``\\``, ``"`` and ``$`` escaped
``dfname`` Dockerfile ENV/LABEL key     allowlist (env name or label key grammar)
``dfword`` Dockerfile bare word         allowlist (image refs, digests, flags)
``dfjson`` JSON-form instruction        ``json.dumps`` of a list of strings
``comment`` ``#`` comment line          as is when plain, else ``ascii()``-escaped
``shq``    bash word (scripts, RUN)     :func:`shlex.quote`
``sshd``   sshd_config argument         allowlist (sshd has no portable quoting)
``py``     Python literal               :func:`repr` of str/int/bool/None/list/dict
``num``    any                          integers only
========== ============================ ===========================================

:func:`buildx_csv` writes the ``id=...,src=...`` specs of ``--secret`` (buildx reads them
as CSV: an unquoted comma in a path would start another field).
"""

from __future__ import annotations

import csv
import io
import json
import re
import shlex
from dataclasses import dataclass
from typing import Any

from builder.spec import text

DF_WORD = re.compile(r"[A-Za-z0-9._/:@+=,-]+")
PLAIN_COMMENT = re.compile(r"[A-Za-z0-9._+@/:, -]*")
SSHD_WORD = re.compile(r"[A-Za-z0-9._/@+-]+")
ARG_NAME = re.compile(r"[A-Z][A-Z0-9_]*")


class UnsafeValue(ValueError):
    """A value cannot be written safely in the language asked for (a bug: the models let it through)."""


@dataclass(frozen=True)
class ArgRef:
    """A Dockerfile build-arg reference (``"${NAME}"``), for values tfimg fills in at build time."""

    name: str

    def __post_init__(self) -> None:
        if not ARG_NAME.fullmatch(self.name):
            raise UnsafeValue(f"{text.shown(self.name)} is not a build-arg name")


def _clean(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise UnsafeValue(f"{what}: expected a string, got {type(value).__name__}")
    problem = text.bad_char(value)
    if problem:
        raise UnsafeValue(f"{what}: the value holds {problem}")
    return value


def dockerfile_value(value: str | ArgRef) -> str:
    """A double-quoted ENV or LABEL value; BuildKit reads back exactly ``value``.

    Inside double quotes BuildKit's lexer takes ``\\\\``, ``\\"`` and ``\\$`` as escapes and
    nothing else, and expands ``$NAME``: escaping those three leaves no expansion.

    >>> dockerfile_value('$(id) "x" \\\\')
    '"\\\\$(id) \\\\"x\\\\" \\\\\\\\"'
    """
    if isinstance(value, ArgRef):
        return f'"${{{value.name}}}"'
    s = _clean(value, "Dockerfile value")
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$") + '"'


def dockerfile_name(value: object) -> str:
    """An ENV or LABEL key, printed bare: it must be an env name or a label key."""
    s = _clean(value, "Dockerfile key")
    if not (text.ENV_NAME.fullmatch(s) or text.LABEL_KEY.fullmatch(s)):
        raise UnsafeValue(f"{text.shown(s)} is neither an environment variable name nor a label key")
    return s


def dockerfile_word(value: object) -> str:
    """A bare word in a Dockerfile (an ARG default, a RUN flag): allowlisted characters only."""
    s = _clean(value if not isinstance(value, int) else str(value), "Dockerfile word")
    if not DF_WORD.fullmatch(s):
        raise UnsafeValue(f"{text.shown(s)} cannot be a bare Dockerfile word")
    return s


def dockerfile_json(values: list[str]) -> str:
    """The JSON array of an exec-form instruction (``ENTRYPOINT ["a", "b"]``)."""
    return json.dumps([_clean(v, "JSON-form argument") for v in values])


def comment(value: object) -> str:
    """Text for a ``#`` comment (Dockerfile, bash, sshd_config, Python): one line, always.

    Plain text is printed as is; anything else as Python's ``ascii()`` of it
    (quoted, every non-ASCII or control character escaped), so no value can end the
    comment line, start a parser directive, or hide characters from a reader.
    """
    s = str(value)
    return s if PLAIN_COMMENT.fullmatch(s) else ascii(s)


def shell_word(value: object) -> str:
    """One bash word that expands to exactly ``value`` (scripts and Dockerfile RUN lines).

    :func:`shlex.quote` single-quotes anything outside its safe set; control characters
    are refused first, so the word never spans lines (a RUN line stays one instruction).
    """
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise UnsafeValue(f"shell word: expected a string, got {type(value).__name__}")
    return shlex.quote(_clean(str(value), "shell word"))


def sshd_word(value: object) -> str:
    """An sshd_config argument: allowlisted, never quoted (OpenSSH's quoting differs by version,
    and ``%`` tokens would expand)."""
    s = _clean(value, "sshd_config argument")
    if not SSHD_WORD.fullmatch(s):
        raise UnsafeValue(f"{text.shown(s)} cannot be an sshd_config argument")
    return s


def python_literal(value: Any) -> str:
    """A Python literal that evaluates to ``value`` (str, int, bool, None, and lists/dicts of them)."""
    _check_literal(value)
    return repr(value)


def _check_literal(value: Any) -> None:
    if value is None or isinstance(value, bool | int | str):
        return
    if isinstance(value, list | tuple):
        for item in value:
            _check_literal(item)
        return
    if isinstance(value, dict):
        for k, item in value.items():
            _check_literal(k)
            _check_literal(item)
        return
    raise UnsafeValue(f"Python literal: {type(value).__name__} is not a plain value")


def number(value: object) -> str:
    """An integer, printed in decimal (ports, uids)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise UnsafeValue(f"expected an integer, got {type(value).__name__}")
    return str(value)


def buildx_csv(*fields: str) -> str:
    """One CSV record as buildx reads ``--secret`` and bake ``secret`` specs (Go encoding/csv).

    >>> buildx_csv("id=netrc", "src=/repo/a,src=/etc/shadow")
    'id=netrc,"src=/repo/a,src=/etc/shadow"'
    """
    buf = io.StringIO()
    csv.writer(buf, lineterminator="").writerow([_clean(f, "buildx spec field") for f in fields])
    return buf.getvalue()


FILTERS = {
    "dq": dockerfile_value, "dfname": dockerfile_name, "dfword": dockerfile_word, "dfjson": dockerfile_json,
    "comment": comment, "shq": shell_word, "sshd": sshd_word, "py": python_literal, "num": number,
}
