"""The project's examples through the pipeline's own quantizer and the native runtime: bit-exact
with tflite_micro on the example's evaluation inputs and on random int8 inputs.

The quantized .tflite is cached under pytest's cache dir (keyed by the example's files), so
TensorFlow is imported only when an example changes.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

import nativelib

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
NAMES = sorted(p.name for p in EXAMPLES.iterdir()
               if all((p / f).exists() for f in (f"{p.name}.keras", "calib.npz", "eval.npz"))) \
    if EXAMPLES.is_dir() else []


def _quantized(name: str, cache: Path) -> bytes:
    folder = EXAMPLES / name
    key = hashlib.sha256(b"".join((folder / f).read_bytes()
                                  for f in (f"{name}.keras", "calib.npz"))).hexdigest()[:16]
    path = cache / f"{name}-{key}.tflite"
    if not path.exists():
        from tinydeploy.data import load_samples
        from tinydeploy.loading import load_model
        from tinydeploy.quantize import quantize

        model = load_model(folder / f"{name}.keras")
        calib = load_samples(folder / "calib.npz", input_shape=model.input_shape)
        path.write_bytes(quantize(model, calib).tflite)
    return path.read_bytes()


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_example_is_bit_exact(name, model_cache, kernel_archive, tmp_path):
    model_bytes = _quantized(name, model_cache("examples"))
    native_model = nativelib.compile_and_load(model_bytes, tmp_path, kernel_archive)
    ref = nativelib.Reference(model_bytes)
    detail = ref.inputs[0]
    scale, zero_point = (detail["quantization_parameters"][k][0] for k in ("scales", "zero_points"))
    x_eval = np.load(EXAMPLES / name / "eval.npz")["x"][:50].astype(np.float32)
    samples = [np.clip(np.round(x / scale) + zero_point, -128, 127).astype(np.int8)
               .reshape(detail["shape"]) for x in x_eval]
    rng = np.random.default_rng(5)
    samples += [ref.random_inputs(rng)[0] for _ in range(50)]
    differing = [i for i, x in enumerate(samples)
                 if not np.array_equal(ref.run([x])[0], native_model.run([x], ref.out_specs)[0])]
    assert not differing, f"{name}: outputs differ on samples {differing[:10]}"
