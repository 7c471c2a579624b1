"""Train the digits example: a small CNN on scikit-learn's bundled 8x8 handwritten digits.

Run from the repository root: ``python examples/digits/train.py``. Writes, next to this file,
``digits.keras`` (the float model), ``calib.npz`` (``x``: calibration samples drawn from the
training split) and ``eval.npz`` (``x``, ``y``: the held-out test split with its labels).

The data ships with scikit-learn (``load_digits``), so nothing is downloaded. Training is seeded
and TensorFlow's deterministic ops are on, so a rerun gives the same model on the same machine.
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

HERE = Path(__file__).resolve().parent
SEED = 0
CALIB_SAMPLES = 200


def load_data():
    """Digits as float32 images in [0, 1] of shape (8, 8, 1); pixel values are 0..16 originally."""
    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[..., np.newaxis]
    y = digits.target.astype(np.int64)
    return train_test_split(x, y, test_size=0.2, random_state=SEED, stratify=y)


def build_model() -> keras.Model:
    """Two small convolutions and a dense classifier: about 4k parameters."""
    return keras.Sequential(
        [
            keras.Input(shape=(8, 8, 1), name="image"),
            keras.layers.Conv2D(8, 3, padding="same", activation="relu"),
            keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(10, activation="softmax", name="probabilities"),
        ],
        name="digits",
    )


def main() -> None:
    keras.utils.set_random_seed(SEED)
    tf.config.experimental.enable_op_determinism()
    x_train, x_test, y_train, y_test = load_data()

    model = build_model()
    model.compile(optimizer=keras.optimizers.Adam(0.005),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=40, batch_size=32, verbose=0, shuffle=True)
    _, accuracy = model.evaluate(x_test, y_test, verbose=0)
    print(f"float accuracy on {len(x_test)} held-out digits: {accuracy:.2%}")

    model.save(HERE / "digits.keras")
    calib = np.random.default_rng(SEED).choice(len(x_train), CALIB_SAMPLES, replace=False)
    np.savez_compressed(HERE / "calib.npz", x=x_train[calib])
    np.savez_compressed(HERE / "eval.npz", x=x_test, y=y_test)


if __name__ == "__main__":
    main()
