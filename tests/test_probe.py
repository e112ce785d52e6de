"""The probe: pure parsing and comparison on samples (tests/data/probe), and `tfimg probe --local`.

The NGC samples are constructed from documented formats, not recorded on a
GPU (see tests/data/probe/README.md). Tests that need a GPU are marked ``gpu``
and skipped with the reason where there is none.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from builder import cli
from builder.check import probe
from builder.spec import profiles

DATA = Path(__file__).parent / "data" / "probe"
NGC = profiles.get("ngc-22.07")


def sample(name: str) -> dict:
    return probe.summarize(probe.parse_output((DATA / name).read_text()))


def rows(name: str, profile=NGC, gpu=True) -> dict[str, dict]:
    return {r["component"]: r for r in probe.evaluate(sample(name), profile, gpu=gpu)}


@pytest.mark.parametrize("value,want", [(11070, "11.7"), (11080, "11.8"), (12020, "12.2"), (None, None), (0, None)])
def test_cuda_runtime_version(value, want):
    assert probe.cuda_version(value) == want


@pytest.mark.parametrize("value,want", [(8401, "8.4.1"), (8600, "8.6.0"), (7605, "7.6.5"), (90100, "9.1.0"), (None, None)])
def test_cudnn_version(value, want):
    assert probe.cudnn_version(value) == want


@pytest.mark.parametrize("value,want", [(21212, "2.12.12"), (21803, "2.18.3"), (2804, "2.8.4"), (None, None)])
def test_nccl_version(value, want):
    assert probe.nccl_version(value) == want


def test_nvidia_smi_csv():
    got = probe.parse_smi((DATA / "nvidia-smi-two-gpus-constructed.txt").read_text())
    assert got == [{"driver": "515.65.01", "name": "NVIDIA A100-SXM4-40GB"}] * 2
    assert probe.parse_smi("\n") == []


def test_recorded_standin_output_parses_among_tensorflow_noise():
    s = sample("standin-cpu-recorded.txt")
    assert s["tensorflow"] == "2.9.3" and s["python"].startswith("3.9")
    assert s["cuda"] is None and s["cudnn"] is None and s["nccl"] is None      # no CUDA libraries
    assert s["tf_cuda_build"] is True and s["tf_build_cuda"] == "11.2"        # the pip wheel's build info
    assert s["gpus"] == [] and s["tf_gpus"] == []


def test_no_result_line_is_an_error():
    with pytest.raises(Exception, match="printed no result"):
        probe.parse_output("Traceback (most recent call last):\nImportError: boom")


def test_ngc_22_07_on_driver_515_all_ok_and_nccl_recorded_not_asserted():
    r = rows("ngc-22.07-a100-r515-constructed.txt")
    for comp in ("python", "tensorflow", "cuda", "cudnn", "driver", "tf_cuda_build", "tf_gpus", "matmul"):
        assert r[comp]["status"] == "ok", r[comp]
    assert r["nccl"]["status"] == "recorded" and r["nccl"]["detected"] == "2.12.12"   # confirmed: false
    assert probe.failed(list(r.values())) == []


def test_driver_460_is_too_old_for_cuda_11_7():
    r = rows("ngc-22.07-r460-too-old-constructed.txt")
    assert r["driver"]["status"] == "failed" and "older than 515" in r["driver"]["detail"]
    assert [x["component"] for x in probe.failed(list(r.values()))] == ["driver"]


def test_driver_470_57_is_a_forward_compatible_branch():
    r = rows("ngc-22.07-r470-forward-compat-constructed.txt")
    assert r["driver"]["status"] == "ok" and "forward-compatible" in r["driver"]["detail"]


def test_matmul_that_ran_on_the_cpu_fails():
    r = rows("ngc-22.07-matmul-on-cpu-constructed.txt")
    assert r["matmul"]["status"] == "failed" and "CPU:0" in r["matmul"]["detail"]


def test_other_profile_reports_mismatch():
    r = rows("ngc-22.07-a100-r515-constructed.txt", profile=profiles.get("ngc-22.09"))
    assert r["cuda"]["status"] == "mismatch" and r["cudnn"]["status"] == "mismatch"


def test_without_gpu_mode_gpu_rows_are_skipped_not_ok():
    r = rows("standin-cpu-recorded.txt", profile=profiles.get("standin-cpu"), gpu=False)
    for comp in ("driver", "tf_cuda_build", "tf_gpus", "matmul"):
        assert r[comp]["status"] == "skipped" and "GPU mode is off" in r[comp]["detail"]
    assert r["tensorflow"]["status"] == "ok" and r["cuda"]["status"] == "recorded"


def test_gpu_mode_without_gpu_fails_rather_than_passes():
    r = rows("standin-cpu-recorded.txt", profile=profiles.get("standin-cpu"), gpu=True)
    assert {r[c]["status"] for c in ("driver", "tf_gpus", "matmul")} == {"failed"}


def test_probe_local_on_this_host_reports_no_gpu_cleanly(capsys):
    code = cli.main(["probe", "--local", "--json"])
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    assert data["profile"] == "ngc-22.07" and data["summary"]["python"]
    if not data["gpu"]:
        gpu_rows = [r for r in data["rows"] if r["component"] in ("driver", "tf_gpus", "matmul")]
        assert {r["status"] for r in gpu_rows} == {"skipped"}
    assert data["summary"]["tensorflow"] or data["summary"]["tf_error"]      # TF present or said why not


def test_probe_local_table(capsys):
    assert cli.main(["probe", "--local", "--profile", "standin-cpu"]) == 0
    text = capsys.readouterr().out
    assert "component" in text and ("no GPU" in text or "GPUs:" in text)


def test_probe_needs_local():
    assert cli.main(["probe"]) == 2


@pytest.fixture
def gpu_host():
    smi = shutil.which("nvidia-smi")
    if not smi or subprocess.run([smi, "-L"], capture_output=True, timeout=60).returncode != 0:
        pytest.skip("no NVIDIA GPU on this host (nvidia-smi absent or failing)")


@pytest.mark.gpu
def test_probe_local_on_a_gpu_host(gpu_host, capsys):
    assert cli.main(["probe", "--local", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["gpu"] and data["summary"]["driver"]
