"""Analysis of an int8 .tflite: ops, versions, shapes, MACs, weight bytes, runtime support.

Pure data in, data out: ``analyze(model_bytes)`` reads the flatbuffer with our own reader (no
TensorFlow import) and returns an :class:`Analysis` that ``check``, ``render`` and ``inspect`` share.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from tinydeploy import tflite, tflm_ops
from tinydeploy.errors import ModelError


@dataclass(frozen=True)
class TensorSpec:
    """What a device must know of a model input or output."""

    name: str
    shape: tuple[int, ...]
    dtype: str          # numpy name: "int8", "float32", ...
    scale: float        # 0.0 when not quantized
    zero_point: int

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def nbytes(self) -> int:
        return self.size * np.dtype(self.dtype).itemsize

    @classmethod
    def of(cls, t: tflite.Tensor) -> "TensorSpec":
        return cls(t.name, t.shape, t.dtype.name if t.dtype is not None else t.type_name.lower(),
                   t.scale or 0.0, t.zero_point or 0)


@dataclass
class OpInfo:
    index: int
    op: str
    version: int
    input_shapes: list[tuple[int, ...]]
    output_shapes: list[tuple[int, ...]]
    macs: int
    weight_bytes: int


@dataclass
class Analysis:
    model_bytes: int
    ops: list[OpInfo]
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    tensor_count: int
    weight_bytes: int                 # all constant tensors (weights, biases, LUTs)
    activation_bytes_max: int         # largest single activation tensor
    tflm_missing: list[str] = field(default_factory=list)     # ops TFLM has no kernel for
    tflm_too_new: list[str] = field(default_factory=list)     # "OP vN (max vM)"
    per_channel_fully_connected: bool = False

    @property
    def op_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for op in self.ops:
            counts[op.op] = counts.get(op.op, 0) + 1
        return counts

    @property
    def distinct_ops(self) -> list[str]:
        return list(self.op_counts)

    @property
    def total_macs(self) -> int:
        return sum(op.macs for op in self.ops)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["op_counts"] = self.op_counts
        d["total_macs"] = self.total_macs
        return d


def _macs(op: tflite.Operator, t: list[tflite.Tensor]) -> int:
    """Multiply-accumulates of the ops that do them; 0 for the rest."""
    if not op.outputs or op.outputs[0] < 0:
        return 0
    out = t[op.outputs[0]]
    if op.opcode == "CONV_2D":        # filter [out_c, kh, kw, in_c]
        _, kh, kw, in_c = t[op.inputs[1]].shape
        return out.size * kh * kw * in_c
    if op.opcode == "DEPTHWISE_CONV_2D":   # filter [1, kh, kw, out_c]
        _, kh, kw, _ = t[op.inputs[1]].shape
        return out.size * kh * kw
    if op.opcode == "TRANSPOSE_CONV":      # filter [out_c, kh, kw, in_c], inputs: shape, w, x
        _, kh, kw, _ = t[op.inputs[1]].shape
        return t[op.inputs[2]].size * kh * kw * t[op.inputs[1]].shape[0]
    if op.opcode in ("FULLY_CONNECTED", "BATCH_MATMUL"):
        return out.size * t[op.inputs[1]].shape[-1 if op.opcode == "FULLY_CONNECTED" else -2]
    return 0


# Ops whose weights analyze reads: (weights input, its rank, inputs needed).
_WEIGHTED = {"CONV_2D": (1, 4, 2), "DEPTHWISE_CONV_2D": (1, 4, 2), "TRANSPOSE_CONV": (1, 4, 3),
             "FULLY_CONNECTED": (1, 2, 2), "BATCH_MATMUL": (1, None, 2)}
_SAME_TYPE = {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "ADD", "SUB", "MUL",
              "AVERAGE_POOL_2D", "MAX_POOL_2D", "RESHAPE", "CONCATENATION", "MEAN",
              "PAD", "RELU", "RELU6", "LOGISTIC", "TANH"}
# Ops whose output has exactly their first input's shape.
_SAME_SHAPE = {"RELU", "RELU6", "RELU_N1_TO_1", "LOGISTIC", "TANH", "SOFTMAX", "QUANTIZE",
               "DEQUANTIZE", "HARD_SWISH", "LEAKY_RELU", "ABS", "NEG", "EXP", "LOG", "SQRT",
               "RSQRT", "SQUARE", "ELU", "PRELU", "L2_NORMALIZATION", "LOG_SOFTMAX",
               "LOCAL_RESPONSE_NORMALIZATION"}
_BROADCAST = {"ADD", "SUB", "MUL", "DIV", "MAXIMUM", "MINIMUM", "SQUARED_DIFFERENCE", "POW",
              "FLOOR_DIV", "FLOOR_MOD"}


def _window(size: int, kernel: int, stride: int, dilation: int, padding: str) -> int | None:
    """Output length of a convolution/pooling window along one axis (TFLite's rule)."""
    if stride < 1 or dilation < 1 or kernel < 1:
        return None
    if padding == "SAME":
        return (size + stride - 1) // stride
    if padding == "VALID":
        effective = (kernel - 1) * dilation + 1
        return max((size - effective + stride) // stride, 0)
    return None


def _broadcast(a: tuple, b: tuple) -> tuple | None:
    a, b = (1,) * (len(b) - len(a)) + tuple(a), (1,) * (len(a) - len(b)) + tuple(b)
    out = []
    for x, y in zip(a, b):
        if x != y and 1 not in (x, y):
            return None
        out.append(max(x, y) if 0 not in (x, y) else 0)
    return tuple(out)


def check_operators(g: tflite.Subgraph) -> None:
    """Refuse what TFLM's kernels would refuse, or trust blindly and crash on, in their Prepare.

    TFLM reads an op's output shape from the file and writes that many values: an output shape
    that disagrees with the inputs means writing out of bounds. So, with a message naming the
    operator: missing inputs, weights of the wrong rank or without scales, output shapes that
    differ from what the op computes (convolutions, pooling, fully connected, element-wise and
    broadcast ops, concatenation, reshape), types that change across an int8 op, and SOFTMAX
    betas TFLM cannot quantize.
    """
    t = g.tensors

    def bad(op, why):
        return ModelError(f"the model is corrupt: operator {op.index} ({op.opcode}) {why}",
                          "re-export it with the TFLite converter")

    for op in g.operators:
        if not op.outputs:
            raise bad(op, "has no output")
        ins = list(op.inputs)
        x = t[ins[0]] if ins and ins[0] >= 0 else None
        y = t[op.outputs[0]]
        if op.opcode in _WEIGHTED:
            _check_weighted(op, ins, t, x, y, bad)
        if op.opcode in ("AVERAGE_POOL_2D", "MAX_POOL_2D", "L2_POOL_2D") and x is not None:
            o = op.options
            if len(x.shape) != 4:
                raise bad(op, f"pools a {len(x.shape)}-D input")
            want = (x.shape[0], _window(x.shape[1], o.get("filter_height", 0), o.get("stride_h", 0),
                                        1, o.get("padding")),
                    _window(x.shape[2], o.get("filter_width", 0), o.get("stride_w", 0), 1,
                            o.get("padding")), x.shape[3])
            if None in want or y.shape != want:
                raise bad(op, f"maps {x.shape} to {y.shape}, not {want}")
        if op.opcode in _SAME_SHAPE and x is not None and y.shape != x.shape:
            raise bad(op, f"maps {x.shape} to {y.shape}")
        if op.opcode in _BROADCAST:
            if len(ins) < 2 or min(ins[:2]) < 0:
                raise bad(op, "needs two inputs")
            want = _broadcast(t[ins[0]].shape, t[ins[1]].shape)
            if want is None or y.shape != want:
                raise bad(op, f"combines {t[ins[0]].shape} and {t[ins[1]].shape} into {y.shape}")
        if op.opcode == "CONCATENATION" and ins:
            shapes = [t[i].shape for i in ins if i >= 0]
            axis = op.options.get("axis", 0)
            axis = axis + len(y.shape) if axis < 0 else axis
            ok = 0 <= axis < len(y.shape) and all(len(s_) == len(y.shape) for s_ in shapes)
            ok = ok and all(s_[:axis] + s_[axis + 1:] == y.shape[:axis] + y.shape[axis + 1:]
                            for s_ in shapes) and sum(s_[axis] for s_ in shapes) == y.shape[axis]
            if not ok:
                raise bad(op, f"concatenates {shapes} into {y.shape}")
        if op.opcode == "RESHAPE" and x is not None and x.size != y.size:
            raise bad(op, f"reshapes {x.shape} to {y.shape}")
        if op.opcode in _SAME_TYPE and x is not None and x.type_name != y.type_name:
            raise bad(op, f"takes {x.type_name} but gives {y.type_name}")
        if op.opcode == "SOFTMAX" and x is not None:
            beta, scale = op.options.get("beta", 0.0), x.scale or 1.0
            if not (np.isfinite(beta) and beta > 0 and beta * scale * (1 << 26) >= 1
                    and beta <= 1e6):
                raise bad(op, f"has beta {beta}, which TFLM cannot quantize")


def _check_weighted(op, ins, t, x, y, bad) -> None:
    w_index, rank, needed = _WEIGHTED[op.opcode]
    if len(ins) < needed or any(i < 0 for i in ins[:needed]):
        raise bad(op, f"has {len(ins)} inputs, fewer than the {needed} it needs")
    w = t[ins[w_index]]
    if (rank is not None and len(w.shape) != rank) or len(w.shape) < 2 or 0 in w.shape:
        raise bad(op, f"has weights of shape {w.shape}")
    if w.type_name in ("INT8", "INT4") and x.type_name in ("INT8", "INT16") \
            and w.quantization is None:
        raise bad(op, "has int8 weights without scales")
    misfit = bad(op, f"has weights {w.shape} that do not fit input {x.shape} and output "
                     f"{y.shape}")
    if op.opcode in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        if len(x.shape) != 4 or len(y.shape) != 4:
            raise bad(op, f"maps shape {x.shape} to {y.shape}, not 4-D")
        o = op.options
        if op.opcode == "CONV_2D":
            out_c, (kh, kw) = w.shape[0], w.shape[1:3]
            groups = x.shape[3] // w.shape[3] if x.shape[3] % w.shape[3] == 0 else 0
            if not groups or out_c % groups:
                raise misfit
        else:
            out_c, (kh, kw) = w.shape[3], w.shape[1:3]
            multiplier = o.get("depth_multiplier", 1) or out_c // max(x.shape[3], 1)
            if x.shape[3] * multiplier != out_c and x.shape[3] != out_c:
                raise misfit
        want = (x.shape[0],
                _window(x.shape[1], kh, o.get("stride_h", 0), o.get("dilation_h_factor", 1),
                        o.get("padding")),
                _window(x.shape[2], kw, o.get("stride_w", 0), o.get("dilation_w_factor", 1),
                        o.get("padding")), out_c)
        if None in want or y.shape != want:
            raise bad(op, f"maps {x.shape} to {y.shape}, not {want}")
    if op.opcode == "FULLY_CONNECTED":
        units, depth = w.shape
        if x.size % depth or y.size != x.size // depth * units or (y.shape and y.shape[-1] != units):
            raise misfit
    if len(ins) > 2 and ins[2] >= 0 and op.opcode not in ("TRANSPOSE_CONV", "BATCH_MATMUL"):
        out_c = w.shape[3] if op.opcode == "DEPTHWISE_CONV_2D" else w.shape[0]
        if t[ins[2]].size != out_c:
            raise bad(op, f"has {t[ins[2]].size} biases for {out_c} output channels")


def analyze(model: bytes | tflite.Model) -> Analysis:
    m = model if isinstance(model, tflite.Model) else tflite.parse(model)
    g = m.main
    t = g.tensors
    check_operators(g)
    ops = []
    for op in g.operators:
        weights = sum(t[i].nbytes for i in op.inputs if i >= 0 and t[i].is_constant)
        ops.append(OpInfo(op.index, op.opcode, op.version,
                          [t[i].shape for i in op.inputs if i >= 0],
                          [t[i].shape for i in op.outputs], _macs(op, t), weights))
    constants = [x for x in t if x.is_constant]
    activations = [x.nbytes for x in t if not x.is_constant]
    missing, too_new = [], []
    for name in dict.fromkeys(op.opcode for op in g.operators):
        if tflm_ops.resolver_method(name) is None:
            missing.append(name)
    for op in g.operators:
        limit = tflm_ops.MAX_VERSION.get(op.opcode)
        note = f"{op.opcode} v{op.version} (max v{limit})"
        if limit is not None and op.version > limit and note not in too_new:
            too_new.append(note)
    per_channel_fc = any(op.opcode == "FULLY_CONNECTED" and op.inputs[1] >= 0
                         and t[op.inputs[1]].quantization is not None
                         and t[op.inputs[1]].quantization.per_channel for op in g.operators)
    return Analysis(model_bytes=len(m.raw), ops=ops, per_channel_fully_connected=per_channel_fc,
                    inputs=[TensorSpec.of(x) for x in g.input_tensors()],
                    outputs=[TensorSpec.of(x) for x in g.output_tensors()],
                    tensor_count=len(t), weight_bytes=sum(x.nbytes for x in constants),
                    activation_bytes_max=max(activations, default=0),
                    tflm_missing=missing, tflm_too_new=too_new)
