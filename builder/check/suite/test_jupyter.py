"""Jupyter (where enabled): over real HTTP on the loopback port, password only, never open.

The runner started the server with a throwaway password's argon2 hash in the
spec's run-time variable. Without any hash the entrypoint must refuse to
start Jupyter and say why: a second container proves it.
"""

from __future__ import annotations

import json
import re

import pytest
import requests
from packaging.version import InvalidVersion, Version

TIMEOUT = 30
NOTIFICATION = "@jupyterlab/apputils-extension:notification"
PAGE_CONFIG = re.compile(r'<script id="jupyter-config-data" type="application/json">(.*?)</script>', re.S)


@pytest.fixture(scope="module")
def base_url(ctx, variant):
    p = ctx.ports.get(str(variant.jupyter.port))
    if not p:
        pytest.fail(f"port {variant.jupyter.port} is not published: {ctx.services_note or 'no such port'}")
    return f"http://127.0.0.1:{p}"


def _login(base_url: str, password: str) -> tuple[requests.Session, requests.Response]:
    s = requests.Session()
    page = s.get(f"{base_url}/login", timeout=TIMEOUT)
    xsrf = s.cookies.get("_xsrf")
    assert page.status_code == 200 and xsrf, f"GET /login gave {page.status_code}, _xsrf cookie {'set' if xsrf else 'absent'}"
    res = s.post(f"{base_url}/login", data={"password": password, "_xsrf": xsrf},
                 allow_redirects=False, timeout=TIMEOUT)
    return s, res


def test_api_refuses_unauthenticated(base_url, note):
    codes = {path: requests.get(base_url + path, timeout=TIMEOUT, allow_redirects=False).status_code
             for path in ("/api/status", "/api/contents", "/api/kernels")}
    opened = [f"{p} -> {c}" for p, c in codes.items() if c < 300]
    assert not opened, f"the API answers without authentication: {', '.join(opened)}"
    note("unauthenticated: " + ", ".join(f"{p} {c}" for p, c in codes.items()))


def test_login_with_password(base_url, ctx, note):
    s, res = _login(base_url, ctx.jupyter_password)
    assert res.status_code in (302, 303), f"POST /login with the right password gave {res.status_code}"
    status = s.get(f"{base_url}/api/status", timeout=TIMEOUT)
    assert status.status_code == 200, f"after login, /api/status gave {status.status_code}"
    note(f"POST /login -> {res.status_code}; /api/status -> 200 with the session")


def test_wrong_password_refused(base_url, note):
    s, res = _login(base_url, "not-the-password")
    assert res.status_code not in (302, 303), f"POST /login with a wrong password gave {res.status_code} (a redirect)"
    granted = [c for c in s.cookies if c.name != "_xsrf"]
    assert not granted, f"a wrong password got a login cookie: {', '.join(c.name for c in granted)}"
    note(f"wrong password: POST /login -> {res.status_code}, no login cookie")


def test_no_news_or_update_check(base_url, ctx, note):
    """JupyterLab neither asks to fetch Jupyter's news nor checks for updates (no calls out)."""
    s, res = _login(base_url, ctx.jupyter_password)
    assert res.status_code in (302, 303), f"POST /login with the right password gave {res.status_code}"
    lab = s.get(f"{base_url}/lab", timeout=TIMEOUT)
    if lab.status_code == 404:
        pytest.skip("this Jupyter app serves no JupyterLab (/lab is 404): nothing asks for news or updates")
    m = PAGE_CONFIG.search(lab.text)
    assert lab.status_code == 200 and m, f"GET /lab gave {lab.status_code} without JupyterLab's page config"
    page = json.loads(m.group(1))
    version = page.get("appVersion", "")
    try:
        old = Version(version) < Version("3.6")
    except InvalidVersion:
        old = False
    if old:
        pytest.skip(f"JupyterLab {version} has no news feed or update check (they came in 3.6)")
    assert page.get("news") == {"disabled": True}, \
        f"the server would fetch Jupyter's news (page config news: {page.get('news')}): set c.LabApp.news_url = None"
    got = s.get(f"{base_url}/lab/api/settings/{NOTIFICATION}", timeout=TIMEOUT)
    assert got.status_code == 200, f"GET /lab/api/settings/{NOTIFICATION} gave {got.status_code}"
    body = got.json()
    props = (body.get("schema") or {}).get("properties") or {}
    composite = {k: (body.get("settings") or {}).get(k, (props.get(k) or {}).get("default"))
                 for k in ("fetchNews", "checkForUpdates")}
    assert composite == {"fetchNews": "false", "checkForUpdates": False}, \
        f"JupyterLab's notification settings are {composite}: the browser would ask for news or check for updates"
    news = s.get(f"{base_url}/lab/api/news", timeout=TIMEOUT)
    update = s.get(f"{base_url}/lab/api/update", timeout=TIMEOUT)
    assert news.status_code == 200 and news.json().get("news") == [], \
        f"GET /lab/api/news gave {news.status_code}: {news.text[:200]}"
    assert update.status_code == 200 and update.json().get("notification") is None, \
        f"GET /lab/api/update gave {update.status_code}: {update.text[:200]}"
    note(f"JupyterLab {version}: page config news disabled; fetchNews 'false', checkForUpdates false; "
         "/lab/api/news empty, /lab/api/update no notification")


def test_refuses_to_start_without_password(ctx, variant, note, docker_engine):
    if variant.jupyter.password_hash:
        pytest.skip("the variant bakes a password hash (jupyter.password_hash): there is always a password")
    code, logs = docker_engine.run_to_exit(ctx.image, environment={}, timeout=90)
    assert code is not None, f"without a password hash the container still runs after 90 s: {logs.strip()[-300:]}"
    assert code != 0, f"without a password hash the container exited 0: {logs.strip()[-300:]}"
    assert "password" in logs.lower(), f"exit {code} but no message about the password: {logs.strip()[-300:]}"
    msg = next((ln for ln in logs.splitlines() if "password" in ln.lower()), "")
    note(f"exit {code}: {msg.strip()[:200]}")
