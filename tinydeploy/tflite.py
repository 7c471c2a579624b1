"""A small, strict reader for ``.tflite`` flatbuffers.

Why our own: every stage needs the model's tensors, ops and options, and importing TensorFlow
only to read a file costs seconds. The reader checks every offset against the buffer, so a
truncated or foreign file becomes one clear :class:`ModelError` instead of a crash.

Flatbuffer layout in brief: a table starts with an int32 pointing back to its vtable; the
vtable lists, per field id, the field's offset inside the table (0 = absent, use the default).
Tables, vectors and strings are referenced by uint32 offsets relative to where the offset sits.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tinydeploy._opcodes import BUILTIN_OPERATORS
from tinydeploy.errors import InputError, ModelError

# TensorType enum -> (name, numpy dtype or None when numpy has no equivalent)
_TENSOR_TYPES = {
    0: ("FLOAT32", np.float32), 1: ("FLOAT16", np.float16), 2: ("INT32", np.int32),
    3: ("UINT8", np.uint8), 4: ("INT64", np.int64), 5: ("STRING", None), 6: ("BOOL", np.bool_),
    7: ("INT16", np.int16), 8: ("COMPLEX64", np.complex64), 9: ("INT8", np.int8),
    10: ("FLOAT64", np.float64), 11: ("COMPLEX128", np.complex128), 12: ("UINT64", np.uint64),
    13: ("RESOURCE", None), 14: ("VARIANT", None), 15: ("UINT32", np.uint32),
    16: ("UINT16", np.uint16), 17: ("INT4", None), 18: ("BFLOAT16", None),
}
_PADDING = {0: "SAME", 1: "VALID"}
# How each option field kind below is stored: int8 ("b"), int32 ("i") or float32 ("f").
_SCALAR_KIND = {"b": "b", "pad": "b", "act": "b", "bool": "b", "i": "i", "f": "f"}
_ACTIVATION = {0: "NONE", 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6", 4: "TANH", 5: "SIGN_BIT"}

# Builtin options tables we decode: option-union type -> [(field name, field id, kind, default)].
# kind: "b" int8/bool, "i" int32, "f" float32, "pad"/"act" enums, "ivec" int32 vector.
_OPTION_FIELDS: dict[int, list[tuple[str, int, str, object]]] = {
    1: [("padding", 0, "pad", 0), ("stride_w", 1, "i", 0), ("stride_h", 2, "i", 0),
        ("fused_activation_function", 3, "act", 0), ("dilation_w_factor", 4, "i", 1),
        ("dilation_h_factor", 5, "i", 1)],                                   # Conv2DOptions
    2: [("padding", 0, "pad", 0), ("stride_w", 1, "i", 0), ("stride_h", 2, "i", 0),
        ("depth_multiplier", 3, "i", 0), ("fused_activation_function", 4, "act", 0),
        ("dilation_w_factor", 5, "i", 1), ("dilation_h_factor", 6, "i", 1)],  # DepthwiseConv2D
    5: [("padding", 0, "pad", 0), ("stride_w", 1, "i", 0), ("stride_h", 2, "i", 0),
        ("filter_width", 3, "i", 0), ("filter_height", 4, "i", 0),
        ("fused_activation_function", 5, "act", 0)],                          # Pool2DOptions
    8: [("fused_activation_function", 0, "act", 0), ("weights_format", 1, "b", 0),
        ("keep_num_dims", 2, "bool", False),
        ("asymmetric_quantize_inputs", 3, "bool", False)],                    # FullyConnected
    9: [("beta", 0, "f", 0.0)],                                               # SoftmaxOptions
    10: [("axis", 0, "i", 0), ("fused_activation_function", 1, "act", 0)],   # Concatenation
    11: [("fused_activation_function", 0, "act", 0)],                         # AddOptions
    17: [("new_shape", 0, "ivec", None)],                                     # ReshapeOptions
    21: [("fused_activation_function", 0, "act", 0)],                         # MulOptions
    27: [("keep_dims", 0, "bool", False)],                                    # ReducerOptions
    28: [("fused_activation_function", 0, "act", 0)],                         # SubOptions
    30: [("squeeze_dims", 0, "ivec", None)],                                  # SqueezeOptions
    49: [("padding", 0, "pad", 0), ("stride_w", 1, "i", 0), ("stride_h", 2, "i", 0),
         ("fused_activation_function", 3, "act", 0)],                         # TransposeConv
    75: [("alpha", 0, "f", 0.0)],                                             # LeakyReluOptions
}


@dataclass(frozen=True)
class Quantization:
    scale: np.ndarray          # float32, one entry per tensor or per channel
    zero_point: np.ndarray     # int64, same length as scale
    quantized_dimension: int

    @property
    def per_channel(self) -> bool:
        return self.scale.size > 1


@dataclass
class Tensor:
    index: int
    name: str
    shape: tuple[int, ...]
    type_name: str
    dtype: np.dtype | None
    buffer: int
    quantization: Quantization | None
    data: np.ndarray | None    # constant contents, shaped and typed; None for activations
    is_variable: bool = False
    shape_signature: tuple[int, ...] | None = None

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) if self.shape else 1

    @property
    def nbytes(self) -> int:
        return self.size * (self.dtype.itemsize if self.dtype is not None else 0)

    @property
    def is_constant(self) -> bool:
        return self.data is not None

    @property
    def scale(self) -> float | None:
        """Per-tensor scale (the first one for per-channel tensors), or None."""
        return float(self.quantization.scale[0]) if self.quantization else None

    @property
    def zero_point(self) -> int | None:
        return int(self.quantization.zero_point[0]) if self.quantization else None


@dataclass
class Operator:
    index: int
    opcode: str                # builtin name, e.g. "CONV_2D"; custom ops are "CUSTOM:<name>"
    version: int
    inputs: list[int]          # tensor indices; -1 marks an absent optional input
    outputs: list[int]
    options: dict = field(default_factory=dict)

    @property
    def is_custom(self) -> bool:
        return self.opcode.startswith("CUSTOM:")


@dataclass
class Subgraph:
    name: str
    tensors: list[Tensor]
    operators: list[Operator]
    inputs: list[int]
    outputs: list[int]

    def input_tensors(self) -> list[Tensor]:
        return [self.tensors[i] for i in self.inputs]

    def output_tensors(self) -> list[Tensor]:
        return [self.tensors[i] for i in self.outputs]


@dataclass
class Model:
    version: int
    description: str
    subgraphs: list[Subgraph]
    raw: bytes

    @property
    def main(self) -> Subgraph:
        return self.subgraphs[0]

    @property
    def op_names(self) -> list[str]:
        """Distinct op names of the main subgraph, in first-use order."""
        return list(dict.fromkeys(op.opcode for op in self.main.operators))


class _Corrupt(Exception):
    """Raised inside the reader; turned into a ModelError at the entry point."""


class _Reader:
    def __init__(self, buf: bytes):
        self.buf = buf
        self.n = len(buf)

    def _unpack(self, fmt: str, pos: int):
        size = struct.calcsize(fmt)
        if pos < 0 or pos + size > self.n:
            raise _Corrupt(f"offset {pos} is outside the file")
        return struct.unpack_from(fmt, self.buf, pos)[0]

    def u8(self, pos): return self._unpack("<B", pos)
    def i8(self, pos): return self._unpack("<b", pos)
    def u16(self, pos): return self._unpack("<H", pos)
    def i32(self, pos): return self._unpack("<i", pos)
    def u32(self, pos): return self._unpack("<I", pos)
    def u64(self, pos): return self._unpack("<Q", pos)
    def f32(self, pos): return self._unpack("<f", pos)

    def table(self, pos: int) -> "_Table":
        vtable = pos - self.i32(pos)
        vt_size = self.u16(vtable)
        if vt_size < 4 or vtable + vt_size > self.n:
            raise _Corrupt("bad vtable")
        return _Table(self, pos, vtable, vt_size)

    def deref(self, pos: int) -> int:
        return pos + self.u32(pos)

    def vector(self, pos: int, elem_size: int) -> tuple[int, int]:
        """Return (start, count) of the vector referenced at pos, bounds-checked."""
        vec = self.deref(pos)
        count = self.u32(vec)
        start = vec + 4
        if start + count * elem_size > self.n:
            raise _Corrupt("vector runs past the end of the file")
        return start, count


class _Table:
    def __init__(self, r: _Reader, pos: int, vtable: int, vt_size: int):
        self.r, self.pos, self.vtable, self.vt_size = r, pos, vtable, vt_size

    def _field(self, fid: int) -> int | None:
        entry = 4 + 2 * fid
        if entry >= self.vt_size:
            return None
        off = self.r.u16(self.vtable + entry)
        return self.pos + off if off else None

    def scalar(self, fid: int, kind: str, default):
        pos = self._field(fid)
        if pos is None:
            return default
        return {"b": self.r.i8, "ub": self.r.u8, "i": self.r.i32, "u": self.r.u32,
                "q": self.r.u64, "f": self.r.f32}[kind](pos)

    def table(self, fid: int) -> _Table | None:
        pos = self._field(fid)
        return None if pos is None else self.r.table(self.r.deref(pos))

    def tables(self, fid: int) -> list[_Table]:
        pos = self._field(fid)
        if pos is None:
            return []
        start, count = self.r.vector(pos, 4)
        return [self.r.table(self.r.deref(start + 4 * i)) for i in range(count)]

    def array(self, fid: int, dtype) -> np.ndarray:
        pos = self._field(fid)
        if pos is None:
            return np.zeros(0, dtype)
        dt = np.dtype(dtype).newbyteorder("<")
        start, count = self.r.vector(pos, dt.itemsize)
        return np.frombuffer(self.r.buf, dt, count, start)

    def bytes_(self, fid: int) -> memoryview | None:
        pos = self._field(fid)
        if pos is None:
            return None
        start, count = self.r.vector(pos, 1)
        return memoryview(self.r.buf)[start:start + count]

    def string(self, fid: int) -> str:
        data = self.bytes_(fid)
        return bytes(data).decode("utf-8", "replace") if data is not None else ""


def _decode_options(op_table: _Table) -> dict:
    kind = op_table.scalar(3, "ub", 0)
    spec = _OPTION_FIELDS.get(kind)
    if not spec:
        return {}
    opts_table = op_table.table(4)
    out = {}
    for name, fid, ftype, default in spec:
        if ftype == "ivec":
            out[name] = [int(v) for v in opts_table.array(fid, np.int32)] if opts_table else []
            continue
        raw = opts_table.scalar(fid, _SCALAR_KIND[ftype], default) if opts_table else default
        if ftype == "pad":
            raw = _PADDING.get(raw, f"UNKNOWN_{raw}")
        elif ftype == "act":
            raw = _ACTIVATION.get(raw, f"UNKNOWN_{raw}")
        elif ftype == "bool":
            raw = bool(raw)
        out[name] = raw
    return out


def _read_quantization(t: _Table | None) -> Quantization | None:
    if t is None:
        return None
    scale = t.array(2, np.float32).astype(np.float32)
    zero_point = t.array(3, np.int64).astype(np.int64)
    if scale.size == 0:
        return None
    if zero_point.size == 0:
        zero_point = np.zeros(scale.size, np.int64)
    return Quantization(scale, zero_point, int(t.scalar(6, "i", 0)))


def _buffer_bytes(r: _Reader, buffers: list[_Table], index: int) -> bytes | None:
    if index <= 0 or index >= len(buffers):
        return None
    b = buffers[index]
    data = b.bytes_(0)
    if data is not None and len(data):
        return bytes(data)
    offset, size = b.scalar(1, "q", 0), b.scalar(2, "q", 0)
    if offset > 1 and size:
        if offset + size > r.n:
            raise _Corrupt("a weight buffer runs past the end of the file")
        return r.buf[offset:offset + size]
    return None


def _read_tensor(r: _Reader, t: _Table, index: int, buffers: list[_Table]) -> Tensor:
    type_code = t.scalar(1, "b", 0)
    type_name, np_type = _TENSOR_TYPES.get(type_code, (f"TYPE_{type_code}", None))
    shape = tuple(int(d) for d in t.array(0, np.int32))
    buffer = int(t.scalar(2, "u", 0))
    raw = _buffer_bytes(r, buffers, buffer)
    data = None
    if raw is not None and np_type is not None:
        dt = np.dtype(np_type).newbyteorder("<")
        count = int(np.prod(shape, dtype=np.int64)) if shape else 1
        if len(raw) != count * dt.itemsize:
            raise _Corrupt(f"tensor {index} holds {len(raw)} bytes but its shape {shape} needs "
                           f"{count * dt.itemsize}")
        data = np.frombuffer(raw, dt).astype(np_type).reshape(shape)
    sig = t.array(7, np.int32)
    return Tensor(index=index, name=t.string(3), shape=shape, type_name=type_name,
                  dtype=np.dtype(np_type) if np_type is not None else None, buffer=buffer,
                  quantization=_read_quantization(t.table(4)), data=data,
                  is_variable=bool(t.scalar(5, "b", 0)),
                  shape_signature=tuple(int(d) for d in sig) if sig.size else None)


def _opcode_name(t: _Table) -> tuple[str, int]:
    code = max(int(t.scalar(0, "b", 0)), int(t.scalar(3, "i", 0)))
    version = int(t.scalar(2, "i", 1))
    if code == 32:  # CUSTOM
        return f"CUSTOM:{t.string(1)}", version
    name = BUILTIN_OPERATORS[code] if 0 <= code < len(BUILTIN_OPERATORS) else f"BUILTIN_{code}"
    return name, version


def parse(data: bytes, *, source: str = "the model") -> Model:
    """Parse .tflite bytes. Raises ModelError when they are not a complete TFLite flatbuffer."""
    data = bytes(data)
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise ModelError(f"{source} is not a TensorFlow Lite flatbuffer (no 'TFL3' identifier)",
                         "pass a .tflite file written by the TFLite converter, or the Keras model")
    r = _Reader(data)
    try:
        root = r.table(r.u32(0))
        buffers = root.tables(4)
        opcodes = [_opcode_name(t) for t in root.tables(1)]
        subgraphs = []
        for sg in root.tables(2):
            tensors = [_read_tensor(r, t, i, buffers) for i, t in enumerate(sg.tables(0))]
            ops = []
            for i, ot in enumerate(sg.tables(3)):
                idx = int(ot.scalar(0, "u", 0))
                if idx >= len(opcodes):
                    raise _Corrupt(f"operator {i} names opcode {idx} of {len(opcodes)}")
                name, version = opcodes[idx]
                ins = [int(v) for v in ot.array(1, np.int32)]
                outs = [int(v) for v in ot.array(2, np.int32)]
                if any(v >= len(tensors) for v in ins + outs):
                    raise _Corrupt(f"operator {i} refers to a tensor that does not exist")
                ops.append(Operator(i, name, version, ins, outs, _decode_options(ot)))
            subgraphs.append(Subgraph(sg.string(4), tensors, ops,
                                      [int(v) for v in sg.array(1, np.int32)],
                                      [int(v) for v in sg.array(2, np.int32)]))
        if not subgraphs:
            raise _Corrupt("it has no subgraph")
        return Model(int(root.scalar(0, "u", 0)), root.string(3), subgraphs, data)
    except (_Corrupt, IndexError, ValueError) as exc:
        raise ModelError(f"{source} is truncated or corrupt ({exc})",
                         "re-export it with the TFLite converter") from None


def load(path: str | Path) -> Model:
    """Read and parse a .tflite file, with user-facing errors for missing/unreadable files."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"model file not found: {path}", "check the path")
    if path.is_dir():
        raise InputError(f"{path} is a folder, not a .tflite file", "pass the .tflite file itself")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}", "check its permissions") from None
    return parse(data, source=str(path))
