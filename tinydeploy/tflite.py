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


# Limits of a sane model (TFLM's own limits are lower): more means a damaged file.
MAX_RANK = 8
MAX_TENSOR_BYTES = 1 << 31
_MAX_TABLES = 1 << 20


class _Reader:
    """Bounds- and alignment-checked access to a flatbuffer, like flatbuffers' own Verifier:
    every table, vector and string must lie inside the buffer before anything reads it."""

    def __init__(self, buf: bytes):
        self.buf = buf
        self.n = len(buf)
        self.tables_seen = 0

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
        self.tables_seen += 1
        if self.tables_seen > _MAX_TABLES:
            raise _Corrupt("it holds more tables than any model")
        if pos % 4:
            raise _Corrupt(f"a table at offset {pos} is misaligned")
        vtable = pos - self.i32(pos)
        if vtable < 0 or vtable % 2:
            raise _Corrupt(f"the table at offset {pos} has a bad vtable")
        vt_size = self.u16(vtable)
        size = self.u16(vtable + 2) if vt_size >= 4 else 0
        if vt_size < 4 or vt_size % 2 or vtable + vt_size > self.n or size < 4 \
                or pos + size > self.n:
            raise _Corrupt(f"the table at offset {pos} has a bad vtable")
        fields = struct.unpack_from(f"<{(vt_size - 4) // 2}H", self.buf, vtable + 4)
        if any(off and (off < 4 or off >= size) for off in fields):
            raise _Corrupt(f"a field of the table at offset {pos} lies outside it")
        return _Table(self, pos, vtable, vt_size, size)

    def deref(self, pos: int) -> int:
        if pos % 4:
            raise _Corrupt(f"an offset at {pos} is misaligned")
        target = pos + self.u32(pos)
        if target >= self.n:
            raise _Corrupt(f"an offset at {pos} points outside the file")
        return target

    def vector(self, pos: int, elem_size: int) -> tuple[int, int]:
        """Return (start, count) of the vector referenced at pos, bounds-checked."""
        vec = self.deref(pos)
        if vec % 4:
            raise _Corrupt(f"a vector at offset {vec} is misaligned")
        count = self.u32(vec)
        start = vec + 4
        if start + count * elem_size > self.n:
            raise _Corrupt("vector runs past the end of the file")
        return start, count


class _Table:
    def __init__(self, r: _Reader, pos: int, vtable: int, vt_size: int, size: int):
        self.r, self.pos, self.vtable, self.vt_size, self.size = r, pos, vtable, vt_size, size

    def _field(self, fid: int, width: int = 1) -> int | None:
        entry = 4 + 2 * fid
        if entry >= self.vt_size:
            return None
        off = self.r.u16(self.vtable + entry)
        if not off:
            return None
        if off + width > self.size:
            raise _Corrupt(f"field {fid} of the table at offset {self.pos} lies outside it")
        return self.pos + off

    def scalar(self, fid: int, kind: str, default):
        reader = {"b": (self.r.i8, 1), "ub": (self.r.u8, 1), "i": (self.r.i32, 4),
                  "u": (self.r.u32, 4), "q": (self.r.u64, 8), "f": (self.r.f32, 4)}[kind]
        pos = self._field(fid, reader[1])
        return default if pos is None else reader[0](pos)

    def table(self, fid: int) -> _Table | None:
        pos = self._field(fid, 4)
        return None if pos is None else self.r.table(self.r.deref(pos))

    def tables(self, fid: int) -> list[_Table]:
        pos = self._field(fid, 4)
        if pos is None:
            return []
        start, count = self.r.vector(pos, 4)
        return [self.r.table(self.r.deref(start + 4 * i)) for i in range(count)]

    def array(self, fid: int, dtype) -> np.ndarray:
        pos = self._field(fid, 4)
        if pos is None:
            return np.zeros(0, dtype)
        dt = np.dtype(dtype).newbyteorder("<")
        start, count = self.r.vector(pos, dt.itemsize)
        return np.frombuffer(self.r.buf, dt, count, start)

    def bytes_(self, fid: int) -> memoryview | None:
        pos = self._field(fid, 4)
        if pos is None:
            return None
        start, count = self.r.vector(pos, 1)
        return memoryview(self.r.buf)[start:start + count]

    def string(self, fid: int) -> str:
        pos = self._field(fid, 4)
        if pos is None:
            return ""
        start, count = self.r.vector(pos, 1)
        if start + count >= self.r.n or self.r.buf[start + count] != 0:
            raise _Corrupt(f"a string at offset {start} has no terminator")
        return bytes(self.r.buf[start:start + count]).decode("utf-8", "replace")

    def present(self, fid: int) -> bool:
        return self._field(fid) is not None


def _decode_options(op_table: _Table) -> dict:
    kind = op_table.scalar(3, "ub", 0)
    opts_table = op_table.table(4)
    spec = _OPTION_FIELDS.get(kind)
    if not spec:
        return {}
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


_INT_RANGES = {"INT8": (-128, 127), "UINT8": (0, 255), "INT16": (-32768, 32767)}


def _read_quantization(t: _Table | None, shape: tuple[int, ...], type_name: str,
                       index: int) -> Quantization | None:
    if t is None:
        return None
    t.array(0, np.float32)   # min and max: TFLM does not use them, but they must be in the file
    t.array(1, np.float32)
    if t.scalar(4, "ub", 0) or t.present(5):
        raise _Corrupt(f"tensor {index} has custom quantization details, which TFLM cannot use")
    scale = t.array(2, np.float32).astype(np.float32)
    zero_point = t.array(3, np.int64).astype(np.int64)
    axis = int(t.scalar(6, "i", 0))
    if scale.size == 0:
        if zero_point.size:
            raise _Corrupt(f"tensor {index} has zero points but no scales")
        return None
    if zero_point.size == 0:
        zero_point = np.zeros(scale.size, np.int64)
    if zero_point.size != scale.size:
        raise _Corrupt(f"tensor {index} has {scale.size} scales but {zero_point.size} zero points")
    if not np.all(np.isfinite(scale)) or np.any(scale < 0):
        raise _Corrupt(f"tensor {index} has a negative or non-finite scale")
    if scale.size > 1 and not (0 <= axis < len(shape) and shape[axis] == scale.size):
        raise _Corrupt(f"tensor {index} has {scale.size} per-channel scales that do not match "
                       f"its shape {shape} on axis {axis}")
    low, high = _INT_RANGES.get(type_name, (None, None))
    if low is not None and (zero_point.min() < low or zero_point.max() > high):
        raise _Corrupt(f"tensor {index} has a zero point outside the range of {type_name}")
    return Quantization(scale, zero_point, axis)


def _buffer_bytes(r: _Reader, buffers: list[_Table], index: int) -> bytes | None:
    if index == 0:
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
    if type_code not in _TENSOR_TYPES:
        raise _Corrupt(f"tensor {index} has an unknown type code {type_code}")
    type_name, np_type = _TENSOR_TYPES[type_code]
    shape = tuple(int(d) for d in t.array(0, np.int32))
    if len(shape) > MAX_RANK or any(d < 0 for d in shape):
        raise _Corrupt(f"tensor {index} has an impossible shape {shape}")
    count = int(np.prod(shape, dtype=np.int64)) if shape else 1
    if count * (np.dtype(np_type).itemsize if np_type is not None else 1) > MAX_TENSOR_BYTES:
        raise _Corrupt(f"tensor {index} of shape {shape} would take over 2 GiB")
    buffer = int(t.scalar(2, "u", 0))
    if buffer >= len(buffers):
        raise _Corrupt(f"tensor {index} names buffer {buffer} of {len(buffers)}")
    if t.present(6):
        raise _Corrupt(f"tensor {index} is sparse, which TFLM cannot run")
    if t.present(9):
        raise _Corrupt(f"tensor {index} holds variant tensors, which TFLM cannot run")
    raw = _buffer_bytes(r, buffers, buffer)
    data = None
    if raw is not None and np_type is not None:
        dt = np.dtype(np_type).newbyteorder("<")
        if len(raw) != count * dt.itemsize:
            raise _Corrupt(f"tensor {index} holds {len(raw)} bytes but its shape {shape} needs "
                           f"{count * dt.itemsize}")
        data = np.frombuffer(raw, dt).astype(np_type).reshape(shape)
    sig = t.array(7, np.int32)
    if sig.size and (sig.size != len(shape) or np.any(sig < -1)):
        raise _Corrupt(f"tensor {index} has a shape signature that does not match its shape")
    return Tensor(index=index, name=t.string(3), shape=shape, type_name=type_name,
                  dtype=np.dtype(np_type) if np_type is not None else None, buffer=buffer,
                  quantization=_read_quantization(t.table(4), shape, type_name, index), data=data,
                  is_variable=bool(t.scalar(5, "b", 0)),
                  shape_signature=tuple(int(d) for d in sig) if sig.size else None)


def _opcode_name(t: _Table) -> tuple[str, int]:
    code = max(int(t.scalar(0, "b", 0)), int(t.scalar(3, "i", 0)))
    version = int(t.scalar(2, "i", 1))
    if code == 32:  # CUSTOM
        return f"CUSTOM:{t.string(1)}", version
    t.string(1)
    if not 0 <= code < len(BUILTIN_OPERATORS):
        raise _Corrupt(f"it names operator code {code}, which no TFLite version defines")
    if version < 1:
        raise _Corrupt(f"{BUILTIN_OPERATORS[code]} has version {version}")
    return BUILTIN_OPERATORS[code], version


def _indices(values: np.ndarray, count: int, what: str, optional: bool = False) -> list[int]:
    """Tensor indices, each naming an existing tensor (or -1 for an absent optional input)."""
    out = [int(v) for v in values]
    low = -1 if optional else 0
    if any(v < low or v >= count for v in out):
        raise _Corrupt(f"{what} refers to a tensor that does not exist")
    return out


def _read_operator(i: int, ot: _Table, opcodes: list, tensors: list[Tensor]) -> Operator:
    idx = int(ot.scalar(0, "u", 0))
    if idx >= len(opcodes):
        raise _Corrupt(f"operator {i} names opcode {idx} of {len(opcodes)}")
    name, version = opcodes[idx]
    ins = _indices(ot.array(1, np.int32), len(tensors), f"operator {i}", optional=True)
    outs = _indices(ot.array(2, np.int32), len(tensors), f"operator {i}")
    _indices(ot.array(8, np.int32), len(tensors), f"operator {i}'s intermediates")
    ot.bytes_(5)                                     # custom options
    ot.bytes_(7)                                     # mutating variable inputs
    large = (ot.scalar(9, "q", 0), ot.scalar(10, "q", 0))
    if large[1] and large[0] + large[1] > len(ot.r.buf):
        raise _Corrupt(f"operator {i}'s custom options run past the end of the file")
    if ot.scalar(11, "ub", 0) or ot.present(12):
        ot.table(12)
    options = _decode_options(ot)
    return Operator(i, name, version, ins, outs, options)


def _check_signatures(root: _Table, subgraphs: int) -> None:
    """Metadata and signature tables: TFLM reads them, so they must be sound too."""
    for meta in root.tables(6):
        meta.string(0)
    root.array(5, np.int32)
    for sig in root.tables(7):
        for fid in (0, 1):
            for tensor_map in sig.tables(fid):
                tensor_map.string(0)
        sig.string(2)
        if int(sig.scalar(4, "u", 0)) >= subgraphs:
            raise _Corrupt("a signature names a subgraph that does not exist")


def parse(data: bytes, *, source: str = "the model") -> Model:
    """Parse .tflite bytes. Raises ModelError when they are not a complete, sound TFLite flatbuffer.

    Beyond reading, it checks what TFLM would otherwise trust blindly (and crash on): every table,
    vector and string inside the file, every tensor, buffer and opcode index valid, shapes,
    types and quantization parameters sane. A file that passes can be handed to TFLM.
    """
    data = bytes(data)
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise ModelError(f"{source} is not a TensorFlow Lite flatbuffer (no 'TFL3' identifier)",
                         "pass a .tflite file written by the TFLite converter, or the Keras model")
    r = _Reader(data)
    try:
        root = r.table(r.deref(0))
        version = int(root.scalar(0, "u", 0))
        if version != 3:
            raise _Corrupt(f"its schema version is {version}, not 3")
        buffers = root.tables(4)
        if not buffers:
            raise _Corrupt("it has no buffers")
        for i in range(1, len(buffers)):   # TFLM reads every buffer, used or not
            _buffer_bytes(r, buffers, i)
        opcodes = [_opcode_name(t) for t in root.tables(1)]
        subgraphs = []
        for sg in root.tables(2):
            tensors = [_read_tensor(r, t, i, buffers) for i, t in enumerate(sg.tables(0))]
            ops = [_read_operator(i, ot, opcodes, tensors) for i, ot in enumerate(sg.tables(3))]
            subgraphs.append(Subgraph(sg.string(4), tensors, ops,
                                      _indices(sg.array(1, np.int32), len(tensors), "an input"),
                                      _indices(sg.array(2, np.int32), len(tensors), "an output")))
        if not subgraphs:
            raise _Corrupt("it has no subgraph")
        if not subgraphs[0].inputs or not subgraphs[0].outputs:
            raise _Corrupt("its main subgraph has no inputs or no outputs")
        _check_signatures(root, len(subgraphs))
        return Model(version, root.string(3), subgraphs, data)
    except (_Corrupt, IndexError, ValueError, OverflowError) as exc:
        raise ModelError(f"{source} is truncated or corrupt ({exc})",
                         "re-export it with the TFLite converter") from None


#: No microcontroller has a GiB of RAM: a model whose activations need more is refused.
MAX_HOST_ARENA = 1 << 30


def host_arena_bytes(model_bytes: bytes) -> int:
    """Tensor arena large enough for TFLM's interpreter on this 64-bit host to plan the model.

    Bounded by what the model can need: every activation tensor live at once (16-byte aligned),
    four times over for kernel scratch buffers, plus per-tensor and per-op runtime structs; never
    less than the 1 MiB (or 10x the model) that small models were always given. A model that
    would need more than MAX_HOST_ARENA is refused, since no microcontroller could run it.
    """
    graph = parse(model_bytes).main
    activations = sum((t.nbytes + 15) // 16 * 16 for t in graph.tensors if not t.is_constant)
    needed = 4 * activations + 2048 * (len(graph.tensors) + len(graph.operators)) + (64 << 10)
    if needed > MAX_HOST_ARENA:
        raise ModelError(f"the model's activations take {activations:,} B, more than any "
                         "microcontroller's RAM", "check the model's input shape and layer sizes")
    return max(len(model_bytes) * 10, 1 << 20, needed)


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
