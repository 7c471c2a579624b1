"""The accuracy report: the float model against the int8 model as the device computes it.

The float side is the model the user trained: Keras itself, the SavedModel's serving signature, or
a float ``.tflite`` run by TensorFlow's interpreter without default delegates (XNNPACK changes the
arithmetic). The int8 side is TFLM's own Python interpreter (``tflite_micro``), which runs the
reference kernels a device runs, on inputs quantized with the model's input scale and zero point
the way TFLM's QUANTIZE kernel does (round half away from zero, clamp to int8).

Classifiers (a probability vector over more than one class, or integral labels) get float and int8
accuracy and top-1 agreement; regressors get RMSE, MAE, max error and SNR of int8 against float,
and, with targets given, both models' RMSE against the targets.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, field

import numpy as np

from tinydeploy import tflite
from tinydeploy.data import Samples
from tinydeploy.errors import InputError
from tinydeploy.loading import FULL_INT8, LoadedModel, quiet, serving_signature, tensorflow
from tinydeploy.quantize import TensorQuantization

CLASSIFICATION, REGRESSION = "classification", "regression"
_PREDICT_BATCH = 256


@dataclass
class AccuracyReport:
    """Float vs int8 on the evaluation samples. Metrics that do not apply are None."""

    task: str                                  # "classification" | "regression"
    samples: int
    source: str
    reference: str | None                      # what computed the float outputs; None if no float model
    input: TensorQuantization
    output: TensorQuantization
    float_accuracy: float | None = None
    int8_accuracy: float | None = None
    top1_agreement: float | None = None
    rmse: float | None = None                  # int8 vs float, in output units
    mae: float | None = None
    max_error: float | None = None
    snr_db: float | None = None                # float signal power over int8-float error power
    float_target_rmse: float | None = None     # against the given targets y
    int8_target_rmse: float | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["input"] = self.input.to_dict()
        data["output"] = self.output.to_dict()
        return {k: v for k, v in data.items() if v is not None}

    def summary(self) -> str:
        """One line for the terminal: the metrics that apply and the number of samples."""
        shown = [f"{label} {value}" for label, value in self._metric_rows()]
        return f"{', '.join(shown) or 'no metric applies'} ({self.samples} {self.task} samples)"

    def to_markdown(self) -> str:
        """A short section for REPORT.md: what was compared, the metrics, the I/O quantization."""
        ref = self.reference or "no float model (the input was already int8)"
        lines = [f"Evaluated on {self.samples} samples from `{self.source}` ({self.task}); "
                 f"float outputs from {ref}, int8 outputs from TFLM's reference kernels "
                 "(`tflite_micro`).", "", "| metric | value |", "|---|---|"]
        for label, value in self._metric_rows():
            lines.append(f"| {label} | {value} |")
        lines += ["", "| tensor | dtype | shape | scale | zero point |", "|---|---|---|---|---|"]
        for role, t in (("input", self.input), ("output", self.output)):
            scale = "—" if t.scale is None else f"{t.scale:.6g}"
            zp = "—" if t.zero_point is None else str(t.zero_point)
            lines.append(f"| {role} | {t.dtype} | {list(t.shape)} | {scale} | {zp} |")
        lines += [f"\n> {note}" for note in self.notes]
        return "\n".join(lines) + "\n"

    def _metric_rows(self) -> list[tuple[str, str]]:
        pct = lambda v: f"{v:.2%}"  # noqa: E731
        num = lambda v: f"{v:.6g}"  # noqa: E731
        rows = [("float accuracy", self.float_accuracy, pct), ("int8 accuracy", self.int8_accuracy, pct),
                ("top-1 agreement", self.top1_agreement, pct),
                ("RMSE int8 vs float", self.rmse, num), ("MAE int8 vs float", self.mae, num),
                ("max error int8 vs float", self.max_error, num),
                ("SNR int8 vs float", self.snr_db, lambda v: f"{v:.1f} dB"),
                ("float RMSE vs targets", self.float_target_rmse, num),
                ("int8 RMSE vs targets", self.int8_target_rmse, num)]
        return [(label, fmt(v)) for label, v, fmt in rows if v is not None]


def evaluate(model: LoadedModel, int8_tflite: bytes, samples: Samples) -> AccuracyReport:
    """Compare ``model`` (float) with ``int8_tflite`` (run as TFLM runs it) on ``samples``."""
    parsed = tflite.parse(int8_tflite, source="the int8 model")
    graph = parsed.main
    in_q = TensorQuantization.of(graph.input_tensors()[0])
    out_q = TensorQuantization.of(graph.output_tensors()[0])
    notes = []
    if len(graph.outputs) > 1:
        notes.append(f"the model has {len(graph.outputs)} outputs; the report covers the first")
    int8_out = micro_outputs(int8_tflite, samples.x)
    reference, float_out = float_outputs(model, samples.x)
    report = AccuracyReport(task=REGRESSION, samples=len(samples), source=samples.source,
                            reference=reference, input=in_q, output=out_q, notes=notes)
    labels = None
    if samples.y is not None:
        from tinydeploy.data import check_labels

        labels = check_labels(samples.y, len(samples), samples.source)
    if _is_classifier(float_out if float_out is not None else int8_out, labels):
        _classification(report, float_out, int8_out, labels)
    else:
        _regression(report, float_out, int8_out, labels)
    return report


# --------------------------------------------------------------------------- running the models

def micro_outputs(int8_tflite: bytes, x: np.ndarray, *, dequantize: bool = True) -> np.ndarray:
    """Output 0 of the int8 model for every sample, as TFLM computes it (shape (n, ...)).

    Float samples are quantized with the input's scale and zero point first; with ``dequantize``
    the int8 outputs come back as floats (``(q - zero_point) * scale``), else as raw int8.
    """
    from tflite_micro.python.tflite_micro import runtime

    interpreter = runtime.Interpreter.from_bytes(int8_tflite,
                                                 arena_size=tflite.host_arena_bytes(int8_tflite))
    in_details = interpreter.get_input_details(0)
    out_details = interpreter.get_output_details(0)
    outputs = []
    for sample in x:
        interpreter.set_input(quantize_input(sample[np.newaxis], in_details), 0)
        interpreter.invoke()
        outputs.append(np.array(interpreter.get_output(0))[0])
    result = np.stack(outputs)
    return _dequantize(result, out_details) if dequantize else result


def quantize_input(x: np.ndarray, details: dict) -> np.ndarray:
    """Float samples as the model's input dtype, rounded like TFLM's QUANTIZE (half away from 0)."""
    dtype = np.dtype(details["dtype"])
    if dtype.kind == "f":
        return np.ascontiguousarray(x, dtype=dtype)
    params = details["quantization_parameters"]
    scale, zero_point = float(params["scales"][0]), int(params["zero_points"][0])
    scaled = x.astype(np.float64) / scale
    rounded = np.sign(scaled) * np.floor(np.abs(scaled) + 0.5) + zero_point
    info = np.iinfo(dtype)
    return np.clip(rounded, info.min, info.max).astype(dtype)


def _dequantize(q: np.ndarray, details: dict) -> np.ndarray:
    if np.dtype(details["dtype"]).kind == "f":
        return q.astype(np.float32)
    params = details["quantization_parameters"]
    scale, zero_point = float(params["scales"][0]), int(params["zero_points"][0])
    return ((q.astype(np.float32) - zero_point) * scale).astype(np.float32)


def float_outputs(model: LoadedModel, x: np.ndarray) -> tuple[str | None, np.ndarray | None]:
    """(what computed them, output 0 of the float model for every sample), or (None, None)."""
    if model.kind == "tflite" and model.tflite_kind == FULL_INT8:
        return None, None
    tf = tensorflow()
    with quiet():
        if model.kind == "keras":
            out = model.keras_model.predict(x, batch_size=_PREDICT_BATCH, verbose=0)
            reference = "Keras" if model.keras_flavor == "keras" else "tf_keras"
        elif model.kind == "saved_model":
            out, reference = _saved_model_outputs(tf, model, x), "the SavedModel"
        else:
            out, reference = _float_tflite_outputs(tf, model.tflite, x), "the float .tflite"
    if isinstance(out, dict):  # named outputs: the first by name, as for a SavedModel
        out = out[sorted(out)[0]]
    if isinstance(out, (list, tuple)):
        out = out[0]
    return reference, np.asarray(out, dtype=np.float32)


def _saved_model_outputs(tf, model: LoadedModel, x: np.ndarray) -> np.ndarray:
    signature = serving_signature(model.saved_model, model.path)
    (name,) = signature.structured_input_signature[1]
    batches = []
    for start in range(0, len(x), _PREDICT_BATCH):
        result = signature(**{name: tf.constant(x[start:start + _PREDICT_BATCH])})
        batches.append(result[sorted(result)[0]].numpy())
    return np.concatenate(batches)


def _float_tflite_outputs(tf, data: bytes, x: np.ndarray) -> np.ndarray:
    resolver = tf.lite.experimental.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    with warnings.catch_warnings():  # its deprecation notice points users at another package
        warnings.simplefilter("ignore")
        interpreter = tf.lite.Interpreter(model_content=data, experimental_op_resolver_type=resolver)
    interpreter.allocate_tensors()
    in_index = interpreter.get_input_details()[0]["index"]
    out_index = interpreter.get_output_details()[0]["index"]
    outputs = []
    for sample in x:
        interpreter.set_tensor(in_index, np.ascontiguousarray(sample[np.newaxis], np.float32))
        interpreter.invoke()
        outputs.append(interpreter.get_tensor(out_index)[0].copy())
    return np.stack(outputs)


# --------------------------------------------------------------------------- metrics

def _is_classifier(out: np.ndarray, labels: np.ndarray | None) -> bool:
    """A probability vector over > 1 classes, or integral labels with one score per class."""
    classes = out.shape[-1] if out.ndim > 1 else 1
    if classes < 2:
        return False
    if labels is not None and np.issubdtype(labels.dtype, np.number):
        if np.all(labels == np.round(labels)):
            return True
    flat = out.reshape(len(out), -1)
    return bool(np.all(flat >= -1e-3) and np.allclose(flat.sum(axis=1), 1.0, atol=0.05))


def _classification(report: AccuracyReport, float_out, int8_out, labels) -> None:
    report.task = CLASSIFICATION
    int8_top = _top1(int8_out)
    truth = _label_classes(labels, int8_out.shape[-1], report.samples)
    if truth is not None:
        report.int8_accuracy = float(np.mean(int8_top == truth))
    if float_out is not None:
        float_top = _top1(float_out)
        report.top1_agreement = float(np.mean(float_top == int8_top))
        if truth is not None:
            report.float_accuracy = float(np.mean(float_top == truth))


def _top1(out: np.ndarray) -> np.ndarray:
    return np.argmax(out.reshape(len(out), -1), axis=1)


def _label_classes(labels, classes: int, samples: int) -> np.ndarray | None:
    """Class indices from integer labels or one-hot rows; None when there are no labels."""
    if labels is None:
        return None
    if labels.ndim == 2 and labels.shape[1] == classes:
        return np.argmax(labels, axis=1)
    flat = labels.reshape(samples, -1)
    if flat.shape[1] != 1:
        raise InputError(f"eval labels have shape {labels.shape[1:]} per sample but the model "
                         f"scores {classes} classes",
                         "give one class index (or one one-hot row) per sample in 'y'")
    return flat[:, 0].astype(np.int64)


def _regression(report: AccuracyReport, float_out, int8_out, targets) -> None:
    report.task = REGRESSION
    if float_out is not None:
        error = (int8_out - float_out).astype(np.float64)
        report.rmse = float(np.sqrt(np.mean(error ** 2)))
        report.mae = float(np.mean(np.abs(error)))
        report.max_error = float(np.max(np.abs(error)))
        report.snr_db = _snr_db(float_out, error)
        if report.snr_db is None:
            report.notes.append("the int8 outputs equal the float outputs exactly (no SNR)")
    if targets is not None and targets.size == int8_out.size:
        t = targets.reshape(int8_out.shape).astype(np.float64)
        report.int8_target_rmse = float(np.sqrt(np.mean((int8_out - t) ** 2)))
        if float_out is not None:
            report.float_target_rmse = float(np.sqrt(np.mean((float_out - t) ** 2)))


def _snr_db(signal: np.ndarray, error: np.ndarray) -> float | None:
    """10 log10(signal power / error power); None when there is no error (JSON has no infinity)."""
    noise = float(np.sum(error ** 2))
    power = float(np.sum(signal.astype(np.float64) ** 2))
    if noise == 0.0:
        return None
    return 10.0 * math.log10(power / noise) if power > 0 else -math.inf
