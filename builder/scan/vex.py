"""Waivers as OpenVEX (v0.2.0), and OpenVEX documents as waivers. Pure: no I/O, no clock.

:func:`document` states, for the waivers of a policy that apply to one published digest (the gate's
``waived`` findings), what the image's author knows about each vulnerability:

- a waiver with a ``justification`` is ``not_affected`` with that justification and the waiver's reason
  as the impact statement (Trivy's ``--vex`` drops such findings);
- a waiver without one is an accepted risk: ``affected``, with an action statement that names the
  reason, the owner, the expiry and the fixed version.

Each statement names two products: the image (``pkg:oci/NAME@sha256:...?repository_url=HOST/REPO``) with
the package as a subcomponent, which ``trivy image`` matches, and the package itself
(``pkg:pypi/transformers@4.21.3``), which ``trivy sbom`` of the image's SBOM matches (Trivy 0.76 gives
an SBOM's root no image purl, so an image product never matches there). OpenVEX allows no extra keys,
so the owner and the expiry are carried in ``status_notes`` (and in the action statement).

:func:`waivers` reads documents the other way (``tfimg gate --vex``, ``tfimg watch --vex``): each
``not_affected`` or ``fixed`` statement, the latest per vulnerability and product, that covers a finding
becomes a waiver of that finding (owner: the document's author; no expiry of its own).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

from packageurl import PackageURL
from pydantic import BaseModel, ConfigDict, Field, model_validator

from builder.scan.gate import Waived, matches
from builder.scan.policy import Justification, Waiver
from builder.scan.trivy_report import Finding

CONTEXT = "https://openvex.dev/ns/v0.2.0"
PREDICATE_TYPE = CONTEXT          # the in-toto predicateType of an OpenVEX document (as vexctl attests it)
SUPPRESSING = ("not_affected", "fixed")
NO_EXPIRY = dt.date.max           # a VEX statement does not expire; the gate's waiver needs a date
Status = Literal["not_affected", "affected", "fixed", "under_investigation"]


class _Vex(BaseModel):
    """OpenVEX allows no key it does not define (its JSON schema: ``additionalProperties: false``)."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class Vulnerability(_Vex):
    id_: str | None = Field(None, alias="@id")
    name: str = Field(min_length=1)
    description: str | None = None
    aliases: list[str] = Field(default_factory=list)


class Identifiers(_Vex):
    purl: str | None = None
    cpe22: str | None = None
    cpe23: str | None = None


class Subcomponent(_Vex):
    id_: str | None = Field(None, alias="@id")
    identifiers: Identifiers | None = None
    hashes: dict[str, str] | None = None

    @property
    def purl(self) -> str | None:
        """The package URL: ``identifiers.purl``, else ``@id`` when it is one."""
        if self.identifiers is not None and self.identifiers.purl:
            return self.identifiers.purl
        return self.id_ if (self.id_ or "").startswith("pkg:") else None


class Product(Subcomponent):
    subcomponents: list[Subcomponent] = Field(default_factory=list)


class Statement(_Vex):
    id_: str | None = Field(None, alias="@id")
    version: int | None = Field(None, ge=1)
    vulnerability: Vulnerability
    timestamp: str | None = None
    last_updated: str | None = None
    products: list[Product] = Field(default_factory=list)
    status: Status
    supplier: str | None = None
    status_notes: str | None = None
    justification: Justification | None = None
    impact_statement: str | None = None
    action_statement: str | None = None
    action_statement_timestamp: str | None = None

    @model_validator(mode="after")
    def _required_by_status(self) -> Statement:
        if self.status == "not_affected" and not (self.justification or self.impact_statement):
            raise ValueError("a not_affected statement needs a justification or an impact_statement")
        if self.status == "affected" and not self.action_statement:
            raise ValueError("an affected statement needs an action_statement")
        return self


class Document(_Vex):
    """An OpenVEX v0.2.0 document."""

    context: str = Field(alias="@context")
    id_: str = Field(alias="@id")
    author: str
    role: str | None = None
    timestamp: str
    last_updated: str | None = None
    version: int = Field(ge=1)
    tooling: str | None = None
    statements: list[Statement] = Field(min_length=1)

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


def rfc3339(when: dt.datetime) -> str:
    """UTC, seconds, ``Z`` (OpenVEX and in-toto timestamps)."""
    return when.astimezone(dt.timezone.utc).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def canonical_purl(text: str) -> str:
    """A package URL as Trivy writes it (packageurl's canonical encoding); unparsable text as it is."""
    try:
        return str(PackageURL.from_string(text).to_string())
    except ValueError:
        return text


def image_purl(repository: str, digest: str) -> str:
    """``pkg:oci/NAME@sha256:...?repository_url=HOST/REPO`` for ``HOST/REPO`` at ``digest``."""
    return str(PackageURL(type="oci", name=repository.rsplit("/", 1)[-1], version=digest,
                          qualifiers={"repository_url": repository}).to_string())


# --------------------------------------------------------------------------- waivers -> OpenVEX

def document(waived: Sequence[Waived], waivers: Sequence[Waiver], *, repository: str, digest: str,
             author: str, now: dt.datetime, tooling: str) -> Document | None:
    """The OpenVEX document for the vulnerabilities ``waivers`` waive in ``repository@digest``
    (``waived``: the gate's waived findings for that digest); None when no vulnerability is waived."""
    by_id = {w.id: w for w in waivers}
    groups: dict[tuple[str, str], list[Finding]] = {}
    for w in waived:
        if w.finding.kind == "vulnerability" and w.waiver in by_id:
            groups.setdefault((w.waiver, w.finding.id), []).append(w.finding)
    stamp = rfc3339(now)
    image = image_purl(repository, digest)
    statements = [_statement(by_id[wid], found, image, stamp) for (wid, _), found in sorted(groups.items())]
    if not statements:
        return None
    return Document.model_validate({
        "@context": CONTEXT, "@id": f"https://tfimg.dev/vex/{digest.replace(':', '-')}/{stamp}", "author": author,
        "role": "image author", "timestamp": stamp, "version": 1, "tooling": tooling, "statements": statements})


def _statement(w: Waiver, found: list[Finding], image: str, stamp: str) -> dict[str, Any]:
    purls = sorted({canonical_purl(f.purl) for f in found if f.purl})
    first = found[0]
    products: list[dict[str, Any]] = [{"@id": image, "identifiers": {"purl": image},
                                       "subcomponents": [{"@id": p, "identifiers": {"purl": p}} for p in purls]}]
    products += [{"@id": p, "identifiers": {"purl": p}} for p in purls]
    notes = f"tfimg waiver {w.id}: owner {w.owner}, expires {w.expires.isoformat()}"
    out: dict[str, Any] = {
        "vulnerability": {"name": first.id, **({"aliases": sorted(set(first.aliases))} if first.aliases else {})},
        "timestamp": stamp, "products": products, "status_notes": notes}
    if w.justification:
        return {**out, "status": "not_affected", "justification": w.justification, "impact_statement": w.reason}
    fixes = sorted({f"{f.package} {f.fixed}" for f in found if f.fixed})
    action = (f"Accepted risk until {w.expires.isoformat()} (owner {w.owner}): {w.reason.rstrip('.')}."
              + (f" Fix: upgrade {', '.join(fixes)}." if fixes else " No fixed version yet."))
    return {**out, "status": "affected", "action_statement": action, "action_statement_timestamp": stamp}


# --------------------------------------------------------------------------- OpenVEX -> waivers

def _covered(statement: Statement, images: Mapping[str, str]) -> list[str | None] | None:
    """The package purls a statement covers in this image (None in the list: every package), or None
    when none of its products is this image or a package. ``images``: digest -> HOST/REPO of the image
    (and of its base) the findings are in."""
    out: list[str | None] = []
    for product in statement.products:
        purl = product.purl
        if purl is None:
            continue
        try:
            parsed = PackageURL.from_string(purl)
        except ValueError:
            continue
        if parsed.type != "oci":
            out.append(canonical_purl(purl))
            continue
        repo = (parsed.qualifiers or {}).get("repository_url") if isinstance(parsed.qualifiers, dict) else None
        if (parsed.version and parsed.version in images) or (not parsed.version and repo in images.values()):
            subs = [s.purl for s in product.subcomponents if s.purl]
            out += [canonical_purl(s) for s in subs] if product.subcomponents else [None]
    return out or None


def waivers(docs: Iterable[Document], findings: Sequence[Finding], images: Mapping[str, str]) -> list[Waiver]:
    """The waivers the documents' ``not_affected`` and ``fixed`` statements make for ``findings``: the
    latest statement per (vulnerability, product) decides; only waivers that cover a finding are made."""
    latest: dict[tuple[str, str | None], tuple[str, Statement, Document]] = {}
    for doc in docs:
        for st in doc.statements:
            for purl in _covered(st, images) or []:
                for name in (st.vulnerability.name, *st.vulnerability.aliases):
                    key = (name.upper(), purl)
                    when = st.last_updated or st.timestamp or doc.last_updated or doc.timestamp
                    if key not in latest or when >= latest[key][0]:
                        latest[key] = (when, st, doc)
    open_ = {f.key: f for f in findings if f.kind == "vulnerability"}
    out: list[Waiver] = []
    for (name, purl), (_, st, doc) in sorted(latest.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")):
        if st.status not in SUPPRESSING:
            continue
        why = st.justification or st.impact_statement or "fixed"
        w = Waiver(id=name, purl=purl, reason=f"VEX {st.status} ({why}) in {doc.id_}", owner=doc.author,
                   expires=NO_EXPIRY)
        hit = [k for k, f in open_.items() if matches(w, f)]
        if hit:   # one waiver per finding: a second would be listed as stale
            out.append(w)
            for k in hit:
                del open_[k]
    return out
