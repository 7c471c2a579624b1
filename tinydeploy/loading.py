"""Loading a model the user gives: ``.keras``, ``.h5``, a SavedModel folder or a ready ``.tflite``.

``load_model(path)`` returns a :class:`LoadedModel` that the quantize and evaluate stages take. It
never lets a framework traceback reach the user: every way a file can be wrong (missing, of an
unknown kind, a text file named ``.tflite``, a truncated flatbuffer, an HDF5 file holding only
weights) becomes an :class:`InputError` or :class:`ModelError` with one line of problem and fix.

Keras-2-era ``.h5`` files are common (MLPerf Tiny's VWW model is one) and Keras 3 rejects many of
them (e.g. ``DepthwiseConv2D`` configs carrying a ``groups`` key). We then load them with
``tf_keras``, the Keras 2 that TensorFlow keeps maintained, and remember which Keras loaded the
model, because the converter path depends on it.

TensorFlow is imported lazily (it costs seconds); a ``.tflite`` loads without it. This module also
owns :func:`tensorflow` and :func:`quiet`, which keep TensorFlow's log spam off the CLI's output.
"""

from __future__ import annotations

import contextlib
import os
import stat
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator


from tinydeploy import tflite
from tinydeploy.errors import InputError, ModelError, ToolMissingError

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")


@dataclass
class LoadedModel:
    """A model ready for the pipeline.

    ``kind`` is "keras" (``keras_model`` set; ``keras_flavor`` says whether Keras 3 or tf_keras
    loaded it), "saved_model" (``saved_model`` holds the loaded object) or "tflite" (``tflite``
    holds the file's bytes and ``tflite_kind`` what :func:`classify_tflite` found).
    ``input_shapes`` are per model input, without the batch axis.
    """

    kind: str
    name: str
    path: Path
    input_shapes: list[tuple[int, ...]]
    keras_model: object | None = None
    keras_flavor: str | None = None          # "keras" (Keras 3) | "tf_keras" (Keras 2)
    saved_model: object | None = field(default=None, repr=False)
    tflite: bytes | None = field(default=None, repr=False)
    tflite_kind: str | None = None

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The shape of the single input (the pipeline quantizes single-input models)."""
        if len(self.input_shapes) != 1:
            raise ModelError(
                f"{self.name} has {len(self.input_shapes)} inputs; tinydeploy handles models with one",
                "wrap the model so that it takes one input tensor")
        return self.input_shapes[0]


# --------------------------------------------------------------------------- TensorFlow, quietly

def tensorflow():
    """Import TensorFlow with its C++ and absl logging turned down to errors only."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    try:
        with quiet():
            import tensorflow as tf
    except ImportError:
        raise ToolMissingError("TensorFlow is not installed; loading and quantizing models needs it",
                               "pip install 'tensorflow==2.21.*' tf-keras") from None
    try:
        import absl.logging
        absl.logging.set_verbosity(absl.logging.ERROR)
    except ImportError:  # absl comes with TensorFlow; be tolerant anyway
        pass
    tf.get_logger().setLevel("ERROR")
    return tf


@contextlib.contextmanager
def quiet() -> Iterator[list[str]]:
    """Silence stdout and stderr at the file-descriptor level while the block runs.

    TensorFlow's converter and Keras' export print from C++ ("Saved artifact at ...",
    "fully_quantize: 0 ...") straight to the descriptors, past Python's ``sys.stdout``. The
    captured lines are yielded (filled in when the block ends) so a caller can quote them in an
    error message.
    """
    captured: list[str] = []
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            yield captured
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            sink.seek(0)
            captured.extend(sink.read().decode("utf-8", "replace").splitlines())


def first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's message, for one-line errors."""
    for line in str(exc).splitlines():
        if line.strip():
            return line.strip()[:300]
    return type(exc).__name__


# --------------------------------------------------------------------------- classification

FULL_INT8, FLOAT, HYBRID, MIXED = "int8", "float", "hybrid", "mixed"
_BOUNDARY_OPS = {"QUANTIZE", "DEQUANTIZE"}
_FLOAT_TYPES = {"FLOAT32", "FLOAT16", "FLOAT64", "BFLOAT16"}
_INDEX_TYPES = {"INT32", "INT64", "BOOL"}   # shapes, indices, argmax results: fine in int8 models
_WEIGHT_QUANT_TYPES = {"INT8", "UINT8", "INT4"}
_INT8_WITH_INT16_STATE = {"UNIDIRECTIONAL_SEQUENCE_LSTM"}


def classify_tflite(model: bytes | tflite.Model) -> str:
    """Say how a ``.tflite`` model computes.

    - "int8": every op except QUANTIZE/DEQUANTIZE computes on int8 activations (the only place
      float may appear is the model's boundary, converted by QUANTIZE/DEQUANTIZE) — what TFLM's
      int8 kernels run;
    - "float": float activations and float weights (fp16 weights expanded by DEQUANTIZE count too);
    - "hybrid": dynamic-range quantization — float activations fed with int8 weights, which the
      kernel dequantizes at run time; TFLM has no such kernels;
    - "mixed": int8 ops and float ops side by side (integer quantization with float fallback);
    - "int16" (16x8 quantization), "uint8" (legacy TF1 quantization) or "other".
    """
    graph = (model if isinstance(model, tflite.Model) else tflite.parse(model)).main
    activation_types: set[str] = set()
    for op in graph.operators:
        if op.opcode in _BOUNDARY_OPS:
            continue
        tensors = [graph.tensors[i] for i in op.inputs + op.outputs if i >= 0]
        if op.opcode in _INT8_WITH_INT16_STATE:  # TFLM's int8 LSTM keeps its cell state in int16
            tensors = [t for t in tensors if not (t.is_variable and t.type_name == "INT16")]
        activations = {t.type_name for t in tensors if not t.is_constant}
        weights = {t.type_name for t in tensors if t.is_constant}
        if activations & _FLOAT_TYPES and weights & _WEIGHT_QUANT_TYPES:
            return HYBRID
        activation_types |= activations
    compute_types = activation_types - _INDEX_TYPES
    if not compute_types:
        return "other"
    if compute_types <= _FLOAT_TYPES:
        return FLOAT
    if compute_types == {"INT8"}:
        return FULL_INT8
    if compute_types & _FLOAT_TYPES:
        return MIXED
    if "INT16" in compute_types:
        return "int16"
    if "UINT8" in compute_types:
        return "uint8"
    return "other"


# --------------------------------------------------------------------------- loading

#: A .tflite flatbuffer cannot exceed 2 GiB (32-bit offsets); no microcontroller model comes close.
MAX_MODEL_BYTES = 2 << 30


def check_model_path(path: str | Path) -> str:
    """Say what ``path`` is ("file" or "folder") after checking, without reading it, that it can
    be read: it exists, is a regular file or a folder (a FIFO would block for ever, a device such
    as /dev/zero never ends), is readable and not absurdly large."""
    path = Path(path)
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise InputError(f"model not found: {path}", "check the path") from None
    except PermissionError:
        raise InputError(f"cannot reach the model {path}: permission denied",
                         "check the permissions of the folders on its path") from None
    except OSError as exc:
        raise InputError(f"cannot reach the model {path}: {exc.strerror or exc}",
                         "check the path") from None
    if stat.S_ISDIR(info.st_mode):
        if not os.access(path, os.R_OK | os.X_OK):
            raise InputError(f"cannot read the SavedModel folder {path}: permission denied",
                             "check its permissions")
        return "folder"
    if not stat.S_ISREG(info.st_mode):
        kind = ("a FIFO" if stat.S_ISFIFO(info.st_mode) else "a device" if
                stat.S_ISCHR(info.st_mode) or stat.S_ISBLK(info.st_mode) else
                "a socket" if stat.S_ISSOCK(info.st_mode) else "not a regular file")
        raise InputError(f"the model {path} is {kind}, not a model file",
                         "pass a .keras, .h5 or .tflite file, or a SavedModel folder")
    if not os.access(path, os.R_OK):
        raise InputError(f"cannot read the model {path}: permission denied", "check its permissions")
    if info.st_size > MAX_MODEL_BYTES:
        raise InputError(f"the model {path} is {info.st_size / 2**30:.1f} GiB, larger than any "
                         "TFLite model can be (2 GiB)", "pass the model file itself")
    return "file"


def load_model(path: str | Path) -> LoadedModel:
    """Load the model at ``path``; raise InputError/ModelError with a fix when that is impossible."""
    path = Path(path)
    if check_model_path(path) == "folder":
        return _load_saved_model(path)
    suffix = path.suffix.lower()
    if suffix == ".tflite":
        return _load_tflite(path)
    if suffix in KERAS_SUFFIXES:
        return _load_keras(path)
    if path.name == "saved_model.pb":
        raise InputError(f"{path} is the graph file of a SavedModel",
                         f"pass its folder instead: {path.parent}")
    raise InputError(f"unknown model type '{path.suffix or path.name}' for {path}",
                     "pass a .keras or .h5 file, a SavedModel folder or a .tflite file")


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}", "check its permissions") from None
    except MemoryError:
        raise InputError(f"{path} is too large to read into memory", "pass the model file itself") from None


def _load_tflite(path: Path) -> LoadedModel:
    data = _read(path)
    parsed = tflite.parse(data, source=str(path))
    shapes = [_without_batch(t.shape) for t in parsed.main.input_tensors()]
    return LoadedModel(kind="tflite", name=path.stem, path=path, input_shapes=shapes,
                       tflite=data, tflite_kind=classify_tflite(parsed))


def _without_batch(shape) -> tuple[int, ...]:
    """Drop the leading batch axis of a model input shape (kept when the input is a plain vector)."""
    shape = tuple(int(d) if d is not None else -1 for d in shape)
    return shape[1:] if len(shape) >= 2 else shape


def _load_keras(path: Path) -> LoadedModel:
    if path.suffix.lower() in (".h5", ".hdf5"):
        _check_hdf5_holds_model(path)
    else:
        _check_keras_archive(path)
    tensorflow()
    with quiet():
        import keras
    try:
        with quiet():
            model = keras.models.load_model(path, compile=False)
        flavor = "keras"
    except Exception as exc:  # noqa: BLE001 - Keras raises many types; all mean "cannot load"
        model, flavor = _load_with_tf_keras(path, _keras_reason(exc)), "tf_keras"
    shapes = [_without_batch(t.shape) for t in model.inputs]
    return LoadedModel(kind="keras", name=path.stem, path=path, input_shapes=shapes,
                       keras_model=model, keras_flavor=flavor)


def _load_with_tf_keras(path: Path, keras3_reason: str):
    """Second chance for Keras-2-era files that Keras 3 rejects; ``.keras`` files are Keras 3 only."""
    if path.suffix.lower() == ".keras":
        raise ModelError(f"Keras cannot load {path}: {keras3_reason}", _CUSTOM_LAYER_FIX)
    try:
        with quiet():
            import tf_keras
            return tf_keras.models.load_model(path, compile=False)
    except ImportError:
        raise ModelError(f"Keras 3 cannot load {path}: {keras3_reason}",
                         "install tf-keras (pip install tf-keras) to load Keras 2 files") from None
    except Exception as exc:  # noqa: BLE001
        raise ModelError(f"neither Keras 3 nor tf_keras can load {path}: {_keras_reason(exc)}",
                         _CUSTOM_LAYER_FIX) from None


_UNKNOWN_OBJECT_HINTS = ("could not be deserialized", "unknown layer", "could not locate",
                         "custom_objects")


def _keras_reason(exc: BaseException) -> str:
    """Keras' reason in a few words; its messages about unknown classes run to paragraphs."""
    text = str(exc).lower()
    if any(hint in text for hint in _UNKNOWN_OBJECT_HINTS):
        return "it uses a layer or object this Keras does not know (a custom layer?)"
    return first_line(exc)


_CUSTOM_LAYER_FIX = ("for custom layers, export a SavedModel where their code lives, with "
                     "model.export('folder'), and pass that folder")


def _check_hdf5_holds_model(path: Path) -> None:
    with open(path, "rb") as f:
        head = f.read(8)
    if head != HDF5_SIGNATURE:
        raise InputError(f"{path} is not an HDF5 file", "pass a model saved with model.save('name.h5')")
    import h5py
    try:
        with h5py.File(path, "r") as h5:
            has_config = "model_config" in h5.attrs
    except OSError as exc:
        raise InputError(f"{path} is a damaged HDF5 file ({exc})", "save the model again") from None
    if not has_config:
        raise ModelError(f"{path} holds weights but no model architecture",
                         "save the whole model with model.save(), not model.save_weights()")


def _check_keras_archive(path: Path) -> None:
    """A .keras file is a zip archive; say so plainly before Keras says something stranger."""
    with open(path, "rb") as f:
        head = f.read(4)
    if head != b"PK\x03\x04":
        raise InputError(f"{path} is not a Keras 3 model file (a .keras file is a zip archive)",
                         "save the model with model.save('name.keras')")
    if not zipfile.is_zipfile(path):
        raise InputError(f"{path} is a damaged .keras archive (truncated?)",
                         "copy or save the model again")


def _load_saved_model(path: Path) -> LoadedModel:
    if not any((path / name).is_file() for name in ("saved_model.pb", "saved_model.pbtxt")):
        raise InputError(f"{path} is a folder but not a SavedModel (it has no saved_model.pb)",
                         "pass a SavedModel folder, or the .keras/.h5/.tflite file itself")
    tf = tensorflow()
    try:
        with quiet():
            loaded = tf.saved_model.load(str(path))
    except Exception as exc:  # noqa: BLE001
        raise ModelError(f"TensorFlow cannot load the SavedModel {path}: {first_line(exc)}",
                         "re-export it with model.export() or tf.saved_model.save()") from None
    signature = serving_signature(loaded, path)
    _, kwargs = signature.structured_input_signature
    shapes = [_without_batch(spec.shape.as_list()) for _, spec in sorted(kwargs.items())]
    name = path.name if path.name not in ("", ".") else path.resolve().name
    return LoadedModel(kind="saved_model", name=name, path=path, input_shapes=shapes,
                       saved_model=loaded)


def serving_signature(loaded, path: Path):
    """The SavedModel's 'serving_default' signature (or its only one)."""
    signatures = dict(loaded.signatures)
    if "serving_default" in signatures:
        return signatures["serving_default"]
    if len(signatures) == 1:
        return next(iter(signatures.values()))
    raise ModelError(f"the SavedModel {path} has {len(signatures)} signatures and no 'serving_default'",
                     "export it with a serving_default signature")

