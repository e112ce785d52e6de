"""A real browser logs into JupyterLab in the built bert image, run hardened.

Debian's ``chromium`` and ``chromium-driver``, headless, driven by selenium 4
with the explicit driver path (selenium-manager never downloads anything:
``SE_OFFLINE=true``). The container runs under the same restricted profile as
tests/test_runtime_hardening.py, plus a volume (tmpfs) at ``/workspace`` as the
docs/running.md says a user mounts one there, with Jupyter published on 127.0.0.1 only,
so this also proves the hardened profile serves the real UI. The browser:

- opens ``/lab`` and is sent to the login page; a wrong password keeps it there
  with an error; the right one loads JupyterLab;
- opens a Python 3 notebook from the launcher and runs ``1+1`` (output ``2``);
- is never shown the "fetch Jupyter news?" toast nor an update notification;
- makes no request to any host but 127.0.0.1 (Chromium's performance log:
  every ``Network.requestWillBeSent`` and ``Network.webSocketCreated`` URL).
  Chromium's own resolver maps every other name to nothing, so a request out
  would be seen in the log and fail, never reach the network.

Missing chromium, chromedriver or selenium skip the test with the install hint,
or fail it under CI=true / ``--require-docker``.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from urllib.parse import urlsplit

import docker
import pytest

from builder.check import stage as testrun
from builder.infra.engine import Engine
from builder.spec import loader as spec
from builder.spec import passwords
from tests.test_runtime_hardening import hardened

VARIANTS = Path(__file__).resolve().parent.parent / "variants"
PASSWORD = "browser-Pa55-word"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
HINT = "apt-get install chromium chromium-driver; pip install -e '.[browser]' (or scripts/deps.sh)"
NOT_NETWORK = {"data", "blob", "about", "chrome"}   # never leave the browser (chrome://: its built-in new-tab page)

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def _missing(config: pytest.Config, why: str) -> None:
    """Skip, or fail where CI must run these tests (the pattern of tests/conftest_registry.py)."""
    if config.getoption("--require-docker", default=bool(os.environ.get("CI"))):
        pytest.fail(why)
    pytest.skip(why)


def chromium(pytestconfig: pytest.Config, tmp_path: Path, *, javascript: bool = True, width: int = 1400,
             height: int = 900):
    """Debian's headless Chromium under selenium, offline (also used by tests/test_catalog_browser.py).

    Every host name but 127.0.0.1 resolves to nothing; the performance log records each request.
    ``javascript=False``: a browser with JavaScript off (what a page shows without it)."""
    absent = [p for p in (CHROMIUM, CHROMEDRIVER) if not (shutil.which(p) or Path(p).exists())]
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        absent.append("selenium (Python)")
    if absent:
        _missing(pytestconfig, f"{', '.join(absent)} not installed: {HINT}")
    os.environ["SE_OFFLINE"] = "true"    # selenium-manager must not try to fetch a driver
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--window-size={width},{height}", "--no-proxy-server", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-default-apps", "--no-first-run",
                "--disable-domain-reliability", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                f"--user-data-dir={tmp_path / ('chromium-profile' if javascript else 'chromium-profile-nojs')}"):
        opts.add_argument(arg)
    if not javascript:
        opts.add_experimental_option("prefs", {"profile.managed_default_content_settings.javascript": 2})
    opts.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    return webdriver.Chrome(service=Service(CHROMEDRIVER, log_output=str(tmp_path / "chromedriver.log")),
                            options=opts)


@pytest.fixture
def browser(pytestconfig: pytest.Config, tmp_path: Path):
    driver = chromium(pytestconfig, tmp_path)
    try:
        yield driver
    finally:
        driver.quit()


def _requested_urls(driver) -> list[str]:
    urls = []
    for entry in driver.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg["method"] == "Network.requestWillBeSent":
            urls.append(msg["params"]["request"]["url"])
        elif msg["method"] == "Network.webSocketCreated":
            urls.append(msg["params"]["url"])
    return urls


def _login(driver, wait, password: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    field = wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, "input[name=password]")))
    field.clear()
    field.send_keys(password)
    driver.find_element(By.CSS_SELECTOR, "#login_submit, button[type=submit]").click()


def test_headless_chromium_logs_into_jupyterlab_hardened(built, browser, tmp_path: Path) -> None:
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    v = spec.load(VARIANTS / "bert.yaml").spec
    assert v.jupyter.enabled and v.jupyter.app == "lab"
    image_id = built("bert").image_id
    env = {v.jupyter.password_hash_env: passwords.hash_password(PASSWORD)}
    ports_wanted = [v.jupyter.port] + ([v.ssh.port] if v.ssh.enabled else [])
    volumes = testrun._keys(tmp_path, v)[0] if v.ssh.enabled else {}
    extra = {**hardened(v), "volumes": volumes}
    # docs/running.md: "/workspace is read-only unless you mount a volume there" -- Jupyter's root_dir,
    # where the launcher saves a new notebook (without it: a 500 and an error dialog). A user's volume.
    extra["tmpfs"] = {**extra["tmpfs"], "/workspace": f"uid={v.user.uid},gid={v.user.gid},mode=0755"}
    shot = tmp_path / "jupyterlab.png"
    with Engine.from_env().running(image_id, ports=ports_wanted, environment=env, extra=extra) as (c, ports):
        host = docker.from_env().api.inspect_container(c.id)["HostConfig"]   # the engine's own record
        assert host["CapDrop"] == ["ALL"] and host["SecurityOpt"] == ["no-new-privileges"] and host["ReadonlyRootfs"]
        bindings = host["PortBindings"][f"{v.jupyter.port}/tcp"]
        assert [b["HostIp"] for b in bindings] == ["127.0.0.1"]
        why = testrun.wait_ready(c, v, ports, Engine.from_env())
        assert not why, f"{why}\n{Engine.from_env().container_logs(c)}"
        base = f"http://127.0.0.1:{ports[v.jupyter.port]}"
        driver, wait = browser, WebDriverWait(browser, 60)

        try:
            # /lab without a session: the login page
            driver.get(f"{base}/lab")
            wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "input[name=password]")))
            assert urlsplit(driver.current_url).path.endswith("/login"), driver.current_url

            # a wrong password: still the login page, with an error
            _login(driver, wait, "not-the-password")
            err = wait.until(ec.visibility_of_element_located((By.CSS_SELECTOR, ".message.error, .alert-danger")))
            assert "invalid" in err.text.lower(), err.text
            assert urlsplit(driver.current_url).path.endswith("/login"), driver.current_url
            assert not driver.find_elements(By.ID, "jp-main-dock-panel")

            # the right password: JupyterLab's shell and launcher
            _login(driver, wait, PASSWORD)
            wait.until(ec.presence_of_element_located((By.ID, "jp-main-dock-panel")))
            card = wait.until(ec.element_to_be_clickable(
                (By.CSS_SELECTOR, '.jp-Launcher .jp-LauncherCard[data-category="Notebook"]')))
            assert "Python 3" in (card.get_attribute("title") or card.text), card.get_attribute("title")
            assert urlsplit(driver.current_url).path.startswith("/lab"), driver.current_url

            # a Python 3 notebook from the launcher; run 1+1 in its first cell
            card.click()
            editor = wait.until(ec.element_to_be_clickable(
                (By.CSS_SELECTOR, ".jp-NotebookPanel:not(.lm-mod-hidden):not(.p-mod-hidden) "
                                  ".jp-Cell .jp-InputArea-editor")))
            # the kernel connected and idle (status bar "Python 3 (ipykernel) | Idle") before typing:
            # an execute request sent while the session is still starting can go unanswered
            WebDriverWait(driver, 120).until(lambda d: "| Idle" in d.find_element(By.ID, "jp-main-statusbar").text)
            editor.click()
            ActionChains(driver).send_keys("1+1").key_down(Keys.SHIFT).send_keys(Keys.ENTER) \
                .key_up(Keys.SHIFT).perform()
            out = WebDriverWait(driver, 120).until(ec.visibility_of_element_located(
                (By.CSS_SELECTOR, ".jp-Cell .jp-OutputArea-output")))
            assert out.text.strip() == "2", out.text
            prompt = driver.find_element(By.CSS_SELECTOR, ".jp-Cell .jp-InputArea-prompt").text
            assert prompt.strip() == "[1]:", prompt

            # no news prompt, no update notification (give a late toast a moment to show)
            time.sleep(3)
            toasts = [t.text for t in driver.find_elements(By.CSS_SELECTOR, ".Toastify__toast, .jp-Notification-Toast")]
            assert not toasts, f"notifications shown: {toasts}"
            assert "news" not in driver.find_element(By.TAG_NAME, "body").text.lower()
        except TimeoutException as exc:
            driver.save_screenshot(str(shot))
            (tmp_path / "container.log").write_text(Engine.from_env().container_logs(c, tail=400))
            pytest.fail(f"timed out in the browser at {driver.current_url} ({exc.msg}); screenshot {shot}\n"
                        f"{Engine.from_env().container_logs(c)}")
        driver.save_screenshot(str(shot))
        print(f"screenshot: {shot}")

        urls = _requested_urls(driver)
        assert any(u.startswith(f"{base}/lab") for u in urls), urls[:20]
        off = [u for u in urls if urlsplit(u).scheme not in NOT_NETWORK and urlsplit(u).hostname != "127.0.0.1"]
        assert not off, f"the browser asked for other hosts: {off}"
