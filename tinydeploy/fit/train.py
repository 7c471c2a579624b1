"""Training for ``fit``: what the model's outputs mean, its labels, and fine-tuning or distillation.

``fit`` measures accuracy, so the model must be a classifier: several outputs scored by argmax
(probabilities from a softmax, or raw logits), or one output for two classes (a sigmoid
probability, or a logit). :func:`task_of` tells which from the model's own outputs on the training
samples, and :class:`Task` turns any of them into log-probabilities over the classes, so one loss
serves every kind:

    loss = (1 - w) * cross-entropy(labels) + w * T^2 * KL(teacher at T || student at T)

with ``w = 0`` for plain fine-tuning. The teacher's tempered probabilities are computed once, before
training (no augmentation, so they do not change), and travel with the labels as the loss's
targets: no custom training loop is needed, only ``model.fit``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from tinydeploy.errors import InputError

SOFTMAX, LOGITS, SIGMOID, BINARY_LOGIT = "softmax", "logits", "sigmoid", "binary logit"
TEMPERATURE = 4.0
SOFT_WEIGHT = 0.7           # weight of the teacher's soft targets when distilling
_EPS = 1e-7


@dataclass(frozen=True)
class Task:
    """How the model's output reads as class scores."""

    kind: str        # SOFTMAX | LOGITS | SIGMOID | BINARY_LOGIT
    outputs: int     # the model's output units

    @property
    def classes(self) -> int:
        return self.outputs if self.outputs > 1 else 2

    def log_probs_np(self, out: np.ndarray) -> np.ndarray:
        out = out.reshape(len(out), -1).astype(np.float64)
        if self.kind == SOFTMAX:
            return np.log(np.clip(out, _EPS, 1.0))
        if self.kind == LOGITS:
            shifted = out - out.max(axis=1, keepdims=True)
            return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        if self.kind == SIGMOID:
            p = np.clip(out[:, 0], _EPS, 1 - _EPS)
            return np.stack([np.log1p(-p), np.log(p)], axis=1)
        z = out[:, 0]
        return np.stack([-np.logaddexp(0, z), -np.logaddexp(0, -z)], axis=1)

    def predict(self, out: np.ndarray) -> np.ndarray:
        """Class indices from outputs (float or dequantized int8)."""
        out = out.reshape(len(out), -1)
        if self.outputs > 1:
            return np.argmax(out, axis=1)
        threshold = 0.5 if self.kind == SIGMOID else 0.0
        return (out[:, 0] > threshold).astype(np.int64)

    def accuracy(self, out: np.ndarray, labels: np.ndarray) -> float:
        return float(np.mean(self.predict(out) == labels))


def task_of(outputs: np.ndarray, name: str) -> Task:
    """The task of a model from its float outputs on some samples."""
    if outputs.ndim != 2:
        raise InputError(f"{name} outputs shape {tuple(outputs.shape[1:])} per sample; fit measures "
                         "classification accuracy and needs one score per class",
                         "give fit a classifier whose output is (classes,) per sample")
    n = outputs.shape[1]
    if n > 1:
        probabilities = (np.all(outputs >= -1e-4) and
                         np.allclose(outputs.sum(axis=1), 1.0, atol=1e-3))
        return Task(SOFTMAX if probabilities else LOGITS, n)
    inside = np.all((outputs >= -1e-6) & (outputs <= 1 + 1e-6))
    return Task(SIGMOID if inside else BINARY_LOGIT, 1)


def class_labels(y: np.ndarray | None, task: Task, count: int, what: str, source: str) -> np.ndarray:
    """Class indices 0..classes-1 from ``y`` (indices, or one-hot rows), refusing labels that do
    not match the model's outputs."""
    if y is None:
        raise InputError(f"{what} {source} has no labels: fit measures accuracy",
                         "save the samples with their class labels: numpy.savez(path, x=samples, "
                         "y=labels)")
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == task.outputs and task.outputs > 1:
        if not np.all((y == 0) | (y == 1)) or not np.all(y.sum(axis=1) == 1):
            raise InputError(f"the labels 'y' of {source} are rows of {y.shape[1]} values but not "
                             "one-hot", "give class indices, or one-hot rows of 0 and 1")
        return np.argmax(y, axis=1).astype(np.int64)
    flat = y.reshape(count, -1) if y.size == count else None
    if flat is None:
        raise InputError(f"the labels 'y' of {source} are shaped {tuple(y.shape[1:])} per sample, "
                         f"but the model scores {task.classes} classes with {task.outputs} "
                         f"output{'s' if task.outputs > 1 else ''}",
                         "give one class index (or one one-hot row) per sample")
    flat = flat[:, 0]
    if y.dtype.kind == "f" and not np.all(flat == np.round(flat)):
        raise InputError(f"the labels 'y' of {source} are not whole numbers: fit measures "
                         "classification accuracy, so it needs class labels",
                         "give class indices 0, 1, ... (fit does not handle regression models)")
    labels = flat.astype(np.int64)
    if labels.min() < 0 or labels.max() >= task.classes:
        raise InputError(f"the labels 'y' of {source} run from {labels.min()} to {labels.max()}, "
                         f"but the model has {task.outputs} output{'s' if task.outputs > 1 else ''}"
                         f" ({task.classes} classes)",
                         f"give class indices 0..{task.classes - 1} that match the model's outputs")
    return labels


def tempered(log_probs: np.ndarray, temperature: float = TEMPERATURE) -> np.ndarray:
    """The distribution at temperature T from log-probabilities: softmax(log p / T)."""
    z = log_probs / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def targets(labels: np.ndarray, task: Task, teacher: np.ndarray | None) -> np.ndarray:
    """The loss's targets: one-hot labels, then the teacher's tempered probabilities (zeros when
    there is no teacher)."""
    onehot = np.eye(task.classes, dtype=np.float32)[labels]
    soft = teacher if teacher is not None else np.zeros_like(onehot)
    return np.concatenate([onehot, soft], axis=1)


def make_loss(task: Task, soft_weight: float, temperature: float = TEMPERATURE):
    from keras import ops

    k = task.classes

    def log_probs(out):
        if task.kind == SOFTMAX:
            return ops.log(ops.clip(out, _EPS, 1.0))
        if task.kind == LOGITS:
            return ops.log_softmax(out, axis=-1)
        if task.kind == SIGMOID:
            p = ops.clip(out[:, :1], _EPS, 1 - _EPS)
            return ops.concatenate([ops.log(1 - p), ops.log(p)], axis=-1)
        z = out[:, :1]
        return ops.concatenate([ops.log_sigmoid(-z), ops.log_sigmoid(z)], axis=-1)

    def loss(y_true, y_pred):
        hard, soft = y_true[:, :k], y_true[:, k:]
        logp = log_probs(ops.reshape(y_pred, (ops.shape(y_pred)[0], -1)))
        ce = -ops.sum(hard * logp, axis=-1)
        if soft_weight <= 0:
            return ce
        logp_t = ops.log_softmax(logp / temperature, axis=-1)
        kl = ops.sum(soft * (ops.log(ops.clip(soft, 1e-12, 1.0)) - logp_t), axis=-1)
        return (1 - soft_weight) * ce + soft_weight * temperature ** 2 * kl

    return loss


class Deadline(Exception):
    """Training stopped because the time budget ran out."""


def train(model, x: np.ndarray, y: np.ndarray, task: Task, *, epochs: int, batch_size: int,
          learning_rate: float, seed: int, soft_weight: float = 0.0, deadline: float | None = None,
          on_epoch=None) -> int:
    """Train ``model`` in place on targets ``y`` (see :func:`targets`) for up to ``epochs`` epochs,
    the learning rate falling along a cosine to zero; seeded. Stops early (between epochs) once
    ``deadline`` (a time.monotonic() value) has passed. Returns the epochs done."""
    import keras

    keras.utils.set_random_seed(seed)
    steps = max(1, math.ceil(len(x) / batch_size)) * epochs
    schedule = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=steps)
    model.compile(optimizer=keras.optimizers.Adam(schedule), loss=make_loss(task, soft_weight),
                  jit_compile=False)
    done = [0]

    class Progress(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            done[0] = epoch + 1
            if on_epoch is not None:
                on_epoch(epoch + 1, epochs)
            if deadline is not None and time.monotonic() >= deadline:
                self.model.stop_training = True

    model.fit(x, y, batch_size=batch_size, epochs=epochs, shuffle=True, verbose=0,
              callbacks=[Progress()])
    return done[0]


def predict(model, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    out = model.predict(x, batch_size=batch_size, verbose=0)
    if isinstance(out, (list, tuple)):
        out = out[0]
    return np.asarray(out, dtype=np.float32)
