"""Bit-exactness of the native SOFTMAX / LOGISTIC / TANH / HARD_SWISH int8 kernels against TFLM.

Each case is a single-op model converted by the real TFLite converter (full-int8 post-training
quantization; the representative range picks the input scale and zero point), optionally with
beta and arbitrary scales / zero points written into the flatbuffer afterwards. The C kernels are
built once into a shared library with the host gcc and called through ctypes with the parameters
``tinydeploy.native.fixedpoint`` computes from the quantization ``tflite_micro`` reports. Every
possible int8 input goes through both and the outputs must be identical.

Converted models are cached under pytest's cache dir, so TensorFlow is only imported when a case
is new (or the cache was cleared).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import json
import shutil
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest

from tinydeploy.errors import ModelError
from tinydeploy.native import fixedpoint
from tinydeploy.resources import firmware_dir

NATIVE_DIR = firmware_dir() / "native"
SOURCES = ["td_softmax.c", "td_activation.c"]
CACHE_VERSION = 2  # bump to reconvert every cached model

ALL_INT8 = np.arange(-128, 128, dtype=np.int8)
SOFTMAX_ROWS = 16


def softmax_spec(input_range, beta, depth, input_quantization=None) -> dict:
    """A SOFTMAX case: representative input range (sets the converter's input scale/zero point),
    beta and row length; input_quantization (scale, zero point) overrides the converter's."""
    spec = {
        "op": "SOFTMAX",
        "range": list(input_range),
        "beta": beta,
        "shape": [SOFTMAX_ROWS, depth],
    }
    if input_quantization:
        spec["input_quantization"] = list(input_quantization)
    return spec


def elementwise_spec(op, input_range, input_quantization=None, output_quantization=None) -> dict:
    """A LOGISTIC / TANH / HARD_SWISH case over all 256 inputs, like softmax_spec."""
    spec = {"op": op, "range": list(input_range), "shape": [256]}
    if input_quantization:
        spec["input_quantization"] = list(input_quantization)
    if output_quantization:
        spec["output_quantization"] = list(output_quantization)
    return spec


def _random_quantization(rng: np.random.Generator, log10_low: float, log10_high: float):
    return float(np.float32(10 ** rng.uniform(log10_low, log10_high))), int(rng.integers(-128, 128))


def _random_specs(seed: int = 2026, per_op: int = 10) -> list[dict]:
    """Quantizations no representative range would produce: arbitrary scales and zero points
    written into one converted model per op (and softmax depth)."""
    rng = np.random.default_rng(seed)
    specs = []
    for i in range(per_op):
        beta = float(np.float32(rng.uniform(0.2, 3.0)))
        depth = (2, 10, 33)[i % 3]
        specs.append(softmax_spec((-4.0, 4.0), beta, depth, _random_quantization(rng, -3, 0)))
    for op in ("LOGISTIC", "TANH"):
        specs += [
            elementwise_spec(op, (-4.0, 4.0), _random_quantization(rng, -3, 0))
            for _ in range(per_op)
        ]
    for _ in range(per_op):
        in_q = _random_quantization(rng, -3, 0)
        # Output scale near the input's, as in real models (TFLM rejects below input / 128).
        out_q = _random_quantization(rng, np.log10(in_q[0]) - 1, np.log10(in_q[0]) + 0.5)
        specs.append(elementwise_spec("HARD_SWISH", (-4.0, 4.0), in_q, out_q))
    return specs


def spec_id(spec: dict) -> str:
    parts = [spec["op"], f"range{spec['range']}", f"shape{spec['shape']}"]
    parts += [f"beta{spec['beta']:.3g}"] if "beta" in spec else []
    for key in ("input_quantization", "output_quantization"):
        if key in spec:
            parts.append(f"{key.split('_')[0]}({spec[key][0]:.3g},{spec[key][1]})")
    return "-".join(parts)


# Large beta * scale makes diff_min cut off distant inputs, small makes every input count. The
# last two carry the exact softmax input quantization of the shared MLPerf Tiny IC
# (pretrainedResnet_quant) and VWW (vww_96_int8) models.
SOFTMAX_SPECS = [
    softmax_spec((-8.0, 8.0), 1.0, 10),
    softmax_spec((-1.0, 1.0), 1.0, 10),
    softmax_spec((-30.0, 5.0), 1.0, 2),
    softmax_spec((-2.0, 12.0), 0.5, 37),
    softmax_spec((-4.0, 4.0), 2.5, 10),
    softmax_spec((-100.0, 60.0), 1.0, 10),
    softmax_spec((-0.2, 0.3), 0.1, 250),  # TFLM aborts once a row's exp-sum reaches 256
    softmax_spec((-20.0, 20.0), 10.0, 3),
    softmax_spec((-6.0, 6.0), 1.0, 1),
    softmax_spec((-20.0, 20.0), 1.0, 10, (0.17185351252555847, 24)),
    softmax_spec((-2.0, 2.0), 1.0, 2, (0.014636218547821045, -5)),
]
# Converter-chosen quantizations: scales from ~0.002 to ~0.8, zero points from -128 to 127.
ELEMENTWISE_SPECS = [
    elementwise_spec(op, r)
    for op, ranges in {
        "LOGISTIC": [(-8, 8), (-1, 1), (-3, 20), (-40, 2), (-0.25, 0.25), (-100, 100), (0, 6)],
        "TANH": [(-4, 4), (-1, 1), (-3, 20), (-40, 2), (-0.25, 0.25), (-100, 100), (-6, 0)],
        "HARD_SWISH": [(-5, 7), (-0.5, 0.5), (-3, 3), (-20, 40), (-1, 6), (-100, 100), (-8, 1)],
    }.items()
    for r in ranges
]
for _spec in _random_specs():
    (SOFTMAX_SPECS if _spec["op"] == "SOFTMAX" else ELEMENTWISE_SPECS).append(_spec)
# Tiny scales from a random-weight MobileNetV3Small: the int16 rounding shifts reach 16 bits and
# more, where TFLM's int16 RoundingDivideByPOT returns +-1 instead of 0.
ELEMENTWISE_SPECS.append(elementwise_spec("HARD_SWISH", (-4.0, 4.0), (1.0998696e-08, 4),
                                          (9.420917e-09, 2)))


# ---- the C kernels, through ctypes -------------------------------------------------------------


class SoftmaxParams(ctypes.Structure):
    _fields_ = [
        ("input_multiplier", ctypes.c_int32),
        ("input_left_shift", ctypes.c_int32),
        ("diff_min", ctypes.c_int32),
    ]


class SigmoidParams(ctypes.Structure):
    """Layout of both td_logistic_params_t and td_tanh_params_t."""

    _fields_ = [
        ("input_zero_point", ctypes.c_int32),
        ("input_range_radius", ctypes.c_int32),
        ("input_multiplier", ctypes.c_int32),
        ("input_left_shift", ctypes.c_int32),
    ]


class HardSwishParams(ctypes.Structure):
    _fields_ = [
        ("input_zero_point", ctypes.c_int32),
        ("output_zero_point", ctypes.c_int32),
        ("output_multiplier_exponent", ctypes.c_int32),
        ("reluish_multiplier_exponent", ctypes.c_int32),
        ("output_multiplier_fixedpoint_int16", ctypes.c_int16),
        ("reluish_multiplier_fixedpoint_int16", ctypes.c_int16),
    ]


# op -> (params function, ctypes struct, C struct name, C function)
ELEMENTWISE = {
    "LOGISTIC": (
        fixedpoint.logistic_params,
        SigmoidParams,
        "td_logistic_params_t",
        "td_logistic_s8",
    ),
    "TANH": (fixedpoint.tanh_params, SigmoidParams, "td_tanh_params_t", "td_tanh_s8"),
    "HARD_SWISH": (
        fixedpoint.hard_swish_params,
        HardSwishParams,
        "td_hard_swish_params_t",
        "td_hard_swish_s8",
    ),
}


def to_struct(
    params: dict, struct_type: type[ctypes.Structure], c_struct_name: str
) -> ctypes.Structure:
    """The params dict as the C struct; its keys must be exactly the struct's fields."""
    fields = {k: v for k, v in params.items() if k != "c_struct_name"}
    assert params["c_struct_name"] == c_struct_name
    assert set(fields) == {name for name, _ in struct_type._fields_}
    return struct_type(**fields)


def i8_pointer(array: np.ndarray):
    return array.ctypes.data_as(ctypes.POINTER(ctypes.c_int8))


@pytest.fixture(scope="session")
def kernels(tmp_path_factory) -> ctypes.CDLL:
    """The kernels as a host shared library, built with the project's warning flags."""
    lib = tmp_path_factory.mktemp("fixedpoint_ops") / "libtd_fixedpoint.so"
    cmd = [
        "gcc",
        "-std=c99",
        "-Wall",
        "-Wextra",
        "-Werror",
        "-O2",
        "-fPIC",
        "-shared",
        "-o",
        str(lib),
    ]
    subprocess.run(
        cmd + [str(NATIVE_DIR / s) for s in SOURCES], check=True, capture_output=True, text=True
    )
    dll = ctypes.CDLL(str(lib))
    for name in ["td_softmax_s8", *(fn for *_, fn in ELEMENTWISE.values())]:
        getattr(dll, name).restype = None
    return dll


# ---- the reference: converted single-op models, run by tflite_micro ----------------------------


def _case_key(spec: dict) -> str:
    return hashlib.sha256(
        json.dumps({"v": CACHE_VERSION, **spec}, sort_keys=True).encode()
    ).hexdigest()[:16]


@functools.lru_cache(maxsize=None)
def _converted(op_name: str, input_range: tuple, shape: tuple) -> bytes:
    """Convert one single-op graph to a full-int8 .tflite (imports TensorFlow)."""
    import tensorflow as tf

    op_fns = {
        "SOFTMAX": tf.nn.softmax,
        "LOGISTIC": tf.math.sigmoid,
        "TANH": tf.math.tanh,
        "HARD_SWISH": lambda x: x * tf.nn.relu6(x + 3.0) / 6.0,  # the converter fuses this
    }
    fn = tf.function(op_fns[op_name], input_signature=[tf.TensorSpec(shape, tf.float32)])
    lo, hi = input_range

    def representative():
        rng = np.random.default_rng(0)
        yield [np.full(shape, lo, np.float32)]
        yield [np.full(shape, hi, np.float32)]
        for _ in range(8):
            yield [rng.uniform(lo, hi, size=shape).astype(np.float32)]

    converter = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()], fn)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    with warnings.catch_warnings():  # "statistics for quantized inputs": we pass none on purpose
        warnings.simplefilter("ignore", UserWarning)
        return converter.convert()


def _build(spec: dict) -> bytes:
    """The spec's model: converted, checked to be one int8 op, then beta and any quantization
    overrides written into the flatbuffer."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    flat = _converted(spec["op"], tuple(spec["range"]), tuple(spec["shape"]))
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(flat))
    subgraph = model.subgraphs[0]
    (op,) = subgraph.operators  # exactly one op, the one under test
    opcode = model.operatorCodes[op.opcodeIndex]
    builtin = max(opcode.builtinCode, opcode.deprecatedBuiltinCode)
    assert builtin == getattr(schema.BuiltinOperator, spec["op"]), f"not a lone {spec['op']}"
    for index in (*op.inputs, *op.outputs):
        assert subgraph.tensors[index].type == schema.TensorType.INT8
    if spec["op"] == "SOFTMAX":  # the converter always writes beta = 1; set the case's beta
        op.builtinOptions.beta = spec["beta"]
    for key, index in (
        ("input_quantization", op.inputs[0]),
        ("output_quantization", op.outputs[0]),
    ):
        if key in spec:
            quantization = subgraph.tensors[index].quantization
            quantization.scale, quantization.zeroPoint = [[value] for value in spec[key]]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


@pytest.fixture(scope="session")
def models(model_cache) -> dict[str, bytes]:
    """case key -> .tflite bytes for every spec, converted once and cached across sessions."""
    cache = model_cache("fixedpoint_ops")
    out = {}
    for spec in SOFTMAX_SPECS + ELEMENTWISE_SPECS:
        key = _case_key(spec)
        path = cache / f"{spec['op'].lower()}-{key}.tflite"
        if not path.exists():
            path.write_bytes(_build(spec))
        out[key] = path.read_bytes()
    return out


def tflm(model: bytes):
    from tflite_micro.python.tflite_micro import runtime

    # The default arena (10x the model size) is too small for the wide softmax rows.
    return runtime.Interpreter.from_bytes(model, arena_size=256 * 1024)


def quantization(details: dict) -> tuple[float, int]:
    q = details["quantization_parameters"]
    assert len(q["scales"]) == 1, "per-tensor quantization expected"
    return float(q["scales"][0]), int(q["zero_points"][0])


def op_quantization(interpreter, spec: dict) -> tuple[float, int, float, int]:
    """(input scale, input zero point, output scale, output zero point) as TFLM reads them."""
    in_scale, in_zp = quantization(interpreter.get_input_details(0))
    out_scale, out_zp = quantization(interpreter.get_output_details(0))
    read = {"input_quantization": (in_scale, in_zp), "output_quantization": (out_scale, out_zp)}
    for key, actual in read.items():
        if key in spec:  # the override really reached the model
            assert actual == (np.float32(spec[key][0]), spec[key][1])
    return in_scale, in_zp, out_scale, out_zp


def run_tflm(interpreter, x: np.ndarray) -> np.ndarray:
    interpreter.set_input(x, 0)
    interpreter.invoke()
    return np.array(interpreter.get_output(0))


# ---- softmax -----------------------------------------------------------------------------------


def softmax_rows(depth: int, rng: np.random.Generator) -> np.ndarray:
    """Edge-case rows (all equal, one-hot, extremes, near-ties) then random ones."""
    rows = [np.full(depth, v, np.int8) for v in (-128, -1, 0, 127)]
    for hot in (0, depth - 1):
        row = np.full(depth, -128, np.int8)
        row[hot] = 127
        rows.append(row)
    rows.append(np.where(np.arange(depth) % 2 == 0, 127, -128).astype(np.int8))
    rows.append(np.clip(100 - rng.integers(0, 4, depth), -128, 127).astype(np.int8))
    rows.append(np.clip(127 - rng.integers(0, 20, depth), -128, 127).astype(np.int8))
    rows.append((ALL_INT8[:depth] if depth <= 256 else rng.choice(ALL_INT8, depth)).astype(np.int8))
    while len(rows) % SOFTMAX_ROWS or len(rows) < 6 * SOFTMAX_ROWS:
        rows.append(rng.integers(-128, 128, depth, dtype=np.int8))
    return np.stack(rows)


@pytest.mark.parametrize("spec", SOFTMAX_SPECS, ids=spec_id)
def test_softmax_bit_exact(spec, models, kernels):
    depth = spec["shape"][1]
    interpreter = tflm(models[_case_key(spec)])
    in_scale, in_zp, out_scale, out_zp = op_quantization(interpreter, spec)
    params = fixedpoint.softmax_params(in_scale, in_zp, out_scale, out_zp, spec["beta"])
    c_params = to_struct(params, SoftmaxParams, "td_softmax_params_t")

    rows = softmax_rows(depth, np.random.default_rng(depth))
    expected = np.concatenate(
        [
            run_tflm(interpreter, rows[i : i + SOFTMAX_ROWS])
            for i in range(0, len(rows), SOFTMAX_ROWS)
        ]
    )
    actual = np.empty_like(rows)
    kernels.td_softmax_s8(
        ctypes.byref(c_params), i8_pointer(rows), i8_pointer(actual), len(rows), depth
    )

    mismatched = np.flatnonzero((actual != expected).any(axis=1))
    assert mismatched.size == 0, (
        f"{mismatched.size}/{len(rows)} rows differ; params {params}; first row "
        f"{rows[mismatched[0]]}: tflm {expected[mismatched[0]]} native {actual[mismatched[0]]}"
    )


# ---- logistic, tanh, hard_swish ----------------------------------------------------------------


@pytest.mark.parametrize("spec", ELEMENTWISE_SPECS, ids=spec_id)
def test_elementwise_bit_exact_on_every_input(spec, models, kernels):
    params_fn, struct_type, c_struct_name, c_function = ELEMENTWISE[spec["op"]]
    interpreter = tflm(models[_case_key(spec)])
    in_scale, in_zp, out_scale, out_zp = op_quantization(interpreter, spec)
    params = params_fn(in_scale, in_zp, out_scale, out_zp)
    c_params = to_struct(params, struct_type, c_struct_name)

    expected = run_tflm(interpreter, ALL_INT8)
    actual = np.empty_like(ALL_INT8)
    getattr(kernels, c_function)(
        ctypes.byref(c_params), i8_pointer(ALL_INT8), i8_pointer(actual), ALL_INT8.size
    )

    wrong = np.flatnonzero(actual != expected)
    assert wrong.size == 0, (
        f"{wrong.size}/256 inputs differ (scale {in_scale}, zero point {in_zp}); params {params}; "
        f"inputs {ALL_INT8[wrong][:8]}: tflm {expected[wrong][:8]} native {actual[wrong][:8]}"
    )


def test_in_place_elementwise_matches_out_of_place(kernels):
    """The header promises input == output works (the compiler may alias activations)."""
    params = fixedpoint.hard_swish_params(0.05, 3, 0.03, -90)
    c_params = to_struct(params, HardSwishParams, "td_hard_swish_params_t")
    out_of_place = np.empty_like(ALL_INT8)
    kernels.td_hard_swish_s8(
        ctypes.byref(c_params), i8_pointer(ALL_INT8), i8_pointer(out_of_place), 256
    )
    buffer = ALL_INT8.copy()
    kernels.td_hard_swish_s8(ctypes.byref(c_params), i8_pointer(buffer), i8_pointer(buffer), 256)
    assert np.array_equal(buffer, out_of_place)


# ---- build-time parameter arithmetic -----------------------------------------------------------


def test_tflite_round_is_half_away_from_zero():
    assert [fixedpoint.tflite_round(x) for x in (0.5, 1.5, 2.5, -0.5, -2.5, 2.4999)] == [
        1,
        2,
        3,
        -1,
        -3,
        2,
    ]


def test_quantize_multiplier_normalizes_and_carries():
    assert fixedpoint.quantize_multiplier(1.0) == (1 << 30, 1)
    assert fixedpoint.quantize_multiplier(0.75) == (3 << 29, 0)
    # A mantissa that rounds up to 2^31 carries into the exponent.
    assert fixedpoint.quantize_multiplier(1.0 - 2.0**-40) == (1 << 30, 1)
    assert fixedpoint.quantize_multiplier(2.0**-40) == (0, 0)


def test_softmax_rejects_output_quantization_tflm_rejects():
    with pytest.raises(ModelError, match="1/256"):
        fixedpoint.softmax_params(0.1, 0, 1.0 / 255.0, -128, 1.0)
    with pytest.raises(ModelError, match="-128"):
        fixedpoint.logistic_params(0.1, 0, 1.0 / 256.0, 0)
    with pytest.raises(ModelError, match="too small"):
        fixedpoint.softmax_params(1e-9, 0, 1.0 / 256.0, -128, 1.0)
    with pytest.raises(ModelError, match="HARD_SWISH"):
        fixedpoint.hard_swish_params(1.0, 0, 0.001, 0)


@pytest.mark.parametrize("scale_times_beta", [0.003, 0.25, 0.1, 1.7, 9.0])
def test_softmax_diff_min_cuts_off_only_negligible_differences(scale_times_beta):
    params = fixedpoint.softmax_params(scale_times_beta, 0, 1.0 / 256.0, -128, 1.0)
    # diff_min is where the rescaled difference leaves Q5.26, up to the mantissa's factor of 2:
    # exp() of anything beyond it is below exp(-15.5), invisible at the output's 1/256 step.
    assert -31.0 <= params["diff_min"] * scale_times_beta <= -15.5 + scale_times_beta


def test_c_initializers_name_the_header_fields(tmp_path):
    """Every dict key is a field of the named C struct: gcc rejects unknown designators."""
    all_params = [
        fixedpoint.softmax_params(0.1, 3, 1.0 / 256.0, -128, 1.0),
        fixedpoint.logistic_params(0.1, 3, 1.0 / 256.0, -128),
        fixedpoint.tanh_params(0.1, 3, 1.0 / 128.0, 0),
        fixedpoint.hard_swish_params(0.1, 3, 0.05, -20),
    ]
    lines = ['#include "td_softmax.h"', '#include "td_activation.h"']
    lines += [
        f"const {p['c_struct_name']} params_{i} = {fixedpoint.c_initializer(p)};"
        for i, p in enumerate(all_params)
    ]
    source = tmp_path / "params.c"
    source.write_text("\n".join(lines) + "\n")
    cmd = ["gcc", "-std=c99", "-Wall", "-Wextra", "-Werror", "-I", str(NATIVE_DIR), "-c"]
    result = subprocess.run(
        cmd + [str(source), "-o", str(tmp_path / "params.o")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


# ---- the same sources for the target -----------------------------------------------------------


@pytest.mark.parametrize("source", SOURCES)
def test_kernels_compile_for_cortex_m4(source, tmp_path):
    if shutil.which("arm-none-eabi-gcc") is None:
        pytest.skip("arm-none-eabi-gcc is not installed")
    obj = tmp_path / (Path(source).stem + ".o")
    cmd = [
        "arm-none-eabi-gcc",
        "-std=c99",
        "-mcpu=cortex-m4",
        "-mthumb",
        "-Os",
        "-Wall",
        "-Wextra",
        "-Werror",
    ]
    result = subprocess.run(
        cmd + ["-c", str(NATIVE_DIR / source), "-o", str(obj)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert obj.stat().st_size > 0
