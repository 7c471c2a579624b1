"""The host reference: TensorFlow Lite Micro's own Python interpreter (``tflite_micro``).

It runs TFLM's reference kernels, so its outputs are what a device running TFLM must produce,
bit for bit, and its recording allocator tells how much tensor arena TFLM needs. It does not
import TensorFlow (it loads in well under a second).
"""

from __future__ import annotations

import ctypes
import os
import re
import sys
import tempfile
from dataclasses import dataclass, field

import numpy as np

from tinydeploy import tflite
from tinydeploy.errors import ModelError


def _runtime():
    from tflite_micro.python.tflite_micro import runtime

    return runtime


@dataclass(frozen=True)
class AllocationRecord:
    """What TFLM's RecordingMicroAllocator reported on this (64-bit) host."""

    total: int
    head: int                       # non-persistent part: activations and scratch
    tail: int                       # persistent part: runtime structs and kernel op data
    categories: dict = field(default_factory=dict)   # name -> (used bytes, count)

    def count(self, name: str) -> int:
        return self.categories.get(name, (0, 0))[1]

    def used(self, name: str) -> int:
        return self.categories.get(name, (0, 0))[0]


_TOTAL = re.compile(r"Arena allocation (total|head|tail) (\d+) bytes")
_CATEGORY = re.compile(r"'([^']+)' used (\d+) bytes .*? for (\d+) ")


def _parse_allocations(text: str) -> AllocationRecord:
    totals = {m.group(1): int(m.group(2)) for m in _TOTAL.finditer(text)}
    if set(totals) != {"total", "head", "tail"}:
        raise ModelError("TFLM's recording allocator printed no arena figures",
                         "check that tflite-micro is installed correctly")
    cats = {m.group(1): (int(m.group(2)), int(m.group(3))) for m in _CATEGORY.finditer(text)}
    return AllocationRecord(totals["total"], totals["head"], totals["tail"], cats)


_LIBC = ctypes.CDLL(None)


def _capture_stderr(fn) -> str:
    """Run fn() and return what C++ code wrote to file descriptor 2 (TFLM's DebugLog) meanwhile."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            fn()
        finally:
            _LIBC.fflush(None)  # TFLM prints through C stdio: flush before restoring fd 2
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
        tmp.seek(0)
        return tmp.read().decode("utf-8", "replace")


def wheel_reference_name() -> str:
    """How reports name this reference: the wheel and its version."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        wheel = f"tflite_micro {version('tflite-micro')}"
    except PackageNotFoundError:
        wheel = "tflite_micro"
    return f"{wheel} (TFLM reference kernels, the wheel)"


class Reference:
    """A TFLM interpreter over one model: run samples, read the arena record."""

    def __init__(self, model_bytes: bytes):
        runtime = _runtime()
        try:
            self._ip = runtime.Interpreter.from_bytes(bytes(model_bytes),
                                                      arena_size=tflite.host_arena_bytes(model_bytes))
        except (RuntimeError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelError(f"TFLM cannot load this model: {first}",
                             "check 'tinydeploy inspect' for unsupported ops") from None
        self._allocations: AllocationRecord | None = None
        graph = tflite.parse(model_bytes).main
        self.num_inputs, self.num_outputs = len(graph.inputs), len(graph.outputs)

    @property
    def name(self) -> str:
        return wheel_reference_name()

    def outputs(self, samples) -> list[list[np.ndarray]]:
        """Every sample's outputs (samples on axis 0, each shaped like the model input)."""
        return [self.invoke([sample]) for sample in samples]

    def input_details(self, i: int = 0) -> dict:
        return self._ip.get_input_details(i)

    def output_details(self, i: int = 0) -> dict:
        return self._ip.get_output_details(i)

    def invoke(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        """Run one sample (one array per model input, with batch axis) and return the outputs."""
        for i, x in enumerate(inputs):
            self._ip.set_input(x, i)
        self._ip.invoke()
        return [np.array(self._ip.get_output(i)) for i in range(self.num_outputs)]

    def run(self, x: np.ndarray) -> np.ndarray:
        """Run a batch of single-input samples (axis 0) and stack the first output."""
        shape = tuple(self.input_details(0)["shape"])
        outs = [self.invoke([np.asarray(s).reshape(shape)])[0] for s in x]
        return np.stack(outs)

    def allocations(self) -> AllocationRecord:
        if self._allocations is None:
            text = _capture_stderr(self._ip.print_allocations)
            self._allocations = _parse_allocations(text)
        return self._allocations
