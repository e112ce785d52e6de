"""Registry credentials from the docker config, the way the docker CLI finds them.

``$DOCKER_CONFIG/config.json`` (default ``~/.docker/config.json``): a
credential helper for the host (``credHelpers``), the default store
(``credsStore``), then an ``auths`` entry (``auth``, ``identitytoken``).
Helpers run through :mod:`builder.infra.runner` with the host on stdin. Nothing here
takes credentials from the command line or logs them.
"""

from __future__ import annotations

import base64
import logging
import os
from pathlib import Path

from builder.errors import TfimgError
from builder.infra import datafile, runner

log = logging.getLogger(__name__)


def docker_config_path() -> Path:
    root = os.environ.get("DOCKER_CONFIG") or str(Path.home() / ".docker")
    return Path(root) / "config.json"


def credentials(host: str) -> tuple[str, str] | None:
    """(username, secret) for ``host`` from the docker config, or None. Never logged."""
    path = docker_config_path()
    # UnreadableInput (exit 2) names the problem and the line, never a value
    cfg = datafile.load_json(path, limit=2**24, what="the docker config") if os.path.lexists(path) else {}
    if not isinstance(cfg, dict):
        raise TfimgError(f"the docker config {path} is not a JSON object")
    helper = (cfg.get("credHelpers") or {}).get(host) or cfg.get("credsStore")
    if helper:
        found = _from_helper(helper, host)
        if found:
            return found
    auths = cfg.get("auths") or {}
    for key in (host, f"http://{host}", f"https://{host}", f"http://{host}/v2/", f"https://{host}/v2/"):
        entry = auths.get(key)
        if not entry:
            continue
        if entry.get("identitytoken"):
            return "<token>", entry["identitytoken"]
        if entry.get("auth"):
            user, _, secret = base64.b64decode(entry["auth"]).decode().partition(":")
            return user, secret
        if entry.get("username"):
            return entry["username"], entry.get("password", "")
    return None


def _from_helper(helper: str, host: str) -> tuple[str, str] | None:
    try:
        res = runner.run([f"docker-credential-{helper}", "get"], input=host, check=False, timeout=30)
    except TfimgError:
        log.debug("credential helper docker-credential-%s is not available", helper)
        return None
    if res.returncode != 0:
        return None
    data = datafile.loads_json(res.stdout, f"docker-credential-{helper}", what="its answer")
    return data.get("Username", ""), data.get("Secret", "")
