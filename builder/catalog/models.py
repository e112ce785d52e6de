"""The catalog: one frozen model, written as ``catalog.json`` beside the HTML, with its JSON Schema.

Every page and the search index are made from a :class:`Catalog` and nothing else, so what a person
reads and what a tool reads are the same data. Values that came from the registry or its evidence are
text to show, never markup (the renderer escapes them).

``docs/catalog.schema.json`` is :func:`schema`; regenerate it with
``python -m builder.catalog.models -o docs/catalog.schema.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

SCHEMA: Literal["tfimg.catalog/v1"] = "tfimg.catalog/v1"
SCHEMA_PATH = Path("docs/catalog.schema.json")

Origin = Literal["inherited", "introduced"]
Flag = Literal["blocked", "not-passed", "unverifiable", "not-verified", "waiver-expired", "evidence-unreadable"]
FLAG_TEXT: dict[str, str] = {
    "blocked": "its latest decision is block: the gate (or the catalog's --policy) does not allow it",
    "not-passed": "its latest decision is not a pass (not scanned, checks failed or missing, or no evidence)",
    "unverifiable": "its evidence does not verify with the given key(s): signed with another key, unsigned, "
                    "or altered",
    "not-verified": "no key was given, so its signatures were not checked",
    "waiver-expired": "a waiver it passed with has expired since: the gate would block it today",
    "evidence-unreadable": "part of its evidence could not be read",
}


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Versions(_Model):
    """What the checks read in the image (the ``facts`` section of its evidence); null: not found."""

    tensorflow: str | None = None
    python: str | None = None
    cuda: str | None = None
    cudnn: str | None = None
    nccl: str | None = None


class DriverNeed(_Model):
    """The oldest NVIDIA driver (Linux) the image's CUDA runs on."""

    minimum: str | None = Field(description="Null: no driver needed (CPU only) or not known (see basis).")
    basis: Literal["profile", "cuda-table", "cpu-only", "unknown"] = Field(
        description="profile: the base profile's driver (its vendor's release notes); cuda-table: NVIDIA's "
                    "CUDA/driver table for the CUDA version the checks read; cpu-only: no CUDA in the image.")
    forward_compatible: list[str] = Field(default_factory=list, description="Older data-center driver branches "
                                          "that run it in forward-compatibility mode (PEP 440 specifiers).")
    full_features: str | None = Field(None, description="The driver NVIDIA ships with that CUDA release "
                                      "(every feature of the release, e.g. PTX JIT of newer code).")
    note: str
    source: str


class Sizes(_Model):
    pull: int | None = Field(None, description="Compressed bytes a pull transfers (config and layers).")
    pull_over_base: int | None = Field(None, description="Compressed bytes of the layers the base does not have.")
    unpacked: int | None = Field(None, description="Unpacked size of the image (the build report).")
    unpacked_over_base: int | None = Field(None, description="Unpacked bytes added over the base.")


class Checks(_Model):
    passed: bool | None = Field(description="true: every check passed; null: not recorded.")
    counts: dict[str, int] = Field(default_factory=dict)
    gpu_checked: bool = Field(description="Whether the checks ran on a GPU (CUDA, cuDNN, NCCL, a matmul).")
    gpu_note: str | None = None
    profile: str | None = Field(None, description="The profile the versions were compared with.")
    profile_note: str | None = None


class Trust(_Model):
    """Whether the evidence verified when the catalog was made."""

    state: Literal["verified", "unverifiable", "not-verified"] = Field(
        description="verified: tfimg verify's policy passes with the given keys (every required statement has an "
                    "envelope signed by one of them and consistent with the image; other signers are no "
                    "failure); unverifiable: it does not (another key, unsigned, altered, inconsistent); "
                    "not-verified: no key was given.")
    keys: list[str] = Field(default_factory=list, description="The keys (file names) it verified with.")
    summary: str
    problems: list[str] = Field(default_factory=list)
    route: str | None = Field(None, description="How the statements were found: the referrers API or the "
                              "OCI referrers tag schema.")
    report_signed: bool = Field(False, description="Whether the evidence document shown came from a statement "
                                "signed by a given key (without keys: from a signed statement at all).")


class Decision(_Model):
    decision: str = Field(description="pass, block, unscanned, checks-failed, checks-missing, no-evidence ...")
    source: Literal["publish", "watch", "catalog"] = Field(
        description="publish: the gate when it was published; watch: `tfimg watch`; catalog: the catalog's "
                    "--policy applied to the attached vulnerability report when the catalog was made.")
    policy: str | None = None
    on: str | None = Field(None, description="When it was decided (ISO 8601 date or time).")
    reasons: list[str] = Field(default_factory=list)
    blocking: list[str] = Field(default_factory=list, description="Ids of the findings that block.")


class WatchResult(_Model):
    """The newest `tfimg watch` result attached to the digest (issue 21); absent until watch attaches one."""

    at: str
    decision: str
    policy: str | None = None
    reasons: list[str] = Field(default_factory=list)
    db_updated: str | None = Field(None, description="The vulnerability DB's version (its UpdatedAt) the watch used.")
    new_findings: list[str] = Field(default_factory=list, description="Ids disclosed after publishing.")
    verified_with: str | None = Field(None, description="The key its statement verified with; null: not verified.")


class Waiver(_Model):
    id: str
    owner: str
    expires: dt.date
    reason: str
    package: str | None = None
    purl: str | None = None
    path: str | None = None
    findings: int | None = Field(None, description="How many findings it waived at the gate.")
    expired: bool = Field(description="Whether it had expired when the catalog was made.")
    days_left: int = Field(description="Days from the catalog's date to its expiry (negative: expired).")


class Finding(_Model):
    kind: Literal["vulnerability", "secret", "misconfiguration"]
    id: str
    severity: str
    package: str | None = None
    installed: str | None = None
    fixed: str | None = None
    origin: Origin = Field(description="inherited: in a layer of the base; introduced: added by the variant "
                           "(or the base layers are not known).")
    title: str | None = None
    url: str | None = Field(None, description="An http(s) link about it; other schemes are dropped.")
    waived_by: str | None = Field(None, description="The waiver (id) that waived it at the gate.")


class Package(_Model):
    name: str
    version: str | None = None
    type: str | None = Field(None, description="The package URL type: deb, pypi, npm ...")
    purl: str | None = None
    origin: Origin | Literal["unknown"] = "unknown"


class Promotion(_Model):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    from_: str = Field(alias="from")
    to: str
    at: str
    policy: str | None = None


class Snippets(_Model):
    docker_run: str
    kubernetes_pod: str
    jupyterhub: str | None = Field(None, description="KubeSpawner settings; null when the image has no Jupyter.")
    kubeflow: str | None = Field(None, description="A Kubeflow Notebook; null when the image has no Jupyter.")
    notes: list[str] = Field(default_factory=list)


class Image(_Model):
    """One published digest in one repository."""

    page: str = Field(description="Its page, relative to the catalog's index.html.")
    repository: str = Field(description="HOST/NAMESPACE/VARIANT")
    variant: str
    digest: str
    tags: list[str] = Field(description="Tags that point at it now (immutable first).")
    immutable: str | None = None
    moving: list[str] = Field(default_factory=list)
    created: str | None = Field(None, description="When the image was made (its config).")
    published_at: str | None = None
    versions: Versions
    driver: DriverNeed
    sizes: Sizes
    checks: Checks
    trust: Trust
    decisions: list[Decision] = Field(description="Every decision known, oldest first.")
    latest: Decision = Field(description="The newest decision: what the image's status follows.")
    watch: WatchResult | None = None
    waivers: list[Waiver] = Field(default_factory=list, description="Waivers that waived its findings at the gate.")
    expired_waivers: list[str] = Field(default_factory=list, description="Waivers that had expired at the gate.")
    stale_waivers: list[str] = Field(default_factory=list)
    findings: list[Finding] = Field(default_factory=list, description="Vulnerabilities, secrets and failed "
                                    "checks of the attached scan (license findings are counted only).")
    counts: dict[str, dict[str, dict[str, int]]] = Field(
        default_factory=dict, description="{kind: {new|inherited: {severity: n}}} as the gate counted them.")
    packages: list[Package] = Field(default_factory=list, description="From the attached CycloneDX SBOM.")
    promotions: list[Promotion] = Field(default_factory=list)
    promotions_signed: bool = Field(False, description="Whether every promotion record is a statement signed by a "
                                    "given key (without keys: signed at all).")
    snippets: Snippets
    problems: list[str] = Field(default_factory=list, description="Evidence that could not be read, and why.")
    flags: list[Flag] = Field(description="Why it is not shown as fine; empty: verified and passing.")

    @property
    def ok(self) -> bool:
        return not self.flags


class KeyInfo(_Model):
    name: str = Field(description="The file name of the PEM public key.")
    sha256: str = Field(description="sha256 of the key's DER (SubjectPublicKeyInfo) encoding.")


class Catalog(_Model):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True, title="tfimg catalog.json")

    schema_: Literal["tfimg.catalog/v1"] = Field(SCHEMA, alias="schema")
    generated_at: str = Field(description="When the catalog was made (UTC, ISO 8601).")
    registry: str = Field(description="HOST/NAMESPACE it was made from.")
    tfimg: str = Field(description="The tfimg version that made it.")
    keys: list[KeyInfo] = Field(default_factory=list, description="The keys the evidence was verified with.")
    policy: str | None = Field(None, description="The file name of the policy (--policy) applied to every image's "
                               "report.")
    images: list[Image] = Field(description="Newest first.")

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)


def schema() -> dict[str, Any]:
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            **Catalog.model_json_schema(by_alias=True, mode="serialization")}


def schema_text() -> str:
    return json.dumps(schema(), indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m builder.catalog.models",
                                     description="Print (or write) the JSON Schema of a catalog's catalog.json.")
    parser.add_argument("-o", "--output", type=Path, help=f"write it to this file (e.g. {SCHEMA_PATH})")
    args = parser.parse_args(argv)
    if args.output:
        args.output.write_text(schema_text())
        print(f"wrote {args.output}")
    else:
        sys.stdout.write(schema_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
