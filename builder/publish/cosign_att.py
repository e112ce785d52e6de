"""cosign's attestation layout: an image tagged ``sha256-<hex>.att`` whose layers are DSSE envelopes.

This is where ``cosign verify-attestation``, ``cosign tree``, ``cosign download attestation`` and the
policy engines built on cosign's library (Kyverno, the policy-controller) look for attestations signed
with a key (cosign 2.x looks among the referrers only for Sigstore bundles, and only with
``--new-bundle-format``). tfimg writes the very envelopes it attaches as referrers, so both stores hold
the same signed bytes (the same blob digests).

The layout, as ``cosign attest --key`` 2.5.0 writes it (read back from a registry and compared byte for
byte in tests/test_evidence_cosign.py): an OCI image manifest (no ``subject``, no ``artifactType``) whose
config is a synthetic image config (``rootfs.diff_ids`` = the layer digests, one empty history entry per
layer, zero times), and one layer per envelope: media type ``application/vnd.dsse.envelope.v1+json``,
annotations ``dev.cosignproject.cosign/signature: ""`` and ``predicateType``. cosign appends a layer for
each attestation; so does tfimg (merged by digest, never dropping another writer's layer). JSON is
written as Go's encoder writes it (struct fields in declaration order, map keys sorted, ``<>&`` escaped).
"""

from __future__ import annotations

import json
from typing import Any

from builder.infra.registry_client import OCI_MANIFEST, Registry, sha256
from builder.publish import referrers
from builder.publish.signing import DSSE_TYPE

SUFFIX = ".att"
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
PREDICATE_ANNOTATION = "predicateType"
ZERO_TIME = "0001-01-01T00:00:00Z"
_DESCRIPTOR_ORDER = ("mediaType", "size", "digest", "data", "urls", "annotations", "platform", "artifactType")


def tag_for(digest: str) -> str:
    """``sha256:abc...`` -> ``sha256-abc....att``."""
    algo, _, hexpart = digest.partition(":")
    return f"{algo}-{hexpart}{SUFFIX}"


def is_att_tag(tag: str) -> bool:
    return tag.startswith("sha256-") and tag.endswith(SUFFIX)


def go_json(value: Any) -> bytes:
    """JSON as Go's encoding/json writes it (compact; ``<``, ``>``, ``&``, U+2028/9 escaped)."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                          ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(char, escaped)
    return text.encode()


def _descriptor(d: dict[str, Any]) -> dict[str, Any]:
    """A layer descriptor with its keys in go-containerregistry's order, annotations sorted."""
    out = {k: d[k] for k in _DESCRIPTOR_ORDER if k in d}
    if isinstance(out.get("annotations"), dict):
        out["annotations"] = dict(sorted(out["annotations"].items()))
    return out


def layer(envelope: bytes, predicate_type: str) -> dict[str, Any]:
    """The layer descriptor of one envelope, as cosign writes it for a key-signed attestation."""
    return {"mediaType": DSSE_TYPE, "size": len(envelope), "digest": sha256(envelope),
            "annotations": {SIGNATURE_ANNOTATION: "", PREDICATE_ANNOTATION: predicate_type}}


def image(layers: list[dict[str, Any]]) -> tuple[bytes, bytes]:
    """(manifest bytes, config bytes) of the ``.att`` image with these layers (pure)."""
    config = go_json({"architecture": "", "created": ZERO_TIME,
                      "history": [{"created": ZERO_TIME} for _ in layers], "os": "",
                      "rootfs": {"type": "layers", "diff_ids": [lyr["digest"] for lyr in layers]}, "config": {}})
    manifest = go_json({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                        "config": {"mediaType": CONFIG_TYPE, "size": len(config), "digest": sha256(config)},
                        "layers": [_descriptor(lyr) for lyr in layers]})
    return manifest, config


def _body(reg: Registry, repo: str, layers: list[dict[str, Any]]) -> bytes:
    manifest, config = image(layers)
    reg.put_blob(repo, config)
    return manifest


ATT = referrers.TagList("layers", OCI_MANIFEST, _body)


def layers(reg: Registry, repo: str, digest: str) -> list[dict[str, Any]]:
    """The layer descriptors of ``digest``'s ``.att`` image; [] when it has none."""
    found, _ = referrers.read_list(reg, repo, tag_for(digest), ATT)
    return found


def add(reg: Registry, repo: str, digest: str, new: list[dict[str, Any]], *, remove: set[str] | None = None) -> str:
    """Append ``new`` layers (their blobs already in ``repo``) to ``digest``'s ``.att`` image, keeping every
    layer already there (another run's, or ``cosign attest``'s); returns the manifest's digest."""
    _, manifest_digest = referrers.merge_tag(reg, repo, tag_for(digest), new, kind=ATT, remove=remove)
    return manifest_digest


def copy(src: Registry, src_repo: str, dst: Registry, dst_repo: str, digest: str) -> str | None:
    """Copy ``digest``'s ``.att`` layers (and their blobs) into the target's ``.att``; its digest, or None."""
    found = layers(src, src_repo, digest)
    for lyr in found:
        dst.put_blob(dst_repo, src.blob(src_repo, lyr["digest"]))
    return add(dst, dst_repo, digest, found) if found else None
