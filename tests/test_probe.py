"""The probe: pure parsing and comparison on samples (tests/data/probe), and `tfimg probe --local`.

Recorded samples first (``*-recorded.txt``: the probe's real output in the CPU
and CUDA stand-ins and on this project's dev machine); the NGC samples are
constructed from documented formats, not recorded on a GPU (see
tests/data/probe/README.md). Tests that need a GPU are marked ``gpu`` and
skipped with the reason where there is none. The probe against NVIDIA's real
libraries, in the CUDA stand-in and on this host: tests/test_probe_cuda.py.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from builder import cli
from builder.check import probe
from builder.check import stage as testrun
from builder.check.probe_models import RawLib, Row, Summary
from builder.spec import loader as spec
from builder.spec import profiles

DATA = Path(__file__).parent / "data" / "probe"
NGC = profiles.get("ngc-22.07")


def sample(name: str) -> Summary:
    return probe.summarize(probe.parse_output((DATA / name).read_text()))


def rows(name: str, profile=NGC, gpu=True) -> dict[str, Row]:
    return {r.component: r for r in probe.evaluate(sample(name), profile, gpu=gpu)}


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


# --------------------------------------------------------------------------- recorded samples

TF_NOISE = """\
2026-11-27 14:34:23.682402: W tensorflow/stream_executor/platform/default/dso_loader.cc:64] Could not load dynamic \
library 'libcudart.so.11.0'; dlerror: libcudart.so.11.0: cannot open shared object file: No such file or directory
2026-11-27 14:34:27.465771: W tensorflow/stream_executor/cuda/cuda_driver.cc:269] failed call to cuInit: UNKNOWN \
ERROR (303)
"""   # recorded by the first probe (TensorFlow in the probe's own process) on the CPU stand-in


def test_recorded_cpu_standin_output():
    s = sample("standin-cpu-recorded.txt")
    assert s.tensorflow == "2.9.3" and s.python and s.python.startswith("3.9") and s.glibc == "glibc 2.31"
    assert s.cuda is None and s.cudnn is None and s.nccl is None      # no CUDA libraries
    assert s.libs["cuda"].why.startswith("libcudart.so.11.0 not found")
    assert s.tf_cuda_build is True and s.tf_build_cuda == "11.2"        # the pip wheel's build info
    assert s.gpus == [] and s.tf_gpus == [] and s.tf_cuda_libs == []


def test_the_result_line_is_found_among_tensorflow_noise():
    text = TF_NOISE + (DATA / "standin-cpu-recorded.txt").read_text() + TF_NOISE
    assert probe.summarize(probe.parse_output(text)).tensorflow == "2.9.3"


def test_recorded_cuda_standin_output_says_how_each_version_was_obtained():
    s = sample("standin-cuda-recorded.txt")
    libs = s.libs
    assert (s.cuda, libs["cuda"].method, libs["cuda"].read) == ("11.7", "file name", False)
    assert libs["cuda"].file == "/usr/local/cuda-11.7/targets/x86_64-linux/lib/libcudart.so.11.7.99"
    assert libs["cuda"].why == "cudaRuntimeGetVersion rc 35 cudaErrorInsufficientDriver"
    assert (s.cudnn, libs["cudnn"].method, libs["cudnn"].read) == ("8.5.0", "library call", True)
    assert (s.nccl, libs["nccl"].method, libs["nccl"].read) == ("2.13.4", "library call", True)
    assert libs["cuda"].env == "CUDA_VERSION=11.7.1" and libs["cudnn"].env == "CUDNN_VERSION=8.5.0.96"
    assert s.tf_cuda_build is True and s.tf_gpus == [] and s.gpus == []
    assert s.tf_cuda_libs == ["/usr/local/cuda-11.7/targets/x86_64-linux/lib/libcudart.so.11.7.99"]


def test_cuda_standin_passes_its_profile_without_a_gpu_and_skips_the_gpu_rows():
    r = rows("standin-cuda-recorded.txt", profile=profiles.get("standin-cuda"), gpu=False)
    for comp in ("python", "tensorflow", "cuda", "cudnn", "nccl", "tf_cuda_build"):
        assert r[comp].status == "ok", r[comp]
    assert "by file name" in r["cuda"].detail and "rc 35" in r["cuda"].detail
    assert "read from the library" in r["cudnn"].detail and "CUDA build" in r["tf_cuda_build"].detail
    # the report rows say how: only a library call counts as read
    assert (r["cuda"].method, r["cuda"].read) == ("file name", False)
    assert (r["cudnn"].read, r["nccl"].read) == (True, True)
    for comp in ("driver", "tf_gpus", "matmul"):
        assert r[comp].status == "skipped" and "GPU mode is off" in r[comp].detail
    assert probe.failed(list(r.values())) == []


def test_cuda_standin_against_ngc_22_07_names_expected_and_found():
    r = rows("standin-cuda-recorded.txt", gpu=False)
    assert r["cuda"].status == "ok"
    assert r["cudnn"].status == "mismatch" and r["cudnn"].detail.startswith("found 8.5.0, expected ==8.4.1")
    # NGC 22.07's NCCL is unconfirmed (profiles.yaml): a mismatch naming both, reported but not failed
    assert (r["nccl"].status, r["nccl"].confirmed, r["nccl"].detected) == ("mismatch", False, "2.13.4")
    assert r["nccl"].detail.startswith("found 2.13.4, expected ==2.12.* (the expected value is unconfirmed")
    assert [x.component for x in probe.failed(list(r.values()))] == ["python", "tensorflow", "cudnn"]


def test_recorded_host_with_cuda_13_does_not_take_it_for_tensorflows_runtime():
    s = sample("host-cuda13-no-gpu-recorded.txt")
    cuda = s.libs["cuda"]
    assert s.cuda is None and cuda.loaded is None and cuda.method is None
    assert cuda.other == "libcudart.so -> /usr/local/cuda-13.0/lib/libcudart.so.13 (13.0)"
    r = rows("host-cuda13-no-gpu-recorded.txt", gpu=False)["cuda"]
    assert r.status == "missing" and "not the runtime TensorFlow 2.9 loads" in r.detail
    assert r.detected is None


def test_recorded_host_with_the_wheels_names_the_abort_and_keeps_the_other_rows():
    s = sample("host-glibc236-wheels-probe-recorded.txt")
    cudnn = s.libs["cudnn"]
    assert cudnn.error == "cudnnGetVersion killed by signal 6 (SIGABRT)" and s.cudnn is None
    assert s.nccl == "2.13.4"                                     # the other rows came back
    # the wheels name files by soname only, and there is no environment variable: nothing establishes a version
    assert s.cuda is None and s.libs["cuda"].loaded == "libcudart.so.11.0"
    r = rows("host-glibc236-wheels-probe-recorded.txt", profile=profiles.get("standin-cuda"), gpu=False)
    assert r["cudnn"].status == "unverified" and "SIGABRT" in r["cudnn"].detail
    assert "libcuda.so.1" in r["cudnn"].detail                    # the child's last stderr line
    assert r["cuda"].status == "unverified" and "rc 35" in r["cuda"].detail
    assert r["nccl"].status == "ok"


# --------------------------------------------------------------------------- methods, without samples

@pytest.mark.parametrize("component,path,want", [
    ("cuda", "/usr/local/cuda-11.7/targets/x86_64-linux/lib/libcudart.so.11.7.99", "11.7"),
    ("cuda", "/x/libcudart.so.11.0", None),                           # the soname: says nothing more
    ("cuda", "/x/libcudart.so.13", None),
    ("cudnn", "/usr/lib/x86_64-linux-gnu/libcudnn.so.8.5.0", "8.5.0"),
    ("cudnn", "/x/libcudnn.so.8", None),
    ("nccl", "/usr/lib/x86_64-linux-gnu/libnccl.so.2.13.4", "2.13.4"),
    ("nccl", "/x/libnccl.so.2.13.4.bak", None),
    ("nccl", None, None),
])
def test_version_from_file_name(component, path, want):
    assert probe.version_from_file_name(component, path) == want


def test_version_file_where_the_file_name_says_nothing():
    p = probe.lib_summary("cuda", RawLib.model_validate({
        "name": "libcudart.so.11.0", "path": "/opt/cuda/lib64/libcudart.so.11.0", "call": "cudaRuntimeGetVersion",
        "rc": 100, "rc_name": "cudaErrorNoDevice",
        "version_file": {"path": "/opt/cuda/version.json", "cuda": "11.7.1", "cuda_cudart": "11.7.99"}}), {})
    assert (p.value, p.method, p.read) == ("11.7", "version file", False)
    assert p.why == "cudaRuntimeGetVersion rc 100 cudaErrorNoDevice" and p.version_file == "/opt/cuda/version.json"


def test_an_environment_variable_alone_is_recorded_never_asserted():
    raw = RawLib(name="libcudart.so.11.0", path="/w/libcudart.so.11.0", call="cudaRuntimeGetVersion", rc=35)
    env = {"CUDA_VERSION": "11.7.1.017"}
    p = probe.lib_summary("cuda", raw, env)
    assert (p.value, p.method, p.read) == ("11.7", "environment variable", False)
    row = {r.component: r for r in probe.evaluate(Summary(libs={"cuda": p}), NGC, gpu=False)}["cuda"]
    assert row.status == "unverified" and row.detected is None
    assert "CUDA_VERSION=11.7.1.017 (environment variable: recorded, not asserted)" in row.detail
    absent = probe.lib_summary("cuda", RawLib(name=None, tried=["libcudart.so.11.0: cannot open"]), env)
    statuses = probe.statuses(probe.evaluate(Summary(libs={"cuda": absent}), NGC, gpu=False))
    assert statuses["cuda"] == "missing"                        # the variable does not make the library exist


def test_a_library_call_wins_over_the_other_methods():
    p = probe.lib_summary("nccl", RawLib(name="libnccl.so.2", path="/l/libnccl.so.2.12.12", call="ncclGetVersion",
                                         rc=0, value=21212), {"NCCL_VERSION": "2.13.4"})
    assert (p.value, p.method, p.read) == ("2.12.12", "library call", True)


def test_a_child_that_timed_out_is_named():
    p = probe.lib_summary("cudnn", RawLib(name="libcudnn.so.8", path="/l/libcudnn.so.8.4.1", call="cudnnGetVersion",
                                          exit="timed out after 60 s", stderr=""), {})
    assert p.error == "cudnnGetVersion timed out after 60 s" and (p.value, p.method) == ("8.4.1", "file name")


def test_profile_on_the_cuda_standin_base():
    v = spec.load(Path(__file__).resolve().parent.parent / "variants" / "bert.yaml").spec
    name, why = testrun.choose_profile(v, {"Env": ["TFIMG_STANDIN=1", "CUDA_VERSION=11.7.1", "TFIMG_STANDIN_CUDA=1"]})
    assert name == "standin-cuda" and "CUDA stand-in" in why and "ngc-22.07" in why
    assert testrun.choose_profile(v, {"Env": ["TFIMG_STANDIN=1"]})[0] == "standin-cpu"


def test_standin_cuda_profile_holds_the_wheels_versions():
    p = profiles.get("standin-cuda")
    assert {c: p.components[c].expect for c in ("cuda", "cudnn", "nccl")} == \
        {"cuda": "==11.7", "cudnn": "==8.5.0", "nccl": "==2.13.4"}
    assert all(p.components[c].confirmed and "wheel nvidia-" in p.components[c].source
               for c in ("cuda", "cudnn", "nccl"))


# --------------------------------------------------------------------------- constructed samples


def test_no_result_line_is_an_error():
    with pytest.raises(Exception, match="printed no result"):
        probe.parse_output("Traceback (most recent call last):\nImportError: boom")


def test_ngc_22_07_on_driver_515_all_ok_and_nccl_recorded_not_asserted():
    r = rows("ngc-22.07-a100-r515-constructed.txt")
    for comp in ("python", "tensorflow", "cuda", "cudnn", "driver", "tf_cuda_build", "tf_gpus", "matmul"):
        assert r[comp].status == "ok", r[comp]
    assert r["nccl"].status == "recorded" and r["nccl"].detected == "2.12.12"   # confirmed: false
    assert probe.failed(list(r.values())) == []


def test_driver_460_is_too_old_for_cuda_11_7():
    r = rows("ngc-22.07-r460-too-old-constructed.txt")
    assert r["driver"].status == "failed" and "older than 515" in r["driver"].detail
    assert [x.component for x in probe.failed(list(r.values()))] == ["driver"]


def test_driver_470_57_is_a_forward_compatible_branch():
    r = rows("ngc-22.07-r470-forward-compat-constructed.txt")
    assert r["driver"].status == "ok" and "forward-compatible" in r["driver"].detail


def test_matmul_that_ran_on_the_cpu_fails():
    r = rows("ngc-22.07-matmul-on-cpu-constructed.txt")
    assert r["matmul"].status == "failed" and "CPU:0" in r["matmul"].detail


def test_other_profile_reports_mismatch():
    r = rows("ngc-22.07-a100-r515-constructed.txt", profile=profiles.get("ngc-22.09"))
    assert r["cuda"].status == "mismatch" and r["cudnn"].status == "mismatch"


def test_without_gpu_mode_gpu_rows_are_skipped_not_ok():
    r = rows("standin-cpu-recorded.txt", profile=profiles.get("standin-cpu"), gpu=False)
    for comp in ("driver", "tf_gpus", "matmul"):
        assert r[comp].status == "skipped" and "GPU mode is off" in r[comp].detail
    assert r["tensorflow"].status == "ok" and r["cuda"].status == "recorded"
    # read without a GPU; the CPU stand-in's profile has no GPU stack, so it is recorded
    assert r["tf_cuda_build"].status == "recorded" and "is a CUDA build" in r["tf_cuda_build"].detail


def test_gpu_mode_without_gpu_fails_rather_than_passes():
    r = rows("standin-cpu-recorded.txt", profile=profiles.get("standin-cpu"), gpu=True)
    assert {r[c].status for c in ("driver", "tf_gpus", "matmul")} == {"failed"}


def test_probe_local_on_this_host_reports_no_gpu_cleanly(capsys):
    start = time.monotonic()
    code = cli.main(["probe", "--local", "--json"])
    took = time.monotonic() - start
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    if not data["summary"]["tensorflow"]:
        assert took < 30, f"the probe took {took:.1f} s on a host without TensorFlow"
    cuda = data["summary"]["libs"]["cuda"]
    if cuda["loaded"] is None:          # no libcudart.so.11.0 here: another runtime is never TensorFlow's
        assert data["summary"]["cuda"] is None
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
