"""The validate stage: does the model on the device compute what it computes on the desk?

Each sample is quantized exactly as the device expects it (the input tensor's scale and zero
point), sent over the serial link, run on the device, and compared with the host reference on the
same int8 input. The reference computes exactly what the device should: for a device running TFLM,
the device's own TFLM library built for the host (tinydeploy.tflm_reference), since TFLM releases
and their optimized kernels round differently; for the native runtime, TFLM's reference kernels
(the ``tflite_micro`` wheel), the definition it is held to. The report names the reference used.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from tinydeploy.analyze import TensorSpec, analyze
from tinydeploy.errors import InputError
from tinydeploy.reference import Reference


def quantize_input(x: np.ndarray, spec: TensorSpec) -> np.ndarray:
    """Samples as the device's input tensor holds them: int8 passes through, float is quantized
    with the input's scale and zero point, rounding half away from zero like TFLM's QUANTIZE."""
    from tinydeploy.evaluate import quantize_input as quantize_like_tflm

    x = np.asarray(x)
    if spec.dtype == "float32":
        return x.astype(np.float32)
    if x.dtype == np.dtype(spec.dtype):
        return x
    if np.issubdtype(x.dtype, np.integer):
        raise InputError(f"samples are {x.dtype} but the model input is {spec.dtype}",
                         f"pass float samples (quantized for you) or {spec.dtype} samples")
    details = {"dtype": spec.dtype, "quantization_parameters": {
        "scales": [spec.scale], "zero_points": [spec.zero_point]}}
    return quantize_like_tflm(x, details)


def dequantize(q: np.ndarray, spec: TensorSpec) -> np.ndarray:
    if spec.dtype == "float32":
        return q.astype(np.float64)
    return (q.astype(np.float64) - spec.zero_point) * spec.scale


@dataclass
class ValidationReport:
    samples: int
    exact_match: float                # fraction of samples whose outputs are bit-identical
    agreement: float                  # fraction within the tolerance
    tolerance: int
    top1_agreement: float | None      # classifiers: device argmax == reference argmax
    accuracy: float | None            # device vs labels
    reference_accuracy: float | None  # host reference vs labels
    max_abs_diff: int                 # in quantized units
    rmse: float                       # dequantized device vs reference outputs
    cosine: float
    latency_us: dict                  # device-measured: min / median / max
    inferences_per_second: float
    arena_bytes: int
    runtime: str
    clock_hz: int
    bytes_moved: int                  # sample + output bytes through the link
    link_bytes_per_second: float
    cycles: dict | None = None
    mismatches: list[int] = field(default_factory=list)   # first sample indices that differ
    reference: str = ""               # what the device was compared with

    @property
    def passed(self) -> bool:
        return self.agreement == 1.0

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__} | {"passed": self.passed}

    def lines(self) -> list[str]:
        pct = lambda v: "n/a" if v is None else f"{v:.2%}"  # noqa: E731
        lat = self.latency_us
        out = [
            f"samples         {self.samples}",
            f"exact match     {pct(self.exact_match)} (max |diff| {self.max_abs_diff} quantized units)",
            f"within ±{self.tolerance}       {pct(self.agreement)}",
            f"top-1 agreement {pct(self.top1_agreement)}",
            f"accuracy        device {pct(self.accuracy)}, host reference {pct(self.reference_accuracy)}",
            f"output error    RMSE {self.rmse:.3g}, cosine {self.cosine:.6f}",
            f"latency         min {lat['min']:,} us, median {lat['median']:,} us, max {lat['max']:,} us"
            f" ({self.inferences_per_second:,.1f} inferences/s on the device)",
            f"device          runtime {self.runtime}, arena {self.arena_bytes:,} B, "
            f"clock {self.clock_hz / 1e6:g} MHz",
            f"link            {self.bytes_moved:,} B at {self.link_bytes_per_second / 1024:,.1f} KB/s",
            f"reference       {self.reference}",
        ]
        return out


def validate(link, model_bytes: bytes, x: np.ndarray, y: np.ndarray | None = None, *,
             tolerance: int = 0, limit: int | None = None, progress=None,
             reference=None) -> ValidationReport:
    """Run samples ``x`` (axis 0) on the device behind ``link`` and compare with the reference.

    ``link`` is a connected :class:`tinydeploy.link.DeviceLink`; its handshake must report the
    SHA-256 of ``model_bytes`` (a device running another model is refused before any sample).
    ``reference`` has ``outputs(samples) -> [outputs of each sample]`` and a ``name`` (default:
    the ``tflite_micro`` wheel in this process; :func:`reference_for` gives the one a runtime is
    held to, in a worker process). The reference runs on all samples before the device does, so a
    model the reference cannot run fails before the device is touched. ``progress(done, total)``
    is called after each sample.
    """
    import hashlib

    analysis = analyze(model_bytes)
    if len(analysis.inputs) != 1:
        raise InputError("validate handles single-input models", "wrap the model to take one input")
    in_spec, out_specs = analysis.inputs[0], analysis.outputs
    x = np.asarray(x)
    if y is not None:  # refused before the device is touched: text labels cannot be scored
        from tinydeploy.data import check_labels

        y = check_labels(y, len(x), "the validation samples")
    info = link.hello(expected_hash=hashlib.sha256(model_bytes).digest())
    if limit is not None:
        x = x[:limit]
        y = None if y is None else np.asarray(y)[:limit]
    if len(x) == 0:
        raise InputError("no samples to validate", "pass --samples with at least one sample")
    per_sample = tuple(in_spec.shape[1:]) if in_spec.shape and in_spec.shape[0] == 1 else in_spec.shape
    if tuple(x.shape[1:]) != per_sample and int(np.prod(x.shape[1:])) != in_spec.size:
        raise InputError(f"samples have shape {tuple(x.shape[1:])} but the model input is "
                         f"{per_sample}", "pass samples shaped like the model input")
    q_inputs = quantize_input(x, in_spec).reshape((len(x),) + tuple(in_spec.shape))

    reference = reference or Reference(model_bytes)
    ref_out = reference.outputs(q_inputs)
    device_out, lat, cycles = [], [], []
    moved = 0
    start = time.perf_counter()
    for i, sample in enumerate(q_inputs):
        outs, timing = link.run([sample])
        device_out.append([np.asarray(o).reshape(s.shape) for o, s in zip(outs, out_specs)])
        lat.append(timing.device_us)
        cycles.append(timing.cycles)
        moved += sample.nbytes + sum(np.asarray(o).nbytes for o in outs)
        if progress:
            progress(i + 1, len(q_inputs))
    wall = time.perf_counter() - start
    report = _compare(device_out, ref_out, out_specs, y, tolerance, lat, cycles, info, moved, wall)
    report.reference = reference.name
    return report


REFERENCE_CRASH_FIX = ("TFLM crashed on this model on the host (a kernel's Prepare aborts on some "
                       "degenerate quantization, e.g. an untrained model's near-zero logits); check "
                       "the model with 'tinydeploy inspect' and that it is trained")


def reference_for(runtime: str, model_bytes: bytes, library=None, progress=None) -> "IsolatedReference":
    """The reference a device running ``runtime`` is held to: for "tflm", ``library`` (a
    tinydeploy.tflm_lib.TflmLibrary) built for the host when given; otherwise the wheel. It runs in
    tinydeploy's worker process (tinydeploy.isolation), where a crash of TFLM on a strange model
    is one error line instead of the end of the tool."""
    return IsolatedReference(runtime if library is not None else "native", model_bytes, library,
                             progress)


class IsolatedReference:
    """The host reference, computed in the worker process."""

    def __init__(self, runtime: str, model_bytes: bytes, library=None, progress=None):
        self.runtime, self.model_bytes, self.library = runtime, model_bytes, library
        if runtime == "tflm":
            from tinydeploy.tflm_reference import host_library, library_reference_name

            from tinydeploy.analyze import analyze

            # compiled here (minutes, once), loaded in the worker
            host_library(library, analyze(model_bytes).distinct_ops, progress)
            self.name = library_reference_name(library)
        else:
            from tinydeploy.reference import wheel_reference_name

            self.name = wheel_reference_name()

    def outputs(self, samples) -> list[list[np.ndarray]]:
        from tinydeploy import isolation

        root = str(self.library.root) if self.runtime == "tflm" else None
        return isolation.run("tinydeploy.validate", "reference_outputs", self.runtime,
                             self.model_bytes, root, np.asarray(samples),
                             crash_fix=REFERENCE_CRASH_FIX)


def reference_outputs(runtime: str, model_bytes: bytes, library_root: str | None,
                      samples: np.ndarray) -> list[list[np.ndarray]]:
    """Every sample's outputs on the reference (what IsolatedReference runs in the worker)."""
    from tinydeploy import isolation

    isolation.stage("running the host reference (TFLM) on the samples", REFERENCE_CRASH_FIX)
    if runtime == "tflm":
        from tinydeploy.tflm_lib import library_at
        from tinydeploy.tflm_reference import LibraryReference

        reference = LibraryReference(model_bytes, library_at(library_root, "the project"))
    else:
        reference = Reference(model_bytes)
    return reference.outputs(samples)


def _compare(device_out, ref_out, out_specs, y, tolerance, lat, cycles, info, moved, wall):
    n = len(device_out)
    diffs = np.array([max(int(np.max(np.abs(d.astype(np.int64) - r.astype(np.int64))))
                          if d.size else 0 for d, r in zip(dev, ref))
                      for dev, ref in zip(device_out, ref_out)])
    dev0 = np.stack([d[0].reshape(-1) for d in device_out])
    ref0 = np.stack([r[0].reshape(-1) for r in ref_out])
    dq_dev, dq_ref = dequantize(dev0, out_specs[0]), dequantize(ref0, out_specs[0])
    rmse = float(np.sqrt(np.mean((dq_dev - dq_ref) ** 2)))
    denom = np.linalg.norm(dq_dev) * np.linalg.norm(dq_ref)
    cosine = float(np.sum(dq_dev * dq_ref) / denom) if denom else float(np.array_equal(dq_dev, dq_ref))
    classifier = dev0.shape[1] > 1
    top1 = float(np.mean(dev0.argmax(1) == ref0.argmax(1))) if classifier else None
    accuracy = ref_accuracy = None
    if y is not None and classifier:
        labels = np.asarray(y).reshape(n, -1)
        labels = labels.argmax(1) if labels.shape[1] > 1 else labels[:, 0]
        accuracy = float(np.mean(dev0.argmax(1) == labels))
        ref_accuracy = float(np.mean(ref0.argmax(1) == labels))
    lat_arr = np.array(lat)
    median = int(np.median(lat_arr))
    return ValidationReport(
        samples=n, exact_match=float(np.mean(diffs == 0)),
        agreement=float(np.mean(diffs <= tolerance)), tolerance=tolerance, top1_agreement=top1,
        accuracy=accuracy, reference_accuracy=ref_accuracy, max_abs_diff=int(diffs.max()),
        rmse=rmse, cosine=cosine,
        latency_us={"min": int(lat_arr.min()), "median": median, "max": int(lat_arr.max())},
        inferences_per_second=1e6 / median if median else 0.0,
        arena_bytes=info.arena_bytes, runtime=info.runtime, clock_hz=info.clock_hz,
        bytes_moved=moved, link_bytes_per_second=moved / wall if wall else 0.0,
        cycles=({"min": min(cycles), "median": int(np.median(cycles)), "max": max(cycles)}
                if any(cycles) else None),
        mismatches=[int(i) for i in np.flatnonzero(diffs > 0)[:10]])
