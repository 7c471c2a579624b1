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
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from tinydeploy.analyze import Analysis, TensorSpec, analyze
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


@dataclass(frozen=True)
class DeviceClock:
    """How to read a device's cycle counts (``td_hal_cycles()``) for a profile: they tick at
    ``tick_hz`` (a real board: its core clock), and on an emulated board each tick is
    ``instructions_per_tick`` QEMU instructions (``-icount shift=0``: 1 instruction per virtual ns),
    which is what a profile there counts as cycles."""

    tick_hz: float
    instructions_per_tick: float | None = None


def device_clock(board) -> DeviceClock:
    """The clock behind a board's cycle counts: SysTick's rate on the emulated boards
    (tinydeploy.baremetal.SYSTICK_HZ), the board's core clock on real ones."""
    if board.emulated:
        from tinydeploy.baremetal import SYSTICK_HZ

        hz = SYSTICK_HZ[board.qemu.machine]
        return DeviceClock(float(hz), 1e9 / hz)
    return DeviceClock(float(board.clock_hz))


@dataclass
class LayerTime:
    """One step of the device's inference: a layer (or, on the native runtime, a row stream of
    consecutive layers run together), with what it computes and how long it took."""

    ops: list[int]             # model op indices the step ran
    op: str                    # their op names ("CONV_2D", "3xCONV_2D+ADD" for a stream)
    output_shape: str          # of the step's last op, e.g. "1x48x48x32"
    macs: int
    time_us: float
    cycles: float | None       # None where the board cannot count cycles

    @property
    def macs_per_cycle(self) -> float | None:
        return self.macs / self.cycles if self.cycles else None

    @property
    def label(self) -> str:
        return (f"{self.ops[0]}" if len(self.ops) == 1 else f"{self.ops[0]}-{self.ops[-1]}"
                ) if self.ops else "?"

    def to_dict(self) -> dict:
        return {"ops": self.ops, "op": self.op, "output_shape": self.output_shape,
                "macs": self.macs, "time_us": round(self.time_us, 3),
                "cycles": None if self.cycles is None else round(self.cycles),
                "macs_per_cycle": None if self.macs_per_cycle is None
                else round(self.macs_per_cycle, 4)}


@dataclass
class Profile:
    """Per-layer times of one inference (the last sample's), from the device's OP_TIMINGS, next
    to that inference's whole time as the invoke report measured it."""

    layers: list[LayerTime]
    inference_us: float
    inference_cycles: float | None
    cycles_are: str            # what "cycles" counts: "core cycles", "QEMU instructions" or "none"
    sample: int                # index of the sample the profile is of
    dropped: int = 0           # steps the device ran but could not record
    not_timed: list[int] = field(default_factory=list)  # ops with no step (removed at build time)

    @property
    def total_us(self) -> float:
        return sum(layer.time_us for layer in self.layers)

    @property
    def total_cycles(self) -> float | None:
        return None if self.inference_cycles is None else sum(l.cycles or 0 for l in self.layers)

    @property
    def coverage(self) -> float:
        """The layers' sum as a fraction of the whole inference (the rest: the runtime's entry and
        exit around its layers)."""
        return self.total_us / self.inference_us if self.inference_us else 0.0

    def to_dict(self) -> dict:
        return {"sample": self.sample, "cycles_are": self.cycles_are,
                "layers": [layer.to_dict() for layer in self.layers],
                "total_us": round(self.total_us, 3), "inference_us": round(self.inference_us, 3),
                "total_cycles": None if self.total_cycles is None else round(self.total_cycles),
                "inference_cycles": None if self.inference_cycles is None
                else round(self.inference_cycles),
                "coverage": round(self.coverage, 6), "dropped_steps": self.dropped,
                "not_timed_ops": self.not_timed}

    def lines(self) -> list[str]:
        note = {"QEMU instructions": "cycles are QEMU instructions (-icount: 1 per virtual ns)",
                "core cycles": "cycles from the core's cycle counter",
                "none": "the board counts no cycles: MACs/cycle n/a"}[self.cycles_are]
        head = (f"{'op':>7}  {'layer':<24} {'output shape':<16} {'MACs':>12} {'time us':>10} "
                f"{'MACs/cycle':>10} {'share':>6}")
        out = [f"per-layer profile of sample {self.sample} ({note})", head]
        for layer in self.layers:
            share = layer.time_us / self.inference_us if self.inference_us else 0.0
            mpc = "n/a" if layer.macs_per_cycle is None else f"{layer.macs_per_cycle:.3f}"
            out.append(f"{layer.label:>7}  {layer.op[:24]:<24} {layer.output_shape[:16]:<16} "
                       f"{layer.macs:>12,} {layer.time_us:>10,.1f} {mpc:>10} {share:>6.1%}")
        total_mpc = (f"{sum(l.macs for l in self.layers) / self.total_cycles:.3f}"
                     if self.total_cycles else "n/a")
        out.append(f"{'total':>7}  {len(self.layers):,} steps{'':<16} {'':<16} "
                   f"{sum(l.macs for l in self.layers):>12,} {self.total_us:>10,.1f} "
                   f"{total_mpc:>10} {self.coverage:>6.1%}")
        out.append(f"layers total {self.total_us:,.1f} us = {self.coverage:.1%} of the whole "
                   f"inference ({self.inference_us:,.1f} us, the invoke report of the same sample)")
        if self.dropped:
            out.append(f"warning: the device ran {self.dropped} more steps than its table holds "
                       "(TD_PROFILE_MAX_STEPS): they are missing above")
        if self.not_timed:
            out.append(f"not timed: ops {', '.join(map(str, self.not_timed))} (no code on the "
                       "device: removed at build time)")
        return out


def make_profile(analysis: Analysis, timings, last, sample: int, clock: DeviceClock) -> Profile:
    """A :class:`Profile` from the device's OP_TIMINGS (tinydeploy.link.OpTimings) and the invoke
    report of the same inference (``last``: tinydeploy.link.Timing). Times come from the cycle
    counts when the board counts cycles (finer than microseconds), else from the microseconds."""
    counts_cycles = last.cycles > 0 and timings.cycles > 0
    per_tick = clock.instructions_per_tick or 1.0
    layers, timed = [], set()
    for step in timings.steps:
        ops = [i for i in range(step.op, step.op + max(step.ops, 1)) if i < len(analysis.ops)]
        timed.update(ops)
        infos = [analysis.ops[i] for i in ops]
        counts = Counter(info.op for info in infos)  # in the order the ops run
        names = [f"{n}x{name}" if n > 1 else name for name, n in counts.items()] or [f"op {step.op}?"]
        shape = "x".join(map(str, infos[-1].output_shapes[0])) if infos and infos[-1].output_shapes else ""
        us = step.cycles * 1e6 / clock.tick_hz if counts_cycles else float(step.micros)
        layers.append(LayerTime(ops, "+".join(names), shape, sum(info.macs for info in infos), us,
                                step.cycles * per_tick if counts_cycles else None))
    whole_us = last.cycles * 1e6 / clock.tick_hz if counts_cycles else float(last.device_us)
    kind = ("none" if not counts_cycles else
            "QEMU instructions" if clock.instructions_per_tick else "core cycles")
    return Profile(layers, whole_us, last.cycles * per_tick if counts_cycles else None, kind,
                   sample, timings.dropped,
                   [op.index for op in analysis.ops if op.index not in timed])


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
    profile: Profile | None = None    # per-layer times (validate --profile)

    @property
    def passed(self) -> bool:
        return self.agreement == 1.0

    def to_dict(self) -> dict:
        data = {k: getattr(self, k) for k in self.__dataclass_fields__} | {"passed": self.passed}
        if self.profile is None:
            del data["profile"]  # what a validation without --profile always wrote
        else:
            data["profile"] = self.profile.to_dict()
        return data

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
        if self.profile is not None:
            out += self.profile.lines()
        return out


def validate(link, model_bytes: bytes, x: np.ndarray, y: np.ndarray | None = None, *,
             tolerance: int = 0, limit: int | None = None, progress=None,
             reference=None, profile: DeviceClock | None = None) -> ValidationReport:
    """Run samples ``x`` (axis 0) on the device behind ``link`` and compare with the reference.

    ``link`` is a connected :class:`tinydeploy.link.DeviceLink`; its handshake must report the
    SHA-256 of ``model_bytes`` (a device running another model is refused before any sample).
    ``reference`` has ``outputs(samples) -> [outputs of each sample]`` and a ``name`` (default:
    the ``tflite_micro`` wheel in this process; :func:`reference_for` gives the one a runtime is
    held to, in a worker process). The reference runs on all samples before the device does, so a
    model the reference cannot run fails before the device is touched. ``progress(done, total)``
    is called after each sample. With ``profile`` (the device's :class:`DeviceClock`), the per-layer
    times of the last sample's inference are read back (OP_TIMINGS) into ``report.profile``.
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
    if profile is not None:
        link.op_timings()  # a firmware that cannot profile is refused before the samples
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
    timing = None
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
    if profile is not None:
        report.profile = make_profile(analysis, link.op_timings(), timing, len(q_inputs) - 1, profile)
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
