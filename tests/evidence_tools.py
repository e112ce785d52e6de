"""Helpers of the evidence tests (no fixtures here: those are in tests/conftest_evidence.py)."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.conftest_registry import Built

INSECURE = ["--allow-insecure-registry", "--allow-http-registry"]


@dataclass
class Target:
    kind: str        # 'distribution' or 'referrers'
    host: str

    @property
    def route(self) -> str:
        return "api" if self.kind == "referrers" else "tag-schema"


@dataclass
class Published:
    repository: str    # HOST/NS/VARIANT
    digest: str
    built: Built
    base_digest: str

    @property
    def ref(self) -> str:
        return f"{self.repository}@{self.digest}"

    @property
    def repo(self) -> str:
        return self.repository.split("/", 1)[1]


def push(image_id: str, ref: str) -> str:
    """``docker push`` of ``image_id`` as ``ref``; its registry digest."""
    subprocess.run(["docker", "tag", image_id, ref], check=True, capture_output=True, timeout=60)
    subprocess.run(["docker", "push", ref], check=True, capture_output=True, timeout=300)
    out = subprocess.run(["docker", "image", "inspect", "--format", "{{json .RepoDigests}}", ref], check=True,
                         capture_output=True, text=True, timeout=60).stdout
    repo = ref.rsplit(":", 1)[0]
    digest = next(d.split("@", 1)[1] for d in json.loads(out) if d.startswith(repo + "@"))
    subprocess.run(["docker", "rmi", ref], capture_output=True, timeout=60)
    return digest


def run(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=300, cwd=cwd,
                          env={**os.environ, **(env or {})})


def ok(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    __tracebackhide__ = True
    res = run(*args, cwd=cwd, env=env)
    assert res.returncode == 0, f"{args}: exit {res.returncode}\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res.stdout


def cosign_verify(ref: str, pub: Path, kind_or_type: str) -> subprocess.CompletedProcess[str]:
    """``cosign verify-attestation --key PUB --insecure-ignore-tlog ... --type T REF``, as a user runs it."""
    return run("cosign", "verify-attestation", "--key", str(pub), "--insecure-ignore-tlog", *INSECURE,
               "--type", kind_or_type, ref)
