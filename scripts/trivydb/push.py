#!/usr/bin/env python3
"""Push a Trivy DB directory to a registry as the `trivy-db` OCI artifact.

    push.py DB_DIR HOST[:PORT]/NAME:TAG      e.g. build/trivydb/x/db 127.0.0.1:5000/tfimg/trivy-db:2

DB_DIR holds trivy.db and metadata.json. They are packed the way aquasec
publishes ghcr.io/aquasecurity/trivy-db:2 (trivy-db's Makefile `db-compress`
and cron workflow `oras push --artifact-type application/vnd.aquasec.trivy.config.v1+json
... db.tar.gz:application/vnd.aquasec.trivy.db.layer.v1.tar+gzip`): an OCI image
manifest whose config is `{}` with media type
application/vnd.aquasec.trivy.config.v1+json and whose one layer is db.tar.gz
(trivy.db and metadata.json at the tar root) with media type
application/vnd.aquasec.trivy.db.layer.v1.tar+gzip and the annotation
org.opencontainers.image.title=db.tar.gz. Trivy (pkg/oci/artifact.go) insists on
exactly one layer, that media type, and takes the file name from that annotation
(the .tar.gz suffix is what makes it unpack the layer).

The tarball is reproducible (fixed mtimes, owners and gzip header), so the same
DB gives the same digest; the push is skipped when the tag already points at it.
Plain HTTP for 127.0.0.1/localhost (or TFIMG_REGISTRY_PLAIN_HTTP=1), HTTPS else.
Credentials: TFIMG_REGISTRY_USER / TFIMG_REGISTRY_PASSWORD (Basic, or Bearer
token auth as distribution's token server does); they are never printed.
Prints HOST/NAME:TAG@sha256:... on stdout.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import sys
import tarfile
from pathlib import Path

import requests

CONFIG_MEDIA_TYPE = "application/vnd.aquasec.trivy.config.v1+json"
LAYER_MEDIA_TYPE = "application/vnd.aquasec.trivy.db.layer.v1.tar+gzip"
MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
TITLE = "org.opencontainers.image.title"


def die(msg: str, code: int = 2) -> None:
    print(f"push: {msg}", file=sys.stderr)
    sys.exit(code)


def say(msg: str) -> None:
    print(f"push: {msg}", file=sys.stderr)


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def pack(db_dir: Path) -> bytes:
    """db.tar.gz: trivy.db and metadata.json at the root, byte-for-byte reproducible."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name in ("trivy.db", "metadata.json"):
            path = db_dir / name
            if not path.is_file():
                die(f"{path} is missing")
            data = path.read_bytes()
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))
    out = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0) as gz:
        gz.write(raw.getvalue())
    return out.getvalue()


def parse_ref(ref: str) -> tuple[str, str, str]:
    m = re.fullmatch(r"([^/]+)/([a-z0-9]+(?:[._/-][a-z0-9]+)*):([\w][\w.-]{0,127})", ref)
    if not m or ("." not in m[1] and ":" not in m[1] and m[1] != "localhost"):
        die(f"not a HOST[:PORT]/NAME:TAG reference: {ref}")
    return m[1], m[2], m[3]


class Registry:
    def __init__(self, host: str, name: str):
        plain = os.environ.get("TFIMG_REGISTRY_PLAIN_HTTP") == "1" or re.match(
            r"^(127\.\d+\.\d+\.\d+|localhost|\[::1\])(:\d+)?$", host)
        self.base = f"{'http' if plain else 'https'}://{host}/v2/{name}"
        self.name = name
        self.session = requests.Session()
        self.session.headers["User-Agent"] = "tfimg-trivydb-push"
        user, password = os.environ.get("TFIMG_REGISTRY_USER"), os.environ.get("TFIMG_REGISTRY_PASSWORD")
        self.creds = (user, password) if user and password else None
        self.token: str | None = None

    def _auth(self, resp: requests.Response) -> bool:
        """Answer a 401 challenge once; True if we can retry."""
        challenge = resp.headers.get("WWW-Authenticate", "")
        if not self.creds:
            die(f"{resp.url.split('?')[0]}: 401 Unauthorized; set TFIMG_REGISTRY_USER "
                "and TFIMG_REGISTRY_PASSWORD")
        if challenge.lower().startswith("basic"):
            if self.session.auth:
                return False
            self.session.auth = self.creds
            return True
        if challenge.lower().startswith("bearer") and not self.token:
            params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
            realm = params.pop("realm", None)
            if not realm:
                return False
            params.setdefault("scope", f"repository:{self.name}:pull,push")
            r = requests.get(realm, params=params, auth=self.creds, timeout=30)
            if r.status_code != 200:
                die(f"token request to {realm} failed: HTTP {r.status_code}")
            body = r.json()
            self.token = body.get("token") or body.get("access_token")
            self.session.headers["Authorization"] = f"Bearer {self.token}"
            return True
        return False

    def request(self, method: str, url: str, **kw) -> requests.Response:
        kw.setdefault("timeout", 120)
        for _ in range(3):
            try:
                resp = self.session.request(method, url, **kw)
            except requests.ConnectionError as exc:
                die(f"cannot reach {url.split('/v2/')[0]}: {exc.__class__.__name__}")
            if resp.status_code != 401:
                return resp
            if not self._auth(resp):
                break
        die(f"{url.split('?')[0]}: 401 Unauthorized with the credentials in "
            "TFIMG_REGISTRY_USER/TFIMG_REGISTRY_PASSWORD")
        raise AssertionError  # unreachable

    def url(self, path: str) -> str:
        return f"{self.base}/{path}"

    def push_blob(self, data: bytes, digest: str) -> None:
        if self.request("HEAD", self.url(f"blobs/{digest}")).status_code == 200:
            say(f"blob {digest[:19]} already there")
            return
        r = self.request("POST", self.url("blobs/uploads/"))
        if r.status_code != 202:
            die(f"upload start failed: HTTP {r.status_code} {r.text[:200]}")
        location = r.headers["Location"]
        if location.startswith("/"):
            location = self.base.split("/v2/")[0] + location
        sep = "&" if "?" in location else "?"
        r = self.request("PUT", f"{location}{sep}digest={digest}", data=data,
                         headers={"Content-Type": "application/octet-stream"})
        if r.status_code != 201:
            die(f"blob upload failed: HTTP {r.status_code} {r.text[:200]}")
        say(f"pushed blob {digest[:19]} ({len(data)} bytes)")

    def manifest_digest(self, tag: str) -> str | None:
        r = self.request("HEAD", self.url(f"manifests/{tag}"), headers={"Accept": MANIFEST_MEDIA_TYPE})
        return r.headers.get("Docker-Content-Digest") if r.status_code == 200 else None

    def put_manifest(self, tag: str, body: bytes) -> None:
        r = self.request("PUT", self.url(f"manifests/{tag}"), data=body,
                         headers={"Content-Type": MANIFEST_MEDIA_TYPE})
        if r.status_code != 201:
            die(f"manifest upload failed: HTTP {r.status_code} {r.text[:300]}")


def main() -> None:
    if len(sys.argv) != 3:
        die("usage: push.py DB_DIR HOST[:PORT]/NAME:TAG", 64)
    db_dir, ref = Path(sys.argv[1]), sys.argv[2]
    host, name, tag = parse_ref(ref)
    layer = pack(db_dir)
    config = b"{}"
    meta = json.loads((db_dir / "metadata.json").read_text())
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": {"mediaType": CONFIG_MEDIA_TYPE, "digest": sha256(config), "size": len(config)},
        "layers": [{"mediaType": LAYER_MEDIA_TYPE, "digest": sha256(layer), "size": len(layer),
                    "annotations": {TITLE: "db.tar.gz"}}],
        "annotations": {"org.opencontainers.image.created": meta.get("UpdatedAt", "")},
    }
    body = json.dumps(manifest, separators=(",", ":"), sort_keys=True).encode()
    digest = sha256(body)
    reg = Registry(host, name)
    if reg.manifest_digest(tag) == digest:
        say(f"{host}/{name}:{tag} already is {digest}; nothing pushed")
    else:
        reg.push_blob(config, sha256(config))
        reg.push_blob(layer, sha256(layer))
        reg.put_manifest(tag, body)
        say(f"pushed {host}/{name}:{tag} ({digest})")
    print(f"{host}/{name}:{tag}@{digest}")


if __name__ == "__main__":
    main()
