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
from tinydeploy.loading import (FLOAT, FULL_INT8, HYBRID, MIXED, LoadedModel, classify_tflite,
                                first_line, quiet, serving_signature, tensorflow)

IO_TYPES = ("int8", "float")
RANDOM_CALIB_SAMPLES = 100
FEW_CALIB_SAMPLES = 20
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
    tf = tensorflow()
    dataset = _representative_dataset(calib)
    with quiet() as log:
        try:
            if model.kind == "tflite":
                data = _requantize_float_tflite(tf, model.tflite, dataset, io)
            else:
                data = _convert_model(tf, model, calib.x.shape[1:], dataset, io)
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


def _representative_dataset(calib: Samples):
    """The converter's representative dataset: one float32 sample with a batch axis per step."""
    def generate():
        for sample in calib.x:
            yield [np.ascontiguousarray(sample[np.newaxis], dtype=np.float32)]
    return generate


def _convert_model(tf, model: LoadedModel, sample_shape, dataset, io: str) -> bytes:
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
            return _convert(tf, tf.lite.TFLiteConverter.from_saved_model(folder), dataset, io)
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
                    dataset, io)


def _convert(tf, converter, dataset, io: str) -> bytes:
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
        ops = ", ".join(_ops_left_in_float(parsed.main)) or "some ops"
        raise ModelError(f"quantizing {name} gave a {kind} model, not full-int8: {ops} stayed float",
                         "TFLite has no int8 kernel for them; replace them in the model")
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
