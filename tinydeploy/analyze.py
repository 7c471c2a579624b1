"""Analysis of an int8 .tflite: ops, versions, shapes, MACs, weight bytes, runtime support.

Pure data in, data out: ``analyze(model_bytes)`` reads the flatbuffer with our own reader (no
TensorFlow import) and returns an :class:`Analysis` that ``check``, ``render`` and ``inspect`` share.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from tinydeploy import tflite, tflm_ops


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


def analyze(model: bytes | tflite.Model) -> Analysis:
    m = model if isinstance(model, tflite.Model) else tflite.parse(model)
    g = m.main
    t = g.tensors
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
