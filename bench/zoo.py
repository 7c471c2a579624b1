"""A few int8 models beyond the examples, for the benches: the shapes TinyML deployments meet most.

Each is built with seeded random weights (batch norms set to their input's statistics, so the
activations keep a trained network's scale) and converted to full int8 with random calibration
data; the .tflite is cached in bench/out/zoo/. Benchmarks use them as models that nothing in
tinydeploy was tuned on.

    kws_dscnn      MLPerf Tiny's keyword-spotting DS-CNN (S): 49x10 MFCC, conv + 4 depthwise-separable
    mbv2_035_96    keras.applications MobileNetV2, alpha 0.35, 96x96x3, 10 classes
    mbv1_025_128   keras.applications MobileNet (v1), alpha 0.25, 128x128x3, 5 classes
    conv1d_imu     1-D convolutions over 128 steps of a 6-axis IMU, max pooling, dense head
    dense_mlp      a 3-layer MLP on 64 features with a sigmoid output
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent / "out" / "zoo"
VERSION = 1


def _kws_dscnn(keras):
    L = keras.layers
    x = inp = keras.Input((49, 10, 1), batch_size=1)
    x = L.Conv2D(64, (10, 4), strides=2, padding="same", use_bias=False)(x)
    x = L.ReLU()(L.BatchNormalization()(x))
    for _ in range(4):
        x = L.DepthwiseConv2D(3, padding="same", use_bias=False)(x)
        x = L.ReLU()(L.BatchNormalization()(x))
        x = L.Conv2D(64, 1, use_bias=False)(x)
        x = L.ReLU()(L.BatchNormalization()(x))
    x = L.AveragePooling2D((25, 5))(x)
    x = L.Flatten()(x)
    return keras.Model(inp, L.Dense(12, activation="softmax")(x))


def _app(builder, **kwargs):
    def make(keras):
        image = kwargs.pop("input_shape")
        return getattr(keras.applications, builder)(
            input_tensor=keras.Input(image, batch_size=1), weights=None, **kwargs)
    return make


def _conv1d_imu(keras):
    L = keras.layers
    x = inp = keras.Input((128, 6), batch_size=1)
    for filters in (16, 32, 32):
        x = L.Conv1D(filters, 5, padding="same", activation="relu")(x)
        x = L.MaxPooling1D(2)(x)
    x = L.Flatten()(x)
    x = L.Dense(32, activation="relu")(x)
    return keras.Model(inp, L.Dense(6, activation="softmax")(x))


def _dense_mlp(keras):
    L = keras.layers
    x = inp = keras.Input((64,), batch_size=1)
    x = L.Dense(48, activation="relu")(x)
    x = L.Dense(24, activation="relu")(x)
    return keras.Model(inp, L.Dense(1, activation="sigmoid")(x))


MODELS = {
    "kws_dscnn": _kws_dscnn,
    "mbv2_035_96": _app("MobileNetV2", input_shape=(96, 96, 3), alpha=0.35, classes=10),
    "mbv1_025_128": _app("MobileNet", input_shape=(128, 128, 3), alpha=0.25, classes=5),
    "conv1d_imu": _conv1d_imu,
    "dense_mlp": _dense_mlp,
}


def _set_batch_norms(keras, model, x) -> None:
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in norms:
        layer.momentum = 0.0
    if norms:
        model(x, training=True)


def model_bytes(name: str) -> bytes:
    """The int8 .tflite of zoo model ``name`` (built and cached on first use)."""
    path = OUT / f"{name}-v{VERSION}.tflite"
    if path.is_file():
        return path.read_bytes()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(7)
    model = MODELS[name](keras)
    shape = tuple(model.inputs[0].shape)
    rng = np.random.default_rng(7)
    _set_batch_norms(keras, model, rng.uniform(-1, 1, (8, *shape[1:])).astype(np.float32))

    def representative():
        for _ in range(16):
            yield [rng.uniform(-1, 1, shape).astype(np.float32)]

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = conv.inference_output_type = tf.int8
    data = conv.convert()
    OUT.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return data
