"""The programs tfimg runs in containers (builder/check/incontainer): files for the image's Python 3.8+.

- the one parser of ``/proc/self/maps`` on recorded maps (tests/data/probe/*-maps-*-recorded.txt) and,
  as a property, on any line the kernel can write;
- each program is Python 3.8 code of the standard library only, run as a file here and (docker) copied
  into a container of the stand-in and run there as an unprivileged user;
- the probe names the runtime first on the loader path when TensorFlow's is absent (the H200 ``cu13``
  recording named another: tests/test_probe_gpu_recorded.py).
"""

from __future__ import annotations

import ast
import glob
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from builder.check import incontainer, probe
from builder.check.incontainer import tfimg_maps, tfimg_probe

DATA = Path(__file__).parent / "data" / "probe"
CUDA_LIB = "/usr/local/cuda-11.7/targets/x86_64-linux/lib"
GNU_LIB = "/usr/lib/x86_64-linux-gnu"


def maps(name: str) -> list[str]:
    """A recorded maps file without its '#' provenance lines."""
    return [ln for ln in (DATA / name).read_text().splitlines(keepends=True) if not ln.startswith("#")]


# --------------------------------------------------------------------------- the maps parser, recorded

def test_the_real_files_behind_the_sonames_in_the_cuda_standin():
    lines = maps("standin-cuda-maps-libs-recorded.txt")
    assert tfimg_maps.mapped_files(lines, ("libcudart.so.",)) == [f"{CUDA_LIB}/libcudart.so.11.7.99"]
    assert tfimg_maps.mapped_files(lines, ("libcudnn.so.",)) == [f"{GNU_LIB}/libcudnn.so.8.5.0"]
    assert tfimg_maps.mapped_files(lines, ("libnccl.so.",)) == [f"{GNU_LIB}/libnccl.so.2.13.4"]
    # several prefixes: each file once, in the order of the addresses (NCCL was mapped highest... lowest first)
    assert tfimg_maps.mapped_files(lines, tfimg_probe.TF_LIBS) == [
        f"{GNU_LIB}/libnccl.so.2.13.4", f"{GNU_LIB}/libcudnn.so.8.5.0", f"{CUDA_LIB}/libcudart.so.11.7.99"]
    assert tfimg_maps.mapped_files(lines, ("libcuda.so.",)) == []    # no driver in the stand-in


def test_the_cuda_libraries_tensorflow_mapped_in_the_cuda_standin():
    lines = maps("standin-cuda-maps-tf-recorded.txt")
    assert len(lines) > 800                                           # the whole of TensorFlow's process
    assert tfimg_maps.mapped_files(lines, tfimg_probe.TF_LIBS) == [f"{CUDA_LIB}/libcudart.so.11.7.99"]
    # the same answer as the probe's TensorFlow child gave there (recorded separately)
    recorded = probe.summarize(probe.parse_output((DATA / "standin-cuda-recorded.txt").read_text()))
    assert recorded.tf_cuda_libs == [f"{CUDA_LIB}/libcudart.so.11.7.99"]


def test_a_path_with_a_blank_and_a_removed_file():
    lines = maps("standin-maps-space-deleted-recorded.txt")
    assert tfimg_maps.mapped_files(lines, ("libz",)) == [
        "/tmp/libz-removed.so.1 (deleted)", "/tmp/with space/libz.so.1.2.11", f"{GNU_LIB}/libz.so.1.2.11"]
    anonymous = [ln for ln in lines if len(ln.split()) == 5]
    assert anonymous and all(tfimg_maps.pathname(ln) is None for ln in anonymous)
    pseudo = [ln for ln in lines if ln.rstrip().endswith(("[heap]", "[stack]", "[vdso]"))]
    assert pseudo and all(tfimg_maps.pathname(ln) is None for ln in pseudo)


def test_self_mapped_reads_this_process_and_never_fails():
    assert any(p.endswith(".so") or ".so." in p for p in tfimg_maps.self_mapped(("lib",)))
    assert tfimg_maps.self_mapped(("lib",), maps="/nonexistent/maps") == []


# --------------------------------------------------------------------------- the maps parser, any line

PATHS = st.lists(st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\n/\0"),
                         min_size=1, max_size=20), min_size=1, max_size=5).map(lambda parts: "/" + "/".join(parts))
HEX = st.integers(0, 2**48).map(lambda n: f"{n:x}")


@st.composite
def maps_line(draw) -> tuple[str, str]:
    """A line as the kernel's show_map_vma writes it: five fields, then the path padded to column 73."""
    path = draw(PATHS) + draw(st.sampled_from(["", " (deleted)"]))
    head = (f"{draw(HEX)}-{draw(HEX)} {draw(st.sampled_from(['r--p', 'r-xp', 'rw-p', '---p']))} "
            f"{draw(HEX).zfill(8)} {draw(st.integers(0, 255)):02x}:{draw(st.integers(0, 255)):02x} "
            f"{draw(st.integers(0, 2**32))} ")
    return head + " " * max(1, 73 - len(head)) + path + "\n", path


@given(st.lists(maps_line(), max_size=12))
def test_any_path_the_kernel_writes_comes_back_as_written(entries):
    for line, path in entries:
        assert tfimg_maps.pathname(line) == path
    paths = [p for _, p in entries]
    prefix = (os.path.basename(paths[0])[:3],) if paths else ("lib",)
    want = [p for i, p in enumerate(paths) if os.path.basename(p).startswith(prefix) and p not in paths[:i]]
    assert tfimg_maps.mapped_files([ln for ln, _ in entries], prefix) == want


# --------------------------------------------------------------------------- the programs are 3.8 programs

@pytest.mark.parametrize("name", incontainer.PROGRAMS)
def test_each_program_is_python_3_8_of_the_standard_library(name):
    source = (incontainer.DIR / name).read_text()
    tree = ast.parse(source, feature_version=(3, 8))                 # SyntaxError on 3.9+ syntax
    assert "from __future__ import annotations" in source            # annotations never evaluated on 3.8
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module
                 and n.level == 0}
    siblings = {Path(p).stem for p in incontainer.PROGRAMS}
    allowed = set(sys.stdlib_module_names) | siblings | {"tensorflow"}   # TensorFlow: where the image has it
    assert imported <= allowed, imported - allowed
    assert "builder" not in imported


def test_every_program_in_the_folder_is_shipped():
    assert sorted(p.name for p in incontainer.DIR.glob("tfimg_*.py")) == sorted(incontainer.PROGRAMS)
    assert set(incontainer.files()) == set(incontainer.PROGRAMS)
    with pytest.raises(ValueError, match="no in-container program"):
        incontainer.argv("probe.py")


def run(program: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """A program run as a file, as in a container (its folder on sys.path, nothing of tfimg imported)."""
    return subprocess.run([*incontainer.argv(program, sys.executable, str(incontainer.DIR)), *args],
                          capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})})


def test_dists_as_a_file_reads_versions_and_imports():
    res = run("tfimg_dists.py", json.dumps(["pytest", "no-such-distribution-tfimg"]))
    got = json.loads(res.stdout)
    assert got["pytest"] == {"version": importlib.metadata.version("pytest"), "import_errors": {}}
    assert got["no-such-distribution-tfimg"] == {"version": None}
    assert json.loads(run("tfimg_dists.py", "--no-import", '["pytest"]').stdout) == \
        {"pytest": {"version": importlib.metadata.version("pytest")}}
    assert run("tfimg_dists.py").returncode == 2


def test_procs_as_a_file_lists_itself():
    rows = json.loads(run("tfimg_procs.py").stdout)
    assert [os.getpid(), os.getuid()] in [[pid, uid] for pid, uid, _, _ in rows]   # its parent: this test
    assert all(isinstance(pid, int) and isinstance(name, str) for pid, _, name, _ in rows)


def test_the_probe_as_a_file_prints_one_line_and_refuses_other_arguments():
    res = run("tfimg_probe.py", env={"TFIMG_PROBE_TF": "0"})
    raw = probe.parse_output(res.stdout)
    assert (raw.probe, raw.tf, set(raw.libs)) == (2, None, {"cudart", "cudnn", "nccl"})
    assert raw.python == ".".join(map(str, sys.version_info[:3]))
    assert run("tfimg_probe.py", "--child", "lib", "nosuch").returncode == 2


# --------------------------------------------------------------------------- the runtime first on the path

@pytest.fixture
def cuda13_first(tmp_path) -> Path:
    """A folder with a copy of this host's real CUDA 12/13 runtime as ``libcudart.so.1N`` (a copy: the loader
    maps a link's target), as NVIDIA's cu13 wheels put it first on LD_LIBRARY_PATH."""
    found = sorted(glob.glob("/usr/local/cuda-1[2-9]*/lib*/libcudart.so.1[2-9]"))
    if not found:
        pytest.skip("no CUDA 12 or 13 runtime on this host (/usr/local/cuda-1N/lib*/libcudart.so.1N)")
    shutil.copy(os.path.realpath(found[-1]), tmp_path / Path(found[-1]).name)
    return tmp_path / Path(found[-1]).name


def test_the_newer_runtime_first_on_the_loader_path_is_the_one_named(cuda13_first):
    """Where libcudart.so.11.0 is absent, the probe names the versioned runtime first on the loader path,
    not whatever the unversioned development name reaches (the H200 cu13 set: the toolkit's, not the wheel's)."""
    res = run("tfimg_probe.py", env={"TFIMG_PROBE_TF": "0", "LD_LIBRARY_PATH": str(cuda13_first.parent)})
    s = probe.summarize(probe.parse_output(res.stdout))
    cuda = s.libs["cuda"]
    assert s.cuda is None and cuda.loaded is None                     # still not TensorFlow 2.9's runtime
    version = probe.cuda_version(probe.parse_output(res.stdout).libs["cudart"].value)
    assert cuda.other == f"{cuda13_first.name} -> {cuda13_first} ({version})"
    assert "not the runtime TensorFlow 2.9 loads" in cuda.why


# --------------------------------------------------------------------------- copied into a container

@pytest.mark.slow
def test_the_programs_copied_into_the_standin_run_there_as_any_user(docker_engine, standin_base):
    with docker_engine.running(standin_base, command=["sleep", "300"]) as (container, _):
        where = incontainer.install(docker_engine, container.id)
        code, listing = docker_engine.exec_run(container, ["ls", "-ln", where])
        assert code == 0 and all(f" {name}" in listing for name in incontainer.PROGRAMS), listing
        code, output = docker_engine.exec_run(container, probe.command("python3"), user="65534", timeout=300)
        raw = probe.parse_output(output)
        assert code == 0 and raw.python and raw.python.startswith("3.9")           # the stand-in's Python
        s = probe.summarize(raw)
        assert s.tensorflow == "2.9.3" and s.libs["cuda"].why.startswith("libcudart.so.11.0 not found")
        code, output = docker_engine.exec_run(
            container, [*incontainer.argv("tfimg_dists.py"), "--no-import", '["tensorflow", "nosuch"]'], user="65534")
        assert json.loads(output) == {"tensorflow": {"version": "2.9.3"}, "nosuch": {"version": None}}
        code, output = docker_engine.exec_run(container, incontainer.argv("tfimg_procs.py"), user="65534")
        assert [1, 0, "sleep", 0] in json.loads(output)                # PID 1 of the container, root's
