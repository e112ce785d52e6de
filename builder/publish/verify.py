"""``tfimg verify``: a policy over the evidence of a digest, not a checksum.

It passes when every *required* kind of statement (default: report, sbom, vuln, provenance) has at least
one envelope that is

- signed by a trusted key (one or more ``--key``; every signature is tried with every key), and
- consistent with the image: its subject is the digest; the SBOM names the image's config digest as its
  image id; the vulnerability report is of that image and has RFC 3339 scan times; the report's
  ``build.image_id`` is that config digest; the provenance names the base image by digest, and that
  digest is the one a trusted, consistent report records.

Envelopes signed by other keys are listed as ``other signer`` (and unsigned ones as ``unsigned``): never
a failure, since another publisher (another CI, a second checkout with its own key, ``cosign attest``)
may add statements beside tfimg's. A kind is read from the signed ``predicateType``, never from a hint.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from builder.errors import RegistryError, TfimgError, VerificationFailed
from builder.infra import datafile
from builder.infra.registry_client import INDEX_TYPES, Registry, parse_ref
from builder.publish import signing, statements, store
from builder.publish.statements import BY_PREDICATE, INTOTO_PAYLOAD, KINDS

DEFAULT_REQUIRED = ("report", "sbom", "vuln", "provenance")


@dataclass(frozen=True)
class Judged:
    """One envelope, judged."""

    kind: str                    # from the signed predicateType ('?' when tfimg does not know it)
    found: store.Found
    status: str                  # 'trusted', 'other signer', 'unsigned', 'invalid'
    signer: str | None = None    # the trusted key's file name
    problems: tuple[str, ...] = ()
    predicate: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def ok(self) -> bool:
        return self.status == "trusted" and not self.problems

    def line(self) -> str:
        state = "ok" if self.ok else ("FAIL" if self.status == "trusted" else self.status)
        why = {"trusted": f"signed by {self.signer}", "other signer": "signed by a key not given with --key",
               "unsigned": "no signature"}.get(self.status, "")
        detail = "; ".join(self.problems) if self.problems else why
        if self.status == "trusted" and self.problems:
            detail = f"signed by {self.signer}, but {detail}"
        return f"  {state:<12} {self.kind:<10} {self.found.blob[:19]}  {detail}  ({self.found.where[:28]})"


@dataclass(frozen=True)
class Verdict:
    reference: str
    route: str
    image_id: str | None
    required: tuple[str, ...]
    judged: list[Judged]
    missing: list[str]           # one message per requirement not met

    @property
    def ok(self) -> bool:
        return not self.missing

    def lines(self) -> list[str]:
        head = (f"{self.reference}: {'VERIFIED' if self.ok else 'FAILED'} (required: {', '.join(self.required)}; "
                f"{len(self.judged)} envelope(s), referrers by {self.route} and cosign's .att)")
        return [head, *[j.line() for j in self.judged]]   # what is missing: the error (stderr)

    def error(self) -> VerificationFailed:
        return VerificationFailed(f"{self.reference} does not verify: " + "; ".join(self.missing),
                                  hint="Each required statement needs an envelope signed by a --key that is "
                                       "consistent with the image; `tfimg verify` lists what it found.")


def required_kinds(names: list[str] | None) -> tuple[str, ...]:
    """The ``--require`` list (comma-separated or repeated), checked. Raises TfimgError (exit 2)."""
    kinds = tuple(dict.fromkeys(n.strip() for item in names or [] for n in item.split(",") if n.strip()))
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise TfimgError(f"--require: unknown statement kind(s) {', '.join(unknown)}",
                         hint=f"Choose among {', '.join(KINDS)}.")
    return kinds or DEFAULT_REQUIRED


def _obj(value: Any) -> dict[str, Any]:
    """``value`` when it is a JSON object, else {} (statements are untrusted JSON)."""
    return value if isinstance(value, dict) else {}


def _subject_ok(stmt: dict[str, Any], digest: str) -> bool:
    subjects = stmt.get("subject")
    return isinstance(subjects, list) and any(_obj(_obj(s).get("digest")).get("sha256") == digest.partition(":")[2]
                                              for s in subjects)


def _vuln_problems(p: dict[str, Any], image_id: str | None) -> list[str]:
    meta = _obj(_obj(_obj(p.get("scanner")).get("result")).get("Metadata"))
    out = [] if meta.get("ImageID") == image_id else [f"the vulnerability report is of image {meta.get('ImageID')}"]
    times = _obj(p.get("metadata"))
    parsed = [statements.parse_time(str(times.get(k, ""))) for k in ("scanStartedOn", "scanFinishedOn")]
    if None in parsed:
        out.append("scanStartedOn/scanFinishedOn are not both RFC 3339 timestamps")
    elif parsed[0] > parsed[1]:   # type: ignore[operator]
        out.append("the scan finished before it started")
    return out


def content_problems(kind: str, stmt: dict[str, Any], digest: str, image_id: str | None) -> list[str]:
    """What is inconsistent in a trusted statement about ``digest`` (config digest ``image_id``) (pure)."""
    if not _subject_ok(stmt, digest):
        return [f"its subject is not {digest}"]
    p = _obj(stmt.get("predicate"))
    if kind == "sbom":
        named = statements.sbom_image_id(p)
        return [] if named == image_id else [f"the SBOM describes image {named}, not {image_id}"]
    if kind == "vuln":
        return _vuln_problems(p, image_id)
    if kind == "report":
        named = _obj(_obj(p.get("report")).get("build")).get("image_id")
        return [] if p.get("digest") == digest and named == image_id else \
            [f"the report is of digest {p.get('digest')}, image {named}"]
    if kind == "provenance":
        out = [] if _obj(p.get("buildDefinition")).get("buildType") else ["the provenance has no buildDefinition.buildType"]
        if statements.provenance_base_digest(p) is None:
            out.append("the provenance names no base image digest (resolvedDependencies 'base')")
        return out
    return []


def report_base(p: dict[str, Any]) -> str | None:
    digest = _obj(_obj(_obj(p.get("report")).get("build")).get("base")).get("digest")
    return str(digest) if digest else None


def judge(found: store.Found, keys: list[signing.TrustedKey], digest: str, image_id: str | None) -> Judged:
    try:
        opened = signing.open_envelope(found.raw)
    except ValueError as exc:
        return Judged("?", found, "invalid", problems=(str(exc),))
    stmt = found.statement()
    if opened.payload_type != INTOTO_PAYLOAD or stmt is None:
        return Judged("?", found, "invalid", problems=("not an in-toto statement",))
    kind = BY_PREDICATE.get(str(stmt.get("predicateType")), "?")
    pred = _obj(stmt.get("predicate"))
    signer = signing.signed_by(opened, keys)
    if signer is None:
        return Judged(kind, found, "other signer" if opened.signatures else "unsigned", predicate=pred)
    return Judged(kind, found, "trusted", signer, tuple(content_problems(kind, stmt, digest, image_id)), pred)


def _cross_check(judged: list[Judged], required: tuple[str, ...]) -> list[Judged]:
    """The provenance's base digest must be the one a trusted, consistent report records."""
    bases = {report_base(j.predicate) for j in judged if j.kind == "report" and j.ok} - {None}
    if not bases and "report" not in required:
        return judged
    out = []
    for j in judged:
        base = statements.provenance_base_digest(j.predicate) if j.kind == "provenance" else None
        if j.ok and j.kind == "provenance" and base not in bases:
            j = dataclasses.replace(j, problems=(f"its base digest {base} is not the one the report records "
                                                 f"({', '.join(sorted(str(b) for b in bases)) or 'none'})",))
        out.append(j)
    return out


def _missing(judged: list[Judged], required: tuple[str, ...]) -> list[str]:
    out = []
    for kind in required:
        mine = [j for j in judged if j.kind == kind]
        if any(j.ok for j in mine):
            continue
        counts = {s: sum(j.status == s for j in mine) for s in ("trusted", "other signer", "unsigned")}
        why = [f"{n} {s}" for s, n in counts.items() if n and s != "trusted"]
        bad = next((j.problems[0] for j in mine if j.status == "trusted" and j.problems), None)
        detail = f"signed by a trusted key but {bad}" if bad else \
            "no envelope signed by a trusted key" + (f" ({', '.join(why)})" if why else " (none attached)")
        out.append(f"{kind}: {detail}")
    return out


def image_id_of(reg: Registry, repo: str, digest: str) -> str | None:
    """The config digest of the image manifest ``digest`` (None for an index)."""
    found = reg.manifest(repo, digest)
    if found is None:
        raise RegistryError(f"{reg.host}/{repo}@{digest} is not in the registry", status=404)
    if found[1] in INDEX_TYPES:
        return None
    config = datafile.loads_json(found[0], f"manifest {digest}", what="it").get("config") or {}
    return str(config.get("digest")) if config.get("digest") else None


def verify(text: str, key_paths: list[Path], required: tuple[str, ...] = DEFAULT_REQUIRED) -> Verdict:
    """Judge every envelope attached to ``HOST/NAME@sha256:...`` (or ``:TAG``) against the trusted keys."""
    if not key_paths:
        raise TfimgError("verify needs at least one --key (a PEM public key)")
    keys = [signing.load_public_key(p) for p in key_paths]
    ref = parse_ref(text)
    reg = Registry(ref.host)
    ref = reg.resolve(ref)
    digest = str(ref.digest)
    image_id = image_id_of(reg, ref.repo, digest)
    found, route = store.read(reg, ref.repo, digest)
    judged, missing = judge_all(found, keys, digest, image_id, required)
    return Verdict(f"{ref.name}@{digest}", route, image_id, required, judged, missing)


def judge_all(found: list[store.Found], keys: list[signing.TrustedKey], digest: str, image_id: str | None,
              required: tuple[str, ...] = DEFAULT_REQUIRED) -> tuple[list[Judged], list[str]]:
    """Every envelope judged (the provenance cross-checked with the report) and the requirements not met."""
    judged = _cross_check([judge(f, keys, digest, image_id) for f in found], required)
    return judged, _missing(judged, required)


def require(text: str, key_paths: list[Path], required: tuple[str, ...] = DEFAULT_REQUIRED) -> Verdict:
    """:func:`verify`, raising VerificationFailed (exit 1) naming every requirement not met."""
    v = verify(text, key_paths, required)
    if not v.ok:
        raise v.error()
    return v
