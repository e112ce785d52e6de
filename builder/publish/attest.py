"""Signed evidence: in-toto statements in DSSE envelopes, attached as OCI 1.1 referrers, and verified.

Four statements are attached to every published digest (the subject of each is
that digest):

========== ============================================== =====================================
kind       predicateType                                  predicate
========== ============================================== =====================================
report     https://tfimg.dev/attestations/report/v1       tfimg's evidence document (scan counts)
sbom       https://cyclonedx.org/bom                      CycloneDX JSON from Trivy
vuln       https://cosign.sigstore.dev/attestation/vuln/v1 the Trivy report the gate decided on
provenance https://slsa.dev/provenance/v1                 SLSA v1 build provenance
========== ============================================== =====================================

Each is a DSSE envelope (payloadType ``application/vnd.in-toto+json``), the one
layer of an artifact manifest whose ``artifactType`` and layer media type are
``application/vnd.dsse.envelope.v1+json`` (as cosign stores key-based
attestations), with the annotation ``in-toto.io/predicate-type``. Signing and
verifying use securesystemslib (``CryptoSigner``, ``SSlibKey``, ``dsse.Envelope``);
tfimg does no crypto of its own. The provenance lists the sha256 of the other three
predicates (canonical JSON) as byproducts, so :func:`verify` can tie them together.

The signing key is a PEM private key (ECDSA P-256, Ed25519 or RSA) from a file or from
an environment variable (``--sign-key env:NAME``); an encrypted key's password comes from
``TFIMG_SIGN_KEY_PASSWORD`` (read by the CLI). Neither is ever logged or written anywhere.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from builder import __version__
from builder.errors import EnvError, UnreadableInput, VerificationFailed
from builder.infra import clock, datafile
from builder.infra.registry_client import Ref, Registry, parse_ref
from builder.infra.report_models import JsonObject, Report
from builder.publish import evidence, referrers

DSSE_TYPE = "application/vnd.dsse.envelope.v1+json"
INTOTO_PAYLOAD = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_ANNOTATION = "in-toto.io/predicate-type"
KIND_ANNOTATION = "dev.tfimg.evidence.kind"
PREDICATES = {
    "report": "https://tfimg.dev/attestations/report/v1",
    "sbom": "https://cyclonedx.org/bom",
    "vuln": "https://cosign.sigstore.dev/attestation/vuln/v1",
    "provenance": "https://slsa.dev/provenance/v1",
}
# Attached when there is one, never required by verify: the waivers of the digest as OpenVEX (tfimg publish).
# A later vulnerability statement (tfimg watch) is a `vuln` statement too (builder/publish/watched.py).
OPTIONAL = {"vex": "https://openvex.dev/ns/v0.2.0"}
KINDS = {v: k for k, v in {**PREDICATES, **OPTIONAL}.items()}
BUILD_TYPE = "https://tfimg.dev/buildtypes/docker-buildkit/v1"
PASSWORD_ENV = "TFIMG_SIGN_KEY_PASSWORD"


def canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def predicate_hash(predicate: Any) -> str:
    return hashlib.sha256(canonical(predicate)).hexdigest()


# --------------------------------------------------------------------------- keys

def _pem(source: str) -> bytes:
    """The PEM text named by ``source``: ``env:NAME`` or a file path. Never echoed."""
    if source.startswith("env:"):
        name = source[4:]
        value = os.environ.get(name)
        if not value:
            raise EnvError(f"--sign-key {source}: the environment variable {name} is not set or empty")
        return value.encode()
    path = Path(source).expanduser()
    if not path.is_file():
        raise EnvError(f"--sign-key: no key file at {path}",
                       hint="Give a PEM private key file, or env:NAME for a variable that holds one.")
    return datafile.read_bytes(path, limit=2**20, what="the --sign-key file")


def load_signer(source: str, password: str | None = None) -> Any:
    """A securesystemslib ``CryptoSigner`` for the PEM private key named by ``source`` (``password``:
    an encrypted key's, from ``$TFIMG_SIGN_KEY_PASSWORD``)."""
    from cryptography.hazmat.primitives.serialization import load_pem_private_key
    from securesystemslib.signer import CryptoSigner

    try:
        key = load_pem_private_key(_pem(source), password.encode() if password else None)
    except (ValueError, TypeError) as exc:   # the message names no key material
        raise EnvError(f"--sign-key: not a usable PEM private key ({type(exc).__name__}; an encrypted key "
                       f"needs {PASSWORD_ENV})") from None
    return CryptoSigner(key)


def load_public_key(path: Path) -> Any:
    """A securesystemslib ``SSlibKey`` from a PEM public key file."""
    from cryptography.hazmat.primitives.serialization import load_pem_public_key
    from securesystemslib.signer import SSlibKey

    if not path.is_file():
        raise EnvError(f"--key: no public key file at {path}")
    try:
        pem = datafile.read_bytes(path, limit=2**20, what="the public key file")
    except UnreadableInput as exc:
        raise EnvError(f"--key {path}: {exc.text}") from None
    try:
        return SSlibKey.from_crypto(load_pem_public_key(pem))
    except (ValueError, TypeError) as exc:   # not PEM, or a key type securesystemslib cannot use
        raise EnvError(f"--key {path}: not a usable PEM public key ({exc})") from None


# --------------------------------------------------------------------------- statements

def statement(repository: str, digest: str, kind: str, predicate: dict[str, Any]) -> dict[str, Any]:
    return {"_type": STATEMENT_TYPE,
            "subject": [{"name": repository, "digest": {"sha256": digest.partition(":")[2]}}],
            "predicateType": {**PREDICATES, **OPTIONAL}[kind], "predicate": predicate}


def envelope(stmt: dict[str, Any], signer: Any | None) -> dict[str, Any]:
    """A DSSE envelope of the statement; signed when ``signer`` is given (else no signatures)."""
    from securesystemslib.dsse import Envelope

    env = Envelope(payload=canonical(stmt), payload_type=INTOTO_PAYLOAD, signatures={})
    if signer is not None:
        env.sign(signer)
    return dict(env.to_dict())


def sbom(out_dir: Path) -> JsonObject | None:
    """``build/<variant>/sbom.cdx.json`` (the scan stage writes it: trivy convert of its own report),
    scrubbed; None when there is none."""
    path = out_dir / "sbom.cdx.json"
    if not path.is_file():
        return None
    data: JsonObject = evidence.scrub(datafile.load_json(path, what="the SBOM"))
    return data


def vuln_predicate(rep: Report, trivy: JsonObject | None) -> dict[str, Any]:
    scan = rep.scan
    db = scan.db.model_dump(mode="json") if scan is not None and scan.db is not None else {}
    return {
        "invocation": {"uri": "https://github.com/aquasecurity/trivy", "parameters": None,
                       "event_id": "", "builder.id": f"tfimg {__version__}"},
        "scanner": {"uri": "pkg:github/aquasecurity/trivy", "version": scan.trivy_version if scan else None,
                    "db": {"uri": "", "version": json.dumps(db, sort_keys=True)}, "result": trivy or {}},
        "metadata": {"scanStartedOn": None, "scanFinishedOn": rep.gate.evaluated_on.isoformat()
                     if rep.gate is not None and rep.gate.evaluated_on else None},
    }


def _shown(path: Path) -> str:
    """A variant file's path relative to the working directory when under it (no host layout leaks)."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _file_digest(path: str) -> dict[str, str]:
    p = Path(path)
    return {"sha256": hashlib.sha256(p.read_bytes()).hexdigest()} if p.is_file() else {}


def provenance(rep: Report, *, repository: str, digest: str, chain: list[Path], started: str, finished: str,
               hashes: dict[str, str]) -> dict[str, Any]:
    """SLSA v1 provenance of the published image (pure apart from hashing the variant files)."""
    b = rep.build
    files = [_shown(p) for p in chain] or (list(b.spec_chain) if b else [])
    build_args: dict[str, Any] = {}
    deps: list[dict[str, Any]] = []
    internal: dict[str, Any] = {}
    if b is not None:
        build_args = {"TFIMG_BASE": b.base.ref, "TFIMG_REVISION": b.revision,
                      "TFIMG_BASE_DIGEST": b.base.digest or "unknown",
                      "TFIMG_CREATED": b.labels.get("org.opencontainers.image.created")}
        base_digest = (b.base.digest or "").rpartition("@")[2] or b.base.digest or ""
        deps.append({"uri": f"docker://{b.base.ref}", "name": "base",
                     "digest": {"sha256": base_digest.partition(":")[2]} if base_digest.startswith("sha256:")
                     else {}, "annotations": {"imageId": b.base.id}})
        internal = {"renderedContext": {"sha256": b.context_hash.partition(":")[2] or b.context_hash},
                    "dockerfile": {"sha256": b.dockerfile_hash.partition(":")[2] or b.dockerfile_hash},
                    "specHash": b.spec_hash, "inputHash": b.input_hash, "profile": b.profile,
                    "imageId": b.image_id}
    deps += [{"uri": f"file:{f}", "name": "variant-file", "digest": _file_digest(f)} for f in files]
    predicate: dict[str, Any] = evidence.scrub({
        "buildDefinition": {
            "buildType": BUILD_TYPE,
            "externalParameters": {"variant": b.variant if b else None, "variantFiles": files,
                                   "buildArgs": build_args},
            "internalParameters": internal,
            "resolvedDependencies": deps,
        },
        "runDetails": {
            "builder": {"id": f"https://tfimg.dev/builder/tfimg@{__version__}",
                        "version": {"tfimg": __version__,
                                    **({"docker": b.builder.docker, b.builder.kind: b.builder.version}
                                       if b is not None and b.builder is not None else {})}},
            "metadata": {"invocationId": f"{repository}@{digest}", "startedOn": started, "finishedOn": finished},
            "byproducts": [{"name": kind, "digest": {"sha256": h}, "mediaType": "application/json",
                            "annotations": {"predicateType": PREDICATES[kind]}}
                           for kind, h in sorted(hashes.items())],
        },
    })
    return predicate


@dataclass
class Attached:
    kind: str
    digest: str                 # the artifact manifest's digest
    signed: bool


def attach_all(reg: Registry, subject: Ref, rep: Report, *, chain: list[Path], doc: evidence.Evidence,
               sbom: JsonObject, trivy: JsonObject | None, signer: Any | None, started: str) -> list[Attached]:
    """Make, sign and attach the four statements for ``subject`` (``HOST/NAME@sha256:...``); returns
    what was attached. ``sbom``: the image's CycloneDX SBOM (scrubbed here again)."""
    repo, repository, digest = subject.repo, subject.name, str(subject.digest)
    predicates: dict[str, dict[str, Any]] = {"report": doc.to_json(), "sbom": evidence.scrub(sbom),
                                             "vuln": vuln_predicate(rep, trivy)}
    hashes = {k: predicate_hash(p) for k, p in predicates.items()}
    predicates["provenance"] = provenance(rep, repository=repository, digest=digest, chain=chain,
                                          started=started, finished=clock.now_iso(), hashes=hashes)
    items = []
    for kind in ("report", "sbom", "vuln", "provenance"):
        env = envelope(statement(repository, digest, kind, predicates[kind]), signer)
        items.append((DSSE_TYPE, [(canonical(env), DSSE_TYPE, f"{kind}.intoto.jsonl")],
                      {PREDICATE_ANNOTATION: PREDICATES[kind], KIND_ANNOTATION: kind,
                       referrers.CREATED: clock.now_iso()}))
    pushed = referrers.attach_many(reg, repo, digest, items)
    return [Attached(kind, r.digest, signer is not None)
            for kind, r in zip(("report", "sbom", "vuln", "provenance"), pushed, strict=True)]


# --------------------------------------------------------------------------- verify

@dataclass
class Checked:
    kind: str
    artifact: str
    ok: bool
    why: str
    predicate: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass
class Verdict:
    reference: str
    route: str
    checked: list[Checked]
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems

    def lines(self) -> list[str]:
        out = [f"{self.reference}: {'VERIFIED' if self.ok else 'FAILED'} ({len(self.checked)} statement(s), "
               f"referrers by {self.route})"]
        out += [f"  {'ok  ' if c.ok else 'FAIL'} {c.kind:<10} {c.artifact[:19]}  {c.why}" for c in self.checked]
        out += [f"  problem: {p}" for p in self.problems if not any(p.endswith(c.why) for c in self.checked)]
        return out


def _check_one(reg: Registry, repo: str, digest: str, ref: referrers.Referrer, key: Any) -> Checked:
    from securesystemslib.dsse import Envelope
    from securesystemslib.exceptions import FormatError, VerificationError

    kind = ref.annotations.get(KIND_ANNOTATION) or KINDS.get(ref.annotations.get(PREDICATE_ANNOTATION, ""), "?")
    found = reg.manifest(repo, ref.digest)
    if found is None:
        return Checked(kind, ref.digest, False, "listed as a referrer but the manifest is gone")
    manifest = datafile.loads_json(found[0], f"manifest {ref.digest}", what="it")
    if (manifest.get("subject") or {}).get("digest") != digest:
        return Checked(kind, ref.digest, False, "the artifact's subject is not this digest")
    layer = next((x for x in manifest.get("layers") or [] if x.get("mediaType") == DSSE_TYPE), None)
    if layer is None:
        return Checked(kind, ref.digest, False, "no DSSE envelope layer")
    try:
        env = Envelope.from_dict(datafile.loads_json(reg.blob(repo, layer["digest"]), "the envelope", what="it"))
    except (ValueError, KeyError, TypeError, AttributeError, FormatError) as exc:   # not an envelope
        return Checked(kind, ref.digest, False, f"not a DSSE envelope ({exc})")
    if env.payload_type != INTOTO_PAYLOAD:
        return Checked(kind, ref.digest, False, f"payloadType is {env.payload_type}, not {INTOTO_PAYLOAD}")
    if not env.signatures:
        return Checked(kind, ref.digest, False, "not signed (the envelope has no signature)")
    try:
        env.verify([key], 1)
    except (VerificationError, ValueError):
        return Checked(kind, ref.digest, False, "the signature does not verify with the given key "
                       "(the statement was altered, or signed with another key)")
    try:
        stmt = datafile.loads_json(env.payload, "the signed payload", what="it")
    except ValueError:
        return Checked(kind, ref.digest, False, "the signed payload is not JSON")
    hexes = [(s.get("digest") or {}).get("sha256") for s in stmt.get("subject") or []]
    if digest.partition(":")[2] not in hexes:
        return Checked(kind, ref.digest, False, f"the statement's subject is {hexes}, not {digest}")
    ptype = stmt.get("predicateType")
    if KINDS.get(ptype) != kind:
        return Checked(kind, ref.digest, False, f"predicateType {ptype} does not match the artifact's kind")
    return Checked(kind, ref.digest, True, "signature ok, subject ok", stmt.get("predicate") or {})


def verify(text: str, key_path: Path) -> Verdict:
    """Check every statement attached to ``HOST/NAME@sha256:...`` with the public key."""
    ref = parse_ref(text)
    reg = Registry(ref.host)
    ref = reg.resolve(ref)
    digest = str(ref.digest)
    key = load_public_key(key_path)
    refs, route = referrers.list_referrers(reg, ref.repo, digest)
    dsse = [r for r in refs if r.artifact_type == DSSE_TYPE or PREDICATE_ANNOTATION in r.annotations]
    checked = [_check_one(reg, ref.repo, digest, r, key) for r in dsse]
    problems = [f"{c.kind} ({c.artifact[:19]}): {c.why}" for c in checked if not c.ok]
    good = [c for c in checked if c.ok]
    for kind in PREDICATES:
        if not any(c.kind == kind for c in good):
            problems.append(f"{kind}: no verified statement is attached")
    hashes = {(c.kind, predicate_hash(c.predicate)) for c in good if c.kind != "provenance"}
    for prov in (c for c in good if c.kind == "provenance"):
        for bp in (prov.predicate.get("runDetails") or {}).get("byproducts") or []:
            want = (bp.get("name"), (bp.get("digest") or {}).get("sha256"))
            if want not in hashes:
                problems.append(f"{want[0]}: no attached {want[0]} statement has the sha256 the provenance "
                                f"({prov.artifact[:19]}) records ({str(want[1])[:12]}…)")
    return Verdict(f"{ref.name}@{digest}", route, checked, problems)


def require(text: str, key_path: Path) -> Verdict:
    """:func:`verify`, raising VerificationFailed (exit 1) with every problem named."""
    v = verify(text, key_path)
    if not v.ok:
        raise VerificationFailed(f"{v.reference} does not verify:\n" + "\n".join(f"  - {p}" for p in v.problems))
    return v


def envelope_b64_payload(env: dict[str, Any]) -> dict[str, Any]:
    """The statement inside an envelope dict (no verification; for display and tests)."""
    return dict(datafile.loads_json(base64.b64decode(env["payload"]), "the payload", what="it"))
