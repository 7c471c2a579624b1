"""Synthetic samples for the EEMBC tests (no CIFAR-10 or ToyADMOS data ships with tinydeploy):
what they measure is agreement with the host reference and the protocol, not model quality.

- ``ic_samples``: 32x32x3 images of whole pixel values 0..255 (the image classifier's input scale
  is 1, so each float pixel quantizes to exactly pixel - 128), labels 0..9 (each class twice).
- ``ad_samples``: 640 log-mel-like values (5 frames x 128 bins): "normal" a smooth spectrum with
  little noise (label 0), "anomalous" the same with a loud tone band and more noise (label 1).
"""

from __future__ import annotations

import numpy as np


def ic_samples(n: int = 20, seed: int = 12) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:32, 0:32]
    images = []
    for k in range(n):
        base = rng.uniform(40, 200, size=3)
        slope = rng.uniform(-3, 3, size=(2, 3))
        img = base + slope[0] * (yy[..., None] - 16) + slope[1] * (xx[..., None] - 16)
        img = img + rng.normal(0, 12, size=img.shape)
        images.append(np.clip(np.rint(img), 0, 255))
    return np.array(images, dtype=np.float32), np.arange(n) % 10


def ad_samples(n: int = 20, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    bins = np.arange(128)
    spectrum = -30.0 - 0.25 * bins + 6.0 * np.cos(bins / 9.0)
    x, y = [], []
    for k in range(n):
        anomalous = k % 2
        frames = np.tile(spectrum, (5, 1)) + rng.normal(0, 1.5, size=(5, 128))
        if anomalous:
            centre = rng.integers(20, 100)
            frames[:, centre:centre + 6] += rng.uniform(25, 35)
            frames += rng.normal(0, 6, size=frames.shape)
        x.append(frames.reshape(-1))
        y.append(anomalous)
    return np.array(x, dtype=np.float32), np.array(y)


def write_npz(path, x, y) -> str:
    np.savez(path, x=x, y=y)
    return str(path)
