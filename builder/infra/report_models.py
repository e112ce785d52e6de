"""The contract between stages: one frozen model per section of ``build/<variant>/report.json``.

Every stage returns its section as one of these models, the orchestrator records it
(:mod:`builder.pipeline.record`), and every reader gets a :class:`Report` back
(:func:`builder.infra.report.load`). The JSON keys are
the field names; a section holds exactly the keys its writer set (fields left
out stay out of the file), so CI jobs see the same keys as before the models.
Sections tfimg writes forbid unknown keys, so a typo fails where it is made.

``docs/report.schema.json`` is :func:`schema` of these models; regenerate it
with ``tfimg schema --report -o docs/report.schema.json`` (``make schema``).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any, ClassVar, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, JsonValue, RootModel, StrictBool
from pydantic.json_schema import SkipJsonSchema

from builder.infra.report_build import BuildCache as BuildCache
from builder.infra.report_build import BuilderInfo as BuilderInfo
from builder.infra.report_build import LayerSize as LayerSize
from builder.infra.report_build import Record as _Record
from builder.infra.report_build import SourceDateInfo as SourceDateInfo

JsonObject = dict[str, JsonValue]   # a JSON document passed along as it is (a Trivy report, an SBOM, a bake file)


class Section(_Record):
    """One top-level section of report.json; ``SECTION`` is its key."""

    SECTION: ClassVar[str]


class StageReuse(_Record):
    """The inputs that decide a stage's result: the next run reuses the result only when every value
    is the same and the stage did not fail (builder/pipeline/reuse.py)."""

    reused: bool = Field(description="true: this run reused the earlier result, its inputs had not changed.")
    key: dict[str, str] = Field(description="The inputs the result was (re)used for, by name.")


# --------------------------------------------------------------------------- build

class BaseImage(_Record):
    ref: str = Field(description="The base reference built on (the spec's base, --base or TFIMG_BASE).")
    id: str = Field(description="Image id of the base in the engine.")
    digest: str | None = Field(description="Registry digest of the base (from RepoDigests); null when unknown.")
    size: int = Field(description="Size of the base in bytes.")


class BuildSection(Section):
    """Written by the build stage (``tfimg build``); a new image voids every other section."""

    SECTION: ClassVar[str] = "build"

    variant: str
    spec: str = Field(description="Path of the variant file.")
    spec_chain: list[str] = Field(description="The variant file and the files it extends.")
    spec_hash: str
    dockerfile_hash: str
    context_hash: str
    input_hash: str
    base: BaseImage
    base_layers: list[str] = Field(description="Layer DiffIDs of the base (its findings are 'inherited').")
    profile: str = Field(description="The spec's base profile.")
    image_id: str
    image: str = Field(description="Local reference tfimg/<variant>:<input hash>.")
    size: int
    added_bytes: int
    layers: list[LayerSize]
    labels: dict[str, str]
    builder: BuilderInfo | None = Field(description="Null when the image was up to date and nothing was built.")
    revision: str = Field(description="Git revision the image was built from ('norev' outside git).")
    up_to_date: bool
    timings: dict[str, float] = Field(description="Seconds per stage of the build that made the image.")
    warnings: list[str]
    log: str | None = Field(description="Path of build.log; null when nothing was built here.")
    cache: BuildCache | None = Field(None, description="Registry build cache settings, when any were given.")
    source_date: SourceDateInfo | None = Field(None, description="The build's SOURCE_DATE_EPOCH (null: unknown).")
    started_on: str | None = Field(None, description="When the build of this image started (RFC 3339, UTC, Z); "
                                   "an up-to-date image keeps its build's times; null when not known.")
    finished_on: str | None = Field(None, description="When the build of this image finished (RFC 3339, UTC, Z).")


# --------------------------------------------------------------------------- checks

class CheckRow(_Record):
    check: str
    status: Literal["passed", "failed", "error", "skipped"]
    detail: str | None = None
    duration: float | None = None


class CheckCounts(_Record):
    passed: int
    failed: int
    error: int
    skipped: int


class GpuInfo(_Record):
    enabled: bool
    requested: str
    reason: str


class ProbeRow(_Record):
    component: str
    detected: JsonValue = None
    expected: str | None = None
    confirmed: bool | None = None
    status: str
    detail: str | None = None
    method: str | None = Field(None, description="How a library's version was obtained: library call, file "
                                                  "name, version file or environment variable.")
    read: bool | None = Field(None, description="True only when the version was read from the library itself.")


class ProbeRecord(_Record):
    summary: dict[str, JsonValue] = Field(description="What the probe read in the container.")
    error: str | None
    rows: list[ProbeRow]


class ChecksSection(Section):
    """Written by the checks stage (``tfimg test``), or by ``tfimg build --no-test`` (``skipped``)."""

    SECTION: ClassVar[str] = "checks"

    passed: StrictBool | None = Field(description="true: every check passed; false: one failed or the suite "
                                                   "could not run; null: not run. Publishing needs true.")
    skipped: str | None = Field(None, description="Why the checks were not run (e.g. --no-test).")
    error: str | None = Field(None, description="Why the suite could not run to an end.")
    variant: str | None = None
    image: str | None = None
    image_id: str | None = None
    results: list[CheckRow] = Field(default_factory=list)
    counts: CheckCounts | None = None
    records: dict[str, JsonValue] = Field(default_factory=dict, description="Values the checks recorded.")
    gpu: GpuInfo | None = None
    profile: str | None = None
    profile_note: str | None = None
    base: str | None = None
    base_note: str | None = None
    services_note: str | None = None
    probe: ProbeRecord | None = None
    modules: list[str] = Field(default_factory=list)
    junit: str | None = None
    log: str | None = None
    duration: float | None = None
    run_id: str | None = None
    reuse: StageReuse | None = Field(None, description="The inputs that decide this result; whether it was reused.")


# --------------------------------------------------------------------------- facts

class FactsSection(Section):
    """Versions read from the image: by the checks stage (probe), or by the tags stage.

    ``tf``/``tf_version``, ``py``/``python_version``, ``cuda_version`` and
    ``cudnn_version`` are read as their long names (sections written by other tools).
    """

    SECTION: ClassVar[str] = "facts"

    tensorflow: str | None = Field(None, validation_alias=AliasChoices("tensorflow", "tf", "tf_version"))
    python: str | None = Field(None, validation_alias=AliasChoices("python", "py", "python_version"))
    cuda: str | None = Field(None, validation_alias=AliasChoices("cuda", "cuda_version"))
    cudnn: str | None = Field(None, validation_alias=AliasChoices("cudnn", "cudnn_version"))
    nccl: str | None = None
    driver: str | None = None
    gpus: list[str] | None = None
    tf_cuda_build: bool | None = None
    tf_build_cuda: str | None = None
    date: str | None = Field(None, description="Creation date of the image, YYYYMMDD (UTC).")
    rev: str | None = Field(None, description="Git revision the image was built from.")
    image_id: str | None = Field(None, description="The image these facts describe.")
    profile: str | None = None
    source: str | None = None
    error: str | None = None


# --------------------------------------------------------------------------- scan and gate

class TrivyDb(_Record):
    """``VulnerabilityDB`` of ``trivy version --format json --cache-dir DIR`` (the scan's cache dir);
    ``Version`` is the DB schema (tfimg requires 2)."""

    Version: int | str | None = None
    UpdatedAt: str | None = None
    NextUpdate: str | None = None
    DownloadedAt: str | None = None


class Sbom(_Record):
    """The SBOM written beside report.json (``sbom.cdx.json``), from the scan's own package list."""

    path: str = Field(description="File name, beside report.json (sbom.cdx.json).")
    format: Literal["cyclonedx-json"]
    spec_version: str | None = None
    components: int = Field(description="Number of CycloneDX components.")
    sha256: str = Field(description="sha256 of the file as written.")


class ScanSection(Section):
    """Written by the scan stage: what Trivy was run on and how; findings are counts per kind.

    The findings themselves are in ``trivy.json`` (and published beside the evidence).
    """

    SECTION: ClassVar[str] = "scan"

    status: Literal["ok", "failed"]
    tool: Literal["trivy"]
    image: str
    error: str | None = Field(None, description="Why the scan failed (status 'failed').")
    trivy_version: str | None = None
    db: TrivyDb | None = Field(None, description="Trivy's vulnerability DB (how fresh it was).")
    db_repository: str | None = Field(None, description="Where the DB came from (--db-repository); "
                                      "'default': Trivy's own; null: offline, a pre-downloaded DB.")
    image_id: str | None = None
    mode: Literal["archive", "reference", "remote"] | None = None
    scanners: list[str] | None = None
    image_config_scanners: list[str] | None = Field(None, description="Scanners run on the image's config.")
    offline: bool | None = None
    report: str | None = Field(None, description="File name of Trivy's report (trivy.json).")
    report_sha256: str | None = Field(None, description="sha256 of that file as tfimg wrote it: a gate of the "
                                      "saved report (tfimg gate --report) trusts this record only for that very file.")
    seconds: float | None = None
    started_on: str | None = Field(None, description="When Trivy started (RFC 3339, UTC, Z): the vulnerability "
                                   "statement's scanStartedOn.")
    finished_on: str | None = Field(None, description="When Trivy finished (RFC 3339, UTC, Z): scanFinishedOn.")
    findings: dict[str, int] | None = Field(None, description="Number of findings per kind "
                                            "(vulnerability, secret, misconfiguration, license).")
    misconfig: bool | None = Field(None, description="Whether the Dockerfile checks ran (policy scan.misconfig).")
    sbom: Sbom | None = Field(None, description="The CycloneDX SBOM of the image.")
    reuse: StageReuse | None = Field(None, description="The inputs that decide this result; whether it was reused.")


class GateFiles(_Record):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    json_: str = Field(alias="json", description="gate.json")
    sarif: str
    markdown: str


class WaiverRecord(_Record):
    """A waiver of the gate's policy that waived findings of this image: who owns the risk and until when."""

    id: str
    owner: str
    expires: dt.date = Field(description="Last day the waiver applies; after it the gate blocks again.")
    reason: str
    package: str | None = None
    purl: str | None = None
    path: str | None = None
    findings: int = Field(description="How many findings of this image it waived.")


class GateSection(Section):
    """Written by the gate: ``decision`` is what publishing reads."""

    SECTION: ClassVar[str] = "gate"

    decision: Literal["pass", "block", "unscanned"]
    policy: str
    policy_file: str | None = None
    artifact: str | None = None
    trivy_version: str | None = None
    evaluated_on: dt.date | None = None
    reasons: list[str] = Field(default_factory=list)
    blocking: int | None = Field(None, description="Number of blocking findings.")
    blocking_ids: list[str] = Field(default_factory=list)
    counts: dict[str, dict[str, dict[str, int]]] = Field(
        default_factory=dict, description="{kind: {new|inherited: {severity: n}}}, before waivers.")
    waived: int | None = None
    expired_waivers: list[str] = Field(default_factory=list)
    stale_waivers: list[str] = Field(default_factory=list)
    waivers: list[WaiverRecord] = Field(default_factory=list, description="The waivers that waived findings, with "
                                        "owner and expiry (written when there are any; the catalog shows them).")
    base_layers_known: bool | None = None
    base_digest_pinned: bool | None = None
    scanners: list[str] | None = Field(None, description="The Trivy scanners the gated report was made with.")
    scanners_from: str | None = Field(None, description="How they are known: 'this scan', 'scan record' "
                                      "(report.json's scan section, for the same file) or 'assumed' "
                                      "(tfimg gate --assume-vuln-scanned).")
    files: GateFiles | None = None
    reuse: StageReuse | None = Field(None, description="The inputs that decide this result; whether it was reused.")


# --------------------------------------------------------------------------- tags and publish

class TagsSection(Section):
    """The tags of ``tags.txt`` (immutable first): written by the tags stage and by publish."""

    SECTION: ClassVar[str] = "tags"

    immutable: str
    moving: list[str]
    reuse: StageReuse | None = Field(None, description="The inputs that decide this result; whether it was reused.")

    @property
    def all(self) -> list[str]:
        return [self.immutable, *[t for t in self.moving if t != self.immutable]]


class LocalTags(RootModel[list[str]]):
    """``tfimg/<variant>:<tag>`` references applied in the local engine (empty when not tagged)."""

    model_config = ConfigDict(frozen=True)
    SECTION: ClassVar[str] = "local_tags"

    def __iter__(self) -> Iterator[str]:  # type: ignore[override]
        return iter(self.root)

    def __len__(self) -> int:
        return len(self.root)


class EvidenceRef(_Record):
    tag: str = Field(description="cosign's attestation tag sha256-<hex>.att (the same envelopes as the referrers).")
    digest: str = Field(description="Digest of that tag's manifest after this publish.")


class AttestationRef(_Record):
    kind: Literal["report", "sbom", "vuln", "provenance", "vex"] = Field(
        description="Which statement: the tfimg report, the CycloneDX SBOM, the Trivy report, SLSA provenance, "
                    "the waivers that apply as OpenVEX.")
    digest: str = Field(description="Digest of the OCI artifact manifest (its subject is the image digest).")
    existing: bool = Field(False, description="true: the very statement (same payload, same signer) was already "
                                              "attached, so nothing new was attached for it.")


class PublishSection(Section):
    """Written by ``tfimg publish --push``."""

    SECTION: ClassVar[str] = "publish"

    registry: str
    repository: str
    digest: str
    image_id: str
    immutable: str
    moving: list[str]
    refs: list[str]
    evidence: EvidenceRef | None = Field(None, description="cosign's .att tag; null when nothing was attached "
                                                           "(same_inputs).")
    pushed_at: str
    skipped_push: bool
    same_inputs: str | None = Field(None, description="Image id of the digest that was already published from "
                                    "the same inputs (its ih- tag): that digest is reported, nothing was pushed "
                                    "or attached. Null otherwise.")
    attestations: list[AttestationRef] = Field(
        default_factory=list, description="DSSE-enveloped in-toto statements attached as OCI 1.1 referrers "
                                          "(listed in the sha256-<hex> index where there is no referrers API) "
                                          "and as layers of cosign's sha256-<hex>.att.")
    signed: bool = Field(False, description="Whether the statements were signed (--sign-key).")


class PublishedSection(Section):
    """Written by ``tfimg build --registry`` when the same inputs were already published with
    evidence that passes the current policy: nothing was built, checked or scanned."""

    SECTION: ClassVar[str] = "published"

    registry: str
    repository: str = Field(description="HOST/NAMESPACE/VARIANT.")
    digest: str = Field(description="The published digest that is reused.")
    input_hash: str
    tag: str = Field(description="The input-hash tag it was found by (ih-<20 hex>).")
    decision: str = Field(description="Gate decision under the current policy.")
    how: str = Field(description="How the decision was reached (recorded, or re-evaluated).")
    checked_at: str


class Timings(RootModel[dict[str, float]]):
    """Seconds each stage of the last ``tfimg build`` took."""

    model_config = ConfigDict(frozen=True)
    SECTION: ClassVar[str] = "timings"


AnySection = (BuildSection | ChecksSection | FactsSection | ScanSection | GateSection | TagsSection
              | LocalTags | PublishSection | PublishedSection | Timings)


class Report(BaseModel):
    """``build/<variant>/report.json``: one optional section per stage."""

    model_config = ConfigDict(frozen=True, extra="forbid", title="tfimg report.json")

    build: BuildSection | SkipJsonSchema[None] = None
    checks: ChecksSection | SkipJsonSchema[None] = None
    facts: FactsSection | SkipJsonSchema[None] = None
    scan: ScanSection | SkipJsonSchema[None] = None
    gate: GateSection | SkipJsonSchema[None] = None
    tags: TagsSection | SkipJsonSchema[None] = None
    local_tags: LocalTags | SkipJsonSchema[None] = None
    publish: PublishSection | SkipJsonSchema[None] = None
    published: PublishedSection | SkipJsonSchema[None] = None
    timings: Timings | SkipJsonSchema[None] = None

    def with_section(self, section: AnySection) -> Report:
        """A copy with ``section`` in its place (the others unchanged)."""
        return self.model_copy(update={section.SECTION: section})

    def to_json(self) -> dict[str, Any]:
        """The JSON document: each section with exactly the keys its writer set."""
        return self.model_dump(mode="json", by_alias=True, exclude_unset=True)


def schema() -> dict[str, Any]:
    """The JSON Schema of report.json (``docs/report.schema.json``)."""
    doc = Report.model_json_schema(by_alias=True)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **doc}


def schema_text() -> str:
    return json.dumps(schema(), indent=2, sort_keys=True) + "\n"
