"""The rendered Jupyter configuration turns JupyterLab's news feed and update check off.

JupyterLab 3.6 (the stand-in's 3.6.8, and 4.x) asks every user whether to fetch
Jupyter's news and checks PyPI for a newer release: calls out of an internal
network. Two layers turn that off: the server's ``LabApp.news_url = None`` and
``LabApp.check_for_updates_class = NeverCheckForUpdate`` (the server never
fetches), and the front end's ``@jupyterlab/apputils-extension:notification``
defaults ``fetchNews: "false"`` and ``checkForUpdates: false`` (no prompt, no
request) from ``/etc/jupyter/labconfig/default_setting_overrides.json``.
The running server is checked by the shipped suite (``jupyter::no_news_or_update_check``).
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace

import pytest

from builder.render import context as render
from builder.spec import loader as spec

ROOT = Path(__file__).resolve().parent.parent
NOTIFICATION = "@jupyterlab/apputils-extension:notification"


class _Config(defaultdict):
    """Enough of a traitlets Config to execute the rendered file: ``c.App.trait = value``."""

    def __init__(self) -> None:
        super().__init__(SimpleNamespace)

    def __getattr__(self, name: str) -> SimpleNamespace:
        return self[name]


def _executed(text: str) -> _Config:
    c = _Config()
    exec(compile(text, "jupyter_server_config.py", "exec"), {"get_config": lambda: c})
    return c


@pytest.mark.parametrize("name", ["bert", "notebook"])
def test_rendered_config_turns_news_and_update_checks_off(name: str) -> None:
    rendered = render.render(spec.load(ROOT / "variants" / f"{name}.yaml"))
    for path in ("etc/jupyter/jupyter_server_config.py", "etc/jupyter/jupyter_notebook_config.py"):
        c = _executed(rendered.files[path][0])
        assert c.LabApp.news_url is None
        assert c.LabApp.check_for_updates_class == "jupyterlab.NeverCheckForUpdate"
    overrides = json.loads(rendered.files["etc/jupyter/labconfig/default_setting_overrides.json"][0])
    assert overrides[NOTIFICATION] == {"fetchNews": "false", "checkForUpdates": False}


def test_no_jupyter_no_lab_config() -> None:
    rendered = render.render(spec.load(ROOT / "variants" / "worker.yaml"))
    assert not [f for f in rendered.files if f.startswith("etc/jupyter/")]
