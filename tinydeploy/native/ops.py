"""Per-op lowering: one TFLite operator -> the C that runs it on the device.

Each ``lower_*`` function reads the operator's tensors and options, computes what TFLM computes
in ``Prepare`` (via :mod:`tinydeploy.native.qparams`) and returns a :class:`Lowered`: the kernel
family it needs (``firmware/native/<family>.c``), the const parameter definitions and the call.
Anything the kernels cannot reproduce bit-exactly is refused with an :class:`UnsupportedOpError`
that names the op, rather than compiled approximately.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Protocol

import numpy as np

from tinydeploy.errors import UnsupportedOpError
from tinydeploy.native import qparams
from tinydeploy.native.cgen import c_aligned_array, c_array, c_struct, c_struct_array

# Ops whose output is the input's bytes under another shape: planned as aliases, no code.
ALIAS_OPS = frozenset({"RESHAPE", "SQUEEZE", "EXPAND_DIMS"})
MAX_DIMS = 6  # TD_ELEMENTWISE_MAX_DIMS / TD_MEAN_MAX_DIMS / TD_PAD_MAX_DIMS in the kernels
DEPTHWISE_MAX_K_H = 32  # TD_DEPTHWISE_MAX_K_H


@dataclass
class Lowered:
    """One op as C: its kernel family, const definitions, and the statement(s) that run it."""

    family: str | None                 # kernel family (file stem), None when no code runs
    decls: list[str] = field(default_factory=list)
    call: str = ""
    note: str = "alias, no code"       # C comment when family is None


class Context(Protocol):
    """What a lowering needs from the compiler: tensors and their C expressions."""

    def tensor(self, index: int): ...
    def ptr(self, index: int, ctype: str = "int8_t") -> str: ...
    def scratch(self, op_index: int) -> str: ...
    def rows(self, index: int) -> tuple: ...
    def relaid_constant(self, index: int, cname: str) -> None: ...


def refuse(op, why: str) -> UnsupportedOpError:
    """The error for an op variant the kernels cannot run bit-exactly (``.opcode`` names it)."""
    err = UnsupportedOpError(
        f"the native runtime cannot run {op.opcode} (operator {op.index}): {why}",
        "use --runtime tflm for this model")
    err.opcode = op.opcode
    return err


def _require_int8(op, *tensors) -> None:
    for t in tensors:
        if t.type_name != "INT8" or t.quantization is None:
            raise refuse(op, f"tensor '{t.name}' is {t.type_name}, only quantized int8 is supported")


def _activation(op, out) -> tuple[int, int]:
    act = op.options.get("fused_activation_function", "NONE")
    if act not in ("NONE", "RELU", "RELU6", "RELU_N1_TO_1"):
        raise refuse(op, f"fused activation {act} is not supported")
    return qparams.activation_range(act, out.scale, out.zero_point)


def _filter_scales(op, filt, channels: int) -> np.ndarray:
    scales = filt.quantization.scale
    if scales.size not in (1, channels):
        raise refuse(op, f"filter has {scales.size} scales for {channels} channels")
    if np.any(filt.quantization.zero_point != 0):
        raise refuse(op, "filter zero points must be 0 (symmetric int8 weights)")
    return scales


# ---- the int8 matrix product under CONV_2D and FULLY_CONNECTED (firmware/native/td_gemm.h) ----

def gemm_depth(length: int) -> int:
    """A dot product's length rounded up to a multiple of 4 (td_gemm.h's ``depth``)."""
    return -(-length // 4) * 4


def gemm_weights(rows: np.ndarray, groups: int = 1) -> np.ndarray:
    """Weight rows ``(n, length)`` in td_gemm.h's layout, flattened.

    Each row is zero-padded to gemm_depth(length). Within each of the ``groups`` equal blocks of
    rows, rows go in pairs, a pair interleaved in 4-byte chunks (chunk 0 of the first row, chunk 0
    of the second, chunk 1 of the first, ...) so one pass over the pair serves both; an odd last
    row of a block follows plainly.
    """
    n, length = rows.shape
    depth = gemm_depth(length)
    padded = np.zeros((n, depth), dtype=np.int8)
    padded[:, :length] = rows
    out = []
    per_group = n // groups
    for g in range(groups):
        block = padded[g * per_group:(g + 1) * per_group]
        pairs = per_group // 2 * 2
        chunks = block[:pairs].reshape(pairs // 2, 2, depth // 4, 4)
        out.append(chunks.transpose(0, 2, 1, 3).ravel())
        out.append(block[pairs:].ravel())
    return np.concatenate(out).astype(np.int8)


def fold_input_offset(bias: np.ndarray, rows: np.ndarray, input_offset: int) -> np.ndarray:
    """bias + input_offset * sum(row): sum_k w_k * (x_k + input_offset) + bias becomes
    sum_k w_k * x_k + folded bias. Wrapped to int32 like the device's int32 sums."""
    folded = bias.astype(np.int64) + int(input_offset) * rows.astype(np.int64).sum(axis=1)
    return ((folded + 2**31) % 2**32 - 2**31).astype(np.int64)


def _bias_values(ctx, op, index_in_inputs: int, channels: int) -> np.ndarray:
    idx = op.inputs[index_in_inputs] if len(op.inputs) > index_in_inputs else -1
    if idx < 0:
        return np.zeros(channels, dtype=np.int64)
    t = ctx.tensor(idx)
    if t.type_name != "INT32":
        raise refuse(op, f"bias '{t.name}' is {t.type_name}, only int32 is supported")
    if t.data is None:
        raise refuse(op, f"bias '{t.name}' is not a constant tensor")
    return np.asarray(t.data, dtype=np.int64).ravel()


def _constant_rows(ctx, op, filt, channels: int) -> np.ndarray:
    if filt.data is None:
        raise refuse(op, f"filter '{filt.name}' is not a constant tensor")
    ctx.relaid_constant(op.inputs[1], f"op{op.index}_weights")
    return np.asarray(filt.data, dtype=np.int8).reshape(channels, -1)


def _gemm_decls(name: str, rows: np.ndarray, groups: int, bias: np.ndarray, input_offset: int,
                mults: list[int], shifts: list[int]) -> tuple[list[str], bool]:
    """The weights in td_gemm.h's layout and the per-row td_channel_t table; and whether the
    accumulators are narrow (inputs are raw int8 once the offset is folded: |x| <= 128)."""
    folded = fold_input_offset(bias, rows, input_offset)
    narrow = narrow_accumulators(folded, np.abs(rows.astype(np.int64)).sum(axis=1), 128, shifts)
    return ([c_aligned_array(f"{name}_weights", gemm_weights(rows, groups)),
             _channel_table(name, folded, mults, shifts)], narrow)


def conv_gathers(inp_shape, filt_shape) -> bool:
    """Whether CONV_2D gathers windows into scratch (else a window is one input pixel read in
    place: a 1x1 filter over all channels, the channel count a multiple of 4)."""
    _, kh, kw, kc = filt_shape
    ic = inp_shape[3]
    return not (kh == 1 and kw == 1 and kc == ic and ic % 4 == 0)


def scratch_bytes(graph, op) -> int:
    """Arena bytes an op needs for itself while it runs (planned like a tensor living only
    during the op)."""
    if op.opcode == "CONV_2D":
        inp, filt = graph.tensors[op.inputs[0]], graph.tensors[op.inputs[1]]
        if len(inp.shape) == 4 and len(filt.shape) == 4 and conv_gathers(inp.shape, filt.shape):
            return 2 * gemm_depth(int(np.prod(filt.shape[1:])))
    if op.opcode == "FULLY_CONNECTED":
        accum = graph.tensors[op.inputs[1]].shape[-1]
        if accum % 4:
            return 2 * gemm_depth(accum)
    return 0


def lower_conv_2d(ctx: Context, op) -> Lowered:
    inp, filt, out = ctx.tensor(op.inputs[0]), ctx.tensor(op.inputs[1]), ctx.tensor(op.outputs[0])
    _require_int8(op, inp, filt, out)
    ic = inp.shape[3]
    oc, kh, kw, kc = filt.shape
    if ic % kc or oc % (ic // kc):
        raise refuse(op, f"filter depth {kc} does not divide input depth {ic} into groups")
    name = f"op{op.index}"
    mults, shifts = qparams.conv_multipliers(inp.scale, _filter_scales(op, filt, oc), out.scale)
    rows = _constant_rows(ctx, op, filt, oc)
    decls, narrow = _gemm_decls(name, rows, ic // kc, _bias_values(ctx, op, 2, oc),
                                -inp.zero_point, mults, shifts)
    gather = conv_gathers(inp.shape, filt.shape)
    fields = {**_window_geometry(op, inp, out, kh, kw), "k_c": kc,
              "depth": gemm_depth(kh * kw * kc), "gather": int(gather),
              "pad_value": inp.zero_point, "quant": _output_fields(op, out, narrow),
              "channels": f"{name}_channels", "weights": f"{name}_weights.v",
              "input": ctx.rows(op.inputs[0]), "output": ctx.rows(op.outputs[0]),
              "scratch": ctx.scratch(op.index) if gather else "NULL"}
    return _call("td_conv", "td_conv_s8", "td_conv_params_t", name, decls,
                 {k: fields[k] for k in CONV_FIELDS})


CONV_FIELDS = ("batches", "in_h", "in_w", "in_c", "out_h", "out_w", "out_c", "k_h", "k_w", "k_c",
               "stride_h", "stride_w", "dilation_h", "dilation_w", "pad_h", "pad_w", "depth",
               "gather", "pad_value", "quant", "channels", "weights", "input", "output", "scratch")


def _call(family: str, function: str, ctype: str, name: str, decls: list[str],
          fields: dict) -> Lowered:
    """An op whose parameter struct carries its tensors: one definition, a one-argument call."""
    decls = [*decls, c_struct(ctype, f"{name}_params", fields)]
    return Lowered(family, decls, f"{function}(&{name}_params);")


def _output_fields(op, out, narrow: bool) -> tuple[int, int, int, int]:
    """td_output_t: output zero point, the fused activation's range, the narrow flag."""
    act_min, act_max = _activation(op, out)
    return (out.zero_point, act_min, act_max, int(narrow))


def narrow_accumulators(bias: np.ndarray, abs_weight_sums: np.ndarray, input_magnitude: int,
                        shifts: list[int]) -> bool:
    """Whether the kernels may requantize the short way (td_qmath.h td_requantize_narrow): every
    channel's accumulator, shifted left as requantization does, stays below 2^30 in magnitude
    for any input - |bias| + input_magnitude * sum |w| (the largest |x| the weights multiply) -
    and every channel shifts right by at least 1."""
    shifts = np.asarray(shifts, dtype=np.int64)
    if shifts.size == 1:
        shifts = np.full(len(bias), int(shifts[0]))
    bound = (np.abs(bias.astype(np.int64)) + input_magnitude * abs_weight_sums.astype(np.int64))
    return bool(np.all(bound * (2 ** np.maximum(shifts, 0)) < 2 ** 30) and np.all(shifts <= -1))


def _window_geometry(op, inp, out, kh: int, kw: int) -> dict:
    n, ih, iw, ic = inp.shape
    _, oh, ow, oc = out.shape
    o = op.options
    return {
        "batches": n, "in_h": ih, "in_w": iw, "in_c": ic, "out_h": oh, "out_w": ow, "out_c": oc,
        "k_h": kh, "k_w": kw, "stride_h": o["stride_h"], "stride_w": o["stride_w"],
        "dilation_h": o["dilation_h_factor"], "dilation_w": o["dilation_w_factor"],
        "pad_h": qparams.padding_before(o["padding"], ih, kh, o["stride_h"], o["dilation_h_factor"]),
        "pad_w": qparams.padding_before(o["padding"], iw, kw, o["stride_w"], o["dilation_w_factor"])}


def _channel_table(name: str, bias: np.ndarray, mults: list[int], shifts: list[int]) -> str:
    """td_channel_t per output channel: bias, multiplier, the shift split into left/right."""
    if len(mults) == 1:
        mults, shifts = mults * len(bias), shifts * len(bias)
    rows = [(int(b), m, max(s, 0), max(-s, 0)) for b, m, s in zip(bias.tolist(), mults, shifts)]
    return c_struct_array("td_channel_t", f"{name}_channels", rows)


def lower_depthwise_conv_2d(ctx: Context, op) -> Lowered:
    inp, filt, out = ctx.tensor(op.inputs[0]), ctx.tensor(op.inputs[1]), ctx.tensor(op.outputs[0])
    _require_int8(op, inp, filt, out)
    ic = inp.shape[3]
    _, kh, kw, oc = filt.shape
    if oc % ic:
        raise refuse(op, f"output depth {oc} is not a multiple of input depth {ic}")
    if kh > DEPTHWISE_MAX_K_H:
        raise refuse(op, f"filter height {kh} exceeds {DEPTHWISE_MAX_K_H}")
    name = f"op{op.index}"
    mults, shifts = qparams.conv_multipliers(inp.scale, _filter_scales(op, filt, oc), out.scale)
    bias = _bias_values(ctx, op, 2, oc)
    decls = [_channel_table(name, bias, mults, shifts)]
    if filt.data is None:
        raise refuse(op, f"filter '{filt.name}' is not a constant tensor")
    # |input + input_offset| <= 255 (padding taps are skipped, not added as zero points).
    weight_sums = np.abs(np.asarray(filt.data, dtype=np.int64)).reshape(-1, oc).sum(axis=0)
    narrow = narrow_accumulators(bias, weight_sums, 255, shifts)
    fields = {**_window_geometry(op, inp, out, kh, kw), "depth_multiplier": oc // ic,
              "input_offset": -inp.zero_point, "quant": _output_fields(op, out, narrow),
              "channels": f"{name}_channels", "filter": ctx.ptr(op.inputs[1]),
              "input": ctx.rows(op.inputs[0]), "output": ctx.rows(op.outputs[0])}
    return _call("td_depthwise", "td_depthwise_conv_s8", "td_depthwise_params_t", name, decls,
                 {k: fields[k] for k in DEPTHWISE_FIELDS})


DEPTHWISE_FIELDS = ("batches", "in_h", "in_w", "in_c", "out_h", "out_w", "out_c", "k_h", "k_w",
                    "depth_multiplier", "stride_h", "stride_w", "dilation_h", "dilation_w",
                    "pad_h", "pad_w", "input_offset", "quant", "channels", "filter", "input",
                    "output")


def lower_fully_connected(ctx: Context, op) -> Lowered:
    inp, filt, out = ctx.tensor(op.inputs[0]), ctx.tensor(op.inputs[1]), ctx.tensor(op.outputs[0])
    _require_int8(op, inp, filt, out)
    if op.options.get("weights_format", 0) != 0:
        raise refuse(op, "shuffled weights are not supported")
    out_depth, accum = filt.shape[0], filt.shape[-1]
    scales = _filter_scales(op, filt, out_depth)
    if scales.size > 1:
        mults, shifts = qparams.conv_multipliers(inp.scale, scales, out.scale)
    else:
        m, s = qparams.fully_connected_multiplier(inp.scale, float(scales[0]), out.scale)
        mults, shifts = [m], [s]
    name = f"op{op.index}"
    rows = _constant_rows(ctx, op, filt, out_depth)
    decls, narrow = _gemm_decls(name, rows, 1, _bias_values(ctx, op, 2, out_depth),
                                -inp.zero_point, mults, shifts)
    fields = {"batches": out.size // out_depth, "accum_depth": accum, "out_depth": out_depth,
              "depth": gemm_depth(accum), "quant": _output_fields(op, out, narrow),
              "channels": f"{name}_channels", "weights": f"{name}_weights.v",
              "input": ctx.ptr(op.inputs[0]), "output": ctx.ptr(op.outputs[0]),
              "scratch": ctx.scratch(op.index) if accum % 4 else "NULL"}
    return _call("td_fully_connected", "td_fully_connected_s8", "td_fully_connected_params_t",
                 name, decls, fields)


def _pool(ctx: Context, op) -> tuple[str, list[str]]:
    inp, out = ctx.tensor(op.inputs[0]), ctx.tensor(op.outputs[0])
    _require_int8(op, inp, out)
    # Like TFLM, pooling works on the raw int8 values (the converter keeps the quantization).
    n, ih, iw, c = inp.shape
    _, oh, ow, _ = out.shape
    o = op.options
    act_min, act_max = _activation(op, out)
    name = f"op{op.index}"
    fields = {
        "batches": n, "in_h": ih, "in_w": iw, "channels": c, "out_h": oh, "out_w": ow,
        "filter_h": o["filter_height"], "filter_w": o["filter_width"],
        "stride_h": o["stride_h"], "stride_w": o["stride_w"],
        "pad_h": qparams.padding_before(o["padding"], ih, o["filter_height"], o["stride_h"], 1),
        "pad_w": qparams.padding_before(o["padding"], iw, o["filter_width"], o["stride_w"], 1),
        "act_min": act_min, "act_max": act_max,
        "input": ctx.ptr(op.inputs[0]), "output": ctx.ptr(op.outputs[0])}
    return name, [c_struct("td_pool_params_t", f"{name}_params", fields)]


def lower_average_pool_2d(ctx: Context, op) -> Lowered:
    name, decls = _pool(ctx, op)
    call = f"if (td_avg_pool_s8(&{name}_params) != 0) {{\n        return -1;\n    }}"
    return Lowered("td_pool", decls, call)


def lower_max_pool_2d(ctx: Context, op) -> Lowered:
    name, decls = _pool(ctx, op)
    return Lowered("td_pool", decls, f"td_max_pool_s8(&{name}_params);")


def _padded(shape, rank: int = MAX_DIMS) -> list[int]:
    if len(shape) > rank:
        raise ValueError(f"shape {shape} has more than {rank} dimensions")
    return [1] * (rank - len(shape)) + list(shape)


def _strides(dims: list[int]) -> list[int]:
    strides, acc = [0] * len(dims), 1
    for d in range(len(dims) - 1, -1, -1):
        strides[d], acc = acc, acc * dims[d]
    return strides


def _broadcast(op, a, b, out) -> tuple:
    """td_broadcast_t initializer for inputs a, b and output out (numpy broadcasting rules):
    (out_dims, in1_strides, in2_strides, broadcast)."""
    if max(len(a.shape), len(b.shape), len(out.shape)) > MAX_DIMS:
        raise refuse(op, f"more than {MAX_DIMS} dimensions")
    od, ad, bd = _padded(out.shape), _padded(a.shape), _padded(b.shape)

    def strides(dims):
        return [0 if n == 1 and o != 1 else s for n, o, s in zip(dims, od, _strides(dims))]

    return od, strides(ad), strides(bd), int(ad != od or bd != od)


def lower_add(ctx: Context, op) -> Lowered:
    a, b, out = (ctx.tensor(i) for i in (op.inputs[0], op.inputs[1], op.outputs[0]))
    _require_int8(op, a, b, out)
    act_min, act_max = _activation(op, out)
    name = f"op{op.index}"
    rescale = qparams.add_params(a.scale, b.scale, out.scale)
    fields = {"shape": _broadcast(op, a, b, out), "input1_offset": -a.zero_point,
              "input2_offset": -b.zero_point, "output_offset": out.zero_point, **rescale,
              "act_min": act_min, "act_max": act_max,
              "narrow": int(qparams.add_narrow(rescale, -a.zero_point, -b.zero_point)),
              "input1": ctx.rows(op.inputs[0]),
              "input2": ctx.rows(op.inputs[1]), "output": ctx.rows(op.outputs[0])}
    return _call("td_elementwise", "td_add_s8", "td_add_params_t", name, [], fields)


def _binary_tensors(ctx: Context, op) -> dict:
    return {"input1": ctx.ptr(op.inputs[0]), "input2": ctx.ptr(op.inputs[1]),
            "output": ctx.ptr(op.outputs[0])}


def lower_mul(ctx: Context, op) -> Lowered:
    a, b, out = (ctx.tensor(i) for i in (op.inputs[0], op.inputs[1], op.outputs[0]))
    _require_int8(op, a, b, out)
    act_min, act_max = _activation(op, out)
    m, s = qparams.mul_multiplier(a.scale, b.scale, out.scale)
    name = f"op{op.index}"
    fields = {"shape": _broadcast(op, a, b, out), "input1_offset": -a.zero_point,
              "input2_offset": -b.zero_point, "output_offset": out.zero_point,
              "output_multiplier": m, "output_shift": s, "act_min": act_min, "act_max": act_max,
              **_binary_tensors(ctx, op)}
    return _call("td_elementwise", "td_mul_s8", "td_mul_params_t", name, [], fields)


def _const_ints(ctx, op, index: int, what: str) -> np.ndarray:
    t = ctx.tensor(op.inputs[index])
    if t.data is None:
        raise refuse(op, f"its {what} must be a constant tensor")
    return np.asarray(t.data).astype(np.int64)


def lower_mean(ctx: Context, op) -> Lowered:
    inp, out = ctx.tensor(op.inputs[0]), ctx.tensor(op.outputs[0])
    _require_int8(op, inp, out)
    rank = len(inp.shape)
    if rank > MAX_DIMS:
        raise refuse(op, f"more than {MAX_DIMS} dimensions")
    axes = sorted({int(a) % rank for a in _const_ints(ctx, op, 1, "axis").ravel()})
    strides = _strides(list(inp.shape))
    kept = [d for d in range(rank) if d not in axes]
    count = int(np.prod([inp.shape[d] for d in axes])) if axes else 1
    same = bool(inp.zero_point == out.zero_point and np.float32(inp.scale) == np.float32(out.scale))
    m, s = qparams.mean_multiplier(inp.scale, out.scale, count)

    def pad(vals, fill):
        return [fill] * (MAX_DIMS - len(vals)) + vals

    name = f"op{op.index}"
    fields = {"kept_dims": pad([inp.shape[d] for d in kept], 1),
              "kept_strides": pad([strides[d] for d in kept], 0),
              "reduced_dims": pad([inp.shape[d] for d in axes], 1),
              "reduced_strides": pad([strides[d] for d in axes], 0),
              "count": count, "same_quantization": int(same),
              "input_zero_point": inp.zero_point, "output_zero_point": out.zero_point,
              "multiplier": m, "shift": s,
              "input": ctx.ptr(op.inputs[0]), "output": ctx.ptr(op.outputs[0])}
    return _call("td_mean", "td_mean_s8", "td_mean_params_t", name, [], fields)


def lower_pad(ctx: Context, op) -> Lowered:
    inp, out = ctx.tensor(op.inputs[0]), ctx.tensor(op.outputs[0])
    _require_int8(op, inp, out)
    if len(inp.shape) > MAX_DIMS:
        raise refuse(op, f"more than {MAX_DIMS} dimensions")
    paddings = _const_ints(ctx, op, 1, "paddings").reshape(-1, 2)
    pad_value = out.zero_point
    if op.opcode == "PADV2" and len(op.inputs) > 2 and op.inputs[2] >= 0:
        pad_value = int(_const_ints(ctx, op, 2, "constant value").ravel()[0])
    name = f"op{op.index}"
    fields = {"in_dims": _padded(inp.shape), "out_dims": _padded(out.shape),
              "before": [0] * (MAX_DIMS - len(paddings)) + [int(p) for p in paddings[:, 0]],
              "pad_value": pad_value,
              "input": ctx.ptr(op.inputs[0]), "output": ctx.ptr(op.outputs[0])}
    return _call("td_pad", "td_pad_s8", "td_pad_params_t", name, [], fields)


def lower_concatenation(ctx: Context, op) -> Lowered:
    out = ctx.tensor(op.outputs[0])
    ins = [ctx.tensor(i) for i in op.inputs]
    _require_int8(op, out, *ins)
    if op.options.get("fused_activation_function", "NONE") != "NONE":
        raise refuse(op, "a fused activation on CONCATENATION is not supported")
    # TFLM copies int8 inputs byte for byte even when their quantization differs from the
    # output's (the converter makes them equal); being bit-exact means doing the same.
    rank = len(out.shape)
    axis = op.options.get("axis", 0) % rank
    outer = int(np.prod(out.shape[:axis])) if axis else 1
    copy = [int(np.prod(t.shape[axis:])) for t in ins]
    name = f"op{op.index}"
    ptrs = ", ".join(f"(const int8_t *){ctx.ptr(i)}" for i in op.inputs)
    decls = [c_array("int32_t", f"{name}_copy_bytes", copy)]
    call = (f"{{\n        const int8_t *const inputs[{len(ins)}] = {{{ptrs}}};\n"
            f"        td_concat({len(ins)}, inputs, {name}_copy_bytes, {outer}, "
            f"{ctx.ptr(op.outputs[0])});\n    }}")
    return Lowered("td_concat", decls, call)


def lower_quantize(ctx: Context, op) -> Lowered:
    inp, out = ctx.tensor(op.inputs[0]), ctx.tensor(op.outputs[0])
    if out.type_name != "INT8" or out.quantization is None:
        raise refuse(op, f"output type {out.type_name} is not supported")
    if inp.type_name == "FLOAT32":
        call = (f"td_quantize_f32_s8({ctx.ptr(op.inputs[0], 'float')}, {ctx.ptr(op.outputs[0])}, "
                f"{out.size}u, {float(np.float32(out.scale))!r}f, {out.zero_point});")
        return Lowered("td_quantize", [], call)
    _require_int8(op, inp)
    m, s = qparams.ratio_multiplier(inp.scale, out.scale)
    call = (f"td_requantize_s8({ctx.ptr(op.inputs[0])}, {ctx.ptr(op.outputs[0])}, {out.size}u, "
            f"{inp.zero_point}, {out.zero_point}, {m}, {s});")
    return Lowered("td_quantize", [], call)


def lower_dequantize(ctx: Context, op) -> Lowered:
    inp, out = ctx.tensor(op.inputs[0]), ctx.tensor(op.outputs[0])
    _require_int8(op, inp)
    if out.type_name != "FLOAT32":
        raise refuse(op, f"output type {out.type_name} is not supported")
    call = (f"td_dequantize_s8_f32({ctx.ptr(op.inputs[0])}, {ctx.ptr(op.outputs[0], 'float')}, "
            f"{inp.size}u, {float(np.float32(inp.scale))!r}, {inp.zero_point});")
    return Lowered("td_quantize", [], call)


def lower_alias(ctx: Context, op) -> Lowered:
    inp, out = ctx.tensor(op.inputs[0]), ctx.tensor(op.outputs[0])
    if inp.size != out.size or inp.type_name != out.type_name:
        raise refuse(op, "input and output differ in size or type")
    if inp.data is not None:  # the converter folds these; an alias of flash cannot be written
        raise refuse(op, "its input is a constant tensor")
    return Lowered(None)


LOWERINGS: dict[str, Callable] = {
    "CONV_2D": lower_conv_2d,
    "DEPTHWISE_CONV_2D": lower_depthwise_conv_2d,
    "FULLY_CONNECTED": lower_fully_connected,
    "AVERAGE_POOL_2D": lower_average_pool_2d,
    "MAX_POOL_2D": lower_max_pool_2d,
    "ADD": lower_add,
    "MUL": lower_mul,
    "MEAN": lower_mean,
    "PAD": lower_pad,
    "PADV2": lower_pad,
    "CONCATENATION": lower_concatenation,
    "QUANTIZE": lower_quantize,
    "DEQUANTIZE": lower_dequantize,
    **{name: lower_alias for name in ALIAS_OPS},
}
