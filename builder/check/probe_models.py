"""Typed hand-offs of the probe: what it prints (raw), what it means (summary), and its rows.

``Raw*`` mirror the JSON line of ``builder/check/incontainer/tfimg_probe.py``
(keys it may add later are kept, not refused: the raw line is printed back by
``tfimg probe --json``). :class:`Summary` and :class:`Row` are what
:mod:`builder.check.probe` makes of it; the summary travels to the check suite
(:class:`builder.check.suite.context.Context`) and into ``report.json``
(``checks.probe``), the rows into ``checks.probe.rows`` and the tables.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Method = Literal["library call", "file name", "version file", "environment variable"]
Status = Literal["ok", "mismatch", "missing", "recorded", "unverified", "failed", "skipped"]


class _Raw(BaseModel):
    model_config = ConfigDict(frozen=True, extra="allow", coerce_numbers_to_str=True)


class RawVersionFile(_Raw):
    """The CUDA toolkit's ``version.json`` above the runtime's file."""

    path: str | None = None
    cuda: str | None = None
    cuda_cudart: str | None = None
    error: str | None = None


class RawLib(_Raw):
    """One library child: the name that loaded (None: none did), the real file, the version call."""

    name: str | None = None
    path: str | None = None
    tried: list[str] = Field(default_factory=list)
    call: str | None = None
    value: int | None = None
    rc: int | None = None
    rc_name: str | None = None
    error: str | None = None
    exit: str | None = Field(None, description="How a child that did not exit 0 ended (signal, code, timeout).")
    stderr: str | None = None
    seconds: float | None = None
    version_file: RawVersionFile | None = None


class Matmul(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    device: str | None = None
    max_abs_diff: float | None = None


class RawTF(_Raw):
    version: str | None = None
    error: str | None = None
    is_cuda_build: bool | None = None
    cuda_version: str | None = None
    cudnn_version: str | None = None
    gpus: list[str] = Field(default_factory=list)
    cuda_libs: list[str] = Field(default_factory=list)
    matmul: Matmul | None = None
    exit: str | None = None
    stderr: str | None = None
    seconds: float | None = None


class RawSmi(_Raw):
    rc: int | None = None
    stdout: str = ""
    stderr: str = ""


class RawProbe(_Raw):
    """The probe's line ``TFIMG_PROBE=<json>``."""

    probe: int | None = None
    python: str | None = None
    glibc: str | None = None
    env: dict[str, str] = Field(default_factory=dict)
    libs: dict[str, RawLib] = Field(default_factory=dict)
    smi: RawSmi | None = None
    tf: RawTF | None = None


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class LibSummary(_Out):
    """One library: its version and how it was obtained (``read`` only for a library call)."""

    soname: str = Field(description="The soname TensorFlow 2.9 loads.")
    value: str | None = None
    method: Method | None = None
    read: bool = False
    loaded: str | None = Field(None, description="The soname that loaded (None where it did not).")
    file: str | None = Field(None, description="The real file the loader mapped.")
    why: str = Field("", description="Why the library did not answer, or why the value is not TensorFlow's.")
    error: str | None = Field(None, description="A crash or timeout of the probe's child.")
    other: str | None = Field(None, description="Another library found instead of the soname.")
    env: str | None = Field(None, description="NGC's environment variable, as set (NAME=value).")
    version_file: str | None = Field(None, description="The version.json the value came from.")


class Summary(_Out):
    """Versions as strings, each library with its method; what TensorFlow and nvidia-smi said.

    ``cuda``, ``cudnn`` and ``nccl`` hold a version only where it describes the
    library that was loaded (library call, file name or version file).
    """

    python: str | None = None
    glibc: str | None = None
    tensorflow: str | None = None
    tf_error: str | None = None
    tf_cuda_build: bool | None = None
    tf_build_cuda: str | None = None
    tf_build_cudnn: str | None = None
    tf_gpus: list[str] = Field(default_factory=list)
    tf_cuda_libs: list[str] = Field(default_factory=list)
    matmul: Matmul | None = None
    cuda: str | None = None
    cudnn: str | None = None
    nccl: str | None = None
    libs: dict[str, LibSummary] = Field(default_factory=dict)
    driver: str | None = None
    gpus: list[str] = Field(default_factory=list)
    smi: str | None = Field(None, description="'ok', nvidia-smi's error, or None where it is not on PATH.")


class Row(_Out):
    """One component against the profile; ``method`` and ``read`` are set on the library rows only."""

    component: str
    detected: str | int | bool | None = None
    expected: str | None = None
    confirmed: bool = True
    status: Status
    detail: str = ""
    method: Method | None = None
    read: bool | None = None
