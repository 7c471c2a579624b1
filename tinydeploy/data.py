"""Samples for calibration and evaluation: ``.npy``, ``.npz`` or ``module:function``.

``load_samples(spec, input_shape=...)`` reads the samples a user names and checks them against the
model's input shape (without the batch axis) before anything expensive starts:

- ``data.npy``: one array, samples on axis 0;
- ``data.npz``: array ``x`` (samples on axis 0) and, optionally, ``y`` (labels or targets);
- ``package.module:function``: a function taking no arguments and returning an iterable of
  samples — arrays, or dicts ``{"x": sample, "y": label}``. The module is imported from the
  current folder too, so a ``calib.py`` next to the model works.

A sample may carry a leading batch axis of 1 and may differ from the input shape by axes of size 1
(8x8 images for an (8, 8, 1) input); anything else is refused with both shapes named.
"""

from __future__ import annotations

import importlib
import os
import re
import stat
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tinydeploy.errors import InputError

_FUNCTION_SPEC = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


@dataclass
class Samples:
    """Samples shaped ``(n, *input_shape)`` as float32; ``y`` labels/targets or None."""

    x: np.ndarray
    y: np.ndarray | None
    source: str

    def __len__(self) -> int:
        return len(self.x)


def load_samples(spec: str | Path, *, input_shape, limit: int | None = None,
                 what: str = "samples", keep_dtype: bool = False) -> Samples:
    """Load samples named by ``spec`` and fit them to ``input_shape``.

    ``what`` names the samples in error messages ("calibration samples", "evaluation samples").
    ``keep_dtype`` keeps integer samples integer (already-quantized validation samples); otherwise
    they become float32.
    ``limit`` keeps the first ``limit`` samples (and stops a generator after that many).
    """
    spec = str(spec)
    if limit is not None and limit < 1:
        raise InputError(f"asked for {limit} {what}", "ask for at least 1 sample")
    path = Path(spec)
    if path.suffix.lower() in (".npy", ".npz") or os.path.exists(path):
        x, y = _from_file(path, what)
    elif _FUNCTION_SPEC.match(spec):
        x, y = _from_function(spec, what, limit)
    else:
        raise InputError(f"{what} not found: {spec}",
                         "pass a .npy or .npz file, or module:function returning samples")
    if limit is not None:
        x = x[:limit]
        y = None if y is None else y[:limit]
    return Samples(x=fit_to_input(x, input_shape, what, keep_dtype=keep_dtype), y=y, source=spec)


def check_samples_file(spec: str | Path | None, what: str = "samples") -> None:
    """Read a ``.npy``/``.npz`` samples file now and refuse it if it is unusable, before work that
    takes seconds; its fit to the model is checked when the model is known. ``module:function``
    specs are left alone (their code runs once, when the samples are loaded)."""
    if not spec or spec == "random":
        return
    path = Path(str(spec))
    if path.suffix.lower() in (".npy", ".npz") or os.path.exists(path):
        x, _ = _from_file(path, what)
        if x.dtype.kind not in "fiub":
            raise InputError(f"{what} in {path} are of type {x.dtype}, not numbers",
                             "give a numeric array")
    elif not _FUNCTION_SPEC.match(str(spec)):
        raise InputError(f"{what} not found: {spec}",
                         "pass a .npy or .npz file, or module:function returning samples")


def random_samples(input_shape, count: int, *, seed: int = 0) -> Samples:
    """Uniform noise in [0, 1) shaped like the input: only for smoke tests, never for accuracy."""
    shape = tuple(int(d) for d in input_shape)
    if any(d < 0 for d in shape):
        raise InputError(f"the model input {shape} has axes of unknown size (-1), which random "
                         "calibration cannot guess", "pass --calib with real samples")
    x = np.random.default_rng(seed).random((count, *shape), dtype=np.float32)
    return Samples(x=x, y=None, source="random")


def fit_to_input(x: np.ndarray, input_shape, what: str = "samples", *,
                 keep_dtype: bool = False) -> np.ndarray:
    """Return ``x`` reshaped to ``(n, *input_shape)`` as float32 (integers kept with
    ``keep_dtype``), or refuse naming both shapes."""
    want = tuple(int(d) for d in input_shape)
    got = tuple(x.shape[1:])
    if not _shape_matches(got, want):
        if _squeezed(got) != _squeezed(want) or any(d < 0 for d in want):
            raise InputError(
                f"{what} have shape {got} but the model input is {want}",
                f"give arrays shaped (n, {', '.join(map(str, want))}) with samples on axis 0")
        x = x.reshape((len(x), *want))
    if x.dtype.kind not in "fiub":
        raise InputError(f"{what} are of type {x.dtype}, not numbers", "give a numeric array")
    if keep_dtype and x.dtype.kind in "iu":
        return np.ascontiguousarray(x)
    x = np.ascontiguousarray(x, dtype=np.float32)
    if not np.all(np.isfinite(x)):
        raise InputError(f"{what} contain NaN or infinite values", "clean the data first")
    return x


def _shape_matches(got: tuple, want: tuple) -> bool:
    """Equal, with -1 (a dynamic axis of the model) matching any size."""
    return len(got) == len(want) and all(w < 0 or g == w for g, w in zip(got, want))


def _squeezed(shape: tuple) -> tuple:
    return tuple(d for d in shape if d != 1)


def _from_file(path: Path, what: str) -> tuple[np.ndarray, np.ndarray | None]:
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise InputError(f"{what} file not found: {path}", "check the path") from None
    except OSError as exc:
        raise InputError(f"cannot reach the {what} file {path}: {exc.strerror or exc}",
                         "check the permissions of the folders on its path") from None
    if stat.S_ISDIR(info.st_mode):
        raise InputError(f"{path} is a folder, not a .npy/.npz file", "pass the file itself")
    if not stat.S_ISREG(info.st_mode):
        raise InputError(f"the {what} file {path} is not a regular file (a FIFO or a device?)",
                         "pass a .npy or .npz file")
    suffix = path.suffix.lower()
    if suffix not in (".npy", ".npz"):
        raise InputError(f"unknown {what} file type '{path.suffix}' for {path}",
                         "pass a .npy or .npz file, or module:function")
    try:
        loaded = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise InputError(f"cannot read {path} as {suffix} ({_short(exc)})",
                         "write it with numpy.save / numpy.savez") from None
    except MemoryError:
        raise InputError(f"{path} is too large to load into memory",
                         "pass fewer samples (a few hundred are enough)") from None
    if suffix == ".npy":
        if not isinstance(loaded, np.ndarray):
            raise InputError(f"{path} is not a .npy array", "write it with numpy.save")
        return _check_batch(loaded, path, what), None
    with loaded:
        if "x" not in loaded.files:
            raise InputError(f"{path} has no array 'x' (it has: {', '.join(loaded.files) or 'none'})",
                             "save samples as numpy.savez(path, x=samples, y=labels)")
        x = _check_batch(_member(loaded, "x", path), path, what)
        y = _member(loaded, "y", path) if "y" in loaded.files else None
    if y is not None:
        y = check_labels(y, len(x), str(path))
    return x, y


def _member(archive, name: str, path: Path) -> np.ndarray:
    """One array of an .npz, refusing what cannot be read without unpickling (object arrays)."""
    try:
        return archive[name]
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise InputError(f"array '{name}' of {path} holds Python objects, not numbers",
                             f"save '{name}' as a numeric array (numpy.asarray(..., "
                             "dtype=numpy.float32) or integer class indices)") from None
        raise InputError(f"cannot read array '{name}' of {path} ({_short(exc)})",
                         "write it with numpy.savez") from None
    except (OSError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise InputError(f"cannot read array '{name}' of {path} ({_short(exc)})",
                         "write it with numpy.savez") from None


def check_labels(y, count: int, source: str) -> np.ndarray:
    """Labels (class indices, one-hot rows) or targets: numbers, one entry per sample."""
    y = np.asarray(y)
    if y.ndim == 0:
        raise InputError(f"the labels 'y' of {source} are a single value, not one per sample",
                         "give one label per sample in 'y'")
    if y.dtype.kind not in "biuf":
        kind = "text" if y.dtype.kind in "US" else f"of type {y.dtype}"
        raise InputError(f"the labels 'y' of {source} are {kind}, not numbers",
                         "give class indices (0, 1, ...) or one-hot rows, e.g. "
                         "numpy.unique(labels, return_inverse=True)[1]")
    if len(y) != count:
        raise InputError(f"{source} has {count} samples in 'x' but {len(y)} entries in 'y'",
                         "give one label per sample")
    if y.dtype.kind == "f" and not np.all(np.isfinite(y)):
        raise InputError(f"the labels 'y' of {source} contain NaN or infinite values",
                         "clean the labels first")
    return y


def _check_batch(x: np.ndarray, source, what: str) -> np.ndarray:
    if x.ndim == 0 or len(x) == 0:
        raise InputError(f"{source} holds no {what}", "put the samples on axis 0")
    return x


def _from_function(spec: str, what: str, limit: int | None) -> tuple[np.ndarray, np.ndarray | None]:
    module_name, func_name = spec.split(":")
    func = getattr(_import_from_cwd(module_name, spec), func_name, None)
    if not callable(func):
        raise InputError(f"{module_name} has no function {func_name}", f"check the spec '{spec}'")
    try:
        xs, ys = [], []
        for item in func():
            if limit is not None and len(xs) >= limit:
                break
            if isinstance(item, dict):
                xs.append(np.asarray(item["x"]))
                ys.append(item.get("y"))
            else:
                xs.append(np.asarray(item))
                ys.append(None)
    except KeyboardInterrupt:
        raise
    except SystemExit as exc:  # sys.exit() in user code must not end tinydeploy with success
        raise InputError(f"{spec} called sys.exit({'' if exc.code is None else repr(exc.code)}) "
                         f"instead of returning {what}",
                         "return an iterable of samples from the function; do not exit") from None
    except BaseException as exc:  # noqa: BLE001 - user code may raise anything
        raise InputError(f"{spec} failed: {type(exc).__name__}: {_short(exc)}",
                         "fix the function (it must return an iterable of samples)") from None
    if not xs:
        raise InputError(f"{spec} returned no {what}", "return at least one sample")
    shapes = {x.shape for x in xs}
    if len(shapes) > 1:
        raise InputError(f"{spec} returned {what} of different shapes: {sorted(shapes)[:3]}",
                         "return samples of one shape")
    y = None
    if not any(v is None for v in ys):
        try:
            y = check_labels(np.asarray(ys), len(xs), spec)
        except ValueError:  # labels of different shapes
            raise InputError(f"{spec} returned labels 'y' of different shapes",
                             "return one class index or one one-hot row per sample") from None
    return np.stack(xs), y


def _import_from_cwd(module_name: str, spec: str):
    cwd = str(Path.cwd())
    added = cwd not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        return importlib.import_module(module_name)
    except ImportError as exc:
        raise InputError(f"cannot import {module_name} for {spec} ({_short(exc)})",
                         "run from the folder that holds the module, or check its name") from None
    except KeyboardInterrupt:
        raise
    except SystemExit as exc:
        raise InputError(f"importing {module_name} for {spec} called sys.exit("
                         f"{'' if exc.code is None else repr(exc.code)})",
                         "keep the module's top level free of sys.exit() (guard it with "
                         "if __name__ == '__main__')") from None
    except BaseException as exc:  # noqa: BLE001 - the module's own code raised while importing
        raise InputError(f"importing {module_name} failed: {type(exc).__name__}: {_short(exc)}",
                         "fix the module") from None
    finally:
        if added:
            sys.path.remove(cwd)


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__
