"""Gate policies (``policies/*.yaml``): pydantic models, the loader and its errors.

A policy says which findings of a Trivy report block an image. Unknown keys
are errors; every problem is raised at once as
:class:`~builder.errors.SpecErrors` naming file, line, key path and the fix.

Thresholds are written per severity, either as a floor (``HIGH`` means
HIGH and CRITICAL may not appear at all), a list (``[CRITICAL]``) or a
mapping of the most findings allowed (``{CRITICAL: 0, HIGH: 5}``); ``none``
blocks nothing. A key left out takes the default policy's value.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, WithJsonSchema, field_validator

from builder.errors import SpecError, SpecErrors
from builder.infra import yamlfile
from builder.scan.trivy_report import RANK, SEVERITIES

_HERE = Path(__file__).resolve().parents[1]  # builder/ (installed) or beside the checkout's policies/
SHIPPED = next((p for p in (_HERE / "policies", _HERE.parent / "policies") if p.is_dir()),
               _HERE.parent / "policies")
DEFAULT = "default"


def _threshold(v: Any) -> dict[str, int]:
    """``HIGH`` -> {HIGH: 0, CRITICAL: 0}; ``{CRITICAL: 0, HIGH: 5}`` stays; none/null -> {}."""
    if v is None or (isinstance(v, str) and v.lower() == "none"):
        return {}
    if isinstance(v, str):
        sev = v.upper()
        if sev not in RANK:
            raise ValueError(f"'{v}' is not a severity; use one of {', '.join(SEVERITIES)} or 'none'")
        return {s: 0 for s in SEVERITIES if RANK[s] >= RANK[sev]}
    if isinstance(v, list):
        if not all(isinstance(s, str) for s in v):
            raise ValueError("a list holds severity names only, such as [CRITICAL, HIGH]")
        return _threshold(dict.fromkeys(v, 0))
    if isinstance(v, dict):
        out: dict[str, int] = {}
        for k, n in v.items():
            if str(k).upper() not in RANK:
                raise ValueError(f"'{k}' is not a severity; use one of {', '.join(SEVERITIES)}")
            if not isinstance(n, int) or isinstance(n, bool) or n < 0:
                raise ValueError(f"the allowance for {k} must be a whole number >= 0 (0 blocks any)")
            out[str(k).upper()] = n
        return out
    raise ValueError("give a severity floor such as HIGH, a list such as [CRITICAL, HIGH], "
                     "a mapping such as {CRITICAL: 0, HIGH: 5}, or none")


def _any_case(words: tuple[str, ...]) -> str:
    """A JSON Schema pattern matching any of ``words`` in any letter case, as the loader does."""
    return "^(" + "|".join("".join(f"[{c.upper()}{c.lower()}]" for c in w) for w in words) + ")$"


_SEVERITY = {"type": "string", "pattern": _any_case(SEVERITIES)}
# What an editor should accept for a threshold: what _threshold accepts, not the dict it makes.
_THRESHOLD_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {"type": "string", "pattern": _any_case((*SEVERITIES, "none")),
         "description": "A severity floor (HIGH: HIGH and CRITICAL block), or none."},
        {"type": "array", "items": _SEVERITY, "description": "The severities that block, e.g. [CRITICAL]."},
        {"type": "object", "propertyNames": _SEVERITY, "additionalProperties": {"type": "integer", "minimum": 0},
         "description": "The most findings allowed per severity, e.g. {CRITICAL: 0, HIGH: 5}."},
        {"type": "null"},
    ],
}
Threshold = Annotated[dict[str, int], WithJsonSchema(_THRESHOLD_SCHEMA)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Fixability(_Strict):
    """Thresholds for vulnerabilities with a fixed version, and without one."""

    fixed: Threshold = Field(default_factory=dict, description="Vulnerabilities with a fix available.")
    unfixed: Threshold = Field(default_factory=dict, description="Vulnerabilities without a fix.")

    _t = field_validator("fixed", "unfixed", mode="before")(_threshold)


class NewFindings(Fixability):
    """Thresholds for the variant's own findings; by default HIGH and CRITICAL with a fix block."""

    fixed: Threshold = Field(default_factory=lambda: {"HIGH": 0, "CRITICAL": 0},
                                  description="Vulnerabilities with a fix available (default: HIGH).")


class Vulnerabilities(_Strict):
    new: NewFindings = Field(default_factory=NewFindings,
                             description="Findings in the variant's own layers (or anywhere when base layers are unknown).")
    inherited: Fixability = Field(default_factory=Fixability,
                                  description="Findings in layers of the base image (reported, blocked only if set).")


class Misconfigurations(_Strict):
    block: Threshold = Field(default_factory=dict, description="Failed checks that block, by severity.")

    _t = field_validator("block", mode="before")(_threshold)


class Licenses(_Strict):
    block_categories: list[str] = Field(default_factory=list,
                                        description="Trivy license categories that block, e.g. forbidden.")


class Scan(_Strict):
    required: bool = Field(True, description="false: a local build may continue UNSCANNED when Trivy "
                                             "cannot run; publishing still refuses it.")
    misconfig: bool = Field(True, description="Also run `trivy config` on the rendered Dockerfile (its findings block per `misconfigurations.block`).")


class Publish(_Strict):
    require_signatures: bool = Field(False, description="Promotion into this policy's target first verifies "
                                     "the attached statements as `tfimg verify` does (report, sbom, vuln and "
                                     "provenance each signed by the key and consistent with the image), judges "
                                     "only those, and signs its promotion record (`tfimg promote --sign-key`).")
    public_key: str | None = Field(None, description="PEM public key file the statements must verify with "
                                   "(relative to the policy file); `tfimg promote --key` overrides it.")


# OpenVEX v0.2.0's justifications for a `not_affected` statement (`tfimg vex`, builder/scan/vex.py).
Justification = Literal["component_not_present", "vulnerable_code_not_present", "vulnerable_code_not_in_execute_path",
                        "vulnerable_code_cannot_be_controlled_by_adversary", "inline_mitigations_already_exist"]


class Waiver(_Strict):
    """An accepted finding: who accepted it, why, and until when."""

    id: str = Field(..., min_length=1, description="CVE/GHSA id, check id (DS-0002) or secret rule id.")
    package: str | None = Field(None, description="Only this package name (or name@version).")
    purl: str | None = Field(None, description="Only this package URL (version and qualifiers optional).")
    path: str | None = Field(None, description="Only findings in files matching this glob (secrets need it).")
    reason: str = Field(..., min_length=3)
    owner: str = Field(..., min_length=1, description="Who renews or removes it (name or e-mail).")
    expires: dt.date = Field(..., description="Last day the waiver applies (YYYY-MM-DD).")
    justification: Justification | None = Field(
        None, description="Why the image is not affected (OpenVEX): `tfimg vex` then states not_affected, "
                          "which Trivy's --vex honours; without it the waiver is an accepted risk (affected, "
                          "with the reason, owner and expiry as the action statement).")

    @field_validator("reason", "owner")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must not be blank")
        return v.strip()

    @field_validator("purl")
    @classmethod
    def _purl(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith("pkg:"):
            raise ValueError("a package URL starts with 'pkg:' (e.g. pkg:deb/ubuntu/openssl)")
        return v

    def expired(self, today: dt.date) -> bool:
        return today > self.expires


class Policy(_Strict):
    """A gate policy. ``policies/default.yaml`` is used when a variant names none."""

    description: str = ""
    scan: Scan = Field(default_factory=Scan)
    vulnerabilities: Vulnerabilities = Field(default_factory=Vulnerabilities)
    misconfigurations: Misconfigurations = Field(default_factory=Misconfigurations)
    licenses: Licenses = Field(default_factory=Licenses)
    require_base_digest: bool = Field(False, description="Block unless the base is pinned by digest.")
    publish: Publish = Field(default_factory=Publish)
    waivers: list[Waiver] = Field(default_factory=list)
    name: str = Field("", description="Set from the file name; do not write it.")
    file: str = Field("", description="Set by the loader; do not write it.")


def resolve(name_or_path: str | Path | None) -> Path:
    """A policy file: a path, or the name of a shipped policy (default, strict)."""
    if name_or_path is None:
        return SHIPPED / f"{DEFAULT}.yaml"
    p = Path(name_or_path)
    if not p.exists() and p.suffix == "" and (SHIPPED / f"{p.name}.yaml").is_file():
        return SHIPPED / f"{p.name}.yaml"
    return p


def load(name_or_path: str | Path | None = None) -> Policy:
    """Load and validate a policy file (None: the shipped default). Raises SpecErrors."""
    path = resolve(name_or_path)
    if not os.path.lexists(path):   # anything else (a FIFO, a loop) is refused by the reader, by name
        shipped = ", ".join(sorted(p.stem for p in SHIPPED.glob("*.yaml")))
        raise SpecErrors([SpecError(path, "", "policy file not found",
                                    hint=f"Give a path, or one of the shipped policies: {shipped}.")])
    data, lines = yamlfile.read_mapping(path, path, "a policy")
    errors = [SpecError(path, key, f"'{key}' is set by tfimg; remove it", line=lines.get((key,)))
              for key in ("name", "file") if key in data]
    if "secrets" in data:
        errors.append(SpecError(path, "secrets", "secrets cannot be configured: every secret finding blocks",
                                line=lines.get(("secrets",)),
                                hint="Remove the key. Accept a known false positive with a waiver "
                                     "that names the rule id and the file (id + path)."))
    if errors:
        raise SpecErrors(errors)
    try:
        return Policy.model_validate({**data, "name": path.stem, "file": str(path)})
    except ValidationError as exc:
        raise SpecErrors(_errors(exc, lines, path)) from None


def _errors(exc: ValidationError, lines: dict[tuple[Any, ...], int], path: Path) -> list[SpecError]:
    def where(loc: tuple[Any, ...]) -> tuple[Path, int | None]:
        return path, next((lines[loc[:n]] for n in range(len(loc), 0, -1) if loc[:n] in lines), None)

    def special(err: dict[str, Any]) -> str | None:
        if err["type"] == "missing" and "waivers" in err["loc"]:
            return "this key is required (every waiver names id, reason, owner and expires)"
        if err["type"].startswith("date"):
            return "not a date; write it as YYYY-MM-DD (e.g. 2027-01-31)"
        return None

    return yamlfile.translate(exc, Policy, where, hidden=("name", "file"), special=special)


def schema() -> dict[str, Any]:
    """JSON Schema of a policy file, for editors."""
    sch = Policy.model_json_schema()
    sch["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    for key in ("name", "file"):
        sch["properties"].pop(key, None)
    return sch
