"""Spec loading: valid variants, extends, and every kind of bad input (exit 2, no traceback)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from builder.cli.root import main
from builder.errors import SpecErrors
from builder.infra.engine import Engine
from builder.spec import loader as spec
from builder.spec import passwords

ROOT = Path(__file__).resolve().parent.parent
PUB = (ROOT / "variants/keys/team.pub").read_text()


def write(tmp: Path, name: str, text: str) -> Path:
    p = tmp / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(textwrap.dedent(text))
    return p


def errors_of(path: Path) -> str:
    with pytest.raises(SpecErrors) as info:
        spec.load(path)
    return info.value.render()


@pytest.mark.parametrize("name", ["bert", "notebook", "worker", "dev"])
def test_shipped_variants_load(name: str) -> None:
    loaded = spec.load(ROOT / "variants" / f"{name}.yaml")
    assert loaded.name == name
    assert loaded.spec.user.name == "ml" and loaded.spec.user.uid == 1000
    assert loaded.chain[0].name == "base.yaml" and loaded.chain[-1].name == f"{name}.yaml"
    assert loaded.spec.base.image == spec.DEFAULT_BASE


def test_child_inherits_and_appends_lists() -> None:
    bert = spec.load(ROOT / "variants/bert.yaml").spec
    # checks.commands+ appends to base.yaml's command; env and labels merge key by key
    assert len(bert.checks.commands) == 2
    assert "tf.__version__" in bert.checks.commands[0]
    assert bert.env["PYTHONUNBUFFERED"] == "1"
    assert bert.labels["org.opencontainers.image.vendor"] == "Example ML Platform"
    assert bert.secrets.ca_bundle is not None and bert.secrets.ca_bundle.required is False


def test_child_scalar_wins_and_lists_replace(tmp_path: Path) -> None:
    write(tmp_path, "parent.yaml", """
        apt: {packages: [git, vim]}
        user: {name: alice, uid: 1500}
    """)
    child = write(tmp_path, "child.yaml", """
        extends: parent.yaml
        apt: {packages: [curl]}
        user: {uid: 2000}
    """)
    v = spec.load(child).spec
    assert v.apt.packages == ["curl"]
    assert v.user.name == "alice" and v.user.uid == 2000
    assert v.name == "child"


def test_paths_resolve_relative_to_declaring_file(tmp_path: Path) -> None:
    write(tmp_path, "shared/reqs.txt", "six==1.16.0\n")
    write(tmp_path, "shared/parent.yaml", "python: {requirements: [reqs.txt]}\n")
    child = write(tmp_path, "child.yaml", "extends: shared/parent.yaml\n")
    v = spec.load(child).spec
    assert v.python.requirements == [str((tmp_path / "shared/reqs.txt").resolve())]


BAD_CASES = {
    # name: (files, expected fragments in the message)
    "yaml_syntax": ({"v.yaml": "user:\n  name: ml\n  uid: [1000\n"}, ["v.yaml:", "YAML syntax error"]),
    "unknown_key": ({"v.yaml": "usr: {name: ml}\n"}, ["v.yaml:1", "unknown key 'usr'", "did you mean 'user'"]),
    "unknown_nested_key": ({"v.yaml": "ssh:\n  enabled: true\n  prot: 2200\n"},
                           ["v.yaml:3", "ssh.prot", "did you mean 'port'"]),
    "wrong_type": ({"v.yaml": "user:\n  uid: lots\n"}, ["v.yaml:2", "user.uid", "integer"]),
    "missing_requirements": ({"v.yaml": "python: {requirements: [nope.txt]}\n"},
                             ["python.requirements[0]", "nope.txt", "not found"]),
    "missing_key_file": ({"v.yaml": "ssh: {enabled: true, authorized_keys: [gone.pub]}\n"},
                         ["ssh.authorized_keys[0]", "gone.pub", "not found"]),
    "extends_cycle": ({"a.yaml": "extends: b.yaml\n", "b.yaml": "extends: a.yaml\n", "v.yaml": "extends: a.yaml\n"},
                      ["extends cycle", "a.yaml -> b.yaml -> a.yaml"]),
    "missing_parent": ({"v.yaml": "extends: nowhere.yaml\n"}, ["extends", "nowhere.yaml", "not found"]),
    "uid_zero": ({"v.yaml": "user: {name: ml, uid: 0}\n"}, ["user", "must not be 0"]),
    "user_root": ({"v.yaml": "user: {name: root}\n"}, ["user", "must not be root"]),
    "plaintext_password": ({"v.yaml": "jupyter: {enabled: true, password: hunter2}\n"},
                           ["jupyter", "plaintext passwords are not accepted", "tfimg hash-password"]),
    "password_hash_not_argon2": ({"v.yaml": "jupyter: {enabled: true, password_hash: hunter2}\n"},
                                 ["jupyter.password_hash", "not an argon2 password hash"]),
    "index_url_credentials": ({"v.yaml": "python: {index_url: 'https://bob:s3cr3t@pypi.corp.example/simple'}\n"},
                              ["python.index_url", "embeds credentials", "pip_index_url"]),
    "secret_literal": ({"v.yaml": "secrets: {pip_index_url: 'https://tok@pypi.example/simple'}\n"},
                       ["secrets.pip_index_url", "never as a literal value"]),
    "secret_value_key": ({"v.yaml": "secrets: {netrc: {value: 'machine x password y'}}\n"},
                         ["secrets.netrc", "never as a literal value"]),
    "unknown_secret": ({"v.yaml": "secrets: {ca_bundel: {file: x}}\n"}, ["ca_bundel", "did you mean 'ca_bundle'"]),
    "private_key": ({"v.yaml": "ssh: {enabled: true, authorized_keys: [id_ed25519]}\n",
                     "id_ed25519": "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmU=\n"
                                   "-----END OPENSSH PRIVATE KEY-----\n"},
                    ["ssh.authorized_keys[0]", "PRIVATE key", "public key"]),
    "invalid_public_key": ({"v.yaml": "ssh: {enabled: true, authorized_keys: [bad.pub]}\n",
                            "bad.pub": "ssh-ed25519 not-base64!! me@host\n"}, ["bad.pub", "not valid base64"]),
    "key_type_mismatch": ({"v.yaml": "ssh: {enabled: true, authorized_keys: [bad.pub]}\n",
                           "bad.pub": "ssh-rsa " + PUB.split()[1] + "\n"}, ["bad.pub", "does not match its type"]),
    "ssh_without_keys": ({"v.yaml": "ssh: {enabled: true}\n"}, ["ssh", "no key is given"]),
    "bad_tag_template": ({"v.yaml": "tags: {immutable: '{variant}-{colour}'}\n"},
                         ["tags.immutable", "unknown tag field '{colour}'"]),
    "bad_tag_chars": ({"v.yaml": "tags: {moving: ['{variant}/latest']}\n"}, ["tags.moving", "cannot give a valid tag"]),
    "port_out_of_range": ({"v.yaml": "ports: [70000]\n"}, ["ports", "out of range"]),
    "privileged_ssh_port": ({"v.yaml": "ssh: {enabled: true, port: 22, authorized_keys_file: /run/k}\n"},
                            ["ssh.port", "greater than or equal to 1024"]),
    "port_clash": ({"v.yaml": "ssh: {enabled: true, port: 8888, authorized_keys_file: /run/k}\n"
                              "jupyter: {enabled: true}\n"}, ["port 8888 is used by both"]),
    "credential_env": ({"v.yaml": "env: {HF_TOKEN: abc}\n"}, ["env", "HF_TOKEN", "looks like a credential"]),
    "requirements_with_index_option": ({"v.yaml": "python: {requirements: [r.txt]}\n",
                                        "r.txt": "--index-url https://u:p@x/simple\nsix\n"},
                                       ["r.txt:1", "pip options"]),
    "bad_requirement_line": ({"v.yaml": "python: {requirements: [r.txt]}\n", "r.txt": "!!six==1\n"},
                             ["r.txt:1", "not a valid requirement"]),
    "unknown_profile": ({"v.yaml": "base: {profile: ngc-22.7}\n"}, ["base.profile", "unknown base profile"]),
    "not_a_mapping": ({"v.yaml": "- a\n- b\n"}, ["must be a mapping"]),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_input_is_reported_with_file_key_and_fix(tmp_path: Path, case: str) -> None:
    files, fragments = BAD_CASES[case]
    for name, text in files.items():
        write(tmp_path, name, text)
    message = errors_of(tmp_path / "v.yaml")
    for fragment in fragments:
        assert fragment in message, f"{case}: {fragment!r} not in:\n{message}"


@pytest.mark.parametrize("case", ["index_url_credentials", "secret_literal", "secret_value_key", "private_key"])
def test_secret_content_is_never_echoed(tmp_path: Path, case: str) -> None:
    files, _ = BAD_CASES[case]
    for name, text in files.items():
        write(tmp_path, name, text)
    message = errors_of(tmp_path / "v.yaml")
    for secret in ("s3cr3t", "https://tok@", "password y", "b3BlbnNzaC1rZXktdjEAAAAABG5vbmU"):
        assert secret not in message


def test_cli_exit_code_2_without_traceback_and_nothing_written(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    bad = write(tmp_path, "v.yaml", "usr: {}\n")
    rc = main(["render", str(bad)])
    err = capsys.readouterr().err
    assert rc == 2
    assert "Traceback" not in err and "unknown key 'usr'" in err
    assert not (tmp_path / "build").exists()


def test_cli_subprocess_exit_code_and_debug_traceback(tmp_path: Path) -> None:
    bad = write(tmp_path, "v.yaml", "user: {uid: 0}\n")
    tfimg = [sys.executable, "-m", "builder", "render", str(bad)]
    res = subprocess.run(tfimg, capture_output=True, text=True, cwd=tmp_path)
    assert res.returncode == 2 and "Traceback" not in res.stderr and "must not be 0" in res.stderr
    res = subprocess.run(tfimg[:3] + ["--debug"] + tfimg[3:], capture_output=True, text=True, cwd=tmp_path)
    assert res.returncode == 2 and "Traceback" in res.stderr


def test_several_errors_are_listed_together(tmp_path: Path) -> None:
    bad = write(tmp_path, "v.yaml", "usr: {}\nports: [0]\n")
    message = errors_of(bad)
    assert "unknown key 'usr'" in message and "out of range" in message


def test_schema_matches_models_and_shipped_file() -> None:
    sch = spec.schema()
    assert {"base", "user", "ssh", "jupyter", "extends", "secrets", "tags"} <= set(sch["properties"])
    shipped = json.loads((ROOT / "variants/variant.schema.json").read_text())
    assert shipped == sch, "variants/variant.schema.json is stale: run `tfimg schema -o variants/variant.schema.json`"


def test_hash_password_roundtrip_and_accepted_by_spec(tmp_path: Path) -> None:
    h = passwords.hash_password("correct horse")
    assert passwords.verify(h, "correct horse") and not passwords.verify(h, "wrong")
    v = write(tmp_path, "v.yaml", f"jupyter: {{enabled: true, password_hash: '{h}'}}\n")
    assert spec.load(v).spec.jupyter.password_hash == h


def test_hash_password_command_reads_stdin() -> None:
    res = subprocess.run([sys.executable, "-m", "builder", "hash-password", "--stdin"], input="pw\n",
                         capture_output=True, text=True)
    assert res.returncode == 0
    assert passwords.verify(res.stdout.strip(), "pw")
    assert res.stdout.count("\n") == 1 and res.stdout.startswith("argon2:$argon2id$")   # only the hash
    assert "pw" not in res.stderr


def test_abstract_is_not_inherited_and_is_never_built(tmp_path: Path) -> None:
    from builder.infra.ui import UI
    from builder.pipeline import orchestrator as pipeline
    base = spec.load(ROOT / "variants/base.yaml")
    assert base.spec.abstract is True
    assert spec.load(ROOT / "variants/dev.yaml").spec.abstract is False
    with pytest.raises(SpecErrors) as info:
        pipeline.build(base, pipeline.BuildOptions(out_root=tmp_path), UI(quiet=True), Engine.deferred())
    assert "abstract" in info.value.render() and "never built" in info.value.render()
    assert not (tmp_path / "base").exists()


def test_docs_full_example_is_a_valid_variant(tmp_path: Path) -> None:
    import re
    guide = (ROOT / "docs/variants.md").read_text()
    block = re.search(r"<!-- full-example.*?```yaml\n(.*?)```", guide, re.S)
    assert block, "docs/variants.md lost its full example"
    shutil.copytree(ROOT / "variants", tmp_path / "variants")
    shutil.copytree(ROOT / "policies", tmp_path / "policies")
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)   # the variants' repository
    (tmp_path / "variants/full.yaml").write_text(block.group(1))
    v = spec.load(tmp_path / "variants/full.yaml").spec
    documented = set(spec.Variant.model_fields) | {"extends"}
    assert documented <= set(re.findall(r"^(\w+):", block.group(1), re.M)), "a top-level key lacks an example"
    assert v.name == "bert-large" and v.python.protected[-1] == "transformers"
    assert "tensorflow" in v.python.protected   # "+" appended to the default list
    assert v.base.digest and v.ssh.enabled and v.jupyter.enabled and v.policy.endswith("strict.yaml")
