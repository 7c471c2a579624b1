"""The EEMBC benchmark protocol (firmware/eembc, firmware/EEMBC.md) and `tinydeploy benchmark`.

- The server built for the desktop (td_hal_host.c, AddressSanitizer + UBSan) with a stub runtime
  whose output equals its input: every command and error reply, byte for byte as the reference
  firmware prints it, the %0.3f rounding, the anomaly score, warm-up counts, input refills.
- Real firmware on QEMU (qemu-m4), image classifier and anomaly detector, native runtime and TFLM
  (TFLM tests skip without the library): the transcript the official runner parses, and the same
  samples through a tinydeploy-protocol build (validate's link) and an eembc build (benchmark):
  the outputs are identical and equal to the host reference.
- The official runner's way of finding the board: `--serve` presents QEMU's UART as a real pty,
  tinydeploy.eembc_ports lists it in pyserial's ports with USB ids.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from paths import MLPERF, REPO
from tinydeploy.resources import firmware_dir

sys.path.insert(0, str(Path(__file__).resolve().parent / "eembc"))
import samples as eembc_samples  # noqa: E402

HERE = Path(__file__).resolve().parent / "eembc"
IC = MLPERF / "pretrainedResnet_quant.tflite"
AD = MLPERF / "ad01_int8.tflite"

# What the official runner matches (mlcommons/tiny benchmark/runner: device_under_test.py, script.py)
RUNNER_NAME = re.compile(r"^m-(name)-dut-\[([^]]+)]$")
RUNNER_PROFILE = re.compile(r"^m-(model|profile)-\[([^]]+)]$")
RUNNER_RESULTS = re.compile(r"^m-results-\[([^]]+)\]$")
RUNNER_LAP = re.compile(r"^m-lap-us-([0-9]+)$")


# ------------------------------------------------------------------ the server on the desktop

class HostServer:
    """The EEMBC server as a process: commands on stdin, replies on stdout."""

    def __init__(self, exe: Path):
        self.proc = subprocess.Popen([str(exe)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        self.buf = b""
        self.banner = self._until_ready()

    def _until_ready(self, timeout: float = 10.0) -> list[str]:
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while b"m-ready\r\n" not in self.buf:
            assert time.monotonic() < deadline, f"no m-ready; got {self.buf[-200:]!r}"
            chunk = os.read(fd, 65536)
            assert chunk, f"the server exited: {self.proc.stderr.read().decode()[-2000:]}"
            self.buf += chunk
        text, self.buf = self.buf.split(b"m-ready\r\n", 1)
        assert b"\n" not in text.replace(b"\r\n", b""), f"a line not ended by \\r\\n: {text!r}"
        return text.decode().split("\r\n")[:-1]

    def raw(self, data: bytes) -> list[str]:
        self.proc.stdin.write(data)
        self.proc.stdin.flush()
        return self._until_ready()

    def cmd(self, text: str) -> list[str]:
        return self.raw(text.encode() + b"%")

    def close(self) -> str:
        self.proc.stdin.close()
        self.proc.wait(timeout=10)
        return self.proc.stderr.read().decode()


def _build_host_server(out: Path, settings, defines=()) -> Path:
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed")
    from tinydeploy.eembc import config_header

    out.mkdir(parents=True, exist_ok=True)
    (out / "td_eembc_config.h").write_text(config_header(settings, "eembc_stub"))
    fw = firmware_dir()
    exe = out / "eembc_server"
    cmd = ["gcc", "-std=c99", "-Wall", "-Wextra", "-Werror", "-O1", "-g",
           "-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer",
           *(f"-D{d}" for d in defines), f"-I{out}", f"-I{HERE}", f"-I{fw}", f"-I{fw / 'eembc'}",
           str(fw / "eembc" / "td_eembc.c"), str(fw / "hal" / "td_hal_host.c"),
           str(HERE / "host_main.c"), str(HERE / "eembc_stub.c"), "-lm", "-o", str(exe)]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return exe


@pytest.fixture(scope="module")
def scores_server(tmp_path_factory):
    from tinydeploy.eembc import EembcSettings

    exe = _build_host_server(tmp_path_factory.mktemp("scores"),
                             EembcSettings("ic01", "uint8", False, "scores"),
                             defines=("TD_EEMBC_PROGRESS_MS=0",))
    server = HostServer(exe)
    yield server
    assert "ERROR" not in server.close()  # no sanitizer report


@pytest.fixture(scope="module")
def anomaly_server(tmp_path_factory):
    from tinydeploy.eembc import EembcSettings

    exe = _build_host_server(tmp_path_factory.mktemp("anomaly"),
                             EembcSettings("ad01", "int8", True, "anomaly"),
                             defines=("TD_EEMBC_PROGRESS_MS=1",))
    server = HostServer(exe)
    yield server
    assert "ERROR" not in server.close()


def test_banner_then_ready(scores_server):
    assert scores_server.banner[0] == "m-timestamp-mode-performance"
    assert RUNNER_LAP.match(scores_server.banner[1])
    assert scores_server.banner[2:] == ["m-init-done"]


def test_name_profile_and_unknown_commands(scores_server):
    s = scores_server
    assert s.cmd("name") == ["m-name-dut-[tinydeploy]"]
    assert RUNNER_NAME.match(s.cmd("name")[0]).group(2) == "tinydeploy"
    assert s.cmd("profile") == ["m-profile-[ULPMark for tinyML Firmware V0.0.1]", "m-model-[ic01]"]
    assert s.cmd("bogus 1 2") == ["e-[Unknown command: bogus]"]
    assert s.cmd("") == []                      # a lone '%'
    assert s.raw(b"\r\nname\r\n%") == ["m-name-dut-[tinydeploy]"]  # line ends are not part of it
    help_lines = s.cmd("help")
    assert help_lines[0] == "ULPMark for tinyML Firmware V0.0.1"
    for command in ("name", "profile", "timestamp", "db load N", "db print", "infer N", "results"):
        assert any(line.startswith(command) for line in help_lines), command


def test_timestamp_is_monotonic_microseconds(scores_server):
    laps = [int(RUNNER_LAP.match(scores_server.cmd("timestamp")[0]).group(1)) for _ in range(3)]
    assert laps == sorted(laps) and laps[-1] > laps[0]


def test_db_commands_and_their_errors(scores_server):
    s = scores_server
    assert s.cmd("db") == ["e-[Command 'db' requires a subcommand]"]
    assert s.cmd("db load") == ["e-[Command 'db load' requires the # of bytes]"]
    assert s.cmd("db load 0") == ["e-[Command 'db load' must be >0 bytes]"]
    assert s.cmd("db load x") == ["e-[Command 'db load' must be >0 bytes]"]
    assert s.cmd("db load 9") == ["e-[Supplied buffer size 9 exceeds maximum of 8]"]
    assert s.cmd("db load 8") == ["m-[Expecting 8 bytes]"]
    assert s.cmd("db 0a0b0") == ["e-[Insufficent number of hex digits]"]
    assert s.cmd("db 0g") == ["e-[Invalid hex digit '0g']"]
    assert s.cmd("db 0A0b") == []                # upper and lower case hex
    assert s.cmd("db 0c0d0e0f1011") == ["m-load-done"]
    assert s.cmd("db 12") == ["e-[More bytes than 'db load' announced; the rest are ignored]"]
    assert s.cmd("db print") == ["m-buffer-0a-0b-0c-0d-0e-0f-10-11"]
    assert s.cmd("db load 3") == ["m-[Expecting 3 bytes]"]
    assert s.cmd("db ffee") == []
    assert s.cmd("db print") == ["m-buffer-ff-ee-0c"]  # the buffer keeps what was not overwritten
    assert s.cmd("db dd99") == ["m-load-done"]         # digits after the last byte are disregarded
    # a command longer than the buffer is refused whole, not cut
    assert s.cmd("db " + "00" * 200) == ["e-[Command longer than 256 characters]"]
    assert s.cmd("infer 1 0") == ["e-[Input db has 3 bytes, expected 8]"]


def _infer(server, data: bytes, n=1, w=0):
    assert server.cmd(f"db load {len(data)}") == [f"m-[Expecting {len(data)} bytes]"]
    assert server.cmd("db " + data.hex()) == ["m-load-done"]
    return server.cmd(f"infer {n} {w}")


def _invokes(server) -> int:
    return int(dict(re.match(r"^m-(td-[a-z0-9]+)-\[(.*)\]$", ln).groups()
                    for ln in server.cmd("td-info"))["td-arena"])


def test_infer_sequence_results_and_warmups(scores_server):
    s = scores_server
    assert s.cmd("infer 0") == ["e-[Inference iterations must be >0]"]
    assert s.cmd("infer 2 -1") == ["e-[Inference warmup must be >=0]"]
    # uint8 wire bytes: the tensor is value - 128; the stub's output is its input
    data = bytes([128 + 16, 128 + 48, 128 + 1, 0, 255, 128, 128 + 100, 128 + 2])
    before = _invokes(s)
    lines = _infer(s, data, n=3, w=2)
    assert _invokes(s) - before == 5
    assert lines[:3] == ["m-warmup-start-2", "m-warmup-done", "m-infer-start-3"]
    assert RUNNER_LAP.match(lines[3]) and RUNNER_LAP.match(lines[4])
    assert lines[5] == "m-infer-done"
    # (q + 128) / 256 with %0.3f: 0.5625 and 0.6875 are ties (to even); the input is refilled
    # before every inference, so the last of the five computes on the loaded sample too
    expected = "m-results-[0.562,0.688,0.504,0.000,0.996,0.500,0.891,0.508]"
    assert lines[6:] == [expected]
    assert s.cmd("results") == [expected]
    assert s.cmd("td-outputs") == ["m-td-output-0-[" + bytes(b ^ 0x80 for b in data).hex() + "]"]
    # the default warm-up is 10, as in the reference
    before = _invokes(s)
    assert s.cmd("infer")[0] == "m-warmup-start-10"
    assert _invokes(s) - before == 11


def test_fixed3_rounds_like_printf(scores_server):
    from tinydeploy.benchmark import fixed3

    values = np.arange(-128, 128, dtype=np.int64)
    for chunk in np.split(values, 32):
        data = bytes(int(v) + 128 for v in chunk)  # uint8 wire bytes: tensor value + 128
        got = RUNNER_RESULTS.match(_infer(scores_server, data)[-1]).group(1).split(",")
        want = [fixed3(np.float32(v + 128) * np.float32(1 / 256)) for v in chunk]
        assert got == want


def test_results_before_any_inference(anomaly_server):
    assert anomaly_server.cmd("results") == ["e-[No results: run 'infer' first]"]
    assert anomaly_server.cmd("td-outputs") == ["e-[No results: run 'infer' first]"]


def test_anomaly_score_from_float_and_int8_input(anomaly_server):
    from tinydeploy.analyze import TensorSpec
    from tinydeploy.benchmark import anomaly_score, fixed3

    s = anomaly_server
    out_spec = TensorSpec("out", (1, 8), "int8", 0.00390625, -128)
    x = np.array([0.3, -1.25, 2.0, 0.0, 7.7, -60.0, 61.2, 0.26], dtype=np.float32)
    lines = _infer(s, x.astype("<f4").tobytes())  # float32: quantized on the device
    q = np.clip(np.sign(x / 0.5) * np.floor(np.abs(x / np.float32(0.5)) + 0.5) - 3, -128, 127).astype(np.int8)
    raw = bytes.fromhex(re.match(r"^m-td-output-0-\[(.*)\]$", s.cmd("td-outputs")[0]).group(1))
    assert raw == q.tobytes()
    assert lines[-1] == f"m-results-[{fixed3(anomaly_score(q, out_spec, x))}]"
    # one byte per value: the input's own int8 bytes, compared with their dequantized values
    q2 = np.array([-3, 10, -128, 127, 0, 5, -7, 60], dtype=np.int8)
    lines = _infer(s, q2.tobytes())
    original = (q2.astype(np.float32) + 3) * np.float32(0.5)
    assert lines[-1] == f"m-results-[{fixed3(anomaly_score(q2, out_spec, original))}]"
    assert s.cmd("db load 12") == ["m-[Expecting 12 bytes]"]
    assert s.cmd("db " + "00" * 12) == ["m-load-done"]
    assert s.cmd("infer 1 0") == ["e-[Input db has 12 bytes, expected 8 (one per value) or 32 (float32)]"]


def test_progress_lines_while_inferring(anomaly_server):
    """Every TD_EEMBC_PROGRESS_MS (here 1 ms) of a long infer a progress line, which none of the
    runner's patterns takes for a result, a timestamp or the end of the answer."""
    lines = _infer(anomaly_server, bytes(8), n=400000, w=0)
    progress = [ln for ln in lines if ln.startswith("m-progress-")]
    assert len(progress) >= 3
    for line in lines:
        assert "m-ready" not in line
    assert all(re.match(r"^m-progress-\[infer \d+/400000\]$", ln) for ln in progress)
    assert len([ln for ln in lines if RUNNER_LAP.match(ln)]) == 2
    assert len([ln for ln in lines if RUNNER_RESULTS.match(ln)]) == 1


def test_failed_init_is_reported(tmp_path):
    from tinydeploy.eembc import EembcSettings

    exe = _build_host_server(tmp_path, EembcSettings("ic01", "uint8", False, "scores"),
                             defines=("EEMBC_STUB_INIT_STATUS=-4",))
    server = HostServer(exe)
    assert "e-[The model did not initialise (td_model_init returned -4)]" in server.banner
    assert _infer(server, bytes(8)) == ["e-[The model did not initialise (td_model_init returned -4)]"]
    assert "m-td-init-[-4]" in server.cmd("td-info")
    assert "ERROR" not in server.close()


# ------------------------------------------------------------------ settings and projects

def test_model_ids_from_the_benchmark_models():
    from tinydeploy.analyze import analyze
    from tinydeploy.eembc import settings_for

    ic = settings_for(analyze(IC.read_bytes()), "x")
    ad = settings_for(analyze(AD.read_bytes()), "x")
    vww = settings_for(analyze((MLPERF / "vww_96_int8.tflite").read_bytes()), "x")
    assert (ic.model_id, ic.byte_input, ic.float_input, ic.results) == ("ic01", "uint8", False, "scores")
    assert (ad.model_id, ad.byte_input, ad.float_input, ad.results) == ("ad01", "int8", True, "anomaly")
    assert (vww.model_id, vww.byte_input) == ("vww01", "uint8")


def test_platformio_project_with_eembc(tmp_path):
    """A real board's project: the EEMBC server instead of tinydeploy's protocol, Arduino main
    calling it; the default project is unchanged (tests/test_platformio_project.py)."""
    from tinydeploy.build import build, prepare

    result = build(prepare(AD), "nano33ble", runtime="tflm", out_dir=tmp_path / "p", protocol="eembc")
    src = result.out_dir / "src"
    assert (src / "td_eembc.c").is_file() and (src / "td_eembc_config.h").is_file()
    assert not (src / "td_link.c").exists()
    main = (src / "main.cpp").read_text()
    assert "td_eembc_receive" in main and "td_link" not in main
    manifest = json.loads((result.out_dir / "tinydeploy.json").read_text())
    assert manifest["protocol"] == "eembc" and manifest["eembc"]["model_id"] == "ad01"
    if shutil.which("gcc"):  # the server compiles with what the project holds, warning-free
        subprocess.run(["gcc", "-std=c99", "-Wall", "-Wextra", "-Werror", "-c", str(src / "td_eembc.c"),
                        f"-I{src}", "-o", str(tmp_path / "o.o")], check=True)


# ------------------------------------------------------------------ real firmware on QEMU

def _needs_qemu():
    if shutil.which("qemu-system-arm") is None or shutil.which("arm-none-eabi-gcc") is None:
        pytest.skip("needs qemu-system-arm and arm-none-eabi-gcc (.ci/setup installs them)")


def _project(tmp_path_factory, model: Path, runtime: str, protocol: str, library=None):
    from tinydeploy.build import build, prepare
    from tinydeploy.device import build_firmware, open_project
    from tinydeploy.tflm_lib import library_at

    lib = library_at(str(library), "the test") if library else None
    out = tmp_path_factory.mktemp(f"{model.stem}-{runtime}-{protocol}") / "p"
    result = build(prepare(model, tflm_library=lib), "qemu-m4", runtime=runtime, out_dir=out,
                   protocol=protocol)
    project = open_project(result.out_dir, str(library) if library else None)
    build_firmware(project)
    return project


def _same_samples_both_protocols(tmp_path_factory, model, runtime, x, y, library=None):
    """Run ``x`` through a tinydeploy-protocol build (DeviceLink, what validate uses) and an eembc
    build (tinydeploy.benchmark) of ``model``; return both outputs, the report and the reference."""
    from tinydeploy.analyze import analyze
    from tinydeploy.benchmark import benchmark
    from tinydeploy.benchmark import eembc_device
    from tinydeploy.device import running
    from tinydeploy.validate import quantize_input, reference_for

    plain = _project(tmp_path_factory, model, runtime, "tinydeploy", library)
    eembc = _project(tmp_path_factory, model, runtime, "eembc", library)
    model_bytes = model.read_bytes()
    spec = analyze(model_bytes).inputs[0]
    q = quantize_input(x, spec).reshape((len(x),) + tuple(spec.shape))
    reference = reference_for(runtime, model_bytes, plain.tflm_library())
    with running(plain) as link:
        link.hello(expected_hash=hashlib.sha256(model_bytes).digest())
        linked = [link.run([sample])[0][0] for sample in q]
    with eembc_device(eembc) as device:
        report = benchmark(device, model_bytes, x, y, settings=eembc.manifest["eembc"],
                           iterations=3, warmups=1, windows=2, reference=reference)
        raw = device.outputs()  # the last performance window's outputs: sample 1's
    return eembc, linked, report, reference.outputs(q), raw


@pytest.fixture(scope="module")
def ic_native(tmp_path_factory):
    _needs_qemu()
    x, y = eembc_samples.ic_samples(8)
    return _same_samples_both_protocols(tmp_path_factory, IC, "native", x, y) + (x, y)


@pytest.mark.slow
def test_ic_native_benchmark_equals_validate_link(ic_native):
    project, linked, report, reference, raw, x, y = ic_native
    assert report.model_id == "ic01" and report.runtime == "native" and report.samples == len(x)
    assert report.exact_match == 1.0 and report.results_match == 1.0 and report.passed
    for sample_ref, sample_linked in zip(reference, linked):
        assert np.array_equal(np.asarray(sample_linked).reshape(-1), sample_ref[0].reshape(-1))
    assert raw[0] == np.asarray(linked[1]).astype(np.int8).tobytes()
    assert report.accuracy is not None and report.auc is None
    assert report.median_latency_us > 1000 and report.throughput == pytest.approx(
        1e6 / report.median_latency_us, rel=1e-6)
    assert [w["iterations"] for w in report.windows] == [3, 3]


@pytest.mark.slow
def test_ic_transcript_as_the_runner_reads_it(ic_native):
    from tinydeploy.benchmark import eembc_device

    project = ic_native[0]
    x = ic_native[5]
    with eembc_device(project) as device:
        assert device.sync() == "tinydeploy"
        profile = device.command("profile")
        assert {RUNNER_PROFILE.match(ln).group(1): RUNNER_PROFILE.match(ln).group(2)
                for ln in profile} == {"profile": "ULPMark for tinyML Firmware V0.0.1", "model": "ic01"}
        pixels = x[0].astype(np.uint8).tobytes()
        assert device.command(f"db load {len(pixels)}") == ["m-[Expecting 3072 bytes]"]
        for i in range(0, len(pixels), 31):  # the runner's 31 bytes per command
            last = device.command("db " + pixels[i:i + 31].hex())
        assert last == ["m-load-done"]
        lines = device.command("infer 20 5", silence_s=120)
        progress = [ln for ln in lines if ln.startswith("m-progress-")]
        assert progress, "100 virtual ms of inferences without a progress line"
        lines = [ln for ln in lines if ln not in progress]
        assert lines[:3] == ["m-warmup-start-5", "m-warmup-done", "m-infer-start-20"]
        laps = [int(RUNNER_LAP.match(ln).group(1)) for ln in lines if RUNNER_LAP.match(ln)]
        results = [RUNNER_RESULTS.match(ln).group(1) for ln in lines if RUNNER_RESULTS.match(ln)]
        assert len(laps) == 2 and laps[1] - laps[0] > 20 * 10_000 and len(results) == 1
        assert len(results[0].split(",")) == 10
        assert all(ln.startswith("m-") for ln in lines)
        assert device.command("timestamp")[0].startswith("m-lap-us-")


@pytest.fixture(scope="module")
def ad_native(tmp_path_factory):
    _needs_qemu()
    x, y = eembc_samples.ad_samples(10)
    return _same_samples_both_protocols(tmp_path_factory, AD, "native", x, y) + (x, y)


@pytest.mark.slow
def test_ad_native_benchmark_equals_validate_link(ad_native):
    project, linked, report, reference, raw, x, y = ad_native
    assert report.model_id == "ad01" and report.kind == "anomaly" and report.passed
    for sample_ref, sample_linked in zip(reference, linked):
        assert np.array_equal(np.asarray(sample_linked).reshape(-1), sample_ref[0].reshape(-1))
    assert report.auc is not None and 0.0 <= report.auc <= 1.0 and report.reference_auc == report.auc
    assert len(report.scores) == len(x) and report.accuracy is None


@pytest.mark.slow
def test_ad_float_input_as_the_runner_sends_it(ad_native):
    """The runner sends ad01 samples as float32; the device quantizes them like TFLM's QUANTIZE
    and reports the reconstruction error against the float values."""
    from tinydeploy.analyze import analyze
    from tinydeploy.benchmark import anomaly_score, fixed3
    from tinydeploy.benchmark import eembc_device
    from tinydeploy.reference import Reference

    project, x = ad_native[0], ad_native[5]
    model_bytes = AD.read_bytes()
    analysis = analyze(model_bytes)
    in_spec, out_spec = analysis.inputs[0], analysis.outputs[0]
    scale = np.float32(in_spec.scale)
    with eembc_device(project) as device:
        device.sync()
        for sample in x[:3]:
            device.load(sample.astype("<f4").tobytes(), chunk=31)
            run = device.infer(1, 0)
            xq = sample.astype(np.float32) / scale
            q = np.clip(np.sign(xq) * np.floor(np.abs(xq) + np.float32(0.5)) + in_spec.zero_point,
                        -128, 127).astype(np.int8)
            expected = Reference(model_bytes).outputs(q.reshape(1, 1, 640))[0][0]
            assert device.outputs()[0] == expected.tobytes()
            assert run.results == [float(fixed3(anomaly_score(expected, out_spec, sample)))]


@pytest.fixture(scope="module")
def ic_tflm(tmp_path_factory, tflm_lib):
    _needs_qemu()
    x, y = eembc_samples.ic_samples(4)
    return _same_samples_both_protocols(tmp_path_factory, IC, "tflm", x, y, tflm_lib) + (x, y)


@pytest.mark.slow
def test_ic_tflm_benchmark_equals_validate_link(ic_tflm):
    project, linked, report, reference, raw, x, y = ic_tflm
    assert report.runtime == "tflm" and report.passed
    assert "Arduino_TensorFlowLite" in report.reference
    for sample_ref, sample_linked in zip(reference, linked):
        assert np.array_equal(np.asarray(sample_linked).reshape(-1), sample_ref[0].reshape(-1))


@pytest.mark.slow
def test_ad_tflm_benchmark_equals_validate_link(tmp_path_factory, tflm_lib):
    _needs_qemu()
    x, y = eembc_samples.ad_samples(4)
    project, linked, report, reference, raw = _same_samples_both_protocols(
        tmp_path_factory, AD, "tflm", x, y, tflm_lib)
    assert report.runtime == "tflm" and report.passed and report.kind == "anomaly"
    for sample_ref, sample_linked in zip(reference, linked):
        assert np.array_equal(np.asarray(sample_linked).reshape(-1), sample_ref[0].reshape(-1))


# ------------------------------------------------------------------ the CLI and the runner's port

def _tinydeploy(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "tinydeploy", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, cwd=REPO)


@pytest.mark.slow
def test_cli_benchmark_json_and_dataset(ic_native, tmp_path):
    project, x, y = ic_native[0], ic_native[5], ic_native[6]
    data = eembc_samples.write_npz(tmp_path / "ic.npz", x[:3], y[:3])
    out = _tinydeploy("benchmark", project.path, "--samples", data, "--iterations", "2",
                      "--warmups", "0", "--windows", "1", "--json", tmp_path / "r.json")
    assert out.returncode == 0, out.stderr
    assert re.search(r"^latency +median [\d,.]+ us; throughput [\d,.]+ inferences/s", out.stdout, re.M)
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["passed"] and report["samples"] == 3 and report["model_id"] == "ic01"
    out = _tinydeploy("benchmark", project.path, "--samples", data, "--runner-dataset", tmp_path / "ds")
    assert out.returncode == 0, out.stderr
    rows = (tmp_path / "ds" / "ic01" / "y_labels.csv").read_text().splitlines()
    assert rows[1] == "ic01_00001_1.bin, 10, 1"
    assert (tmp_path / "ds" / "ic01" / "ic01_00001_1.bin").read_bytes() == x[1].astype(np.uint8).tobytes()


@pytest.mark.slow
def test_cli_refuses_the_wrong_protocol(ic_native, tmp_path):
    eembc_project = ic_native[0].path
    out = _tinydeploy("validate", eembc_project, "--limit", "1")
    last = out.stderr.strip().splitlines()[-1]
    assert out.returncode != 0 and last.startswith("error: ")
    assert "EEMBC" in last and "tinydeploy benchmark" in last
    assert "Traceback" not in out.stderr
    plain = tmp_path / "plain"
    out = _tinydeploy("build", AD, "--board", "qemu-m4", "-o", plain)
    assert out.returncode == 0, out.stderr
    out = _tinydeploy("benchmark", plain)
    assert out.returncode != 0 and out.stderr.startswith("error: ") and "--protocol eembc" in out.stderr
    out = _tinydeploy("build", AD, "--board", "qemu-m4", "--protocol", "bogus", "-o", tmp_path / "x")
    assert out.returncode != 0 and out.stderr.startswith("error: ") and "Traceback" not in out.stderr


@pytest.mark.slow
def test_serve_presents_a_pty_the_runner_can_find(ic_native, tmp_path):
    """`--serve PTY` bridges QEMU's UART to a real pseudo-terminal; tinydeploy.eembc_ports puts it
    in pyserial's comports() with USB ids, as the runner's DeviceManager needs."""
    import serial
    from serial.tools import list_ports

    from tinydeploy.eembc_ports import add_ports

    pty = tmp_path / "ttyDUT"
    proc = subprocess.Popen([sys.executable, "-m", "tinydeploy", "benchmark", str(ic_native[0].path),
                             "--serve", str(pty)], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not pty.exists():
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
            time.sleep(0.1)
        before = list_ports.comports
        add_ports([str(pty)], 0x1209, 0x0001)
        try:
            found = [p for p in list_ports.comports(True) if p.vid == 0x1209 and p.pid == 0x0001]
        finally:
            list_ports.comports = before
        assert [p.device for p in found] == [str(pty)]
        with serial.Serial(str(pty), 115200, timeout=0.2) as port:
            time.sleep(0.5)
            port.reset_input_buffer()  # the banner, as pyserial's open would flush it
            port.write(b"name%")
            text = b""
            while b"m-ready" not in text and time.monotonic() < deadline:
                text += port.read(256)
        assert text.decode().split("\r\n")[:2] == ["m-name-dut-[tinydeploy]", "m-ready"]
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    assert not pty.exists()  # removed when serving stops
