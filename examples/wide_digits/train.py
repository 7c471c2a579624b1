"""Train the wide_digits example: a digits CNN sized for a desktop, too big for a Cortex-M3.

Run from the repository root: ``python examples/wide_digits/train.py``. Writes, next to this file,
``wide_digits.keras`` (the float model), ``train.npz`` (``x``, ``y``: the training split, which
``tinydeploy fit`` fine-tunes on) and ``eval.npz`` (``x``, ``y``: the held-out test split).

The data is scikit-learn's bundled 8x8 handwritten digits (``sklearn.datasets.load_digits``: 1,797
images shipped inside the package, nothing downloaded), split 80/20 with the same seed as the
digits example. The model is what one writes without a board in mind: two 3x3 convolutions with
batch normalisation, and a dense layer of 512 units over the flattened 4x4x64 feature map, about
550,000 parameters. In int8 its weights alone are twice the 256 KB flash of qemu-m3.

Training is seeded and TensorFlow's deterministic ops are on, so a rerun gives the same model on
the same machine.
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
EPOCHS = 30


def load_data():
    """Digits as float32 images in [0, 1] of shape (8, 8, 1); pixel values are 0..16 originally."""
    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[..., np.newaxis]
    y = digits.target.astype(np.int64)
    return train_test_split(x, y, test_size=0.2, random_state=SEED, stratify=y)


def build_model() -> keras.Model:
    """Conv-BN-ReLU twice, a 2x2 max pool, and a wide dense layer: about 550k parameters."""
    return keras.Sequential(
        [
            keras.Input(shape=(8, 8, 1), name="image"),
            keras.layers.Conv2D(32, 3, padding="same", use_bias=False, name="conv1"),
            keras.layers.BatchNormalization(name="bn1"),
            keras.layers.ReLU(name="relu1"),
            keras.layers.Conv2D(64, 3, padding="same", use_bias=False, name="conv2"),
            keras.layers.BatchNormalization(name="bn2"),
            keras.layers.ReLU(name="relu2"),
            keras.layers.MaxPooling2D(2, name="pool"),
            keras.layers.Flatten(name="flatten"),
            keras.layers.Dropout(0.3, name="dropout"),
            keras.layers.Dense(512, activation="relu", name="hidden"),
            keras.layers.Dense(10, activation="softmax", name="probabilities"),
        ],
        name="wide_digits",
    )


def main() -> None:
    keras.utils.set_random_seed(SEED)
    tf.config.experimental.enable_op_determinism()
    x_train, x_test, y_train, y_test = load_data()

    model = build_model()
    model.compile(optimizer=keras.optimizers.Adam(0.001),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=EPOCHS, batch_size=32, verbose=0, shuffle=True)
    _, accuracy = model.evaluate(x_test, y_test, verbose=0)
    print(f"{model.count_params():,} parameters; float accuracy on {len(x_test)} held-out digits: "
          f"{accuracy:.2%}")

    plain = build_model()  # the same model uncompiled: the file holds no optimizer state
    plain.set_weights(model.get_weights())
    plain.save(HERE / "wide_digits.keras")
    np.savez_compressed(HERE / "train.npz", x=x_train, y=y_train)
    np.savez_compressed(HERE / "eval.npz", x=x_test, y=y_test)


if __name__ == "__main__":
    main()
