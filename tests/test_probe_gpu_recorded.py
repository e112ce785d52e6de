"""The probe on a real GPU: recordings from one NVIDIA H200 with driver 580.159.04 (tests/data/probe/gpu-h200-*).

Recorded, not constructed (tests/data/probe/README.md says how): ``scripts/gpu-check.sh``
and ``tfimg probe --local`` on a machine with the GPU and its driver but no
Docker and no TensorFlow, with three sets of libraries on the loader path:

- ``host``: the machine's own CUDA 13.0 toolkit, cuDNN 9.14.0 and NCCL 2.28.3;
- ``cu11``: NVIDIA's wheel files ``libcudart.so.11.0`` (11.7.99) and
  ``libcudnn.so.8`` (8.5.0.96, without the sub-libraries it loads) first;
- ``cu13``: the cu13 wheels of the machine's PyTorch first.

What they show: the driver row; the CUDA 11.7 runtime *read* (its version call
answers once a driver is there; without one it answers rc 35, see
standin-cuda-recorded.txt); cuDNN 9 and CUDA 13 reported as not the runtime
TensorFlow 2.9 loads. The tables ``tfimg probe --local`` printed there are
compared with what this code makes of the raw lines recorded in the same
sets: the table is built from what the probe read, nothing else.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from builder.check import probe
from builder.check.probe_models import Row, Summary
from builder.spec import profiles

DATA = Path(__file__).parent / "data" / "probe"
NGC, STANDIN_CUDA = profiles.get("ngc-22.07"), profiles.get("standin-cuda")
SETS = {"host": "gpu-h200-host-probe-recorded.txt", "cu11": "gpu-h200-cu11-probe-recorded.txt",
        "cu13": "gpu-h200-cu13-probe-recorded.txt"}
TF_ABSENT = "TensorFlow not importable (ModuleNotFoundError: No module named 'tensorflow')"


def summary(which: str) -> Summary:
    return probe.summarize(probe.parse_output((DATA / SETS[which]).read_text()))


def rows(which: str, profile=NGC) -> dict[str, Row]:
    return {r.component: r for r in probe.evaluate(summary(which), profile, gpu=True)}


# --------------------------------------------------------------------------- the driver

def test_the_driver_and_the_gpu_come_from_nvidia_smi():
    s = summary("host")
    assert (s.driver, s.gpus, s.smi) == ("580.159.04", ["NVIDIA H200"], "ok")
    env = (DATA / "gpu-h200-host-env-recorded.txt").read_text()
    query = env.split("=== nvidia-smi --query-gpu=driver_version,name --format=csv,noheader\n")[1].split("===")[0]
    assert probe.parse_smi(query) == [{"driver": "580.159.04", "name": "NVIDIA H200"}]   # what the host said
    assert "Driver Version: 580.159.04" in env and "NVIDIA H200" in env


@pytest.mark.parametrize("profile,minimum", [(NGC, "515"), (STANDIN_CUDA, "450.80.02")])
@pytest.mark.parametrize("which", sorted(SETS))
def test_the_driver_row_is_ok_against_each_profile(which, profile, minimum):
    driver = rows(which, profile)["driver"]
    assert (driver.status, driver.detected) == ("ok", "580.159.04")
    assert driver.detail == f"driver 580.159.04 >= minimum {minimum}"


# --------------------------------------------------------------------------- CUDA 11.7, read with a driver

def test_the_cuda_11_7_runtime_is_read_from_the_library_with_a_driver():
    s = summary("cu11")
    cuda = s.libs["cuda"]
    assert (s.cuda, cuda.method, cuda.read, cuda.loaded) == ("11.7", "library call", True, "libcudart.so.11.0")
    assert cuda.why == "" and cuda.other is None
    for profile in (NGC, STANDIN_CUDA):
        row = rows("cu11", profile)["cuda"]
        assert (row.status, row.detected, row.method, row.read) == ("ok", "11.7", "library call", True)
        assert row.detail == "read from the library (libcudart.so.11.0 -> CARRIED/cu11/libcudart.so.11.0)"


def test_without_a_driver_the_same_runtime_answers_rc_35_and_is_named_by_its_file():
    """The contrast, recorded in the CUDA stand-in (same cudart 11.7.99, no driver)."""
    s = probe.summarize(probe.parse_output((DATA / "standin-cuda-recorded.txt").read_text()))
    cuda = s.libs["cuda"]
    assert (s.cuda, cuda.method, cuda.read) == ("11.7", "file name", False)
    assert cuda.why == "cudaRuntimeGetVersion rc 35 cudaErrorInsufficientDriver"


def test_a_cudnn_8_that_aborts_is_unverified_with_its_cause():
    """The cu11 set carried libcudnn.so.8 without libcudnn_ops_infer.so.8: its version call aborts."""
    s = summary("cu11")
    cudnn = s.libs["cudnn"]
    assert cudnn.error == "cudnnGetVersion killed by signal 6 (SIGABRT)" and s.cudnn is None
    assert cudnn.loaded == "libcudnn.so.8" and cudnn.method is None   # the wheel's file says nothing more
    for profile in (NGC, STANDIN_CUDA):
        row = rows("cu11", profile)["cudnn"]
        assert row.status == "unverified" and row.detected is None
        assert "SIGABRT" in row.detail and "libcudnn_ops_infer.so.8: cannot open shared object file" in row.detail
    assert s.nccl == "2.28.3"                                        # the other rows came back


# --------------------------------------------------------------------------- cuDNN 9 and CUDA 13

@pytest.mark.parametrize("which", ["host", "cu13"])
def test_cuda_13_and_cudnn_9_are_not_the_runtime_tensorflow_2_9_loads(which):
    s = summary(which)
    assert s.cuda is None and s.cudnn is None
    cuda, cudnn = s.libs["cuda"], s.libs["cudnn"]
    assert cuda.loaded is None and cudnn.loaded is None
    assert cuda.other == ("libcudart.so -> /usr/local/cuda-13.0/targets/x86_64-linux/lib/libcudart.so.13.0.96 "
                          "(13.0)")
    assert cudnn.other == "libcudnn.so -> /usr/lib/x86_64-linux-gnu/libcudnn.so.9.14.0 (9.14.0)"
    for profile in (NGC, STANDIN_CUDA):
        r = rows(which, profile)
        for comp in ("cuda", "cudnn"):
            assert (r[comp].status, r[comp].detected) == ("missing", None), r[comp]
            assert "not the runtime TensorFlow 2.9 loads" in r[comp].detail
    # the host's CUDA_VERSION=13.0.2 is recorded beside it, never asserted
    assert (cuda.value, cuda.method) == ("13.0", "environment variable")
    assert "CUDA_VERSION=13.0.2 (environment variable: recorded, not asserted)" in rows(which)["cuda"].detail


def test_nccl_2_28_is_read_from_the_library_loaded_first():
    assert summary("host").libs["nccl"].file == "/usr/lib/x86_64-linux-gnu/libnccl.so.2.28.3"
    s = summary("cu13")                                               # the PyTorch wheel's, first on the path
    assert (s.nccl, s.libs["nccl"].method) == ("2.28.9", "library call")
    assert s.libs["nccl"].file.endswith("/site-packages/nvidia/nccl/lib/libnccl.so.2")
    ngc, standin = rows("cu13")["nccl"], rows("cu13", STANDIN_CUDA)["nccl"]
    assert (ngc.status, ngc.confirmed) == ("mismatch", False)        # NGC 22.07's NCCL is unconfirmed: reported
    assert (standin.status, standin.confirmed) == ("mismatch", True)
    assert probe.failed([ngc, standin]) == [standin]


# --------------------------------------------------------------------------- no TensorFlow there

def test_without_tensorflow_the_gpu_rows_fail_and_say_why():
    r = rows("host")
    assert r["tensorflow"].status == "missing" and r["tf_cuda_build"].status == "skipped"
    assert r["tf_cuda_build"].detail == TF_ABSENT
    assert (r["tf_gpus"].status, r["tf_gpus"].detected) == ("failed", None)
    assert r["tf_gpus"].detail == f"{TF_ABSENT}: it lists no GPU"
    assert (r["matmul"].status, r["matmul"].detail) == ("failed", f"{TF_ABSENT}: no matmul ran")


# --------------------------------------------------------------------------- the tables tfimg printed there

def table(name: str) -> tuple[dict[str, dict[str, str]], str]:
    """The rows of a recorded rich table (component -> detected, expected, status, detail) and its last lines."""
    found: dict[str, dict[str, str]] = {}
    last = None
    lines = (DATA / name).read_text().splitlines()
    for line in lines:
        if not line.startswith("│"):
            continue
        cells = [c.strip() for c in line.strip("│").split("│")]
        if cells[0]:
            last = found[cells[0]] = dict(zip(("detected", "expected", "status", "detail"), cells[1:], strict=True))
        elif last is not None:
            last["detail"] = f"{last['detail']} {cells[4]}".strip()
    return found, "\n".join(lines[-2:])


@pytest.mark.parametrize("profile", [NGC, STANDIN_CUDA], ids=lambda p: p.name)
@pytest.mark.parametrize("which", sorted(SETS))
def test_the_table_recorded_there_is_what_this_code_makes_of_the_probes_line(which, profile):
    recorded, tail = table(f"gpu-h200-{which}-tfimg-probe-table-{profile.name}-recorded.txt")
    ours = probe.evaluate(summary(which), profile, gpu=True)
    assert list(recorded) == [r.component for r in ours]
    for r in ours:
        got = recorded[r.component]
        status = r.status if r.confirmed else f"{r.status} (unconfirmed)"
        assert got["status"] == status, (r.component, got, r)
        if r.component != "tf_gpus":      # recorded '0' before TensorFlow's absence was said as such: now '-'
            assert got["detected"] == (str(r.detected) if r.detected is not None else "-"), (r.component, got)
        assert got["expected"] == (r.expected or "-")
        if r.component in ("cuda", "cudnn", "nccl", "driver"):
            assert got["detail"] == r.detail, (r.component, got["detail"], r.detail)
    assert "GPUs: NVIDIA H200 (driver 580.159.04)" in tail


def test_the_json_recorded_there_is_what_this_code_makes_of_its_raw_line():
    """`tfimg probe --local --json` of the host set: summary and rows, from its own ``raw``."""
    data = json.loads((DATA / "gpu-h200-host-tfimg-probe-json-recorded.json").read_text())
    s = probe.summarize(probe.parse_output("TFIMG_PROBE=" + json.dumps(data["raw"])))
    want = {**data["summary"], "libs": {c: {**p, "version_file": None} for c, p in data["summary"]["libs"].items()}}
    assert s.model_dump(mode="json") == want                         # `version_file` is a field now, null here
    ours = {r.component: r.model_dump(mode="json") for r in probe.evaluate(s, NGC, gpu=data["gpu"])}
    for recorded in data["rows"]:
        got = ours[recorded["component"]]
        changed = {"tf_gpus": {"detected", "detail"}, "matmul": {"detail"}}.get(recorded["component"], set())
        for key, value in recorded.items():
            if key not in changed:
                assert got[key] == value, (recorded["component"], key, got[key], value)
    assert (data["profile"], data["gpu"]) == ("ngc-22.07", True)
