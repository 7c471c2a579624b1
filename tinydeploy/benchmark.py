"""The benchmark stage: drive a firmware built with ``--protocol eembc`` the way MLPerf Tiny's runner
does, and report the benchmark's figures.

:class:`EembcDevice` speaks EEMBC's text protocol (firmware/eembc, described in firmware/EEMBC.md)
over anything pyserial opens: a board's port, or ``socket://`` for QEMU. :func:`benchmark` runs the
runner's two modes on it:

- accuracy: every sample is loaded (``db load N`` and ``db HH..``), inferred once without warm-up
  (``infer 1 0``), and its ``m-results-[...]`` read back; the exact output tensors are read too
  (``td-outputs``, a tinydeploy extension) and compared bit for bit with the host reference —
  the same one ``validate`` uses, on the same int8 input;
- performance: windows of N timed inferences after W warm-ups (``infer N W``), each timed on the
  device between its two ``m-lap-us-`` timestamps; latency = elapsed / N, throughput = N / elapsed,
  the median over the windows (the runner's defaults: 5 windows, ic01 20 + 5 warm-ups, ad01
  1500 + 10, kws01 70 + 10, vww01 20 + 5).

Figures: median latency and throughput, top-1 accuracy of classifiers, and the ROC AUC of an
anomaly detector's scores (label 1 = anomalous) — each computed from the device's own outputs.
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass, field

import numpy as np

from tinydeploy.errors import DeviceError, InputError

#: How long a device may stay silent after a command before it is given up on, besides an
#: inference: the firmware answers every command at once and prints progress lines while it infers.
REPLY_SILENCE_S = 5.0
#: Hex bytes per "db" command. The official runner sends 31 (its commands stay under 80
#: characters); the firmware takes commands of up to 256 characters, so this driver sends 120.
DB_CHUNK = 120

_LAP = re.compile(r"^m-lap-us-(\d+)$")
_RESULTS = re.compile(r"^m-results-\[([^\]]*)\]$")
_BRACKETED = re.compile(r"^m-([a-z0-9-]+?)-\[(.*)\]$")
_OUTPUT = re.compile(r"^m-td-output-(\d+)-\[([0-9a-f]*)\]$")


@dataclass
class Inference:
    """What one ``infer`` command answered."""

    iterations: int
    warmups: int
    start_us: int
    end_us: int
    results: list[float]
    lines: list[str]

    @property
    def elapsed_us(self) -> int:
        return self.end_us - self.start_us


class EembcDevice:
    """A connection to a firmware speaking the EEMBC benchmark protocol."""

    def __init__(self, port: str, baudrate: int = 115200, open_timeout: float = 0.0,
                 silence_s: float = REPLY_SILENCE_S):
        from tinydeploy.link import _open_port

        self._serial = _open_port(port, baudrate, open_timeout)
        self._pending = b""
        self.silence_s = silence_s
        self.bytes_moved = 0

    def close(self) -> None:
        self._serial.close()

    def __enter__(self) -> "EembcDevice":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ lines

    def _read_line(self, deadline: float, command: str) -> str:
        while b"\n" not in self._pending:
            if time.monotonic() > deadline:
                seen = self._pending.decode(errors="replace")[-80:]
                raise DeviceError(f"the device stopped answering '{command}'"
                                  + (f" (last bytes: {seen!r})" if seen else ""),
                                  "check that the firmware was built with --protocol eembc and "
                                  "runs; a real board may need a reset")
            try:  # what has arrived, or wait (up to the port's timeout) for one byte
                waiting = self._serial.in_waiting
                chunk = self._serial.read(waiting if waiting else 1)
            except Exception as exc:  # noqa: BLE001 - pyserial raises several kinds
                raise DeviceError(f"the serial connection failed: {exc}",
                                  "check the port and that the board is still connected") from None
            self._pending += chunk
            self.bytes_moved += len(chunk)
            if len(self._pending) > 1 << 20:
                raise DeviceError("the device sends bytes that are no text lines",
                                  "check the baud rate and that the firmware speaks --protocol eembc")
        line, self._pending = self._pending.split(b"\n", 1)
        return line.decode("ascii", errors="replace").replace("\r", "").replace("\0", "")

    def command(self, text: str, silence_s: float | None = None) -> list[str]:
        """Send ``text%`` and return the lines answered before ``m-ready``; an ``e-[...]`` line
        is a DeviceError. The device may stay silent ``silence_s`` between two lines."""
        lines = self._exchange(text, silence_s)
        errors = [ln for ln in lines if ln.startswith("e-[")]
        if errors:
            raise DeviceError(f"the device refused '{text[:40]}': {errors[0]}",
                              "see firmware/EEMBC.md for the commands and their limits")
        return lines

    def _exchange(self, text: str, silence_s: float | None = None) -> list[str]:
        data = (text + "%").encode("ascii")
        self._serial.write(data)
        self.bytes_moved += len(data)
        wait = self.silence_s if silence_s is None else silence_s
        lines = []
        deadline = time.monotonic() + wait
        while True:
            line = self._read_line(deadline, text[:40])
            deadline = time.monotonic() + wait
            if line == "m-ready":
                return lines
            if line:
                lines.append(line)

    def sync(self, timeout: float = 10.0) -> str:
        """Wait for the device and return its name. The start-up banner may still be on the way,
        or half lost: ``name`` is sent (again after 2 s of silence) until as many ``m-name-``
        lines as names sent have arrived, then the ``m-ready`` after the last; the rest is dropped,
        so the next command's answer is its own."""
        give_up = time.monotonic() + timeout
        self._serial.write(b"name%")
        sent, answered = 1, 0
        name = None
        while True:
            try:
                line = self._read_line(min(give_up, time.monotonic() + 2.0), "name")
            except DeviceError:
                if time.monotonic() > give_up:
                    raise DeviceError(f"no answer to 'name%' within {timeout:g} s",
                                      "check the port, and that the firmware was built with "
                                      "--protocol eembc") from None
                self._serial.write(b"name%")  # silence: that one was lost, send another
                sent += 1
                continue
            m = _BRACKETED.match(line)
            if m and m.group(1) == "name-dut":
                answered += 1
                name = m.group(2)
            elif line == "m-ready" and name is not None and answered == sent:
                return name

    def bracketed(self, text: str) -> dict[str, str]:
        """``text``'s ``m-KEY-[VALUE]`` lines as {KEY: VALUE}."""
        return {m.group(1): m.group(2) for ln in self.command(text) if (m := _BRACKETED.match(ln))}

    # ------------------------------------------------------------------ benchmark commands

    def load(self, data: bytes, chunk: int = DB_CHUNK) -> None:
        """Put ``data`` into the device's input buffer (``db load N``, then ``db HH..``)."""
        lines = self.command(f"db load {len(data)}")
        if f"m-[Expecting {len(data)} bytes]" not in lines:
            raise DeviceError(f"the device did not accept 'db load {len(data)}': {lines}",
                              "see firmware/EEMBC.md")
        for start in range(0, len(data), chunk):
            lines = self.command("db " + data[start:start + chunk].hex())
        if "m-load-done" not in lines:
            raise DeviceError(f"the device did not confirm the {len(data)} input bytes",
                              "the link lost bytes; try again")

    def infer(self, iterations: int, warmups: int, silence_s: float | None = None) -> Inference:
        lines = self.command(f"infer {iterations} {warmups}", silence_s)
        laps = [int(m.group(1)) for ln in lines if (m := _LAP.match(ln))]
        results = [m.group(1) for ln in lines if (m := _RESULTS.match(ln))]
        if len(laps) != 2 or len(results) != 1 or "m-infer-done" not in lines:
            raise DeviceError(f"'infer {iterations} {warmups}' answered {lines[:8]}",
                              "expected two m-lap-us- lines and one m-results- line")
        values = [float(v) for v in results[0].split(",") if v.strip()]
        return Inference(iterations, warmups, laps[0], laps[1], values, lines)

    def outputs(self) -> list[bytes]:
        """The raw output tensors of the last inference (``td-outputs``)."""
        found = {}
        for ln in self.command("td-outputs"):
            if m := _OUTPUT.match(ln):
                found[int(m.group(1))] = bytes.fromhex(m.group(2))
        return [found[k] for k in sorted(found)]


class _Connected:
    """The device connection and whatever runs behind it (QEMU), stopped together."""

    def __init__(self, project, port):
        self.project, self.port, self.qemu, self.device = project, port, None, None

    def __enter__(self):
        project = self.project
        if project.kind == "baremetal" and self.port is None:
            self.qemu = start_emulated(project)
            try:
                self.device = EembcDevice(self.qemu.port, open_timeout=self.qemu.open_timeout)
            except BaseException:
                self.qemu.stop()
                raise
            return self.device
        port = self.port
        if port is None:
            from tinydeploy.runners import PlatformioRunner

            port = PlatformioRunner.from_board(project.board).resolve_port()
        self.device = EembcDevice(port, baudrate=project.board.serial.baud, open_timeout=2.0)
        return self.device

    def __exit__(self, *exc):
        try:
            if self.device is not None:
                self.device.close()
        finally:
            if self.qemu is not None:
                self.qemu.stop()


def eembc_device(project, port=None) -> _Connected:
    """``with eembc_device(project) as device``: a connected tinydeploy.benchmark.EembcDevice."""
    return _Connected(project, port)


def start_emulated(project):
    """Build the ELF if needed and boot it in QEMU (a tinydeploy.runners.qemu.QemuDevice)."""
    from tinydeploy.device import build_firmware
    from tinydeploy.runners import QemuRunner

    if not project.elf.is_file():
        build_firmware(project)
    return QemuRunner.from_board(project.board).run(project.elf)


# ---------------------------------------------------------------------------- host side

def encode_input(q: np.ndarray, byte_input: str) -> bytes:
    """The bytes that put the int8 (or float32) input tensor ``q`` in the device's "db" buffer."""
    q = np.ascontiguousarray(q)
    if q.dtype == np.int8 and byte_input == "uint8":
        return (q.astype(np.int16) + 128).astype(np.uint8).tobytes()
    return q.tobytes()


def fixed3(value: float) -> str:
    """``value`` as the firmware prints it: printf's "%0.3f" of the float."""
    return "%.3f" % float(np.float32(value))


def dequantized(q: np.ndarray, spec) -> np.ndarray:
    """(q - zero point) * scale in float32, as the firmware computes it."""
    if spec.dtype == "float32":
        return np.asarray(q, dtype=np.float32)
    if not spec.scale:
        return np.asarray(q, dtype=np.float32)
    return (q.astype(np.int64) - spec.zero_point).astype(np.float32) * np.float32(spec.scale)


def anomaly_score(output: np.ndarray, out_spec, original: np.ndarray) -> np.float32:
    """The firmware's anomaly score: the float32 mean of (dequantized output - input)^2, summed
    in order, one rounding per operation."""
    decoded = dequantized(np.asarray(output).reshape(-1), out_spec)
    n = min(decoded.size, original.size)
    diff = decoded[:n] - np.asarray(original, dtype=np.float32).reshape(-1)[:n]
    squares = (diff * diff).astype(np.float32)
    total = np.cumsum(squares, dtype=np.float32)[-1] if n else np.float32(0)
    return np.float32(total / np.float32(n)) if n else np.float32(0)


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float | None:
    """Area under the ROC curve of ``scores`` for ``labels`` (1 = positive): the probability that a
    positive sample scores above a negative one, ties counting half. None without both classes."""
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels).astype(bool)
    pos, neg = scores[labels], scores[~labels]
    if len(pos) == 0 or len(neg) == 0:
        return None
    greater = (pos[:, None] > neg[None, :]).sum()
    ties = (pos[:, None] == neg[None, :]).sum()
    return float((greater + 0.5 * ties) / (len(pos) * len(neg)))


@dataclass
class BenchmarkReport:
    model_id: str
    samples: int
    runtime: str
    clock_hz: int
    arena_bytes: int
    exact_match: float                 # samples whose outputs equal the host reference's
    max_abs_diff: int
    results_match: float               # samples whose m-results line is what the outputs give
    kind: str                          # "classifier" | "anomaly" | "other"
    accuracy: float | None             # top-1 against labels, from the device's outputs
    reference_accuracy: float | None
    auc: float | None                  # anomaly detectors: ROC AUC of the device's scores
    reference_auc: float | None
    latency_us: dict                   # per-sample accuracy-mode inferences: min / median / max
    windows: list[dict]                # performance windows
    median_latency_us: float
    throughput: float                  # inferences per second: the median over the windows
    bytes_moved: int
    wall_seconds: float
    reference: str = ""
    mismatches: list[int] = field(default_factory=list)
    results: list[list[float]] = field(default_factory=list)  # every m-results line, in order
    scores: list[float] | None = None  # anomaly detectors: full-precision scores

    @property
    def passed(self) -> bool:
        return self.exact_match == 1.0 and self.results_match == 1.0

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__} | {"passed": self.passed}

    def lines(self) -> list[str]:
        pct = lambda v: "n/a" if v is None else f"{v:.2%}"  # noqa: E731
        lat = self.latency_us
        out = [f"model           {self.model_id} ({self.samples} samples)"]
        if self.kind == "anomaly":
            auc = lambda v: "n/a" if v is None else f"{v:.4f}"  # noqa: E731
            out.append(f"AUC             device {auc(self.auc)}, host reference {auc(self.reference_auc)}")
        else:
            out.append(f"top-1 accuracy  device {pct(self.accuracy)}, host reference "
                       f"{pct(self.reference_accuracy)}")
        w = self.windows
        out += [
            f"latency         median {self.median_latency_us:,.1f} us; throughput "
            f"{self.throughput:,.2f} inferences/s (median of {len(w)} windows of "
            f"{w[0]['iterations'] if w else 0} inferences after {w[0]['warmups'] if w else 0} warm-ups)",
            f"latency         per sample (infer 1 0): min {lat['min']:,} us, median "
            f"{lat['median']:,} us, max {lat['max']:,} us",
            f"outputs         {pct(self.exact_match)} bit-exact with the host reference "
            f"(max |diff| {self.max_abs_diff}); m-results lines {pct(self.results_match)} as expected",
            f"device          runtime {self.runtime}, arena {self.arena_bytes:,} B, "
            f"clock {self.clock_hz / 1e6:g} MHz",
            f"link            {self.bytes_moved:,} B in {self.wall_seconds:.1f} s",
            f"reference       {self.reference}",
        ]
        return out


def performance_settings(model_id: str) -> tuple[int, int]:
    from tinydeploy.eembc import DEFAULT_PERFORMANCE, PERFORMANCE

    return PERFORMANCE.get(model_id, DEFAULT_PERFORMANCE)


def benchmark(device: EembcDevice, model_bytes: bytes, x: np.ndarray, y: np.ndarray | None, *,
              settings: dict, iterations: int | None = None, warmups: int | None = None,
              windows: int | None = None, limit: int | None = None, reference=None,
              inference_s: float = 60.0, progress=None) -> BenchmarkReport:
    """Run the accuracy and performance modes on ``device`` and compare with ``reference``.

    ``settings`` is the project's manifest "eembc" entry (tinydeploy.eembc.EembcSettings.to_dict).
    ``reference`` has ``outputs(samples)`` and ``name`` (default: the tflite_micro wheel).
    ``inference_s`` bounds one inference (the device prints progress lines meanwhile).
    ``progress(what, done, total)`` is called after each sample and window.
    """
    from tinydeploy.analyze import analyze
    from tinydeploy.eembc import PERFORMANCE_WINDOWS
    from tinydeploy.reference import Reference
    from tinydeploy.validate import quantize_input

    analysis = analyze(model_bytes)
    in_spec, out_specs = analysis.inputs[0], analysis.outputs
    x = np.asarray(x)
    if limit is not None:
        x = x[:limit]
        y = None if y is None else np.asarray(y)[:limit]
    if len(x) == 0:
        raise InputError("no samples to benchmark", "pass --samples with at least one sample")
    if y is not None:
        from tinydeploy.data import check_labels

        y = check_labels(y, len(x), "the benchmark samples")
    if int(np.prod(x.shape[1:])) != in_spec.size:
        raise InputError(f"samples have shape {tuple(x.shape[1:])} but the model input is "
                         f"{tuple(in_spec.shape)}", "pass samples shaped like the model input")
    q_inputs = quantize_input(x, in_spec).reshape((len(x),) + tuple(in_spec.shape))
    reference = reference or Reference(model_bytes)
    ref_out = reference.outputs(q_inputs)  # before the device: a model it cannot run fails first

    start = time.perf_counter()
    device.sync()
    profile = device.bracketed("profile")
    info = device.bracketed("td-info")
    expected = hashlib.sha256(model_bytes).hexdigest()
    if info.get("td-sha256") != expected:
        raise DeviceError(f"the device runs another model (sha256 {info.get('td-sha256', '?')[:16]}..., "
                          f"expected {expected[:16]}...)", "flash this project's firmware first")
    if info.get("td-init") != "0":
        raise DeviceError(f"the model did not initialise on the device (td_model_init returned "
                          f"{info.get('td-init')})", "rebuild with a larger arena, or check the runtime")
    model_id = profile.get("model", settings.get("model_id", "?"))
    anomaly = settings.get("results") == "anomaly"
    silence = device.silence_s + inference_s

    device_out, results, latencies = [], [], []
    for i, q in enumerate(q_inputs):
        device.load(encode_input(q, settings.get("byte_input", "int8")))
        run = device.infer(1, 0, silence_s=silence)
        raw = device.outputs()
        outs = [np.frombuffer(b, dtype=np.dtype(s.dtype)).reshape(s.shape) for b, s in zip(raw, out_specs)]
        if len(outs) != len(out_specs):
            raise DeviceError(f"td-outputs gave {len(outs)} tensors, the model has {len(out_specs)}",
                              "rebuild the firmware")
        device_out.append(outs)
        results.append(run.results)
        latencies.append(run.elapsed_us)
        if progress:
            progress("sample", i + 1, len(q_inputs))

    default_n, default_w = performance_settings(model_id)
    n_iter, n_warm = iterations or default_n, default_w if warmups is None else warmups
    windows_out = []
    for k in range(windows or PERFORMANCE_WINDOWS):
        device.load(encode_input(q_inputs[k % len(q_inputs)], settings.get("byte_input", "int8")))
        run = device.infer(n_iter, n_warm, silence_s=silence)
        elapsed = run.elapsed_us
        windows_out.append({"sample": k % len(q_inputs), "iterations": n_iter, "warmups": n_warm,
                            "elapsed_us": elapsed, "latency_us": elapsed / n_iter,
                            "throughput": n_iter / (elapsed / 1e6) if elapsed > 0 else 0.0})
        if progress:
            progress("window", k + 1, windows or PERFORMANCE_WINDOWS)
    wall = time.perf_counter() - start

    # ---- compare and score
    diffs = [max(int(np.max(np.abs(d.astype(np.int64) - r.astype(np.int64)))) if d.size else 0
                 for d, r in zip(dev, ref)) for dev, ref in zip(device_out, ref_out)]
    expected_lines = []
    scores = ref_scores = None
    if anomaly:
        originals = [dequantized(q.reshape(-1), in_spec) for q in q_inputs]
        scores = np.array([anomaly_score(d[0], out_specs[0], o) for d, o in zip(device_out, originals)])
        ref_scores = np.array([anomaly_score(r[0], out_specs[0], o) for r, o in zip(ref_out, originals)])
        expected_lines = [[float(fixed3(s))] for s in scores]
    else:
        for dev in device_out:
            expected_lines.append([float(fixed3(v)) for d, s in zip(dev, out_specs)
                                   for v in dequantized(d.reshape(-1), s)])
    results_ok = [r == e for r, e in zip(results, expected_lines)]

    kind = "anomaly" if anomaly else ("classifier" if out_specs[0].size > 1 else "other")
    accuracy = ref_accuracy = auc = ref_auc = None
    if y is not None:
        labels = np.asarray(y).reshape(len(x), -1)
        labels = labels.argmax(1) if labels.shape[1] > 1 else labels[:, 0]
        if kind == "classifier":
            dev_top = np.array([d[0].reshape(-1).argmax() for d in device_out])
            ref_top = np.array([r[0].reshape(-1).argmax() for r in ref_out])
            accuracy = float(np.mean(dev_top == labels))
            ref_accuracy = float(np.mean(ref_top == labels))
        elif kind == "anomaly":
            auc, ref_auc = roc_auc(scores, labels != 0), roc_auc(ref_scores, labels != 0)

    lat = np.array(latencies)
    return BenchmarkReport(
        model_id=model_id, samples=len(x), runtime=info.get("td-runtime", "?"),
        clock_hz=int(info.get("td-clock", 0)), arena_bytes=int(info.get("td-arena", 0)),
        exact_match=float(np.mean(np.array(diffs) == 0)), max_abs_diff=int(max(diffs)),
        results_match=float(np.mean(results_ok)), kind=kind, accuracy=accuracy,
        reference_accuracy=ref_accuracy, auc=auc, reference_auc=ref_auc,
        latency_us={"min": int(lat.min()), "median": int(np.median(lat)), "max": int(lat.max())},
        windows=windows_out,
        median_latency_us=float(np.median([w["latency_us"] for w in windows_out])),
        throughput=float(np.median([w["throughput"] for w in windows_out])),
        bytes_moved=device.bytes_moved, wall_seconds=wall, reference=reference.name,
        mismatches=[i for i, d in enumerate(diffs) if d][:10], results=results,
        scores=None if scores is None else [float(s) for s in scores])


def write_runner_dataset(folder, settings: dict, model_bytes: bytes, x: np.ndarray,
                         y: np.ndarray | None) -> "Path":
    """Write samples as the official runner's dataset: ``folder/<model id>/y_labels.csv`` (file,
    number of classes, class[, bytes to send, stride]) and one ``.bin`` per sample holding what
    the runner sends: 0..255 pixel bytes for ic01/vww01, float32 values for ad01 (one segment of
    the whole sample), the int8 tensor bytes otherwise. Returns the model's folder."""
    from pathlib import Path

    from tinydeploy.analyze import analyze
    from tinydeploy.data import check_labels
    from tinydeploy.validate import quantize_input

    if y is None:
        raise InputError("the runner's dataset needs labels", "pass samples with labels 'y'")
    x = np.asarray(x)
    y = check_labels(y, len(x), "the samples")
    labels = np.asarray(y).reshape(len(x), -1)
    labels = labels.argmax(1) if labels.shape[1] > 1 else labels[:, 0]
    analysis = analyze(model_bytes)
    in_spec = analysis.inputs[0]
    model_id = settings.get("model_id", "model")
    out = Path(folder) / model_id
    out.mkdir(parents=True, exist_ok=True)
    classes = 2 if settings.get("results") == "anomaly" else analysis.outputs[0].size
    rows = []
    for i, (sample, label) in enumerate(zip(x, labels)):
        name = f"{model_id}_{i:05d}_{int(label)}.bin"
        if settings.get("float_input") and sample.dtype.kind == "f":
            data = np.ascontiguousarray(sample, dtype="<f4").tobytes()
            rows.append(f"{name}, {classes}, {int(label)}, {len(data)}, {len(data)}")
        else:
            q = quantize_input(sample.reshape((1,) + tuple(in_spec.shape)), in_spec)
            data = encode_input(q, settings.get("byte_input", "int8"))
            rows.append(f"{name}, {classes}, {int(label)}")
        (out / name).write_bytes(data)
    (out / "y_labels.csv").write_text("\n".join(rows) + "\n")
    return out
