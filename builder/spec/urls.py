"""Credentials in URLs: found in every part of every URL of a variant or a requirements file.

A variant and its requirements files are committed, copied into the build
context and, for some values, into labels, ENV and layers; a credential
written there leaks. So every string of a variant file (keys included) and
every line of a requirements file (comments included) is searched for URLs,
and a URL is refused when a part of it holds or may hold a credential:

* a user name (``https://TOKEN@host``: a user name alone can be a token) or a
  password; only an ssh login (``git+ssh://git@host/...``) is allowed;
* a query or fragment parameter named like a credential (``token``,
  ``access_token``, ``private_token``, ``X-Amz-Signature``, ``sig``, ``key``,
  ``password``, ...), or an unnamed query value shaped like a token.

The URL keys (``python.index_url``, ``python.extra_index_urls``, ``source``)
must hold exactly one URL, with no user, no query and no fragment: a value
holding two URLs is refused.

Nothing here returns any part of the value: messages name the part, never its
content. Credentials go in ``secrets:`` (BuildKit secret mounts).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s\"'<>`]*")
URL_KEYS = {("python", "index_url"), ("python", "extra_index_urls"), ("python", "extra_index_urls+"), ("source",)}
SSH_SCHEMES = {"ssh", "git+ssh", "svn+ssh", "hg+ssh", "bzr+ssh", "sftp"}
_LOGIN = re.compile(r"[a-z_][a-z0-9_.-]{0,31}")
_WORDS = ("token", "secret", "passw", "pwd", "signature", "credential", "apikey", "accesskey", "privatekey",
          "sessionid", "jwt", "bearer", "authorization", "oauth", "cookie")
_EXACT = {"key", "sig", "auth", "pass", "pw", "code", "sas", "session", "login", "user", "username"}
_TOKEN_SHAPED = re.compile(r"[A-Za-z0-9_.~+/=-]{20,}")
HINT = ("A variant and its requirements files are committed and copied into the image. Put the whole URL in the "
        "secret 'pip_index_url' (secrets.pip_index_url: {env: NAME}) or give credentials through a 'netrc' "
        "secret, never in the spec; then rotate the credential, and remove it from the history.")


def _credential_name(name: str) -> bool:
    n = re.sub(r"[^a-z0-9]", "", name.lower())
    return n in _EXACT or any(w in n for w in _WORDS)


def _params(text: str) -> Iterator[tuple[str, bool]]:
    """(name, has a value) for each ``&``/``;``-separated parameter."""
    for item in re.split(r"[&;]", text):
        if item:
            name, eq, _ = item.partition("=")
            yield name, bool(eq)


def url_problems(url: str) -> list[str]:
    """The parts of one URL that hold or may hold a credential (never their content)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return ["a URL that does not parse"]
    found = []
    if "@" in parts.netloc:
        user, colon, _ = parts.netloc.rpartition("@")[0].partition(":")
        if not (parts.scheme.lower() in SSH_SCHEMES and not colon and _LOGIN.fullmatch(user)):
            if user:
                found.append("a user name in a URL (a user name alone can be a token: https://TOKEN@host)")
            if colon:
                found.append("a password in a URL")
    if any(_credential_name(n) for n, _ in _params(parts.query)):
        found.append("a URL query parameter named like a credential")
    elif any(not has_value and _TOKEN_SHAPED.fullmatch(n) for n, has_value in _params(parts.query)):
        found.append("a URL query value shaped like a token")
    if any(_credential_name(n) for n, has_value in _params(parts.fragment) if has_value):
        found.append("a URL fragment parameter named like a credential")
    return found


def text_problems(text: str) -> list[str]:
    """The credential-bearing parts of every URL in a free text (a value, a key, a requirements line)."""
    out: list[str] = []
    for m in URL.finditer(text):
        out += [p for p in url_problems(m.group()) if p not in out]
    return out


def url_shape_problem(value: str) -> str | None:
    """Why a value that must be exactly one URL (an index URL, the source URL) is not, or None."""
    urls = URL.findall(value)
    if not urls:
        return "it holds no URL (give one, such as https://host/path)"
    if len(urls) != 1 or urls[0] != value or value.count("://") != 1:
        return "it holds more than one URL, or text around the URL"
    parts = urlsplit(value)
    if parts.query or parts.fragment:
        return f"it has a {'query' if parts.query else 'fragment'}, which an index or source URL never needs " \
               "and which can hold a token"
    return None


SHAPE_HINT = ("Give one index per entry (python.extra_index_urls is a list); credentials go in secrets "
              "(secrets.pip_index_url: {env: NAME}, or a 'netrc' secret).")
Found = tuple[tuple[Any, ...], str, str]   # key path, message, hint


def scan(data: Any, loc: tuple[Any, ...] = ()) -> list[Found]:
    """(key path, message, hint) for every string of a variant's data, keys included, that holds a
    credential in a URL, and for each URL key that is not exactly one URL. Never echoes the value."""
    out: list[Found] = []
    if isinstance(data, dict):
        for k, v in data.items():
            if isinstance(k, str) and (found := text_problems(k)):
                out.append((loc, _message("a key here", found, loc), HINT))   # the key itself is never shown
            out += scan(v, (*loc, k))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            out += scan(v, (*loc, i))
    elif isinstance(data, str):
        if found := text_problems(data):
            out.append((loc, _message("the value", found, loc), HINT))
        elif tuple(p for p in loc if not isinstance(p, int)) in URL_KEYS and (why := url_shape_problem(data)):
            out.append((loc, f"must be exactly one URL, without user, query or fragment: {why}", SHAPE_HINT))
    return out


def _message(what: str, found: list[str], loc: tuple[Any, ...]) -> str:
    literal = " (a secret is given as {file: PATH} or {env: NAME}, never as a literal value)" \
        if loc[:1] == ("secrets",) else ""
    return f"{what} embeds credentials, or may: {'; '.join(found)}{literal}"
