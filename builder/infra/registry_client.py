"""A small client for the registry HTTP API v2, with retries and docker-config credentials.

Credentials come only from the docker config (:mod:`builder.infra.credentials`);
they are never taken from the command line and never logged. Plain HTTP is used for loopback registries only
(``127.0.0.1:PORT``, ``localhost:PORT``); every other host is HTTPS.

Transient failures (connection errors, timeouts, HTTP 429 and 5xx) are retried
with exponential backoff by :func:`with_retry`; 401/403/404 are definitive.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TypeVar

import requests

from builder.errors import RegistryError, TransientError
from builder.infra import datafile
from builder.infra.credentials import credentials

log = logging.getLogger(__name__)
T = TypeVar("T")

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MANIFEST_TYPES = (OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST)
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}")   # always re.fullmatch
LOOPBACK = re.compile(r"(127\.\d+\.\d+\.\d+|localhost|\[::1\])(:\d+)?")   # always re.fullmatch


# --------------------------------------------------------------------------- references

@dataclass(frozen=True)
class Ref:
    """``host/repo[:tag][@digest]``; the host is required (tfimg never guesses Docker Hub)."""

    host: str
    repo: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        return f"{self.host}/{self.repo}"

    def __str__(self) -> str:
        return self.name + (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")

    def at(self, *, tag: str | None = None, digest: str | None = None) -> Ref:
        return replace(self, tag=tag, digest=digest)


def parse_ref(text: str) -> Ref:
    """Parse ``HOST[:PORT]/NAME[:TAG][@sha256:...]``. Raises RegistryError when malformed."""
    rest, _, digest = text.partition("@")
    host, _, path = rest.partition("/")
    if not path or not ("." in host or ":" in host or host == "localhost"):
        raise RegistryError(f"'{text}' does not name a registry host; write HOST[:PORT]/NAME, "
                            "e.g. 127.0.0.1:5000/team/bert")
    tag = None
    if ":" in path.rsplit("/", 1)[-1]:
        path, _, tag = path.rpartition(":")
    if not re.fullmatch(r"[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*", path):
        raise RegistryError(f"'{path}' is not a repository name (lowercase letters, digits, '.', '_', '-', '/')")
    if digest and not DIGEST_RE.fullmatch(digest):
        raise RegistryError(f"'{digest}' is not a sha256 digest (sha256: and 64 hex digits)")
    return Ref(host, path, tag or None, digest or None)


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------- retry

def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, TransientError):
        return True
    return isinstance(exc, (requests.ConnectionError, requests.Timeout))


def with_retry(fn: Callable[[], T], *, attempts: int = 5, base_delay: float = 0.5, max_delay: float = 8.0,
               sleep: Callable[[float], None] = time.sleep,
               transient: Callable[[BaseException], bool] = is_transient, what: str = "request") -> T:
    """Call ``fn``; retry transient failures with exponential backoff (base, 2x, 4x ... max)."""
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except Exception as exc:
            if not transient(exc) or attempt == attempts:
                raise
            delay = min(max_delay, base_delay * 2 ** (attempt - 1))
            log.warning("%s failed (%s); retry %d/%d in %.1f s", what, exc, attempt, attempts - 1, delay)
            sleep(delay)
    raise AssertionError("unreachable")


# --------------------------------------------------------------------------- client

class Registry:
    """One registry host. Keeps bearer tokens per scope; retries transient failures."""

    def __init__(self, host: str, *, attempts: int = 5, base_delay: float = 0.5,
                 sleep: Callable[[float], None] = time.sleep, timeout: float = 60) -> None:
        self.host = host
        self.base = ("http://" if LOOPBACK.fullmatch(host) else "https://") + host
        self.attempts, self.base_delay, self.sleep, self.timeout = attempts, base_delay, sleep, timeout
        self.session = requests.Session()
        self._auth: dict[str, str] = {}

    # -- transport
    def request(self, method: str, path: str, *, repo: str | None = None, push: bool = False,
                headers: dict[str, str] | None = None, data: bytes | None = None,
                ok: tuple[int, ...] = (200,), absent: tuple[int, ...] = ()) -> requests.Response | None:
        """Send with auth and retries. Returns None for a status in ``absent`` (e.g. 404)."""
        scope = f"repository:{repo}:{'pull,push' if push else 'pull'}" if repo else "registry:catalog:*"
        url = path if path.startswith("http") else self.base + path

        def once() -> requests.Response | None:
            resp = self._send(method, url, scope, headers, data)
            if resp.status_code in ok:
                return resp
            if resp.status_code in absent:
                return None
            raise self._error(method, url, resp)

        return with_retry(once, attempts=self.attempts, base_delay=self.base_delay, sleep=self.sleep,
                          what=f"{method} {url}")

    def _send(self, method: str, url: str, scope: str, headers: dict[str, str] | None,
              data: bytes | None) -> requests.Response:
        hdrs = dict(headers or {})
        if scope in self._auth:
            hdrs["Authorization"] = self._auth[scope]
        resp = self.session.request(method, url, headers=hdrs, data=data, timeout=self.timeout,
                                    allow_redirects=True)
        if resp.status_code == 401:   # no credentials sent yet, or a bearer token that expired
            auth = self._authorize(resp.headers.get("WWW-Authenticate", ""), scope)
            if auth and auth != hdrs.get("Authorization"):
                self._auth[scope] = auth
                resp = self.session.request(method, url, headers={**hdrs, "Authorization": auth},
                                            data=data, timeout=self.timeout)
        return resp

    def _authorize(self, challenge: str, scope: str) -> str | None:
        creds = credentials(self.host)
        scheme, _, params = challenge.partition(" ")
        if scheme.lower() == "basic":
            if not creds:
                return None
            return "Basic " + base64.b64encode(f"{creds[0]}:{creds[1]}".encode()).decode()
        if scheme.lower() != "bearer":
            return None
        fields = dict(re.findall(r'(\w+)="([^"]*)"', params))
        query = {"service": fields.get("service", ""), "scope": fields.get("scope", scope)}
        resp = self.session.get(fields.get("realm", ""), params=query, timeout=self.timeout,
                                auth=creds if creds else None)
        if resp.status_code != 200:
            return None
        body = datafile.loads_json(resp.content, "the token answer", what="it")
        return "Bearer " + str(body.get("token") or body.get("access_token", ""))

    def _error(self, method: str, url: str, resp: requests.Response) -> RegistryError:
        status = resp.status_code
        try:
            detail = "; ".join(e.get("message", "") for e in datafile.loads_json(resp.content, "the error answer", what="it").get("errors", []))
        except ValueError:
            detail = resp.text[:200]
        msg = f"{method} {url} -> HTTP {status}" + (f": {detail}" if detail else "")
        if status == 429 or status >= 500:
            return TransientError(msg, status=status)
        hint = None
        if status == 401:
            hint = (f"Log in with `docker login {self.host}` (tfimg reads credentials only from the docker "
                    "config and its credential helpers)." if credentials(self.host) is None
                    else f"The credentials stored for {self.host} were rejected; run `docker login {self.host}` again.")
        elif status == 403:
            hint = "The account has no permission for this repository or action."
        elif status == 405:
            hint = "The registry does not allow this (deletes need REGISTRY_STORAGE_DELETE_ENABLED=true)."
        return RegistryError(msg, status=status, hint=hint)

    # -- API
    def ping(self) -> None:
        self.request("GET", "/v2/", repo=None)

    def catalog(self) -> list[str]:
        repos: list[str] = []
        path: str | None = "/v2/_catalog?n=1000"
        while path:
            resp = self.request("GET", path)
            assert resp is not None
            repos += datafile.loads_json(resp.content, "the catalog answer", what="it").get("repositories") or []
            nxt = re.search(r"<([^>]+)>", resp.headers.get("Link", ""))
            path = nxt.group(1) if nxt else None
        return repos

    def tags(self, repo: str) -> list[str]:
        resp = self.request("GET", f"/v2/{repo}/tags/list", repo=repo, absent=(404,))
        return sorted((datafile.loads_json(resp.content, "the tags answer", what="it").get("tags") or []) if resp is not None else [])

    def manifest(self, repo: str, ref: str) -> tuple[bytes, str, str] | None:
        """(raw bytes, media type, digest) of a manifest by tag or digest, or None when absent."""
        resp = self.request("GET", f"/v2/{repo}/manifests/{ref}", repo=repo, absent=(404,),
                            headers={"Accept": ", ".join(MANIFEST_TYPES)})
        if resp is None:
            return None
        body = resp.content
        media = resp.headers.get("Content-Type", "").split(";")[0] or datafile.loads_json(body, f"manifest {repo}:{ref}", what="it").get("mediaType", "")
        return body, media, sha256(body)

    def digest_of(self, repo: str, ref: str) -> str | None:
        found = self.manifest(repo, ref)
        return found[2] if found else None

    def resolve(self, ref: Ref) -> Ref:
        """``ref`` with its digest (looked up by tag when it has none). Raises RegistryError when absent."""
        if ref.digest:
            return ref
        digest = self.digest_of(ref.repo, ref.tag or "latest")
        if digest is None:
            raise RegistryError(f"{ref} was not found in the registry", status=404)
        return ref.at(tag=ref.tag, digest=digest)

    def put_manifest(self, repo: str, ref: str, body: bytes, media_type: str) -> str:
        resp = self.request("PUT", f"/v2/{repo}/manifests/{ref}", repo=repo, push=True,
                            headers={"Content-Type": media_type}, data=body, ok=(201, 200))
        assert resp is not None
        return resp.headers.get("Docker-Content-Digest") or sha256(body)

    def delete_manifest(self, repo: str, digest: str) -> None:
        self.request("DELETE", f"/v2/{repo}/manifests/{digest}", repo=repo, push=True, ok=(202, 200))

    def blob(self, repo: str, digest: str) -> bytes:
        resp = self.request("GET", f"/v2/{repo}/blobs/{digest}", repo=repo)
        assert resp is not None
        return resp.content

    def put_blob(self, repo: str, data: bytes) -> str:
        """Upload a small blob (monolithic); returns its digest. Skips blobs already there."""
        digest = sha256(data)
        if self.request("HEAD", f"/v2/{repo}/blobs/{digest}", repo=repo, push=True, absent=(404,)) is not None:
            return digest
        start = self.request("POST", f"/v2/{repo}/blobs/uploads/", repo=repo, push=True, ok=(202,))
        assert start is not None
        location = start.headers["Location"]
        if location.startswith("/"):
            location = self.base + location
        sep = "&" if "?" in location else "?"
        self.request("PUT", f"{location}{sep}digest={digest}", repo=repo, push=True, data=data,
                     headers={"Content-Type": "application/octet-stream"}, ok=(201,))
        return digest


# --------------------------------------------------------------------------- lookups

def remote_digest(text: str, *, attempts: int = 3) -> str | None:
    """The registry digest ``HOST/NAME[:TAG]`` names now (one manifest request, nothing pulled);
    None when it is not a registry reference, absent, or the registry cannot be asked."""
    try:
        ref = parse_ref(text)
        return Registry(ref.host, attempts=attempts).digest_of(ref.repo, ref.tag or "latest")
    except (RegistryError, requests.RequestException):
        return None
