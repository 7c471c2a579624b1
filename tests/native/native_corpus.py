"""The generated per-op corpus: small multi-branch Keras models converted to int8 .tflite.

Each *group* is one Keras model whose branches are independent single-op graphs (one input ->
one op -> one output, or two inputs for binary ops), so one TFLite conversion yields a couple of
dozen cases. Branch parameters (shapes, strides, padding, dilation, activation, depth multiplier,
broadcast pattern, representative input range -> scale and zero point) are drawn from a seeded RNG:
the corpus is the same on every run, and a cached .tflite is reused until its spec changes.

Conversion is the only slow part (TensorFlow import + converter), so ``convert_group`` is only
called for groups missing from the cache.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass, field

CORPUS_VERSION = 1  # bump to reconvert every cached model


@dataclass
class Branch:
    kind: str
    params: dict
    inputs: list[tuple[list[int], float, float]]   # (shape without batch, range lo, range hi)

    @property
    def label(self) -> str:
        return self.kind + "(" + ",".join(f"{k}={v}" for k, v in self.params.items()) + ")"


@dataclass
class Group:
    name: str
    branches: list[Branch]
    quant: str = "default"          # default | per_tensor | dense_per_channel
    float_io: bool = False
    seed: int = 0
    extra: dict = field(default_factory=dict)

    def key(self) -> str:
        blob = json.dumps([CORPUS_VERSION, self.name, self.quant, self.float_io, self.seed,
                           self.extra,
                           [(b.kind, b.params, b.inputs) for b in self.branches]], sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _range(rng: random.Random, straddle: bool = False) -> tuple[float, float]:
    """A representative input range: scales ~0.005..0.5, zero points all over int8.

    straddle: the range includes both signs (else a ReLU after an ADD of two non-positive inputs
    gives a constant-zero output whose degenerate scale makes TFLM abort in Prepare)."""
    width = rng.choice([0.5, 1.0, 4.0, 10.0, 40.0])
    lo = -width * rng.choice([0.1, 0.5, 0.9] if straddle else [0.0, 0.1, 0.5, 0.9, 1.0])
    return round(lo, 3), round(lo + width, 3)


def _act(rng: random.Random) -> str:
    return rng.choice(["linear", "relu", "relu6"])


def _window(rng: random.Random, dilation_ok: bool = True) -> dict:
    k = [rng.randint(1, 4), rng.randint(1, 4)]
    dilated = dilation_ok and rng.random() < 0.3
    return {"kernel": k,
            "strides": [1, 1] if dilated else [rng.randint(1, 3), rng.randint(1, 3)],
            "dilation": [rng.randint(1, 3), rng.randint(1, 2)] if dilated else [1, 1],
            "padding": rng.choice(["same", "valid"])}


def _image(rng: random.Random, p: dict, max_c: int = 8) -> list[int]:
    eff_h = (p["kernel"][0] - 1) * p["dilation"][0] + 1
    eff_w = (p["kernel"][1] - 1) * p["dilation"][1] + 1
    return [rng.randint(eff_h, eff_h + 9), rng.randint(eff_w, eff_w + 9), rng.randint(1, max_c)]


def conv_branch(rng: random.Random) -> Branch:
    p = {**_window(rng), "filters": rng.randint(1, 12), "activation": _act(rng),
         "use_bias": rng.random() < 0.85}
    return Branch("conv", p, [(_image(rng, p), *_range(rng))])


def depthwise_branch(rng: random.Random) -> Branch:
    p = {**_window(rng), "depth_multiplier": rng.choice([1, 1, 2, 3]), "activation": _act(rng),
         "use_bias": rng.random() < 0.85}
    return Branch("depthwise", p, [(_image(rng, p), *_range(rng))])


def dense_branch(rng: random.Random) -> Branch:
    shape = rng.choice([[rng.randint(1, 64)], [rng.randint(2, 4), rng.randint(1, 32)]])
    p = {"units": rng.randint(1, 40), "activation": rng.choice(["linear", "relu", "relu6"]),
         "use_bias": rng.random() < 0.85}
    return Branch("dense", p, [(shape, *_range(rng))])


def pool_branch(rng: random.Random) -> Branch:
    p = {"op": rng.choice(["avg", "max"]), "pool": [rng.randint(1, 4), rng.randint(1, 4)],
         "strides": [rng.randint(1, 3), rng.randint(1, 3)], "padding": rng.choice(["same", "valid"])}
    shape = [rng.randint(p["pool"][0], 12), rng.randint(p["pool"][1], 12), rng.randint(1, 8)]
    return Branch("pool", p, [(shape, *_range(rng))])


def large_pool_branch(rng: random.Random) -> Branch:
    """Windows of more than 256 taps (the DSP average pool sums in 16 bits only up to 256)."""
    k = [rng.randint(15, 20), rng.randint(17, 20)]
    p = {"op": rng.choice(["avg", "max"]), "pool": k, "strides": [rng.randint(1, 3), 1],
         "padding": rng.choice(["same", "valid"])}
    shape = [rng.randint(k[0], 22), rng.randint(k[1], 22), rng.randint(3, 9)]
    return Branch("pool", p, [(shape, *_range(rng))])


def elementwise_branch(rng: random.Random) -> Branch:
    shape = [rng.randint(1, 6), rng.randint(1, 6), rng.randint(1, 8)]
    other = list(shape)
    pattern = rng.choice(["same", "same", "channel", "row", "scalar"])
    if pattern == "channel":
        other = [1, 1, shape[2]]
    elif pattern == "row":
        other = [1, shape[1], shape[2]]
    elif pattern == "scalar":
        other = [1, 1, 1]
    if rng.random() < 0.5:
        shape, other = other, shape   # broadcast the first input instead
    p = {"op": rng.choice(["add", "mul"]), "pattern": pattern,
         "activation": rng.choice(["linear", "relu"])}
    straddle = p["activation"] == "relu"
    return Branch("elementwise", p, [(shape, *_range(rng, straddle)),
                                     (other, *_range(rng, straddle))])


def misc_branch(rng: random.Random) -> Branch:
    kind = rng.choice(["gap", "mean", "pad", "concat", "reshape_conv"])
    shape = [rng.randint(1, 7), rng.randint(1, 7), rng.randint(1, 6)]
    if kind == "gap":
        return Branch("gap", {"keepdims": rng.random() < 0.5}, [(shape, *_range(rng))])
    if kind == "mean":
        axes = rng.choice([[1], [2], [3], [1, 3], [1, 2]])
        return Branch("mean", {"axes": axes, "keepdims": rng.random() < 0.5},
                      [(shape, *_range(rng))])
    if kind == "pad":
        pads = [[rng.randint(0, 2), rng.randint(0, 2)], [rng.randint(0, 2), rng.randint(0, 2)]]
        return Branch("pad", {"pads": pads}, [(shape, *_range(rng))])
    if kind == "concat":
        axis = rng.choice([1, 2, 3])
        other = list(shape)
        other[axis - 1] = rng.randint(1, 5)
        return Branch("concat", {"axis": axis}, [(shape, *_range(rng)), (other, *_range(rng))])
    return Branch("reshape_conv", {"filters": rng.randint(1, 6)}, [(shape, *_range(rng))])


def activation_branch(rng: random.Random) -> Branch:
    shape = rng.choice([[rng.randint(1, 40)], [rng.randint(1, 5), rng.randint(1, 12)]])
    p = {"fn": rng.choice(["softmax", "sigmoid", "tanh", "hard_swish"])}
    return Branch("activation", p, [(shape, *_range(rng))])


def network_branch(rng: random.Random) -> Branch:
    """A small MobileNetV3-style network: ops chained, so the arena is shared, outputs overlap
    dying inputs, and a Flatten with a dynamic batch brings SHAPE/STRIDED_SLICE/PACK."""
    p = {"channels": rng.choice([8, 12, 16]), "act": rng.choice(["relu6", "hard_swish"]),
         "classes": rng.randint(2, 10)}
    size = rng.choice([12, 16, 20])
    return Branch("network", p, [([size, size, 3], -1.0, 1.0)])


def block_branch(rng: random.Random) -> Branch:
    """A chain of window ops as networks build them - a ResNet block (conv, conv, add of the
    block input), an inverted residual (1x1 expand, depthwise, 1x1 project, add) or a plain
    conv/depthwise chain - with random strides, kernels, dilation, padding and odd sizes: what
    the compiler may run row by row (tinydeploy/native/stream.py)."""
    p = {"kind": rng.choice(["residual", "inverted", "chain"]),
         "channels": rng.choice([4, 8, 12, 16]), "kernel": rng.choice([1, 3, 3, 5]),
         "stride": rng.choice([1, 1, 2]), "dilation": rng.choice([1, 1, 2]),
         "padding": rng.choice(["same", "same", "valid"]),
         "activation": rng.choice(["relu", "relu6", "linear"])}
    if p["dilation"] > 1:
        p["stride"] = 1
    size = [rng.randint(9, 17), rng.randint(9, 17), rng.choice([1, 3])]
    return Branch("block", p, [(size, -1.0, 1.0)])


def _branches(make, n: int, seed: int) -> list[Branch]:
    rng = random.Random(seed)
    return [make(rng) for _ in range(n)]


def groups() -> list[Group]:
    """The whole corpus (deterministic)."""
    return [
        Group("conv_a", _branches(conv_branch, 24, 11)),
        Group("conv_b", _branches(conv_branch, 24, 12)),
        Group("conv_per_tensor", _branches(conv_branch, 20, 13), quant="per_tensor"),
        Group("depthwise_a", _branches(depthwise_branch, 24, 21)),
        Group("depthwise_per_tensor", _branches(depthwise_branch, 16, 22), quant="per_tensor"),
        Group("dense", _branches(dense_branch, 20, 31)),
        Group("dense_per_channel", _branches(dense_branch, 16, 32), quant="dense_per_channel"),
        Group("pool", _branches(pool_branch, 28, 41)),
        Group("pool_large", _branches(large_pool_branch, 8, 42)),
        Group("elementwise", _branches(elementwise_branch, 30, 51)),
        Group("misc", _branches(misc_branch, 28, 61)),
        Group("activation", _branches(activation_branch, 16, 71)),
        Group("float_io", _branches(conv_branch, 6, 81) + _branches(pool_branch, 4, 82),
              float_io=True),
        Group("networks", _branches(network_branch, 4, 91), extra={"dynamic_batch": True}),
        Group("blocks", _branches(block_branch, 12, 101)),
    ]


# ---- conversion (imports TensorFlow; only for groups missing from the cache) -------------------

def _build_branch(keras, b: Branch, inputs):
    L = keras.layers
    p = b.params
    init = {"kernel_initializer": keras.initializers.RandomUniform(-1.0, 1.0),
            "bias_initializer": keras.initializers.RandomUniform(-2.0, 2.0)}
    if b.kind == "conv":
        return L.Conv2D(p["filters"], p["kernel"], strides=p["strides"], padding=p["padding"],
                        dilation_rate=p["dilation"], activation=p["activation"],
                        use_bias=p["use_bias"], **init)(inputs[0])
    if b.kind == "depthwise":
        return L.DepthwiseConv2D(p["kernel"], strides=p["strides"], padding=p["padding"],
                                 depth_multiplier=p["depth_multiplier"],
                                 dilation_rate=p["dilation"], activation=p["activation"],
                                 use_bias=p["use_bias"],
                                 depthwise_initializer=init["kernel_initializer"],
                                 bias_initializer=init["bias_initializer"])(inputs[0])
    if b.kind == "dense":
        return L.Dense(p["units"], activation=p["activation"], use_bias=p["use_bias"],
                       **init)(inputs[0])
    if b.kind == "pool":
        layer = L.AveragePooling2D if p["op"] == "avg" else L.MaxPooling2D
        return layer(p["pool"], strides=p["strides"], padding=p["padding"])(inputs[0])
    if b.kind == "elementwise":
        fn = keras.ops.add if p["op"] == "add" else keras.ops.multiply
        y = fn(inputs[0], inputs[1])
        return L.Activation(p["activation"])(y) if p["activation"] != "linear" else y
    if b.kind == "gap":
        return L.GlobalAveragePooling2D(keepdims=p["keepdims"])(inputs[0])
    if b.kind == "mean":
        return keras.ops.mean(inputs[0], axis=p["axes"], keepdims=p["keepdims"])
    if b.kind == "pad":
        return L.ZeroPadding2D(tuple(tuple(x) for x in p["pads"]))(inputs[0])
    if b.kind == "concat":
        return L.Concatenate(axis=p["axis"])(inputs)
    if b.kind == "reshape_conv":
        shape = b.inputs[0][0]
        y = L.Reshape((shape[0] * shape[1], 1, shape[2]))(inputs[0])
        return L.Conv2D(p["filters"], 1, **init)(y)
    if b.kind == "activation":
        return L.Activation(p["fn"])(inputs[0])
    if b.kind == "network":
        return _network(keras, p, inputs[0], init)
    if b.kind == "block":
        return _block(keras, p, inputs[0], init)
    raise ValueError(b.kind)


def _network(keras, p: dict, x, init: dict):
    L = keras.layers
    c, act = p["channels"], p["act"]
    y = L.Conv2D(c, 3, strides=2, padding="same", activation=act, **init)(x)
    skip = y
    y = L.DepthwiseConv2D(3, padding="same", activation=act,
                          depthwise_initializer=init["kernel_initializer"])(y)
    se = L.GlobalAveragePooling2D(keepdims=True)(y)
    se = L.Conv2D(max(2, c // 4), 1, activation="relu", **init)(se)
    se = L.Conv2D(c, 1, activation="hard_sigmoid", **init)(se)
    y = L.Multiply()([y, se])
    y = L.Conv2D(c, 1, **init)(y)
    y = L.Add()([y, skip])
    y = L.ZeroPadding2D(((0, 1), (0, 1)))(y)
    y = L.MaxPooling2D(2)(y)
    y = L.Concatenate()([y, y])
    y = L.Flatten()(y)
    y = L.Dense(p["classes"], **init)(y)
    return L.Softmax()(y)


def _block(keras, p: dict, x, init: dict):
    L = keras.layers
    c, k, act = p["channels"], p["kernel"], p["activation"]
    conv = {"activation": act, **init}
    x = L.Conv2D(c, 3, padding="same", **conv)(x)                      # stem: c channels
    if p["kind"] == "residual":
        y = L.Conv2D(c, k, padding="same", dilation_rate=p["dilation"], **conv)(x)
        y = L.Conv2D(c, k, padding="same", **init)(y)
        return L.Activation("relu")(L.Add()([x, y]))
    if p["kind"] == "inverted":
        y = L.Conv2D(3 * c, 1, **conv)(x)
        y = L.DepthwiseConv2D(k, strides=p["stride"], padding="same",
                              dilation_rate=p["dilation"], activation=act,
                              depthwise_initializer=init["kernel_initializer"])(y)
        y = L.Conv2D(c, 1, **init)(y)
        return L.Add()([x, y]) if p["stride"] == 1 else y
    y = L.Conv2D(c, k, strides=p["stride"], padding=p["padding"], dilation_rate=p["dilation"],
                 **conv)(x)
    y = L.DepthwiseConv2D(3, padding=p["padding"], activation=act,
                          depthwise_initializer=init["kernel_initializer"])(y)
    return L.Conv2D(c // 2, 1, **conv)(y)


def convert_group(group: Group) -> bytes:
    """Build the group's Keras model and convert it to a full-int8 .tflite."""
    import numpy as np
    import tensorflow as tf
    import keras

    keras.utils.set_random_seed(group.seed or 1)
    model_inputs, outputs, ranges = [], [], []
    for i, b in enumerate(group.branches):
        # Zero-padded names: the converter orders a model's inputs by name.
        names = [f"b{i:03d}_in{j}" for j in range(len(b.inputs))]
        batch = None if group.extra.get("dynamic_batch") else 1
        ins = [keras.Input(tuple(shape), batch_size=batch, name=n)
               for n, (shape, _, _) in zip(names, b.inputs)]
        model_inputs += ins
        ranges += [(n, shape, lo, hi) for n, (shape, lo, hi) in zip(names, b.inputs)]
        outputs.append(_build_branch(keras, b, ins))
    model = keras.Model(model_inputs, outputs)
    rs = np.random.default_rng(0)

    def representative():
        for _ in range(24):
            yield {n: rs.uniform(lo, hi, size=(1, *shape)).astype(np.float32)
                   for n, shape, lo, hi in ranges}

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if not group.float_io:
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
    if group.quant == "per_tensor":
        conv._experimental_disable_per_channel = True
    if group.quant == "dense_per_channel":
        conv._experimental_disable_per_channel_quantization_for_dense_layers = False
    return conv.convert()
