"""Small keras.applications MobileNets through the native runtime.

Issue 3 promises that the native kernels cover "small keras.applications MobileNet v1/v2/v3-small
(minimalistic)". These are whole networks, not single ops: each is built with random (seeded)
weights, converted to a full-int8 .tflite, compiled with ``native.compile_model`` and checked

- bit-exact against the ``tflite_micro`` interpreter on random int8 inputs (host build, ctypes),
- in no more RAM than TFLM's non-persistent arena (the recording allocator's ``head``),
- warning-free under arm-none-eabi-gcc for a Cortex-M4, in at most .tflite size + 30 KB of flash.

Conversion (TensorFlow import + converter) is the slow part, so converted models are cached under
pytest's cache dir, keyed by their spec: warm reruns never import TensorFlow.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pytest

import nativelib
from tinydeploy import native, tflite
from tinydeploy.reference import Reference as AllocationReference

pytestmark = pytest.mark.slow

CACHE_VERSION = 1      # bump to reconvert every cached model
REPRESENTATIVE_SAMPLES = 20
RANDOM_INPUTS = 10


@dataclass(frozen=True)
class AppSpec:
    """One keras.applications model: its constructor and the keyword arguments it gets."""

    name: str
    builder: str
    kwargs: dict = field(default_factory=dict)
    seed: int = 1

    def key(self) -> str:
        blob = json.dumps([CACHE_VERSION, REPRESENTATIVE_SAMPLES, asdict(self)], sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


_COMMON = {"weights": None, "classes": 10}
# v1 and v2 at 80x80 meet an odd 5x5 map at their last stride-2 stage. There v1's explicit
# ZeroPadding2D ((0, 1), (0, 1)) is not SAME padding, so the converter keeps a PAD op; v2 pads
# (1, 1), which is SAME for an odd map, and folds into the convolution.
APPS = [
    AppSpec("mobilenet_v1", "MobileNet", {**_COMMON, "input_shape": (80, 80, 3), "alpha": 0.25}),
    AppSpec("mobilenet_v2", "MobileNetV2", {**_COMMON, "input_shape": (80, 80, 3), "alpha": 0.35}),
    AppSpec("mobilenet_v3_small_minimalistic", "MobileNetV3Small",
            {**_COMMON, "input_shape": (96, 96, 3), "alpha": 0.75, "minimalistic": True,
             "include_preprocessing": False}),
    # Not promised by the issue, but the only whole network here with HARD_SWISH and the
    # squeeze-and-excite MUL (broadcast over the image).
    AppSpec("mobilenet_v3_small", "MobileNetV3Small",
            {**_COMMON, "input_shape": (96, 96, 3), "alpha": 0.75, "include_preprocessing": False}),
]


def calibrate_batch_norms(model, x: np.ndarray) -> None:
    """Set every BatchNormalization's moving statistics to those of its input on batch x.

    With random initial weights and the initial statistics (mean 0, variance 1) the signal
    shrinks block after block, until the logits span ~1e-7: a degenerate model whose SOFTMAX input
    scale TFLM itself refuses (it aborts in Prepare). A trained network's batch norms keep
    activations near unit scale; one training-mode pass with momentum 0 gives the same here (in
    training mode each layer normalizes with its batch statistics, so all layers agree at once).
    """
    import keras

    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in norms:
        layer.momentum = 0.0
    model(x, training=True)


def convert(spec: AppSpec) -> bytes:
    """Build the model with seeded random weights and convert it to int8 in, int8 out."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(spec.seed)
    build = getattr(keras.applications, spec.builder)
    image = spec.kwargs["input_shape"]
    rs = np.random.default_rng(spec.seed)
    trained = build(**spec.kwargs)
    calibrate_batch_norms(trained, rs.uniform(-1.0, 1.0, size=(16, *image)).astype(np.float32))
    # The same network for a batch of 1: with a dynamic batch, Flatten converts to
    # SHAPE/STRIDED_SLICE/PACK/RESHAPE instead of one RESHAPE.
    model = build(input_tensor=keras.Input(image, batch_size=1), **spec.kwargs)
    model.set_weights(trained.get_weights())
    shape = (1, *image)

    def representative():
        for _ in range(REPRESENTATIVE_SAMPLES):
            yield [rs.uniform(-1.0, 1.0, size=shape).astype(np.float32)]

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    return conv.convert()


@pytest.fixture(scope="session")
def keras_apps(request, tmp_path_factory) -> dict[str, bytes]:
    """app name -> int8 .tflite bytes, converting only what is not cached yet."""
    if getattr(request.config, "cache", None) is not None:
        cache = Path(request.config.cache.mkdir("tinydeploy_keras_apps"))
    else:  # -p no:cacheprovider
        cache = tmp_path_factory.mktemp("keras_apps")
    models = {}
    for spec in APPS:
        path = cache / f"{spec.name}-{spec.key()}.tflite"
        if not path.exists():
            path.write_bytes(convert(spec))
        models[spec.name] = path.read_bytes()
    return models


def op_names(model_bytes: bytes) -> set[str]:
    return {op.opcode for op in tflite.parse(model_bytes).main.operators}


# What each converted network is made of (fused ReLU/ReLU6 live inside CONV_2D and
# DEPTHWISE_CONV_2D); a converter change that brings in anything else shows up here first.
EXPECTED_OPS = {
    "mobilenet_v1": {"CONV_2D", "DEPTHWISE_CONV_2D", "PAD", "MEAN", "RESHAPE", "SOFTMAX"},
    "mobilenet_v2": {"CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "MEAN", "FULLY_CONNECTED", "SOFTMAX"},
    "mobilenet_v3_small_minimalistic": {"CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "MEAN", "RESHAPE",
                                        "SOFTMAX"},
    "mobilenet_v3_small": {"CONV_2D", "DEPTHWISE_CONV_2D", "HARD_SWISH", "MUL", "ADD", "MEAN",
                           "RESHAPE", "SOFTMAX"},
}


@pytest.fixture(scope="module", params=[spec.name for spec in APPS])
def app(request, keras_apps, kernel_archive, tmp_path_factory):
    """(name, .tflite bytes, the model compiled for the host and loaded, its source dir)."""
    model_bytes = keras_apps[request.param]
    work = tmp_path_factory.mktemp(request.param)
    return (request.param, model_bytes,
            nativelib.compile_and_load(model_bytes, work, kernel_archive), work / "src")


def test_uses_only_native_ops(app):
    name, model_bytes, native_model, _ = app
    assert op_names(model_bytes) == EXPECTED_OPS[name]
    assert set(native_model.result.ops_used) <= native.SUPPORTED_OPS


def first_difference(expected: np.ndarray, got: np.ndarray) -> str:
    index = tuple(int(i) for i in np.argwhere(expected != got)[0])
    return (f"{int(np.sum(expected != got))}/{expected.size} differ, first at {index}: "
            f"tflite_micro {expected[index]}, native {got[index]}")


def test_bit_exact_with_tflite_micro(app):
    name, model_bytes, native_model, _ = app
    ref = nativelib.Reference(model_bytes)
    rng = np.random.default_rng(2024)
    mismatches, seen = [], []
    for run in range(RANDOM_INPUTS):
        xs = ref.random_inputs(rng)
        expected = ref.run(xs)
        seen.append(expected[0])
        got = native_model.run(xs, ref.out_specs)
        mismatches += [f"run {run} output {i}: {first_difference(e, g)}"
                       for i, (e, g) in enumerate(zip(expected, got)) if not np.array_equal(e, g)]
    assert not mismatches, f"{name}:\n" + "\n".join(mismatches)
    assert len({e.tobytes() for e in seen}) > 1, f"{name}: the same output for every input"


def test_arena_within_tflm_non_persistent(app):
    name, model_bytes, native_model, _ = app
    tflm_head = AllocationReference(model_bytes).allocations().head
    assert native_model.result.scratch_bytes == 0
    assert native_model.result.arena_bytes <= tflm_head, name
    assert native_model.lib.td_model_arena_used() == native_model.result.arena_bytes


def flash_bytes(objects: list[Path]) -> int:
    """text + data per arm-none-eabi-size (the const weights count in text)."""
    out = subprocess.run(["arm-none-eabi-size", *map(str, objects)], check=True,
                         capture_output=True, text=True).stdout
    rows = [line.split() for line in out.splitlines()[1:]]
    return sum(int(text) + int(data) for text, data, *_ in rows)


@pytest.mark.skipif(not nativelib.have("arm-none-eabi-gcc"), reason="needs arm-none-eabi-gcc")
def test_builds_warning_free_for_cortex_m4_within_flash_budget(app, tmp_path):
    """Issue 3's flash budget for the MLPerf models holds here too: .tflite size + 30 KB."""
    name, model_bytes, _, src = app
    try:
        objects = nativelib.build_standalone(src, "arm-none-eabi-gcc", nativelib.ARM_FLAGS,
                                             tmp_path)
    except subprocess.CalledProcessError as exc:
        pytest.fail(f"{name}: arm-none-eabi-gcc failed:\n{exc.stderr}")
    assert flash_bytes(objects) <= len(model_bytes) + 30 * 1024, name


def test_arena_at_most_half_of_tflm(app):
    """Issue 10's memory target holds on networks the runtime was not tuned on: at most half of
    TFLM's whole arena (the recording allocator's plan, persistent part for a 32-bit MCU)."""
    from tinydeploy import memory
    from tinydeploy.analyze import analyze

    name, model_bytes, native_model, _ = app
    tflm = memory.tflm_arena(model_bytes, analyze(model_bytes)).total
    assert native_model.result.arena_bytes <= 0.5 * tflm, (name, native_model.result.arena_bytes,
                                                           tflm)


@pytest.mark.qemu
@pytest.mark.skipif(not nativelib.have("qemu-system-arm"), reason="needs qemu-system-arm")
def test_mobilenet_v2_is_bit_exact_on_the_dsp_path(keras_apps, tmp_path):
    """The whole network on qemu-m4 (DSP kernels, its residual blocks streamed row by row)."""
    import qemulib

    model_bytes = keras_apps["mobilenet_v2"]
    fw = qemulib.build_firmware(model_bytes, "qemu-m4", tmp_path)
    ref = nativelib.Reference(model_bytes)
    xs = ref.random_inputs(np.random.default_rng(3))
    (got,), _ = fw.run([xs])
    assert np.array_equal(ref.run(xs)[0], np.asarray(got[0]).reshape(ref.out_specs[0][0]))
