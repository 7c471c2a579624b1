"""Test harness for the native runtime: compile a model to C, build it with the host gcc into a
shared library, drive it through ctypes, and compare with the ``tflite_micro`` interpreter.

Kernels are compiled once per session into a static archive (``build_kernel_archive``); each
model then costs one gcc call for its model.c.
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from tinydeploy import native, tflite
from tinydeploy.resources import firmware_dir

KERNEL_DIR = firmware_dir() / "native"
# The MLPerf Tiny int8 models are in the repository (examples/mlperf_tiny).
MLPERF = Path(__file__).resolve().parents[2] / "examples" / "mlperf_tiny"
HOST_FLAGS = ["-std=c99", "-Wall", "-Wextra", "-Werror"]
ARM_FLAGS = ["-std=c99", "-mcpu=cortex-m4", "-mthumb", "-Os", "-Wall", "-Wextra", "-Werror"]


def build_kernel_archive(out_dir: Path) -> Path:
    """All firmware/native/*.c, -fPIC, in one archive the per-model libraries link against."""
    out_dir.mkdir(parents=True, exist_ok=True)
    sources = sorted(KERNEL_DIR.glob("*.c"))
    subprocess.run(["gcc", *HOST_FLAGS, "-O2", "-fPIC", "-c", *map(str, sources)],
                   cwd=out_dir, check=True)
    archive = out_dir / "libtdkernels.a"
    archive.unlink(missing_ok=True)
    subprocess.run(["ar", "rcs", str(archive), *[f"{s.stem}.o" for s in sources]],
                   cwd=out_dir, check=True)
    return archive


@dataclass
class NativeModel:
    """A compiled model loaded through ctypes."""

    lib: ctypes.CDLL
    result: native.CompileResult

    def __post_init__(self):
        self.lib.td_model_input.restype = ctypes.c_void_p
        self.lib.td_model_output.restype = ctypes.c_void_p
        self.lib.td_model_input_size.restype = ctypes.c_size_t
        self.lib.td_model_output_size.restype = ctypes.c_size_t
        self.lib.td_model_arena_used.restype = ctypes.c_size_t
        self.lib.td_model_runtime_name.restype = ctypes.c_char_p
        assert self.lib.td_model_init() == 0

    def run(self, inputs: list[np.ndarray], out_specs: list[tuple]) -> list[np.ndarray]:
        for i, x in enumerate(inputs):
            raw = np.ascontiguousarray(x).tobytes()
            assert self.lib.td_model_input_size(i) == len(raw)
            ctypes.memmove(self.lib.td_model_input(i), raw, len(raw))
        assert self.lib.td_model_invoke() == 0
        outs = []
        for i, (shape, dtype) in enumerate(out_specs):
            n = self.lib.td_model_output_size(i)
            data = ctypes.string_at(self.lib.td_model_output(i), n)
            outs.append(np.frombuffer(data, dtype=dtype).reshape(shape))
        return outs


def compile_and_load(model_bytes: bytes, work: Path, archive: Path) -> NativeModel:
    result = native.compile_model(model_bytes, work / "src")
    lib = work / "model.so"
    subprocess.run(["gcc", *HOST_FLAGS, "-O2", "-fPIC", "-shared", "-o", str(lib),
                    str(work / "src" / "model.c"), str(archive)], check=True)
    return NativeModel(ctypes.CDLL(str(lib)), result)


def build_standalone(src_dir: Path, compiler: str, flags: list[str], obj_dir: Path) -> list[Path]:
    """Compile every .c of a `tinydeploy compile` output on its own; return the objects."""
    obj_dir.mkdir(parents=True, exist_ok=True)
    sources = sorted(src_dir.glob("*.c"))
    subprocess.run([compiler, *flags, "-c", *map(str, sources)], cwd=obj_dir, check=True,
                   capture_output=True, text=True)
    return [obj_dir / f"{s.stem}.o" for s in sources]


class Reference:
    """The tflite_micro interpreter, the reference for bit-exactness."""

    def __init__(self, model_bytes: bytes):
        from tflite_micro.python.tflite_micro import runtime
        graph = tflite.parse(model_bytes).main
        self.ip = runtime.Interpreter.from_bytes(model_bytes)
        self.inputs = [self.ip.get_input_details(i) for i in range(len(graph.inputs))]
        self.outputs = [self.ip.get_output_details(i) for i in range(len(graph.outputs))]

    @property
    def out_specs(self) -> list[tuple]:
        return [(tuple(d["shape"]), d["dtype"]) for d in self.outputs]

    def random_inputs(self, rng: np.random.Generator) -> list[np.ndarray]:
        xs = []
        for d in self.inputs:
            shape, dtype = tuple(d["shape"]), d["dtype"]
            if dtype == np.int8:
                xs.append(rng.integers(-128, 128, size=shape, dtype=np.int8))
            else:
                xs.append(rng.uniform(-12.0, 12.0, size=shape).astype(dtype))
        return xs

    def run(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        for i, x in enumerate(inputs):
            self.ip.set_input(x, i)
        self.ip.invoke()
        return [self.ip.get_output(i) for i in range(len(self.outputs))]


def mlperf_path(name: str) -> Path:
    """Path of one of the repository's MLPerf Tiny int8 models."""
    return MLPERF / name


def have(tool: str) -> bool:
    return shutil.which(tool) is not None
