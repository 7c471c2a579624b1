"""The host reference for TFLM devices: the device's own library built for this host.

Where the pinned library and the ``tflite_micro`` wheel disagree is pinned here, so that a change of
either (a new wheel, another library) shows up as a failing test and a decision, not as a device
that suddenly "disagrees with the reference".
"""

from __future__ import annotations

import numpy as np
import pytest

from tinydeploy.reference import Reference
from tinydeploy.tflm_reference import LibraryReference

from paths import MLPERF


@pytest.fixture(scope="module")
def library(tflm_lib):  # noqa: F811 - the conftest fixture's path, as a TflmLibrary
    from tinydeploy.tflm_lib import library_at

    return library_at(tflm_lib, "test")


def differences(model: bytes, lib, samples: np.ndarray) -> dict[int, list[tuple[int, int, int]]]:
    """sample -> [(output index, library value, wheel value)] wherever the two references differ."""
    ours, wheel = LibraryReference(model, lib), Reference(model)
    found = {}
    for i, x in enumerate(samples):
        a, b = ours.invoke([x[None]])[0].reshape(-1), wheel.invoke([x[None]])[0].reshape(-1)
        where = np.flatnonzero(a != b)
        if where.size:
            found[i] = [(int(j), int(a[j]), int(b[j])) for j in where]
    return found


def test_the_anomaly_detector_differs_from_the_wheel_only_on_known_rounding_ties(library):
    """AD's last FULLY_CONNECTED: the pinned library computes its output multiplier from the float32
    product input_scale * filter_scale, the wheel from a double product; on these inputs the two
    multipliers straddle a rounding tie and one output of three samples moves by 1."""
    model = (MLPERF / "ad01_int8.tflite").read_bytes()
    samples = np.random.default_rng(0).integers(-128, 128, (200, 640), dtype=np.int8)
    found = differences(model, library, samples)
    assert sorted(found) == [132, 169, 189]
    assert [(j, abs(a - b)) for i in sorted(found) for j, a, b in found[i]] == [(479, 1), (254, 1), (99, 1)]


@pytest.mark.parametrize("name, shape", [("pretrainedResnet_quant.tflite", (32, 32, 3)),
                                         ("vww_96_int8.tflite", (96, 96, 3))])
def test_image_models_agree_with_the_wheel(library, name, shape):
    model = (MLPERF / name).read_bytes()
    samples = np.random.default_rng(1).integers(-128, 128, (6, *shape), dtype=np.int8)
    assert differences(model, library, samples) == {}


def test_host_reference_survives_a_process_that_loaded_another_tflm(library, digits_quantized):
    """TensorFlow and the wheel are already loaded in this process: the library's symbols stay its own."""
    import tensorflow  # noqa: F401 - loads TFLite's own copy of the TFLM-like symbols

    model = digits_quantized.tflite
    ref = LibraryReference(model, library)
    x = np.zeros((1, 8, 8, 1), np.int8)
    np.testing.assert_array_equal(ref.invoke([x])[0], Reference(model).invoke([x])[0])
    assert ref.arena_used() > 0 and "host build" in ref.name
