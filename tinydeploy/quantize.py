"""Full-int8 post-training quantization: the model in, the int8 ``.tflite`` bytes out.

What TFLM's int8 kernels run is a model whose every op computes on int8 activations with int8
weights and int32 biases. We ask TensorFlow's converter for exactly that (``optimizations=DEFAULT``,
a representative dataset, ``TFLITE_BUILTINS_INT8`` only, int8 input and output tensors unless
``io="float"``) and then check the result with :func:`~tinydeploy.loading.classify_tflite`
instead of trusting it.

Weights are per-channel for convolutions (the converter's default) but per-tensor for
FULLY_CONNECTED: since 2024 the converter makes dense layers per-channel too, and TFLM only
supports that from September 2024 on (tflite-micro PR 2673). Older TFLM builds, such as the
Arduino libraries boards pin, fail on such models or (before May 2024) silently use the first
channel's scale for every channel. Per-tensor dense weights run correctly on every TFLM and
keep the flatbuffer smaller (no per-channel scale and zero-point arrays).

Keras and SavedModel inputs are traced with a batch of 1 and the calibration samples' shape: a
model traced with a dynamic batch gets SHAPE/STRIDED_SLICE/PACK ops in front of every Flatten,
which cost flash and arena on a microcontroller for nothing.

A ready ``.tflite``:

- full-int8: used as it is (nothing to do);
- float: quantized with the calibration data, by the same two steps the converter itself runs on
  its float flatbuffer after conversion (calibrate with ``optimize.calibrator.Calibrator``, then
  ``convert.mlir_quantize``). These are TensorFlow internals, pinned with ``tensorflow==2.21.*``;
- hybrid (dynamic-range) or partly float: refused, since TFLM cannot run them and the float weights
  are gone.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field

import numpy as np

from tinydeploy import tflite
from tinydeploy.data import Samples, fit_to_input, random_samples
from tinydeploy.errors import InputError, ModelError
from tinydeploy.isolation import stage
from tinydeploy.loading import (FLOAT, FULL_INT8, HYBRID, MIXED, LoadedModel, classify_tflite,
                                first_line, quiet, serving_signature, tensorflow)

IO_TYPES = ("int8", "float")
RANDOM_CALIB_SAMPLES = 100
FEW_CALIB_SAMPLES = 20
_CONTROL_FLOW = ("WHILE", "IF", "CALL_ONCE")
RANDOM_CALIB_WARNING = ("calibrating with random data: the int8 model runs, but its accuracy is "
                        "meaningless; pass --calib with real samples for a model you will use")


@dataclass
class TensorQuantization:
    """One model input or output as the device sees it."""

    name: str
    shape: tuple[int, ...]
    dtype: str                     # "int8" or "float32"
    scale: float | None            # None for float tensors
    zero_point: int | None

    @classmethod
    def of(cls, tensor: tflite.Tensor) -> "TensorQuantization":
        quantized = tensor.quantization is not None and tensor.type_name != "FLOAT32"
        return cls(name=tensor.name, shape=tuple(tensor.shape), dtype=tensor.type_name.lower(),
                   scale=tensor.scale if quantized else None,
                   zero_point=tensor.zero_point if quantized else None)

    def to_dict(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype,
                "scale": self.scale, "zero_point": self.zero_point}


@dataclass
class QuantizeResult:
    """The int8 model and what happened on the way.

    ``skipped`` is True when the input already was a full-int8 ``.tflite``; ``calib_samples`` is
    how many samples calibrated the ranges (0 when skipped).
    """

    tflite: bytes
    kind: str
    inputs: list[TensorQuantization]
    outputs: list[TensorQuantization]
    warnings: list[str] = field(default_factory=list)
    skipped: bool = False
    calib_samples: int = 0
    calib_source: str | None = None

    def to_dict(self) -> dict:
        return {"kind": self.kind, "bytes": len(self.tflite), "skipped": self.skipped,
                "calib_samples": self.calib_samples, "calib_source": self.calib_source,
                "inputs": [t.to_dict() for t in self.inputs],
                "outputs": [t.to_dict() for t in self.outputs],
                "warnings": list(self.warnings)}


def quantize(model: LoadedModel, calib: Samples | None, *, io: str = "int8",
             calib_samples: int | None = None, random_calib: bool = False) -> QuantizeResult:
    """Quantize ``model`` to full int8 with ``calib`` as the representative data.

    ``calib_samples`` caps how many calibration samples are used (all when None).
    ``random_calib`` calibrates on uniform noise instead (smoke tests only; it warns).
    """
    if io not in IO_TYPES:
        raise InputError(f"unknown I/O type '{io}'", "use --io int8 or --io float")
    if model.kind == "tflite" and model.tflite_kind == FULL_INT8:
        return _already_int8(model, io)
    if model.kind == "tflite":
        _refuse_unquantizable(model)
    calib, warnings = _calibration_data(model, calib, calib_samples, random_calib)
    stage("importing TensorFlow")
    tf = tensorflow()
    dataset = _representative_dataset(calib)
    unrolled = []
    if model.kind == "keras":
        model, unrolled = _unroll_recurrent_layers(model, calib.x.shape[1:])
        warnings += unrolled
    stage(f"TensorFlow's int8 conversion of {model.name} ({len(calib)} calibration samples)")
    with quiet() as log:
        try:
            if model.kind == "tflite":
                data = _requantize_float_tflite(tf, model.tflite, dataset, io)
            else:
                data = _convert_model(tf, model, calib.x.shape[1:], dataset, io,
                                      legacy_quantizer=bool(unrolled))
        except Exception as exc:  # noqa: BLE001 - the converter raises many types
            failure = exc
        else:
            failure = None
    if failure is not None:
        raise ModelError(f"TensorFlow could not quantize {model.name} to int8: "
                         f"{_converter_reason(failure, log)}",
                         "every op needs an int8 TFLite kernel; replace the op, or check the "
                         "model converts to float TFLite first") from None
    return _result(data, model.name, warnings, calib_samples=len(calib), calib_source=calib.source)


def _already_int8(model: LoadedModel, io: str) -> QuantizeResult:
    result = _result(model.tflite, model.name, [], calib_samples=0, calib_source=None)
    result.skipped = True
    io_dtype = "int8" if io == "int8" else "float32"
    if any(t.dtype != io_dtype for t in result.inputs + result.outputs):
        have = ", ".join(sorted({t.dtype for t in result.inputs + result.outputs}))
        result.warnings.append(f"{model.path} is already full-int8 and is used as it is: its "
                               f"inputs/outputs stay {have} (--io {io} applies only when tinydeploy "
                               "quantizes)")
    return result


def _refuse_unquantizable(model: LoadedModel) -> None:
    kind = model.tflite_kind
    if kind == FLOAT:
        loops = [op for op in tflite.parse(model.tflite).op_names if op in _CONTROL_FLOW]
        if loops:
            raise ModelError(
                f"{model.path} holds {', '.join(loops)} (a recurrent layer converted as a loop?): "
                "TensorFlow's int8 calibrator cannot quantize control flow",
                "quantize the Keras model with tinydeploy instead (it unrolls LSTM/GRU/SimpleRNN "
                "layers), or convert it with unroll=True on its recurrent layers")
        return
    if kind == HYBRID:
        raise ModelError(
            f"{model.path} is dynamic-range (hybrid) quantized: float activations with int8 "
            "weights, which TensorFlow Lite Micro has no kernels for",
            "convert the original Keras/SavedModel model with full-int8 quantization, e.g. "
            "tinydeploy build model.keras --calib data.npz")
    if kind == MIXED:
        raise ModelError(
            f"{model.path} mixes int8 and float ops (integer quantization with float fallback); "
            "TFLM runs the int8 kernels only",
            "quantize the original Keras/SavedModel model with tinydeploy (full-int8, no fallback)")
    raise ModelError(f"{model.path} is a model of kind '{kind}'; tinydeploy deploys full-int8 models",
                     "pass the float Keras/SavedModel/.tflite model and calibration data")


def _calibration_data(model: LoadedModel, calib: Samples | None, limit: int | None,
                      random_calib: bool) -> tuple[Samples, list[str]]:
    warnings: list[str] = []
    if random_calib:
        calib = random_samples(model.input_shape, limit or RANDOM_CALIB_SAMPLES)
        warnings.append(RANDOM_CALIB_WARNING)
    elif calib is None:
        what = f"the float .tflite {model.name}" if model.kind == "tflite" else model.name
        raise InputError(f"quantizing {what} to int8 needs calibration data",
                         "pass --calib samples.npz with a few hundred typical inputs, or --calib "
                         "random for a smoke test")
    x = fit_to_input(calib.x[:limit], model.input_shape, "calibration samples")
    calib = Samples(x, None if calib.y is None else calib.y[:limit], calib.source)
    if not random_calib and len(calib) < FEW_CALIB_SAMPLES:
        warnings.append(f"only {len(calib)} calibration samples: int8 ranges may clip real inputs "
                        "(100 or more typical samples are better)")
    return calib, warnings


def _recurrent_layers(keras_model) -> list:
    """Every recurrent layer of a Keras model, nested models and wrappers included."""
    try:
        layers = list(keras_model._flatten_layers(include_self=False, recursive=True))
    except (AttributeError, TypeError):
        layers = list(getattr(keras_model, "layers", []))
    return [layer for layer in layers if "unroll" in _config(layer)]


def _config(layer) -> dict:
    try:
        return layer.get_config()
    except Exception:  # noqa: BLE001 - a custom layer without a config is simply not recurrent
        return {}


def _unroll_recurrent_layers(model: LoadedModel, sample_shape) -> tuple[LoadedModel, list[str]]:
    """A model whose recurrent layers TensorFlow's int8 conversion can take.

    A Keras LSTM, GRU or SimpleRNN runs its time steps in a loop (a TensorFlow while-loop), and
    TensorFlow's calibrator crashes on it (a segmentation fault in TF 2.21). Two ways out:

    - tf_keras LSTM layers need nothing: the converter fuses them into TFLite's
      UNIDIRECTIONAL_SEQUENCE_LSTM, which TFLM runs in int8 (int16 cell state);
    - every other recurrent layer (in wrappers such as Bidirectional and nested models too) is
      rebuilt with ``unroll=True`` and the same weights: its time steps become plain ops
      (FULLY_CONNECTED, LOGISTIC, TANH, MUL, ADD, SPLIT, UNPACK) that TFLM runs in int8. That needs
      a fixed number of time steps; when Keras cannot rebuild the model, it is refused.
    """
    loops = _loops(model.keras_model, model.keras_flavor)
    if not loops:
        return model, []
    names = ", ".join(f"{type(layer).__name__} '{layer.name}'" for layer in loops)
    stage(f"Keras rebuilding {names} of {model.name} unrolled")
    try:
        with quiet():
            clone = _clone_unrolled(model, tuple(int(d) for d in sample_shape))
    except Exception as exc:  # noqa: BLE001 - Keras says why it cannot unroll in many ways
        raise ModelError(f"cannot unroll {names} of {model.name} for int8 conversion "
                         f"(TensorFlow cannot calibrate their loop): {first_line(exc)}",
                         "give the model a fixed number of time steps, e.g. keras.Input((T, "
                         "features)), and set unroll=True on its recurrent layers") from None
    unrolled = LoadedModel(kind=model.kind, name=model.name, path=model.path,
                           input_shapes=model.input_shapes, keras_model=clone,
                           keras_flavor=model.keras_flavor)
    steps = sample_shape[0] if len(sample_shape) else "its"
    return unrolled, [f"{names} unrolled over {steps} time steps for int8 conversion (TensorFlow "
                      "cannot calibrate their loop): the same weights, as plain int8 ops that TFLM "
                      "runs"]


def _clone_unrolled(model: LoadedModel, sample_shape: tuple[int, ...]):
    """The Keras model rebuilt with ``unroll=True`` in every recurrent layer's config (nested
    configs included), carrying the original weights. An input with axes of unknown size (a
    variable number of time steps) is fixed to the calibration samples' shape: unrolling needs it."""
    if model.keras_flavor == "tf_keras":
        import tf_keras as keras_module
    else:
        import keras as keras_module
    keep_lstm = model.keras_flavor == "tf_keras"

    def unroll(config):
        if isinstance(config, dict):
            if "unroll" in config:
                config["unroll"] = True
            for value in config.values():
                unroll(value)
        elif isinstance(config, list):
            for value in config:
                unroll(value)
        return config

    def clone(layer):
        if keep_lstm and type(layer).__name__ == "LSTM":
            return layer.__class__.from_config(layer.get_config())
        return layer.__class__.from_config(unroll(layer.get_config()))

    source = model.keras_model
    fixed = {}
    if any(d < 0 for shape in model.input_shapes for d in shape):
        fixed["input_tensors"] = keras_module.Input(batch_shape=(1, *sample_shape))
    rebuilt = keras_module.models.clone_model(source, clone_function=clone, **fixed)
    rebuilt.set_weights(source.get_weights())
    left = _loops(rebuilt, model.keras_flavor)
    if left:
        raise RuntimeError(f"Keras kept the loop of {left[0].name}")
    return rebuilt


def _loops(keras_model, flavor: str | None) -> list:
    """The recurrent layers that would reach the converter as a loop (all but tf_keras LSTMs,
    which the converter fuses into UNIDIRECTIONAL_SEQUENCE_LSTM)."""
    return [layer for layer in _recurrent_layers(keras_model) if not _config(layer).get("unroll")
            and not (flavor == "tf_keras" and type(layer).__name__ == "LSTM")]


def _representative_dataset(calib: Samples):
    """The converter's representative dataset: one float32 sample with a batch axis per step."""
    def generate():
        for sample in calib.x:
            yield [np.ascontiguousarray(sample[np.newaxis], dtype=np.float32)]
    return generate


def _convert_model(tf, model: LoadedModel, sample_shape, dataset, io: str, *,
                   legacy_quantizer: bool = False) -> bytes:
    """Convert a Keras or SavedModel model to full-int8 TFLite, traced with one sample's shape.

    Tracing with the calibration samples' shape (and a batch of 1) also fixes any axis the model
    leaves open, e.g. an image model built on ``Input((None, None, 3))``: TFLM needs fixed shapes.
    """
    specs = [tf.TensorSpec((1, *sample_shape), tf.float32)]
    if model.kind == "keras" and model.keras_flavor == "keras":
        # Keras 3's own export is the supported way into TensorFlow; it takes a fixed signature.
        with tempfile.TemporaryDirectory(prefix="tinydeploy-") as folder:
            model.keras_model.export(folder, format="tf_saved_model", verbose=False,
                                     input_signature=specs)
            return _convert(tf, tf.lite.TFLiteConverter.from_saved_model(folder), dataset, io,
                            legacy_quantizer)
    holder = tf.Module()   # tracks the variables the traced function reads
    if model.kind == "keras":  # tf_keras: its layers are TensorFlow modules already
        holder.model = model.keras_model

        def call(*inputs):
            return holder.model(inputs[0] if len(inputs) == 1 else list(inputs), training=False)
    else:
        holder.model = model.saved_model
        signature = serving_signature(model.saved_model, model.path)
        names = sorted(signature.structured_input_signature[1])

        def call(*inputs):
            return signature(**dict(zip(names, inputs)))
    function = tf.function(call).get_concrete_function(*specs)
    return _convert(tf, tf.lite.TFLiteConverter.from_concrete_functions([function], holder),
                    dataset, io, legacy_quantizer)


def _convert(tf, converter, dataset, io: str, legacy_quantizer: bool = False) -> bytes:
    """Full-int8 conversion. ``legacy_quantizer`` picks TensorFlow's older quantizer, for unrolled
    recurrent layers: the MLIR quantizer leaves the first time step's SPLIT in float about every
    other run (its forget-gate output is dead, the initial cell state being zero), the old one
    quantizes it every time."""
    if legacy_quantizer:
        converter.experimental_new_quantizer = False
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = dataset
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    io_type = tf.int8 if io == "int8" else tf.float32
    converter.inference_input_type = io_type
    converter.inference_output_type = io_type
    converter._experimental_disable_per_channel_quantization_for_dense_layers = True  # see top
    return bytes(converter.convert())


def _requantize_float_tflite(tf, data: bytes, dataset, io: str) -> bytes:
    """Quantize a float flatbuffer the way TFLiteConverter does after converting (TF internals)."""
    from tensorflow.lite.python.convert import mlir_quantize
    from tensorflow.lite.python.optimize import calibrator

    with_intermediates = calibrator.add_intermediate_tensors(data)
    calibrated = calibrator.Calibrator(with_intermediates).calibrate(dataset)
    io_type = tf.int8 if io == "int8" else tf.float32
    return bytes(mlir_quantize(calibrated, disable_per_channel=False,
                               disable_per_channel_for_dense_layers=True,
                               input_data_type=io_type, output_data_type=io_type))


def calibrate_float_tflite(data: bytes, samples: np.ndarray, io: str = "int8") -> bytes:
    """TensorFlow's calibrator and quantizer on a float .tflite, with no checks in front: the raw
    step that :func:`quantize` guards (tests run it in the isolation worker to crash it)."""
    stage("TensorFlow's calibration of a float .tflite")
    tf = tensorflow()
    dataset = _representative_dataset(Samples(np.asarray(samples, np.float32), None, "samples"))
    with quiet():
        return _requantize_float_tflite(tf, data, dataset, io)


def _converter_reason(exc: BaseException, log: list[str]) -> str:
    """The most telling line of a converter failure: its 'error:' line when there is one."""
    for line in str(exc).splitlines() + log:
        if "error:" in line:
            return line.split("error:", 1)[1].strip()[:300]
    return first_line(exc)


def _result(data: bytes, name: str, warnings: list[str], *, calib_samples: int,
            calib_source: str | None) -> QuantizeResult:
    parsed = tflite.parse(data, source=f"the quantized {name}")
    kind = classify_tflite(parsed)
    if kind != FULL_INT8:
        ops = ", ".join(_ops_left_in_float(parsed.main))
        if ops:
            raise ModelError(f"quantizing {name} gave a {kind} model, not full-int8: {ops} stayed "
                             "float", "TensorFlow's converter left them unquantized; replace them "
                             "in the model")
        raise ModelError(f"quantizing {name} gave a model of kind '{kind}', not full-int8",
                         "TensorFlow's converter chose other types for some ops; replace them in "
                         "the model")
    graph = parsed.main
    return QuantizeResult(tflite=data, kind=kind,
                          inputs=[TensorQuantization.of(t) for t in graph.input_tensors()],
                          outputs=[TensorQuantization.of(t) for t in graph.output_tensors()],
                          warnings=warnings, calib_samples=calib_samples, calib_source=calib_source)


def _ops_left_in_float(graph: tflite.Subgraph) -> list[str]:
    """Names of the compute ops that still produce float outputs."""
    return sorted({op.opcode for op in graph.operators
                   if op.opcode not in ("QUANTIZE", "DEQUANTIZE")
                   and any(graph.tensors[i].type_name.startswith("FLOAT") for i in op.outputs)})
