"""Session-wide fixtures: the example models loaded and converted once per test run.

TensorFlow costs seconds to import and a conversion about one more, so every test that needs the
digits or sine model in int8 shares these. Names say what you get:

- ``digits_model`` / ``sine_model``: the examples' Keras models (``LoadedModel``);
- ``digits_calib`` / ``digits_eval`` / ``sine_calib`` / ``sine_eval``: their samples (``Samples``);
- ``digits_quantized`` / ``sine_quantized``: ``QuantizeResult`` of full-int8 quantization;
- ``converted_digits`` / ``converted_sine``: just the int8 ``.tflite`` bytes;
- ``digits_int8_path``: those bytes written to a ``digits_int8.tflite`` file;
- ``digits_float_tflite`` / ``digits_hybrid_tflite``: paths of a float and of a dynamic-range
  (hybrid) ``.tflite`` of the digits model, made with TensorFlow's converter;
- ``digits_saved_model``: the path of a SavedModel folder exported from the digits model.
"""

from __future__ import annotations

import pytest

from paths import EXAMPLES


@pytest.fixture(scope="session")
def digits_model():
    from tinydeploy.loading import load_model

    return load_model(EXAMPLES / "digits" / "digits.keras")


@pytest.fixture(scope="session")
def sine_model():
    from tinydeploy.loading import load_model

    return load_model(EXAMPLES / "sine" / "sine.keras")


def _samples(example: str, name: str, shape):
    from tinydeploy.data import load_samples

    return load_samples(EXAMPLES / example / f"{name}.npz", input_shape=shape)


@pytest.fixture(scope="session")
def digits_calib():
    return _samples("digits", "calib", (8, 8, 1))


@pytest.fixture(scope="session")
def digits_eval():
    return _samples("digits", "eval", (8, 8, 1))


@pytest.fixture(scope="session")
def sine_calib():
    return _samples("sine", "calib", (1,))


@pytest.fixture(scope="session")
def sine_eval():
    return _samples("sine", "eval", (1,))


@pytest.fixture(scope="session")
def digits_quantized(digits_model, digits_calib):
    from tinydeploy.quantize import quantize

    return quantize(digits_model, digits_calib)


@pytest.fixture(scope="session")
def sine_quantized(sine_model, sine_calib):
    from tinydeploy.quantize import quantize

    return quantize(sine_model, sine_calib)


@pytest.fixture(scope="session")
def converted_digits(digits_quantized) -> bytes:
    return digits_quantized.tflite


@pytest.fixture(scope="session")
def converted_sine(sine_quantized) -> bytes:
    return sine_quantized.tflite


@pytest.fixture(scope="session")
def digits_int8_path(converted_digits, tmp_path_factory):
    path = tmp_path_factory.mktemp("digits") / "digits_int8.tflite"
    path.write_bytes(converted_digits)
    return path


def _tflite_of(keras_model, *, dynamic_range: bool) -> bytes:
    """A float (or dynamic-range quantized) conversion straight from TensorFlow's converter."""
    from tinydeploy.loading import quiet, tensorflow

    tf = tensorflow()
    with quiet():
        converter = tf.lite.TFLiteConverter.from_keras_model(keras_model)
        if dynamic_range:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]  # no dataset: hybrid weights
        return converter.convert()


@pytest.fixture(scope="session")
def digits_float_tflite(digits_model, tmp_path_factory):
    path = tmp_path_factory.mktemp("digits") / "digits_float.tflite"
    path.write_bytes(_tflite_of(digits_model.keras_model, dynamic_range=False))
    return path


@pytest.fixture(scope="session")
def digits_hybrid_tflite(digits_model, tmp_path_factory):
    path = tmp_path_factory.mktemp("digits") / "digits_hybrid.tflite"
    path.write_bytes(_tflite_of(digits_model.keras_model, dynamic_range=True))
    return path


@pytest.fixture(scope="session")
def digits_saved_model(digits_model, tmp_path_factory):
    from tinydeploy.loading import quiet

    path = tmp_path_factory.mktemp("digits") / "digits_saved_model"
    with quiet():
        digits_model.keras_model.export(path, verbose=False)
    return path


def _keras2_h5(path, layers_of) -> None:
    """Save a small, seeded model with tf_keras (Keras 2) as a legacy .h5, as old projects have."""
    import tf_keras

    tf_keras.utils.set_random_seed(0)
    model = tf_keras.Sequential(layers_of(tf_keras.layers))
    model.save(path)


@pytest.fixture(scope="session")
def keras2_dense_h5(tmp_path_factory):
    """A Keras-2-era .h5 that Keras 3 reads itself (Dense layers only, like MLPerf's ad01.h5)."""
    path = tmp_path_factory.mktemp("keras2") / "dense_k2.h5"
    _keras2_h5(path, lambda L: [L.Input((16,)), L.Dense(8, activation="relu"), L.Dense(16)])
    return path


@pytest.fixture(scope="session")
def keras2_depthwise_h5(tmp_path_factory):
    """A Keras-2-era .h5 that Keras 3 rejects: tf_keras writes a 'groups' key into DepthwiseConv2D's
    config, as in MLPerf's vww_96.h5, so it loads only through tf_keras."""
    path = tmp_path_factory.mktemp("keras2") / "depthwise_k2.h5"
    _keras2_h5(path, lambda L: [L.Input((12, 12, 3)), L.Conv2D(4, 3, padding="same", activation="relu"),
                                L.DepthwiseConv2D(3, padding="same"), L.GlobalAveragePooling2D(),
                                L.Dense(2, activation="softmax")])
    return path


@pytest.fixture(scope="session")
def tflm_lib():
    """The pinned TFLM library (Arduino_TensorFlowLite 07d1cca); skips where the machine lacks it."""
    from paths import TFLM_LIB_SKIP_REASON, tflm_lib_dir

    path = tflm_lib_dir()
    if path is None:
        pytest.skip(TFLM_LIB_SKIP_REASON)
    return path
