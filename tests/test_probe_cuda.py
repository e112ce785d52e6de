"""The probe against NVIDIA's real CUDA libraries: the CUDA stand-in, and its libraries on this host.

The CUDA stand-in (``scripts/standin/build-cuda.sh``: the CPU stand-in plus
NVIDIA's cu11 wheels' libraries at NGC's paths, no driver, no GPU) is built
only by the fixtures here, once per recipe, so the rest of the suite keeps the
small CPU stand-in. ``TFIMG_TEST_CUDA_BASE`` names an image to use instead.

Three bugs, each with a test that failed before the fix:
- ``cudaRuntimeGetVersion`` answers rc 35 without a driver, so the CUDA
  runtime came out missing: now its version comes by file name
  (``libcudart.so.11.7.99``), recorded as such.
- The probe read ``libcudart.so`` before ``libcudart.so.11.0``: on a host with
  another CUDA runtime on the loader path it read that one (13.0 on the dev
  machine), not the one TensorFlow 2.9 loads.
- On glibc >= 2.34 without ``libcuda.so.1`` a cuDNN call aborts the process
  (SIGABRT): the probe printed nothing. Now each library is probed in its own
  child process, and the abort is that row's error.
The host tests copy the libraries out of the stand-in (no download).
"""

from __future__ import annotations

import ctypes.util
import glob
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import docker
import pytest

from builder.check import incontainer, probe
from builder.check.probe_models import Summary
from builder.infra import report
from builder.infra.engine import Engine
from builder.pipeline import single
from builder.spec import loader as spec
from builder.spec import profiles

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "tests" / "data" / "probe" / "cuda-stack.yaml"
CUDA_LIB = "/usr/local/cuda-11.7/targets/x86_64-linux/lib"
GNU_LIB = "/usr/lib/x86_64-linux-gnu"
# Real files in the stand-in (NGC's naming: the full version) and the soname each answers to.
COPIED = {
    f"{CUDA_LIB}/libcudart.so.11.7.99": "libcudart.so.11.0",
    f"{CUDA_LIB}/libcublas.so.11.10.3.66": "libcublas.so.11",
    f"{CUDA_LIB}/libcublasLt.so.11.10.3.66": "libcublasLt.so.11",
    f"{GNU_LIB}/libcudnn.so.8.5.0": "libcudnn.so.8",
    f"{GNU_LIB}/libcudnn_ops_infer.so.8.5.0": "libcudnn_ops_infer.so.8",
}


@pytest.fixture(scope="session")
def cuda_standin(engine) -> str:
    """The CUDA stand-in base, built once per recipe hash by scripts/standin/build-cuda.sh."""
    ref = os.environ.get("TFIMG_TEST_CUDA_BASE")
    if ref:
        return ref
    res = subprocess.run([str(ROOT / "scripts/standin/build-cuda.sh")], capture_output=True, text=True,
                         timeout=3600)
    if res.returncode != 0:
        pytest.fail(f"CUDA stand-in build (scripts/standin/build-cuda.sh) failed:\n{res.stderr[-3000:]}")
    return res.stdout.strip().splitlines()[-1]


def probe_in(image: str, *, tf: bool = True, timeout: float = 300) -> tuple[str, Summary]:
    """Copy the probe into a throwaway container of ``image`` and run it there: (its output, the summary)."""
    env = {} if tf else {"TFIMG_PROBE_TF": "0"}
    engine = Engine.from_env()
    with engine.running(image, command=["sleep", str(int(timeout) + 60)], environment=env) as (container, _):
        code, output = probe.run_in(engine, container, "python3", timeout=timeout)
    assert code == 0, f"the probe exited {code} (124: it did not finish in {timeout} s):\n{output[-2000:]}"
    return output, probe.summarize(probe.parse_output(output))


@pytest.fixture(scope="module")
def standin_probe(cuda_standin) -> Summary:
    return probe_in(cuda_standin)[1]


@pytest.fixture(scope="session")
def cuda_libs(cuda_standin, tmp_path_factory) -> Path:
    """NVIDIA's libraries copied out of the CUDA stand-in (real files plus soname links), for host runs."""
    out = tmp_path_factory.mktemp("cuda-libs")
    container = docker.from_env().containers.create(cuda_standin, command=["true"])
    try:
        for src, soname in COPIED.items():
            stream, _ = container.get_archive(src)
            tar_path = out / "part.tar"
            with tar_path.open("wb") as fh:
                for chunk in stream:
                    fh.write(chunk)
            with tarfile.open(tar_path) as tar:
                member = tar.getmembers()[0]
                assert member.isfile(), f"{src} is not a regular file in {cuda_standin}"
                fobj = tar.extractfile(member)
                assert fobj is not None
                with (out / Path(src).name).open("wb") as dst:
                    shutil.copyfileobj(fobj, dst)
            tar_path.unlink()
            (out / soname).symlink_to(Path(src).name)
    finally:
        container.remove(force=True)
    return out


def host_probe(lib_path: str, python: str = sys.executable) -> tuple[subprocess.CompletedProcess, Summary | None]:
    """The probe on this host with ``lib_path`` as LD_LIBRARY_PATH, TensorFlow left out (this Python has none)."""
    env = {**os.environ, "LD_LIBRARY_PATH": lib_path, "TFIMG_PROBE_TF": "0"}
    res = subprocess.run(probe.command(python, str(incontainer.DIR)), capture_output=True, text=True, timeout=120,
                         env=env)
    try:
        return res, probe.summarize(probe.parse_output(res.stdout + "\n" + res.stderr))
    except Exception:
        return res, None


def glibc() -> tuple[int, ...]:
    name = os.confstr("CS_GNU_LIBC_VERSION") or "glibc 0.0"
    return tuple(int(x) for x in name.split()[-1].split("."))


# --------------------------------------------------------------------------- bug 1: rc 35

@pytest.mark.slow
def test_cuda_runtime_version_by_file_name_where_the_runtime_answers_rc_35(standin_probe):
    s = standin_probe
    assert s.cuda == "11.7", s                                 # was None: "missing"
    cuda = s.libs["cuda"]
    assert cuda.method == "file name" and cuda.read is False
    assert cuda.file.endswith("/libcudart.so.11.7.99") and cuda.loaded == "libcudart.so.11.0"
    assert "rc 35" in cuda.why and "cudaErrorInsufficientDriver" in cuda.why


@pytest.mark.slow
def test_cudnn_and_nccl_are_read_from_nvidias_libraries(standin_probe):
    s = standin_probe
    assert (s.cudnn, s.libs["cudnn"].method, s.libs["cudnn"].read) == ("8.5.0", "library call", True)
    assert (s.nccl, s.libs["nccl"].method, s.libs["nccl"].read) == ("2.13.4", "library call", True)
    assert s.libs["cudnn"].file == f"{GNU_LIB}/libcudnn.so.8.5.0"
    assert s.libs["nccl"].file == f"{GNU_LIB}/libnccl.so.2.13.4"
    assert s.tf_cuda_build is True and s.tf_gpus == []
    assert any(p.endswith("libcudart.so.11.7.99") for p in s.tf_cuda_libs)   # the runtime TF itself mapped


@pytest.mark.slow
def test_standin_cuda_profile_passes_and_ngc_22_07_names_the_mismatches(standin_probe):
    ok = {r.component: r for r in probe.evaluate(standin_probe, profiles.get("standin-cuda"), gpu=False)}
    for comp in ("python", "tensorflow", "cuda", "cudnn", "nccl", "tf_cuda_build"):
        assert ok[comp].status == "ok", ok[comp]
    assert probe.failed(list(ok.values())) == []
    ngc = {r.component: r for r in probe.evaluate(standin_probe, profiles.get("ngc-22.07"), gpu=False)}
    assert ngc["cudnn"].status == "mismatch" and "found 8.5.0, expected ==8.4.1" in ngc["cudnn"].detail
    # ngc-22.07's NCCL expectation is unconfirmed: a mismatch naming both, reported but not failed
    assert (ngc["nccl"].status, ngc["nccl"].confirmed) == ("mismatch", False)
    assert "found 2.13.4, expected ==2.12.*" in ngc["nccl"].detail and "unconfirmed" in ngc["nccl"].detail
    assert [r.component for r in probe.failed(list(ngc.values()))] == ["python", "tensorflow", "cudnn"]
    assert ngc["cuda"].status == "ok"


# --------------------------------------------------------------------------- bug 2: libcudart.so first

@pytest.fixture
def other_runtime(tmp_path) -> tuple[str, str]:
    """A directory whose ``libcudart.so`` is another CUDA runtime than 11.x, and its version.

    The host's own CUDA 12/13 runtime where there is one (this project's dev
    machine has /usr/local/cuda-13.0), else a stand-in built with the C
    compiler that answers cudaRuntimeGetVersion with 13000.
    """
    for found in sorted(glob.glob("/usr/local/cuda-1[2-9]*/lib*/libcudart.so")):
        (tmp_path / "libcudart.so").symlink_to(found)
        return str(tmp_path), "host"
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc:
        pytest.skip("needs another CUDA runtime (/usr/local/cuda-1[2-9]*) or a C compiler to make one")
    src = tmp_path / "cudart13.c"
    src.write_text("int cudaRuntimeGetVersion(int *v) { *v = 13000; return 0; }\n")
    subprocess.run([cc, "-shared", "-fPIC", "-o", str(tmp_path / "libcudart.so"), str(src)], check=True)
    return str(tmp_path), "compiled"


@pytest.mark.slow
def test_probe_reads_the_runtime_tensorflow_loads_not_an_unversioned_libcudart(cuda_libs, other_runtime, tmp_path):
    only = tmp_path / "cudart"                                   # the runtime alone: cuDNN's abort is bug 3
    only.mkdir()
    for name in ("libcudart.so.11.7.99", "libcudart.so.11.0"):
        (only / name).symlink_to(cuda_libs / name)
    res, s = host_probe(f"{other_runtime[0]}:{only}")
    assert s is not None, res.stdout + res.stderr
    assert s.cuda == "11.7", s                                 # was 13.0: libcudart.so came first
    assert s.libs["cuda"].loaded == "libcudart.so.11.0"
    assert s.libs["cuda"].file == str(cuda_libs / "libcudart.so.11.7.99")
    assert s.libs["cuda"].other is None                    # the soname loaded: nothing else tried


def test_probe_local_on_this_host_does_not_take_another_runtime_for_tensorflows(capsys):
    """This host: a CUDA 13 runtime is on the loader path as libcudart.so, no libcudart.so.11.0."""
    if ctypes.util.find_library("cudart") is None:
        pytest.skip("no unversioned libcudart.so on this host's loader path")
    res, s = host_probe(os.environ.get("LD_LIBRARY_PATH", ""))
    assert s is not None, res.stdout + res.stderr
    cuda = s.libs["cuda"]
    if cuda.loaded != "libcudart.so.11.0":
        assert s.cuda is None and cuda.other, cuda
        assert "not the runtime TensorFlow 2.9 loads" in cuda.why


# --------------------------------------------------------------------------- bug 3: SIGABRT

@pytest.mark.slow
def test_a_cudnn_abort_is_that_rows_error_and_the_other_rows_come_back(cuda_libs):
    if glibc() < (2, 34):
        pytest.skip(f"cuDNN 8.5 aborts without libcuda.so.1 on glibc >= 2.34; this host has {glibc()}")
    if ctypes.util.find_library("cuda"):
        pytest.skip("this host has libcuda.so.1: cuDNN does not abort here")
    res, s = host_probe(str(cuda_libs))
    assert s is not None, f"the probe printed no result (exit {res.returncode}):\n{res.stderr[-1500:]}"
    cudnn = s.libs["cudnn"]
    assert "SIGABRT" in cudnn.error and "cudnnGetVersion" in cudnn.error, cudnn
    assert (s.cudnn, cudnn.method, cudnn.read) == ("8.5.0", "file name", False)   # libcudnn.so.8.5.0
    assert s.cuda == "11.7"                                   # the other rows came back
    rows = {r.component: r for r in probe.evaluate(s, profiles.get("standin-cuda"), gpu=False)}
    assert "SIGABRT" in rows["cudnn"].detail


@pytest.mark.slow
def test_a_cudnn_abort_without_a_version_in_the_file_name_is_unverified(cuda_libs, tmp_path):
    """The wheels' layout (soname files only), and no libcudnn_ops_infer: cuDNN aborts on any glibc."""
    shutil.copy(cuda_libs / "libcudnn.so.8.5.0", tmp_path / "libcudnn.so.8")
    res, s = host_probe(str(tmp_path))
    assert s is not None, f"the probe printed no result (exit {res.returncode}):\n{res.stderr[-1500:]}"
    cudnn = s.libs["cudnn"]
    assert "SIGABRT" in cudnn.error and s.cudnn is None and cudnn.method is None
    row = {r.component: r for r in probe.evaluate(s, profiles.get("standin-cuda"), gpu=False)}["cudnn"]
    assert row.status == "unverified" and "SIGABRT" in row.detail
    assert probe.failed([row]) == [row]


# --------------------------------------------------------------------------- tfimg test on the stand-in

@pytest.fixture(scope="module")
def stack_run(cuda_standin, tmp_path_factory) -> dict:
    """``tfimg test`` (checks suite, GPU off) on tests/data/probe/cuda-stack.yaml built on the CUDA stand-in."""
    from builder.infra.ui import UI
    from builder.pipeline import orchestrator as pipeline
    out_root = tmp_path_factory.mktemp("cuda-build")
    loaded = spec.load(SPEC)
    built = pipeline.build(loaded, pipeline.BuildOptions(out_root=out_root, base=cuda_standin, force=True),
                                 UI(quiet=True), Engine.from_env())
    out = out_root / loaded.name
    section = single.test(loaded, built.image_id, out, gpu="off", engine=Engine.from_env(), base=cuda_standin)
    return {"section": section, "out": out}


@pytest.mark.slow
def test_tfimg_test_on_the_cuda_standin_passes_the_stack_rows(stack_run):
    section = stack_run["section"]
    checks = {r.check: r for r in section.results}
    assert section.profile == "standin-cuda"
    for name, text in (("stack::cuda_runtime", "11.7"), ("stack::cudnn", "8.5.0"), ("stack::nccl", "2.13.4")):
        assert checks[name].status == "passed", checks[name]
        assert text in checks[name].detail
    assert "file name" in checks["stack::cuda_runtime"].detail and "libcudart.so.11.7.99" in \
        checks["stack::cuda_runtime"].detail
    assert "read from the library" in checks["stack::cudnn"].detail
    assert checks["stack::tensorflow_cuda_build"].status == "passed"
    assert "CUDA build" in checks["stack::tensorflow_cuda_build"].detail
    for name in ("stack::gpu_driver", "stack::tensorflow_lists_gpu", "stack::matmul_on_gpu0"):
        assert checks[name].status == "skipped" and "GPU mode is off" in checks[name].detail
    facts = report.load(stack_run["out"]).facts
    assert (facts.cuda, facts.cudnn, facts.nccl, facts.tf_cuda_build) == ("11.7", "8.5.0", "2.13.4", True)


# --------------------------------------------------------------------------- scripts/gpu-check.sh

@pytest.mark.slow
def test_gpu_check_script_records_the_host_and_names_what_it_skipped(tmp_path):
    """On a machine without a GPU it still records the host probe, and says the GPU steps were skipped."""
    res = subprocess.run([str(ROOT / "scripts/gpu-check.sh"), str(tmp_path)], capture_output=True, text=True,
                         timeout=1800)
    summary = (tmp_path / "gpu-check-summary.txt").read_text()
    assert res.returncode == 0, summary + res.stderr[-2000:]
    host = (tmp_path / "gpu-host-probe-recorded.txt").read_text()
    assert host.startswith("# RECORDED (not constructed) by scripts/gpu-check.sh")
    assert probe.parse_output(host).probe == 2
    assert "gpu-host-env-recorded.txt" in summary or "NO GPU answers nvidia-smi" in summary
    if not shutil.which("nvidia-smi"):
        assert "NO GPU answers nvidia-smi here" in summary and "# GPU (name, driver): none" in host
    if "4./5. CUDA stand-in: skipped" not in summary:      # a GPU machine with the stand-in: it ran them
        assert (tmp_path / "gpu-standin-cuda-probe-recorded.txt").is_file()
