"""The host reference for a TFLM device: the device's own TFLM library, compiled for this host.

A TFLM release and its optimized kernels (CMSIS-NN on the Arm boards) may round differently from
the ``tflite_micro`` wheel: the pinned Arduino library computes a FULLY_CONNECTED output multiplier
from a float32 product where the wheel uses a double, and lands on the other side of a rounding tie
now and then. A validation must never fail for a reason that is not the user's, so a device that
runs TFLM is compared with that same library: its sources built for the host (CMSIS-NN's portable
C path) into a shared library, once, cached (tinydeploy.tflm_lib), and called through ctypes over
the small C API of ``firmware/tflm/td_tflm_host.cc``.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from tinydeploy import tflite, tflm_lib
from tinydeploy.errors import BuildError, ModelError
from tinydeploy.resources import firmware_dir

_SHIM = "td_tflm_host.cc"
_LINK_VERSION = b"model-resolver-1"  # bump when the way the shared library is linked changes
_STATUS = {-1: "out of host memory", -2: "the model's schema version is not the library's",
           -3: "an op could not be registered", -4: "AllocateTensors failed"}


def host_library(lib: tflm_lib.TflmLibrary, ops: list[str], progress=None) -> Path:
    """The shared library (TFLM for the host, the model's op resolver, the C API), built once per
    library, shim and set of ops; only those ops' kernels are compiled (the whole library if a
    kernel needs more)."""
    shim = firmware_dir() / "tflm" / _SHIM
    ops = sorted(set(ops))
    tag = hashlib.sha256(shim.read_bytes() + _LINK_VERSION + "\n".join(ops).encode()).hexdigest()[:16]

    def link(compiled: tflm_lib.CompiledLibrary) -> Path:
        so = compiled.archive.parent / f"libtdtflm-{tag}{'' if compiled.complete else '-ops'}.so"
        if so.is_file():
            return so
        with tflm_lib.cache_lock(so.parent), tempfile.TemporaryDirectory() as tmp:
            if so.is_file():
                return so
            from tinydeploy.render import write_op_resolver

            write_op_resolver(Path(tmp), "the reference", ops)
            # Export the C API only, and bind every TFLM symbol inside: a process that has loaded
            # another TFLM (the tflite_micro wheel, TensorFlow's TFLite) must not lend it its own.
            exports = Path(tmp) / "exports.map"
            exports.write_text("{ global: td_ref_*; local: *; };\n")
            staged = Path(tmp) / so.name
            cmd = ["g++", *compiled.target.cxx_flags, f"-I{lib.src}", f"-I{tmp}", "-shared",
                   "-o", str(staged), str(shim), str(compiled.archive),
                   f"-Wl,--version-script={exports}", "-Wl,-Bsymbolic", "-Wl,--no-undefined"]
            result = subprocess.run(cmd, capture_output=True, text=True)
            if result.returncode != 0:
                err = BuildError("building the host TFLM reference failed: "
                                 + " | ".join(result.stderr.splitlines()[-3:]),
                                 "check that --tflm-lib is an intact Arduino_TensorFlowLite library")
                err.stderr = result.stderr
                raise err
            os.replace(staged, so)
        return so

    from tinydeploy.tflm_firmware import link_with_library

    return link_with_library(lib, tflm_lib.host_target(), ops, link, progress)


def _load(so: Path) -> ctypes.CDLL:
    dll = ctypes.CDLL(str(so))
    ptr, size_p, int_p = ctypes.c_void_p, ctypes.POINTER(ctypes.c_size_t), ctypes.POINTER(ctypes.c_int)
    dll.td_ref_create.restype = ptr
    dll.td_ref_create.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_size_t, int_p]
    dll.td_ref_destroy.argtypes = [ptr]
    dll.td_ref_num_inputs.argtypes = dll.td_ref_num_outputs.argtypes = [ptr]
    dll.td_ref_input.restype = dll.td_ref_output.restype = ptr
    dll.td_ref_input.argtypes = dll.td_ref_output.argtypes = [ptr, ctypes.c_int, size_p]
    dll.td_ref_invoke.argtypes = [ptr]
    dll.td_ref_arena_used.restype = ctypes.c_size_t
    dll.td_ref_arena_used.argtypes = [ptr]
    dll.td_ref_log.restype = ctypes.c_char_p
    return dll


def library_reference_name(lib: tflm_lib.TflmLibrary) -> str:
    """How reports name this reference: the library, built for the host."""
    return f"{lib.name} {lib.version} (host build of the device's library)"


class LibraryReference:
    """TFLM of the given library, on this host, over one model (same interface as
    :class:`tinydeploy.reference.Reference`: ``invoke(inputs) -> outputs``)."""

    def __init__(self, model_bytes: bytes, lib: tflm_lib.TflmLibrary, progress=None,
                 arena_bytes: int | None = None):
        self.library = lib
        graph = tflite.parse(model_bytes).main
        self._dll = _load(host_library(lib, [op.opcode for op in graph.operators], progress))
        self._outputs = [graph.tensors[i] for i in graph.outputs]
        self._inputs = [graph.tensors[i] for i in graph.inputs]
        arena = arena_bytes or _host_arena_bytes(graph)
        status = ctypes.c_int(0)
        self._ref = self._dll.td_ref_create(bytes(model_bytes), len(model_bytes), arena,
                                            ctypes.byref(status))
        if not self._ref:
            log = self._dll.td_ref_log().decode("utf-8", "replace").strip().splitlines()
            raise ModelError(f"{lib.name} cannot load this model on the host: "
                             f"{_STATUS.get(status.value, status.value)}"
                             + (f" ({log[0]})" if log else ""),
                             "check 'tinydeploy inspect' for ops the library lacks")

    @property
    def name(self) -> str:
        return library_reference_name(self.library)

    def outputs(self, samples) -> list[list[np.ndarray]]:
        """Every sample's outputs (samples on axis 0, each shaped like the model input)."""
        return [self.invoke([sample]) for sample in samples]

    def close(self) -> None:
        if getattr(self, "_ref", None):
            self._dll.td_ref_destroy(self._ref)
            self._ref = None

    def __del__(self):
        self.close()

    def invoke(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        """Run one sample (one array per model input) and return copies of the outputs."""
        size = ctypes.c_size_t(0)
        for i, x in enumerate(inputs):
            raw = np.ascontiguousarray(x).tobytes()
            ptr = self._dll.td_ref_input(self._ref, i, ctypes.byref(size))
            if len(raw) != size.value:
                raise ModelError(f"input {i} is {len(raw)} bytes, the model takes {size.value}",
                                 "pass samples of the model's input shape and dtype")
            ctypes.memmove(ptr, raw, len(raw))
        if self._dll.td_ref_invoke(self._ref) != 0:
            log = self._dll.td_ref_log().decode("utf-8", "replace").strip()
            raise ModelError(f"{self.library.name} failed to run the model on the host"
                             + (f" ({log.splitlines()[0]})" if log else ""),
                             "check 'tinydeploy inspect' for ops the library lacks")
        outs = []
        for i, t in enumerate(self._outputs):
            ptr = self._dll.td_ref_output(self._ref, i, ctypes.byref(size))
            dtype = t.dtype if t.dtype is not None else np.int8
            arr = np.frombuffer(ctypes.string_at(ptr, size.value), dtype=dtype).copy()
            outs.append(arr.reshape(t.shape) if arr.size == int(np.prod(t.shape)) else arr)
        return outs

    def arena_used(self) -> int:
        return int(self._dll.td_ref_arena_used(self._ref))


def _host_arena_bytes(graph) -> int:
    """Room for the model on this host: every tensor's bytes (no planning assumed) plus room for
    the 64-bit runtime structs; the host has memory to spare."""
    tensors = sum(t.nbytes for t in graph.tensors if not t.is_constant)
    return 2 * tensors + 256 * len(graph.tensors) + (1 << 20)
