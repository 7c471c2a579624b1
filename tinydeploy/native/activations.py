"""Lowering of the fixed-point activation ops: SOFTMAX, LOGISTIC, TANH, HARD_SWISH.

Their kernels (firmware/native/td_softmax.c, td_activation.c) and the Prepare-time parameter
functions (tinydeploy/native/fixedpoint.py) come from the fixed-point activations work; this
module only connects them to the compiler: it checks the tensors, asks fixedpoint.py for the
parameter struct and emits the call.
"""

from __future__ import annotations

from tinydeploy.native import fixedpoint
from tinydeploy.native.cgen import c_struct
from tinydeploy.native.ops import Lowered, _require_int8, refuse


def _params(op, name: str, params: dict) -> str:
    fields = {k: v for k, v in params.items() if k != "c_struct_name"}
    return c_struct(params["c_struct_name"], f"{name}_params", fields)


def _unary(ctx, op, family: str, fn: str, params: dict) -> Lowered:
    out = ctx.tensor(op.outputs[0])
    name = f"op{op.index}"
    call = (f"{fn}(&{name}_params, {ctx.ptr(op.inputs[0])}, {ctx.ptr(op.outputs[0])}, "
            f"{out.size}u);")
    return Lowered(family, [_params(op, name, params)], call)


def _io(ctx, op):
    inp, out = ctx.tensor(op.inputs[0]), ctx.tensor(op.outputs[0])
    _require_int8(op, inp, out)
    return inp, out


def lower_softmax(ctx, op) -> Lowered:
    inp, out = _io(ctx, op)
    if not inp.shape:
        raise refuse(op, "a scalar input has no dimension to normalise over")
    depth = inp.shape[-1]
    params = fixedpoint.softmax_params(inp.scale, inp.zero_point, out.scale, out.zero_point,
                                       op.options.get("beta", 1.0))
    name = f"op{op.index}"
    call = (f"td_softmax_s8(&{name}_params, {ctx.ptr(op.inputs[0])}, {ctx.ptr(op.outputs[0])}, "
            f"{inp.size // depth}u, {depth}u);")
    return Lowered("td_softmax", [_params(op, name, params)], call)


def lower_logistic(ctx, op) -> Lowered:
    inp, out = _io(ctx, op)
    params = fixedpoint.logistic_params(inp.scale, inp.zero_point, out.scale, out.zero_point)
    return _unary(ctx, op, "td_activation", "td_logistic_s8", params)


def lower_tanh(ctx, op) -> Lowered:
    inp, out = _io(ctx, op)
    params = fixedpoint.tanh_params(inp.scale, inp.zero_point, out.scale, out.zero_point)
    return _unary(ctx, op, "td_activation", "td_tanh_s8", params)


def lower_hard_swish(ctx, op) -> Lowered:
    inp, out = _io(ctx, op)
    params = fixedpoint.hard_swish_params(inp.scale, inp.zero_point, out.scale, out.zero_point)
    return _unary(ctx, op, "td_activation", "td_hard_swish_s8", params)


LOWERINGS = {
    "SOFTMAX": lower_softmax,
    "LOGISTIC": lower_logistic,
    "TANH": lower_tanh,
    "HARD_SWISH": lower_hard_swish,
}
