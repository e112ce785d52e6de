"""OCI 1.1 referrers: attach artifacts to a digest (``subject``) and list them again.

An artifact is an OCI image manifest with ``artifactType``, the empty config
(``application/vnd.oci.empty.v1+json``), its layers, and ``subject`` (the
descriptor of the image manifest). It is pushed by digest (no tag). Then:

- a registry that serves the referrers API (``GET /v2/<name>/referrers/<digest>``)
  answers the manifest PUT with an ``OCI-Subject`` header and indexes it itself;
- otherwise (distribution 2.8 here) the spec's *referrers tag schema* is kept: an
  image index tagged ``sha256-<hex>`` whose ``manifests`` list every referrer.
  :func:`add_to_index` updates it read-modify-write: read (with its digest), merge,
  re-read right before the PUT and start again if it moved (sends ``If-Match`` for
  registries that honour it), PUT, then wait a moment and re-read to verify that its
  entries and every entry it had read are still there; merge again when another
  writer's PUT won. Entries are only ever added by digest, so merges commute.

Why not the ``oras`` PyPI SDK (oras 0.2.43, looked at for this): its ``push`` takes
files from disk and sets no ``artifactType``; it has no referrers API call, no tag
schema fallback and no conditional update, and its auth does not share this
client's retry rules (:mod:`builder.infra.registry_client`). What is left to do
here (one blob PUT, one manifest PUT, an index merge) is small, so the hand-written
client does it.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from builder.errors import RegistryError
from builder.infra import datafile
from builder.infra.registry_client import OCI_INDEX, OCI_MANIFEST, Registry, sha256

EMPTY_TYPE = "application/vnd.oci.empty.v1+json"
EMPTY = b"{}"
TITLE = "org.opencontainers.image.title"
CREATED = "org.opencontainers.image.created"


def fallback_tag(digest: str) -> str:
    """``sha256:abc...`` -> ``sha256-abc...`` (the referrers tag schema)."""
    algo, _, hexpart = digest.partition(":")
    return f"{algo}-{hexpart}"


@dataclass(frozen=True)
class Referrer:
    """One referrer of a digest, as the referrers API (or the fallback index) lists it."""

    digest: str
    artifact_type: str
    size: int
    annotations: dict[str, str]
    media_type: str = OCI_MANIFEST

    def descriptor(self) -> dict[str, Any]:
        d: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size,
                             "artifactType": self.artifact_type}
        if self.annotations:
            d["annotations"] = dict(self.annotations)
        return d

    @classmethod
    def of(cls, d: dict[str, Any]) -> Referrer:
        return cls(str(d["digest"]), str(d.get("artifactType") or ""), int(d.get("size") or 0),
                   dict(d.get("annotations") or {}), str(d.get("mediaType") or OCI_MANIFEST))


def subject_of(reg: Registry, repo: str, digest: str) -> dict[str, Any]:
    found = reg.manifest(repo, digest)
    if found is None:
        raise RegistryError(f"{reg.host}/{repo}@{digest} is not in the registry", status=404)
    return {"mediaType": found[1], "digest": digest, "size": len(found[0])}


def artifact_manifest(subject: dict[str, Any], artifact_type: str, layers: list[dict[str, Any]],
                      annotations: dict[str, str]) -> bytes:
    """The bytes of an OCI 1.1 artifact manifest (pure)."""
    manifest = {
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": artifact_type,
        "config": {"mediaType": EMPTY_TYPE, "digest": sha256(EMPTY), "size": len(EMPTY), "data": "e30="},
        "layers": layers, "subject": subject, "annotations": annotations,
    }
    return json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()


def push_artifact(reg: Registry, repo: str, subject: dict[str, Any], artifact_type: str,
                  blobs: list[tuple[bytes, str, str]], annotations: dict[str, str]) -> tuple[Referrer, bool]:
    """Push blobs ``(data, media type, title)`` and the artifact manifest (by digest).

    Returns the referrer and whether the registry indexed it itself (``OCI-Subject`` answered).
    """
    layers = [{"mediaType": media, "digest": reg.put_blob(repo, data), "size": len(data),
               "annotations": {TITLE: title}} for data, media, title in blobs]
    reg.put_blob(repo, EMPTY)
    body = artifact_manifest(subject, artifact_type, layers, annotations)
    digest = sha256(body)
    resp = reg.request("PUT", f"/v2/{repo}/manifests/{digest}", repo=repo, push=True,
                       headers={"Content-Type": OCI_MANIFEST}, data=body, ok=(201, 200))
    served = bool(resp is not None and resp.headers.get("OCI-Subject"))
    return Referrer(digest, artifact_type, len(body), annotations), served


# --------------------------------------------------------------------------- lists under a tag

@dataclass(frozen=True)
class TagList:
    """A manifest under a tag that lists descriptors, merged by digest: the referrers tag schema's index
    (``manifests``) or cosign's ``.att`` image (``layers``). ``body`` pushes what the manifest needs (a
    config blob) and returns its bytes."""

    field: str
    media_type: str
    body: Callable[[Registry, str, list[dict[str, Any]]], bytes]


def _index_body(reg: Registry, repo: str, entries: list[dict[str, Any]]) -> bytes:
    return json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries},
                      sort_keys=True, separators=(",", ":")).encode()


INDEX = TagList("manifests", OCI_INDEX, _index_body)


def read_list(reg: Registry, repo: str, tag: str, kind: TagList = INDEX) -> tuple[list[dict[str, Any]], str | None]:
    """The descriptors listed under ``tag`` and the manifest's digest; ([], None) when there is none."""
    found = reg.manifest(repo, tag)
    if found is None:
        return [], None
    entries = datafile.loads_json(found[0], f"manifest {repo}:{tag}", what="it").get(kind.field) or []
    return [e for e in entries if isinstance(e, dict) and isinstance(e.get("digest"), str)], found[2]


def merge(current: list[dict[str, Any]], add: list[dict[str, Any]], remove: set[str] = frozenset()  # type: ignore[assignment]
          ) -> list[dict[str, Any]]:
    """``current`` plus ``add`` (by digest, first wins), less ``remove`` (pure)."""
    seen: set[str] = set()
    out = []
    for d in [*current, *add]:
        if d["digest"] in seen or d["digest"] in remove:
            continue
        seen.add(d["digest"])
        out.append(d)
    return out


def merge_tag(reg: Registry, repo: str, tag: str, add: list[dict[str, Any]], *, kind: TagList = INDEX,
              remove: set[str] | None = None, tries: int = 12, settle: float = 0.3,
              sleep: Callable[[float], None] = time.sleep) -> tuple[list[str], str]:
    """Add the descriptors ``add`` to the list under ``tag`` without losing other writers' entries
    (less ``remove``: entries this writer replaced). Returns the digests listed and the manifest's digest.

    Read (with its digest), merge, re-read right before the PUT and start again if it moved (sends
    ``If-Match`` for registries that honour it), PUT, then wait a moment and re-read to verify that its
    entries and every entry it had read are still there; merge again when another writer's PUT won.
    Entries are only ever added by digest, so merges commute. Raises RegistryError after ``tries`` rounds.
    """
    drop = set(remove or ())
    want = {d["digest"] for d in add}
    for attempt in range(tries):
        current, seen_digest = read_list(reg, repo, tag, kind)
        merged = merge(current, add, drop)
        if seen_digest is not None and merged == current:
            return [d["digest"] for d in current], seen_digest        # nothing to change
        if reg.digest_of(repo, tag) != seen_digest:
            continue                                                   # moved under us: merge again
        headers = {"Content-Type": kind.media_type}
        if seen_digest:
            headers["If-Match"] = f'"{seen_digest}"'                 # honoured by registries that support it
        resp = reg.request("PUT", f"/v2/{repo}/manifests/{tag}", repo=repo, push=True, headers=headers,
                           data=kind.body(reg, repo, merged), ok=(201, 200), absent=(412,))
        if resp is None:                                             # 412 Precondition Failed: someone else wrote
            sleep(random.uniform(0, settle))
            continue
        sleep(settle + random.uniform(0, settle))                    # let a concurrent PUT land, then look again
        after, after_digest = read_list(reg, repo, tag, kind)
        listed = {d["digest"] for d in after}
        kept = {d["digest"] for d in current} - drop
        if want <= listed and kept <= listed and not (listed & drop) and after_digest:
            return [d["digest"] for d in after], after_digest
        sleep(random.uniform(0, settle) * (attempt + 1))
    raise RegistryError(f"could not update {reg.host}/{repo}:{tag} after {tries} tries "
                        "(other writers kept replacing it)", hint="Publish again; entries are only ever added.")


def add_to_index(reg: Registry, repo: str, digest: str, add: list[Referrer], *, remove: set[str] | None = None,
                 tries: int = 12, settle: float = 0.3, sleep: Callable[[float], None] = time.sleep) -> list[str]:
    """Add ``add`` to the referrers tag schema's index of ``digest`` (:func:`merge_tag`); the digests listed."""
    listed, _ = merge_tag(reg, repo, fallback_tag(digest), [r.descriptor() for r in add], remove=remove,
                          tries=tries, settle=settle, sleep=sleep)
    return listed


# --------------------------------------------------------------------------- listing

def api_referrers(reg: Registry, repo: str, digest: str, artifact_type: str | None = None) -> list[Referrer] | None:
    """The referrers API's answer (``?artifactType=`` when given), or None when the registry does not serve
    it (404 etc.)."""
    query = f"?artifactType={quote(artifact_type, safe='')}" if artifact_type else ""
    try:
        resp = reg.request("GET", f"/v2/{repo}/referrers/{digest}{query}", repo=repo, absent=(404, 400, 405),
                           headers={"Accept": OCI_INDEX})
    except RegistryError:
        return None
    if resp is None or not resp.headers.get("Content-Type", "").startswith(OCI_INDEX):
        return None
    listed = datafile.loads_json(resp.content, "the referrers answer", what="it").get("manifests") or []
    return [Referrer.of(d) for d in listed if isinstance(d, dict) and isinstance(d.get("digest"), str)]


def list_referrers(reg: Registry, repo: str, digest: str, artifact_type: str | None = None
                   ) -> tuple[list[Referrer], str]:
    """(referrers, route): by the referrers API when served ('api'), else the tag schema ('tag-schema');
    only those of ``artifact_type`` when given (the client filters too: not every registry does)."""
    found = api_referrers(reg, repo, digest, artifact_type)
    route = "api"
    if found is None:
        entries, _ = read_list(reg, repo, fallback_tag(digest))
        found, route = [Referrer.of(d) for d in entries], "tag-schema"
    return [r for r in found if artifact_type is None or r.artifact_type == artifact_type], route


def attach(reg: Registry, repo: str, digest: str, artifact_type: str, blobs: list[tuple[bytes, str, str]],
           annotations: dict[str, str]) -> Referrer:
    """Push one artifact whose subject is ``digest`` and make it discoverable by either route."""
    return attach_many(reg, repo, digest, [(artifact_type, blobs, annotations)])[0]


def attach_many(reg: Registry, repo: str, digest: str,
                items: list[tuple[str, list[tuple[bytes, str, str]], dict[str, str]]]) -> list[Referrer]:
    """Push several artifacts for ``digest``, then update the fallback index once (when needed)."""
    subject = subject_of(reg, repo, digest)
    pushed, served = [], True
    for artifact_type, blobs, notes in items:
        ref, api = push_artifact(reg, repo, subject, artifact_type, blobs, notes)
        pushed.append(ref)
        served = served and api
    if not served:
        add_to_index(reg, repo, digest, pushed)
    return pushed


def copy_referrers(src: Registry, src_repo: str, dst: Registry, dst_repo: str, digest: str) -> list[Referrer]:
    """Copy every referrer of ``digest`` (manifests and their blobs) to another repository.

    The digest must already be there (copied with ``--preserve-digests``); the referrers keep theirs.
    """
    refs, _ = list_referrers(src, src_repo, digest)
    copied, served = [], True
    for ref in refs:
        found = src.manifest(src_repo, ref.digest)
        if found is None:
            continue
        manifest = datafile.loads_json(found[0], f"manifest {ref.digest}", what="it")
        for blob in [manifest.get("config") or {}, *(manifest.get("layers") or [])]:
            if blob.get("digest"):
                dst.put_blob(dst_repo, src.blob(src_repo, blob["digest"]))
        resp = dst.request("PUT", f"/v2/{dst_repo}/manifests/{ref.digest}", repo=dst_repo, push=True,
                           headers={"Content-Type": found[1]}, data=found[0], ok=(201, 200))
        served = served and bool(resp is not None and resp.headers.get("OCI-Subject"))
        copied.append(ref)
    if copied and not served:
        add_to_index(dst, dst_repo, digest, copied)
    return copied
