"""Signed evidence: make the statements of a published digest, sign them, attach them once.

Four statements are attached to every published digest (their subject is that digest; kinds, predicate
types and artifact types: :mod:`builder.publish.statements`): tfimg's report, the CycloneDX SBOM, the
vulnerability statement (cosign's vuln predicate: Trivy's report, the scan's own start and finish) and
SLSA v1 provenance (the build's own start and finish, the base by digest). Each is a DSSE envelope
(:mod:`builder.publish.signing`) kept in the one evidence store (:mod:`builder.publish.store`: a referrer,
and a layer of cosign's ``.att``). The provenance lists the sha256 of the other three predicates
(canonical JSON) as byproducts.

Publishing again is idempotent: a statement whose payload is already attached, signed by the same key
(or unsigned, when publishing unsigned), is not attached again; a statement of another key, or another
content, is added beside the ones there (:mod:`builder.publish.verify` tells signers apart).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from builder.infra import clock, datafile
from builder.infra.registry_client import Ref, Registry
from builder.infra.report_models import JsonObject, Report
from builder.publish import cosign_att, evidence, signing, statements, store
from builder.publish.statements import KINDS, PUBLISHED, canonical, predicate_hash


def sbom(out_dir: Path) -> JsonObject | None:
    """``build/<variant>/sbom.cdx.json`` (the scan stage writes it: trivy convert of its own report),
    scrubbed; None when there is none."""
    path = out_dir / "sbom.cdx.json"
    if not path.is_file():
        return None
    data: JsonObject = evidence.scrub(datafile.load_json(path, what="the SBOM"))
    return data


def title(kind: str, signer: Any | None) -> str:
    """The envelope's file name: ``<kind>.<keyid[:8]>.json`` when signed (in-toto's naming of one
    functionary's envelope), ``<kind>.json`` when not."""
    keyid = signing.key_id(signer)
    return f"{kind}.{keyid[:8]}.json" if keyid else f"{kind}.json"


def payloads(rep: Report, *, repository: str, digest: str, chain: list[Path], doc: evidence.Evidence,
             sbom: JsonObject, trivy: JsonObject | None) -> dict[str, dict[str, Any]]:
    """The four statements about ``digest`` (pure apart from hashing the variant files)."""
    predicates: dict[str, dict[str, Any]] = {
        "report": doc.to_json(), "sbom": statements.sbom_predicate(evidence.scrub(sbom)),
        "vuln": evidence.scrub(statements.vuln_predicate(rep, trivy))}
    hashes = {k: predicate_hash(p) for k, p in predicates.items()}
    predicates["provenance"] = evidence.scrub(statements.provenance(rep, repository=repository, digest=digest,
                                                                    chain=chain, hashes=hashes))
    return {k: statements.statement(repository, digest, k, predicates[k]) for k in PUBLISHED}


@dataclass(frozen=True)
class Attached:
    kind: str
    digest: str                 # the referrer's manifest digest
    signed: bool
    existing: bool = False      # the same statement, same signer, was already attached


def _already(found: list[store.Found], want: dict[str, bytes], signer: Any | None) -> dict[str, store.Found]:
    """kind -> an attached referrer whose payload is ``want[kind]`` and whose signer is ``signer``."""
    mine = [signing.signer_key(signer)] if signer is not None else []
    out: dict[str, store.Found] = {}
    for f in found:
        try:
            opened = signing.open_envelope(f.raw)
        except ValueError:
            continue
        kind = next((k for k, p in want.items() if p == opened.payload), None)
        if kind is None or f.artifact is None or kind in out:
            continue
        if (signing.signed_by(opened, mine) is not None) if mine else not opened.signatures:
            out[kind] = f
    return out


def attach_all(reg: Registry, subject: Ref, rep: Report, *, chain: list[Path], doc: evidence.Evidence,
               sbom: JsonObject, trivy: JsonObject | None, signer: Any | None) -> tuple[list[Attached], str]:
    """Make, sign and attach the four statements for ``subject`` (``HOST/NAME@sha256:...``), each unless
    the very statement of the same signer is there already. Returns them and the ``.att`` manifest digest."""
    repo, digest = subject.repo, str(subject.digest)
    stmts = payloads(rep, repository=subject.name, digest=digest, chain=chain, doc=doc, sbom=sbom, trivy=trivy)
    want = {k: canonical(s) for k, s in stmts.items()}
    there = _already(store.read(reg, repo, digest, set(PUBLISHED))[0], want, signer)
    items = [store.Item(k, signing.envelope(stmts[k], signer), title(k, signer)) for k in PUBLISHED if k not in there]
    done = store.attach(reg, repo, digest, items, clock.now_rfc3339z()) if items else None
    # the .att image holds the ones already attached too (a no-op unless it lost them)
    att = cosign_att.add(reg, repo, digest, [cosign_att.layer(f.raw, KINDS[k].predicate_type) for k, f in there.items()]) \
        if there else (done.att if done else "")
    new = dict(zip([i.kind for i in items], done.referrers if done else [], strict=True))
    return [Attached(k, str(there[k].artifact), signer is not None, True) if k in there
            else Attached(k, new[k].digest, signer is not None) for k in PUBLISHED], att


def attach_one(reg: Registry, subject: Ref, kind: str, predicate: dict[str, Any], signer: Any | None,
               created: str, annotations: dict[str, str] | None = None) -> Attached:
    """Attach one more statement of ``kind`` (a watch's vuln statement, an OpenVEX document) to ``subject``,
    to both indexes of the store, unless the very statement of the same signer is there already."""
    repo, digest = subject.repo, str(subject.digest)
    stmt = statements.statement(subject.name, digest, kind, predicate)
    there = _already(store.read(reg, repo, digest, {kind})[0], {kind: canonical(stmt)}, signer)
    if kind in there:
        return Attached(kind, str(there[kind].artifact), signer is not None, True)
    item = store.Item(kind, signing.envelope(stmt, signer), title(kind, signer), tuple((annotations or {}).items()))
    return Attached(kind, store.attach(reg, repo, digest, [item], created).referrers[0].digest, signer is not None)
