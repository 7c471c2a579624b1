"""Per-layer profiles: OP_TIMINGS on the device, and ``validate --profile`` on the emulated board.

- The protocol: ``td_link.c`` + ``td_profile.c`` built for this host with TD_PROFILE and the stub
  runtime marking a known sequence of steps (TD_STUB_PROFILE_STEPS); the host reads them back in
  chunks, refuses bad answers and says clearly when a firmware was built without profiling.
- The figures: ``make_profile`` on made-up timings (streams, removed ops, cycles or microseconds).
- End to end on qemu-m4: the MLPerf image classifier and the digits model, native and TFLM (TFLM
  skips without the pinned library: ``--tflm-lib`` / ``TINYDEPLOY_TFLM_LIB``). The layers' times
  must add up to within 2 % of the whole inference the invoke report measured, every op must be
  timed or said to be removed, and the project gains profile.png, a REPORT.md section and the
  profile in report.json. The default firmware has no profiling code and answers UNSUPPORTED.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from tinydeploy.cli import cli
from tinydeploy.errors import DeviceError
from tinydeploy.link import DeviceLink, OpTimings, Request, StepTiming, Timing
from tinydeploy.validate import DeviceClock, make_profile

from paths import EXAMPLES, MLPERF

sys.path.insert(0, str(Path(__file__).resolve().parent / "device"))
from devicekit import HostDevice, build_host_device  # noqa: E402

needs_qemu = pytest.mark.skipif(
    not (shutil.which("qemu-system-arm") and shutil.which("arm-none-eabi-g++")),
    reason="needs qemu-system-arm and arm-none-eabi-gcc (bash .ci/setup)")

# --------------------------------------------------------------------------- the protocol

def build_profiled_device(out: Path, steps: int, *defines: str) -> Path:
    """The host device whose stub runtime marks ``steps`` steps an invoke: step k starts at op 3k
    and runs 1 + k % 3 ops (tests/device/stub_model.c, TD_STUB_PROFILE_STEPS)."""
    return build_host_device(out, defines=(f"TD_STUB_PROFILE_STEPS={steps}", *defines))


@pytest.fixture
def serve():
    devices = []

    def start(exe: Path) -> HostDevice:
        devices.append(HostDevice(exe))
        return devices[-1]

    yield start
    for dev in devices:
        assert "ERROR: AddressSanitizer" not in dev.stop()


def test_op_timings_come_back_in_chunks_as_the_runtime_marked_them(tmp_path, serve):
    # 140-byte frames hold 11 entries: the 20 steps the table holds (of 25) take two requests
    exe = build_profiled_device(tmp_path / "dev", 25, "TD_PROFILE", "TD_PROFILE_MAX_STEPS=20",
                                "TD_LINK_MAX_PAYLOAD=140")
    dev = serve(exe)
    with DeviceLink(dev.url, timeout=1.0) as link:
        link.hello()
        assert link.op_timings() == OpTimings((), 0)  # no inference yet
        sent = link._seq
        link.run([np.arange(8, dtype=np.int8)])
        timings = link.op_timings()
        assert (link._seq - sent) & 0xFF == 1 + 2 and link.resends == 0  # RUN, 2 x OP_TIMINGS
    assert [(s.op, s.ops) for s in timings.steps] == [(3 * k, 1 + k % 3) for k in range(20)]
    assert timings.dropped == 5
    assert all(s.cycles == 0 for s in timings.steps)  # the host HAL counts no cycles


def test_bad_op_timings_requests_are_refused(tmp_path, serve):
    dev = serve(build_profiled_device(tmp_path / "dev", 4, "TD_PROFILE"))
    with DeviceLink(dev.url, timeout=1.0) as link:
        link.hello()
        link.run([np.zeros(8, dtype=np.int8)])
        with pytest.raises(DeviceError, match="BAD_PAYLOAD"):
            link.request(Request.OP_TIMINGS)
        with pytest.raises(DeviceError, match="BAD_RANGE"):
            link.request(Request.OP_TIMINGS, (5).to_bytes(2, "little"))
        assert len(link.request(Request.OP_TIMINGS, (4).to_bytes(2, "little"))) == 8  # none left
        assert len(link.op_timings().steps) == 4


def test_a_firmware_built_without_profiling_says_how_to_get_one(tmp_path, serve):
    dev = serve(build_profiled_device(tmp_path / "dev", 4))  # no TD_PROFILE
    with DeviceLink(dev.url, timeout=1.0) as link:
        link.hello()
        with pytest.raises(DeviceError) as err:
            link.op_timings()
    assert "UNSUPPORTED" in str(err.value) and "built without per-layer profiling" in str(err.value)
    assert "-DTD_PROFILE" in err.value.fix and "validate --profile" in err.value.fix


# --------------------------------------------------------------------------- the figures

def test_make_profile_maps_steps_to_layers(converted_digits):
    from tinydeploy.analyze import analyze

    analysis = analyze(converted_digits)   # CONV_2D, CONV_2D, RESHAPE, FULLY_CONNECTED, SOFTMAX
    timings = OpTimings((StepTiming(0, 2, 2000, 80), StepTiming(3, 1, 300, 12),
                         StepTiming(4, 1, 100, 4)), 0)
    emulated = make_profile(analysis, timings, Timing(97, 2425, 0.0), 7, DeviceClock(25e6, 40.0))
    first = emulated.layers[0]
    assert (first.ops, first.op, first.macs) == ([0, 1], "2xCONV_2D", 23_040)
    assert first.time_us == pytest.approx(80.0) and first.cycles == pytest.approx(80_000)
    assert emulated.inference_us == pytest.approx(97.0) and emulated.coverage == pytest.approx(96 / 97)
    assert emulated.cycles_are == "QEMU instructions" and emulated.not_timed == [2]
    assert emulated.layers[1].macs_per_cycle == pytest.approx(2560 / 12_000)
    # a board that counts no cycles: the microseconds, and no MACs/cycle
    plain = make_profile(analysis, OpTimings(tuple(StepTiming(s.op, s.ops, 0, s.micros)
                                                   for s in timings.steps), 0),
                         Timing(100, 0, 0.0), 7, DeviceClock(64e6))
    assert [layer.time_us for layer in plain.layers] == [80.0, 12.0, 4.0]
    assert plain.cycles_are == "none" and plain.layers[0].macs_per_cycle is None
    assert "MACs/cycle n/a" in plain.lines()[0]


# --------------------------------------------------------------------------- on qemu-m4

def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def random_samples(path: Path, shape, n: int) -> Path:
    rng = np.random.default_rng(1)
    np.savez(path, x=rng.integers(-128, 128, (n, *shape), dtype=np.int8))
    return path


def profile_on_qemu(tmp_path: Path, model: Path, samples: Path, runtime: str, *extra,
                    limit: int | None = None) -> dict:
    """Build for qemu-m4 and ``validate --profile`` (no plain firmware is built): the report."""
    project = tmp_path / "project"
    built = invoke("build", model, "--board", "qemu-m4", "--runtime", runtime, "-o", project, *extra)
    assert built.exit_code == 0, built.output + built.stderr
    checked = invoke("validate", project, "--samples", samples, "--profile", "--json",
                     tmp_path / "validation.json", *extra, *(("--limit", limit) if limit else ()))
    assert checked.exit_code == 0, checked.output + checked.stderr
    assert "per-layer profile of sample" in checked.output
    assert "of the whole inference" in checked.output
    report = json.loads((tmp_path / "validation.json").read_text())
    assert report["exact_match"] == 1.0  # the profiling firmware computes the same outputs
    # the project holds the profile: chart, REPORT.md section, report.json
    assert (project / "profile.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = (project / "REPORT.md").read_text()
    assert "## Per-layer profile" in text and "(profile.png)" in text
    saved = json.loads((project / "report.json").read_text())["validation"]["profile"]
    assert saved == report["profile"]
    return report


def check_profile(profile: dict, model_bytes: bytes, runtime: str) -> None:
    from tinydeploy.analyze import analyze

    analysis = analyze(model_bytes)
    # the layers add up to the whole inference the invoke report measured, within 2 %
    assert 0.98 <= profile["coverage"] <= 1.0, profile["coverage"]
    assert profile["total_us"] == pytest.approx(sum(l["time_us"] for l in profile["layers"]))
    assert profile["cycles_are"] == "QEMU instructions" and profile["dropped_steps"] == 0
    timed = [op for layer in profile["layers"] for op in layer["ops"]]
    assert sorted(timed + profile["not_timed_ops"]) == list(range(len(analysis.ops)))
    assert len(set(timed)) == len(timed)
    if runtime == "tflm":  # TFLM runs every op, one step each
        assert [l["ops"] for l in profile["layers"]] == [[i] for i in range(len(analysis.ops))]
        assert [l["op"] for l in profile["layers"]] == [op.op for op in analysis.ops]
    assert sum(l["macs"] for l in profile["layers"]) == analysis.total_macs
    assert all(l["time_us"] > 0 for l in profile["layers"])


@needs_qemu
@pytest.mark.qemu
@pytest.mark.slow
@pytest.mark.parametrize("runtime", ["native", "tflm"])
def test_image_classifier_profile_adds_up_to_the_inference(tmp_path, runtime, request):
    extra = ("--tflm-lib", request.getfixturevalue("tflm_lib")) if runtime == "tflm" else ()
    model = MLPERF / "pretrainedResnet_quant.tflite"
    samples = random_samples(tmp_path / "samples.npz", (32, 32, 3), 2)
    report = profile_on_qemu(tmp_path, model, samples, runtime, *extra)
    profile = report["profile"]
    check_profile(profile, model.read_bytes(), runtime)
    # the convolutions are where the time goes, at a plausible rate
    convs = [l for l in profile["layers"] if "CONV_2D" in l["op"]]
    assert sum(l["time_us"] for l in convs) > 0.9 * profile["total_us"]
    assert all(0.05 < l["macs_per_cycle"] < 4 for l in convs if l["macs"] > 100_000)


@needs_qemu
@pytest.mark.qemu
@pytest.mark.slow
@pytest.mark.parametrize("runtime", ["native", "tflm"])
def test_small_model_profile_adds_up_to_the_inference(tmp_path, runtime, request, digits_int8_path):
    extra = ("--tflm-lib", request.getfixturevalue("tflm_lib")) if runtime == "tflm" else ()
    report = profile_on_qemu(tmp_path, digits_int8_path, EXAMPLES / "digits" / "eval.npz",
                             runtime, *extra, limit=10)
    check_profile(report["profile"], digits_int8_path.read_bytes(), runtime)
    if runtime == "native":  # RESHAPE is only shape arithmetic: no code, said so
        assert report["profile"]["not_timed_ops"] == [2]


@needs_qemu
@pytest.mark.qemu
@pytest.mark.slow
def test_the_default_firmware_has_no_profiling(tmp_path, digits_int8_path):
    """Profiling is a build of its own: the flashed firmware has none of its code, answers
    OP_TIMINGS with UNSUPPORTED, and is smaller."""
    from tinydeploy.device import build_firmware, open_project
    from tinydeploy.runners import QemuRunner

    built = invoke("build", digits_int8_path, "--board", "qemu-m4", "-o", tmp_path / "p")
    assert built.exit_code == 0, built.output + built.stderr
    project = open_project(tmp_path / "p")
    plain, profiled = build_firmware(project), build_firmware(project, profile=True)
    symbols = {elf: subprocess.run(["arm-none-eabi-nm", str(elf)], capture_output=True, text=True,
                                   check=True).stdout for elf in (plain.elf, profiled.elf)}
    assert "td_profile_step" not in symbols[plain.elf] and "td_profile_step" in symbols[profiled.elf]
    assert plain.flash_bytes < profiled.flash_bytes and plain.ram_bytes < profiled.ram_bytes
    with QemuRunner.from_board(project.board).run(plain.elf) as device:
        with DeviceLink(device.port, open_timeout=device.open_timeout) as link:
            link.hello()
            with pytest.raises(DeviceError, match="built without per-layer profiling"):
                link.op_timings()


# --------------------------------------------------------------------------- real boards' projects

@pytest.mark.parametrize("runtime", ["native", "tflm"])
def test_build_profile_puts_td_profile_in_a_real_boards_project(tmp_path, runtime, digits_int8_path):
    """A real board's firmware is built by PlatformIO, not by validate: `build --profile` puts
    TD_PROFILE in its build flags; without it the project has none."""
    profiled = invoke("build", digits_int8_path, "--board", "nano33ble", "--runtime", runtime,
                      "--profile", "-o", tmp_path / "profiled")
    plain = invoke("build", digits_int8_path, "--board", "nano33ble", "--runtime", runtime,
                   "-o", tmp_path / "plain")
    assert profiled.exit_code == 0 and plain.exit_code == 0, profiled.stderr + plain.stderr
    flags = (tmp_path / "profiled" / "platformio.ini").read_text().split("build_flags =")[1]
    assert "-DTD_PROFILE" in flags.split("\n[")[0]
    assert "TD_PROFILE" not in (tmp_path / "plain" / "platformio.ini").read_text()
    assert (tmp_path / "profiled" / "src" / "td_profile.c").is_file()


def test_profile_over_the_eembc_protocol_is_refused(tmp_path, digits_int8_path):
    result = invoke("build", digits_int8_path, "--board", "nano33ble", "--protocol", "eembc",
                    "--profile", "-o", tmp_path / "p")
    assert result.exit_code == 2 and not (tmp_path / "p").exists()
    assert "--profile times layers over tinydeploy's protocol" in result.stderr
