"""The CUDA stack and the GPU, from :mod:`builder.check.probe` run in the container.

Library versions (CUDA runtime, cuDNN, NCCL) are established without a GPU and
compared with the base profile in every mode. Each check's detail says how its
value was obtained: read from the library (its version call answered), or by
the real file's name or the CUDA toolkit's version.json where the library does
not answer (``cudaRuntimeGetVersion`` without a driver: rc 35); these describe
the loaded library and are asserted too. A value only an environment variable
gives is recorded, not asserted: the check fails as unverified where the
profile confirms a version. Values the profile does not confirm are recorded,
not asserted. Whether TensorFlow is a CUDA build is read without a GPU. The
GPU checks need GPU mode (``--gpu``) and are skipped with the reason otherwise
-- never passed.
"""

from __future__ import annotations

import pytest

from builder.check import probe


@pytest.fixture(scope="module")
def rows(ctx, profile):
    if ctx.probe is None:
        pytest.fail(f"the probe failed in the container: {ctx.probe_error}")
    return {r.component: r for r in probe.evaluate(ctx.probe, profile, gpu=ctx.gpu)}


@pytest.fixture
def gpu(ctx):
    if not ctx.gpu:
        pytest.skip(f"GPU mode is off: {ctx.gpu_reason}")


def _version(rows, component, note):
    r = rows[component]
    assert r.status in ("ok", "recorded") or not r.confirmed, \
        f"{component} {r.detected or '(not found)'}: {r.status} against the profile ({r.expected}): {r.detail}"
    why = "ok" if r.status == "ok" else "recorded, not asserted: the profile does not confirm it"
    note(f"{component} {r.detected or 'not present'} (expected {r.expected or 'nothing'}; {why})"
         + (f"; {r.detail}" if r.detail else ""))


def test_cuda_runtime(rows, note):
    _version(rows, "cuda", note)


def test_cudnn(rows, note):
    _version(rows, "cudnn", note)


def test_nccl(rows, note):
    _version(rows, "nccl", note)


def _gpu_row(rows, component, note):
    r = rows[component]
    assert r.status == "ok", f"{component}: {r.detail}"
    note(r.detail)


@pytest.mark.gpu
def test_gpu_driver(gpu, rows, note):
    _gpu_row(rows, "driver", note)


def test_tensorflow_cuda_build(rows, note):
    r = rows["tf_cuda_build"]
    if r.status == "skipped":
        pytest.skip(r.detail)
    assert r.status in ("ok", "recorded"), f"tf_cuda_build: {r.detail}"
    note(r.detail)


@pytest.mark.gpu
def test_tensorflow_lists_gpu(gpu, rows, note):
    _gpu_row(rows, "tf_gpus", note)


@pytest.mark.gpu
def test_matmul_on_gpu0(gpu, rows, note):
    _gpu_row(rows, "matmul", note)
