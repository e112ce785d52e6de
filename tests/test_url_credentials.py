"""A credential in any part of any URL of a variant or a requirements file is refused at load, unechoed.

The canary tests of tests/test_render.py and tests/test_build.py put credentials where they belong
(secrets) and prove they reach no layer. These put a canary credential where it does not belong:
in a URL's user name (``https://TOKEN@host``: a user name alone can be a token), password, query
(``?token=``, ``?access_token=``, signatures, an unnamed token) or fragment, in any value or key of
a variant (or of its parent), and in any form a requirements file can hold one (``--index-url``,
``-i``, ``--extra-index-url=``, ``--find-links``, ``-f``, ``name @ URL``, VCS URLs, comments).
Each is exit 2 before anything is rendered, the message names the key or the line, and the canary
is in no output (``--debug`` included) and no file. URL keys must hold exactly one URL.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from builder.cli import main

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
# At least 24 characters: an unnamed query value that long is shaped like a token.
CANARY = st.from_regex(r"CANARY[A-Za-z0-9_-]{18,30}", fullmatch=True)
SCHEMES = st.sampled_from(["https", "http", "HTTPS", "git+https", "ftp"])
HOSTS = st.sampled_from(["pypi.corp.example", "files.example.com:8443", "10.0.0.5", "[::1]:3141"])

CREDENTIAL_PARTS = {
    # where the canary goes in a URL
    "user": "{s}://{c}@{h}/simple",
    "user_and_password": "{s}://bot:{c}@{h}/simple",
    "token_user_with_fixed_password": "{s}://{c}:x-oauth-basic@{h}/simple",
    "password_only": "{s}://:{c}@{h}/simple",
    "query_token": "{s}://{h}/simple/?token={c}",
    "query_access_token": "{s}://{h}/simple/?page=2&access_token={c}",
    "query_private_token": "{s}://{h}/api/v4/projects/1/packages/pypi/simple?private_token={c}",
    "query_aws_signature": "{s}://{h}/pkg-1.0.whl?X-Amz-Credential=AKIAEXAMPLE&X-Amz-Signature={c}",
    "query_azure_sas": "{s}://{h}/c/pkg.whl?sv=2022-11-02&se=2030-01-01&sig={c}",
    "query_api_key": "{s}://{h}/simple?api_key={c}",
    "query_unnamed": "{s}://{h}/simple?{c}",
    "fragment_access_token": "{s}://{h}/callback#access_token={c}&token_type=bearer",
}

VARIANT_PLACES = {
    # where the URL goes in a variant: (YAML with {u} for the URL as a YAML string, key path named)
    "index_url": ("python: {{index_url: {u}}}\n", "python.index_url"),
    "extra_index_urls": ("python: {{extra_index_urls: ['https://pypi.org/simple', {u}]}}\n",
                         "python.extra_index_urls[1]"),
    "source": ("source: {u}\n", "source"),
    "description": ("description: {d}\n", "description"),
    "label_value": ("labels: {{org.example.mirror: {u}}}\n", "labels.org.example.mirror"),
    "label_key": ("labels: {{{u}: mirror}}\n", "labels"),
    "env_value": ("env: {{PIP_EXTRA_INDEX_URL: {u}}}\n", "env.PIP_EXTRA_INDEX_URL"),
    "check_command": ("checks: {{commands: [{cmd}]}}\n", "checks.commands[0]"),
    "apt_package": ("apt: {{packages: [{u}]}}\n", "apt.packages[0]"),
    "moving_tag": ("tags: {{moving: [{u}]}}\n", "tags.moving[0]"),
    "secret_literal": ("secrets: {{pip_index_url: {u}}}\n", "secrets.pip_index_url"),
    "secret_file": ("secrets: {{netrc: {{file: {u}}}}}\n", "secrets.netrc.file"),
    "parent_description": ("extends: parent.yaml\n", "description"),   # the URL is in parent.yaml
}

REQUIREMENT_FORMS = {
    # how a requirements file line holds the URL
    "index_url": "--index-url {u}",
    "index_url_equals": "--index-url={u}",
    "short_i": "-i {u}",
    "short_i_glued": "-i{u}",
    "extra_index_url": "--extra-index-url={u}",
    "find_links": "--find-links {u}",
    "short_f": "-f {u}",
    "direct_reference": "somepkg @ {u}",
    "vcs_reference": "somepkg @ git+{u}",
    "bare_vcs": "git+{u}#egg=somepkg",
    "comment_line": "# mirror: {u}",
    "trailing_comment": "six==1.16.0  # from {u}",
}


def _url(part: str, scheme: str, host: str, canary: str) -> str:
    return CREDENTIAL_PARTS[part].format(s=scheme, h=host, c=canary)


def _run(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, str]:
    capsys.readouterr()
    rc = main(argv)
    got = capsys.readouterr()
    return rc, got.out + got.err


def _files(folder: Path) -> str:
    return "".join(p.read_text(errors="replace") for p in folder.rglob("*") if p.is_file() and p.suffix != ".yaml"
                   and p.name != "r.txt")


@SETTINGS
@given(canary=CANARY, part=st.sampled_from(sorted(CREDENTIAL_PARTS)), scheme=SCHEMES, host=HOSTS,
       place=st.sampled_from(sorted(VARIANT_PLACES)), command=st.sampled_from(["validate", "render", "lint"]),
       debug=st.booleans())
def test_a_credential_in_any_url_part_of_any_variant_value_is_refused_unechoed(
        capsys: pytest.CaptureFixture[str], canary: str, part: str, scheme: str, host: str, place: str,
        command: str, debug: bool) -> None:
    url = _url(part, scheme, host, canary)
    text, key = VARIANT_PLACES[place]
    with tempfile.TemporaryDirectory(prefix="tfimg-canary-") as tmp:
        d = Path(tmp)
        (d / "parent.yaml").write_text(f"description: {json.dumps(f'mirror: {url} (ask ops)')}\n")
        v = d / "v.yaml"
        v.write_text(text.format(u=json.dumps(url), d=json.dumps(f"Images built from {url} nightly."),
                                 cmd=json.dumps(f"curl -fsS {url} -o /dev/null")))
        argv = [*(["--debug"] if debug else []), command, str(v), *(["--out", str(d / "ctx")] if command == "render" else [])]
        rc, output = _run(capsys, argv)
        assert rc == 2, output
        assert canary not in output and canary not in _files(d), output
        assert f": {key}" in output and ("credentials" in output or "exactly one URL" in output), output
        assert not (d / "ctx").exists() and not (d / "build").exists()


@SETTINGS
@given(canary=CANARY, part=st.sampled_from(sorted(CREDENTIAL_PARTS)), scheme=SCHEMES, host=HOSTS,
       form=st.sampled_from(sorted(REQUIREMENT_FORMS)), before=st.integers(0, 3), debug=st.booleans())
def test_a_credential_in_any_url_of_a_requirements_line_is_refused_unechoed(
        capsys: pytest.CaptureFixture[str], canary: str, part: str, scheme: str, host: str, form: str,
        before: int, debug: bool) -> None:
    url = _url(part, scheme, host, canary).replace("git+", "")
    line = REQUIREMENT_FORMS[form].format(u=url)
    with tempfile.TemporaryDirectory(prefix="tfimg-canary-") as tmp:
        d = Path(tmp)
        (d / "r.txt").write_text("".join(f"pkg{i}==1.0\n" for i in range(before)) + line + "\nsix==1.16.0\n")
        v = d / "v.yaml"
        v.write_text("python: {requirements: [r.txt]}\n")
        rc, output = _run(capsys, [*(["--debug"] if debug else []), "render", str(v), "--out", str(d / "ctx")])
        assert rc == 2, output
        assert canary not in output and not (d / "ctx").exists(), output
        assert f"python.requirements[0]: r.txt:{before + 1}: " in output and "credentials" in output, output


@SETTINGS
@given(urls=st.lists(st.sampled_from(["https://pypi.org/simple", "https://mirror.example/simple/",
                                      "http://10.0.0.5:3141/root/pypi/+simple/"]), min_size=2, max_size=3),
       sep=st.sampled_from([" ", ",", ";", "\n", " and "]), place=st.sampled_from(["index_url", "source"]))
def test_a_url_key_holding_two_urls_is_refused(capsys: pytest.CaptureFixture[str], urls: list[str], sep: str,
                                               place: str) -> None:
    text, key = VARIANT_PLACES[place]
    with tempfile.TemporaryDirectory(prefix="tfimg-canary-") as tmp:
        v = Path(tmp) / "v.yaml"
        v.write_text(text.format(u=json.dumps(sep.join(urls))))
        rc, output = _run(capsys, ["validate", str(v)])
        assert rc == 2 and f"{key}: must be exactly one URL" in output, output


@SETTINGS
@given(host=HOSTS, path=st.sampled_from(["/simple", "/simple/", "/root/pypi/+simple/"]),
       query=st.sampled_from(["", "?page=2", "?q=tensorflow&lang=en", "#section-2", "#sha256=" + "a" * 64]),
       place=st.sampled_from(["description", "label_value", "check_command", "env_value"]))
def test_urls_without_credentials_are_accepted_in_free_text(capsys: pytest.CaptureFixture[str], host: str,
                                                            path: str, query: str, place: str) -> None:
    """The control: the search refuses credentials, not URLs."""
    url = f"https://{host}{path}{query}"
    text, _ = VARIANT_PLACES[place]
    with tempfile.TemporaryDirectory(prefix="tfimg-canary-") as tmp:
        v = Path(tmp) / "v.yaml"
        v.write_text(text.format(u=json.dumps(url), d=json.dumps(f"See {url}."),
                                 cmd=json.dumps(f"curl -fsS {url} -o /dev/null")))
        rc, output = _run(capsys, ["validate", str(v)])
        assert rc == 0, output


@pytest.mark.parametrize("line", [
    "somepkg @ https://files.example.com/somepkg-1.0-py3-none-any.whl#sha256=" + "a" * 64,
    "somepkg @ git+ssh://git@github.com/org/somepkg@v1.0",
    "somepkg @ git+https://github.com/org/somepkg@v1.0#subdirectory=python",
    "six==1.16.0  # see https://pypi.org/project/six/",
])
def test_requirement_urls_without_credentials_are_accepted(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                           line: str) -> None:
    (tmp_path / "r.txt").write_text(line + "\n")
    v = tmp_path / "v.yaml"
    v.write_text("python: {requirements: [r.txt]}\n")
    rc, output = _run(capsys, ["validate", str(v)])
    assert rc == 0, output
