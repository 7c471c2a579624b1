"""Train the sine example: TensorFlow Lite Micro's "hello world", a regressor of sin(x).

Run from the repository root: ``python examples/sine/train.py``. Writes, next to this file,
``sine.keras`` (the float model), ``calib.npz`` (``x``: calibration inputs) and ``eval.npz``
(``x`` and ``y`` = the noise-free sin(x), the target the int8 model is compared against).

Inputs are x in [0, 2*pi] with shape (1,); the training targets carry a little noise, as in the
original tutorial, so the network learns the curve and not the points. Seeded and deterministic.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

HERE = Path(__file__).resolve().parent
SEED = 0


def build_model() -> keras.Model:
    """Two hidden layers of 16 units: 321 parameters, small enough for any board."""
    return keras.Sequential(
        [
            keras.Input(shape=(1,), name="x"),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(1, name="y"),
        ],
        name="sine",
    )


def main() -> None:
    keras.utils.set_random_seed(SEED)
    tf.config.experimental.enable_op_determinism()
    rng = np.random.default_rng(SEED)

    x_train = rng.uniform(0.0, 2 * math.pi, size=(2000, 1)).astype(np.float32)
    y_train = (np.sin(x_train) + rng.normal(0.0, 0.05, size=x_train.shape)).astype(np.float32)

    model = build_model()
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse", metrics=["mae"])
    model.fit(x_train, y_train, epochs=200, batch_size=64, verbose=0)

    x_eval = np.linspace(0.0, 2 * math.pi, 200, dtype=np.float32).reshape(-1, 1)
    y_eval = np.sin(x_eval).astype(np.float32)
    _, mae = model.evaluate(x_eval, y_eval, verbose=0)
    print(f"float MAE against sin(x) on {len(x_eval)} points: {mae:.4f}")

    model.save(HERE / "sine.keras")
    np.savez_compressed(HERE / "calib.npz", x=rng.uniform(0.0, 2 * math.pi, size=(200, 1)).astype(np.float32))
    np.savez_compressed(HERE / "eval.npz", x=x_eval, y=y_eval)


if __name__ == "__main__":
    main()
