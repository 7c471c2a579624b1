"""pytest plugin for hardware-in-the-loop tests (installed with tinydeploy; entry point ``tinydeploy``).

Options: ``--tinydeploy-board ID`` (default ``qemu-m4``), ``--tinydeploy-port PORT`` and
``--tinydeploy-tflm-lib DIR`` (the TFLM library a tflm firmware is built with and whose host build
is the reference; default ``$TINYDEPLOY_TFLM_LIB``). With no port, tests run on the emulated board, so the same tests run in CI and on a desk with a board
plugged in. The ``tinydeploy_device`` fixture builds, flashes and starts a model and hands the test
a :class:`Dut` (device under test)::

    def test_digits_are_bit_exact(tinydeploy_device):
        dut = tinydeploy_device("examples/digits/digits.keras", calib="examples/digits/calib.npz")
        report = dut.expect_bit_exact(x_test[:50], y_test[:50])
        assert report.accuracy > 0.9

Every device started by a test is stopped at its teardown (QEMU is always killed).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import pytest

DEFAULT_BOARD = "qemu-m4"


def pytest_addoption(parser):
    group = parser.getgroup("tinydeploy", "hardware-in-the-loop tests")
    group.addoption("--tinydeploy-board", default=DEFAULT_BOARD, metavar="ID",
                    help=f"board profile to test on (default {DEFAULT_BOARD}, emulated)")
    group.addoption("--tinydeploy-port", default=None, metavar="PORT",
                    help="serial port of a connected board (default: the emulated board)")
    group.addoption("--tinydeploy-tflm-lib", default=None, metavar="DIR",
                    help="TFLM library for tflm firmware and its reference (default: "
                         "$TINYDEPLOY_TFLM_LIB)")


class Dut:
    """A device running one model, with the host reference at hand."""

    def __init__(self, project, link):
        self.project = project
        self.link = link
        self.info = link.hello()

    @property
    def model_bytes(self) -> bytes:
        return self.project.model_bytes

    def run(self, sample) -> list[np.ndarray]:
        """Outputs of one sample (float samples are quantized with the input's scale)."""
        from tinydeploy.analyze import analyze
        from tinydeploy.validate import quantize_input

        spec = analyze(self.model_bytes).inputs[0]
        q = quantize_input(np.asarray(sample), spec).reshape(spec.shape)
        outputs, _ = self.link.run([q])
        return outputs

    def validate(self, x, y=None, *, tolerance: int = 0):
        from tinydeploy.validate import validate

        from tinydeploy.validate import reference_for

        library = self.project.tflm_library() if self.project.runtime == "tflm" else None
        reference = reference_for(self.project.runtime, self.model_bytes, library)
        return validate(self.link, self.model_bytes, np.asarray(x), y, tolerance=tolerance,
                        reference=reference)

    def expect_bit_exact(self, x, y=None, *, tolerance: int = 0):
        """Validate and fail the test, with the report, unless every sample agrees."""
        report = self.validate(x, y, tolerance=tolerance)
        if not report.passed:
            pytest.fail("device disagrees with the host reference:\n" + "\n".join(report.lines()))
        return report


@pytest.fixture(scope="session")
def tinydeploy_board(request):
    from tinydeploy.boards import load_board

    return load_board(request.config.getoption("--tinydeploy-board"))


@pytest.fixture
def tinydeploy_device(request, tinydeploy_board, tmp_path):
    """Factory: ``tinydeploy_device(model, calib=None, runtime=None) -> Dut``."""
    from tinydeploy.build import build, prepare
    from tinydeploy.device import flash, open_project, running

    from tinydeploy.tflm_lib import find_library

    port = request.config.getoption("--tinydeploy-port")
    lib_option = request.config.getoption("--tinydeploy-tflm-lib")
    stack = contextlib.ExitStack()

    def start(model, *, calib: str | None = None, runtime: str | None = None) -> Dut:
        library = find_library(lib_option)
        prepared = prepare(Path(model), calib=calib, tflm_library=library)
        out = tmp_path / f"{prepared.name}-{tinydeploy_board.id}"
        result = build(prepared, tinydeploy_board, runtime=runtime, out_dir=out)
        if result.out_dir is None:
            pytest.fail(f"model does not fit: {result.check.verdict()}")
        project = open_project(result.out_dir, str(library.root) if library else None)
        if port is not None or project.kind == "baremetal":
            flash(project, port)
        link = stack.enter_context(running(project, port))
        return Dut(project, link)

    with stack:
        yield start
