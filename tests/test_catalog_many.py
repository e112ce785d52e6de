"""The catalog of a generated registry of many signed digests (tests/catalog_data.py, no Docker): read
concurrently it is the same catalog as read one digest at a time, newest first, every digest verified."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from builder.catalog import collect
from tests import catalog_data
from tests.conftest_registry import registry_binary_or_skip, serve_registry

pytestmark = pytest.mark.slow


def test_concurrent_reading_gives_the_same_catalog(tmp_path: Path, pytestconfig: pytest.Config) -> None:
    registry_binary_or_skip(pytestconfig)
    key = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "k.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    (tmp_path / "k.pub").write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                                   serialization.PublicFormat.SubjectPublicKeyInfo))
    (tmp_path / "registry").mkdir()
    with serve_registry(tmp_path / "registry") as host:
        digests = catalog_data.generate(host, "many", 12, tmp_path / "k.pem")
        one = collect.collect(f"{host}/many", keys=[tmp_path / "k.pub"], workers=1)
        eight = collect.collect(f"{host}/many", keys=[tmp_path / "k.pub"], workers=8)
    assert one.model_copy(update={"generated_at": ""}) == eight.model_copy(update={"generated_at": ""})
    assert sorted(i.digest for i in eight.images) == sorted(digests)
    created = [i.created for i in eight.images]
    assert created == sorted(created, reverse=True) and len(set(created)) == 12      # newest first
    assert all(i.trust.state == "verified" and i.ok for i in eight.images)
    assert {i.variant for i in eight.images} == set(catalog_data.VARIANTS)
    image = eight.images[0]
    assert len(image.packages) == 300 and {p.origin for p in image.packages} == {"inherited", "introduced"}
    assert {f.origin for f in image.findings} == {"inherited", "introduced"}
    assert image.sizes.pull_over_base is not None and 0 < image.sizes.pull_over_base < (image.sizes.pull or 0)
