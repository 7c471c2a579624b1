"""compile_model / estimate: what they write and report, and how they refuse."""

from __future__ import annotations

import re
import subprocess

import pytest

import nativelib
from tinydeploy import native, tflite
from tinydeploy.errors import UnsupportedOpError
from tinydeploy.native import compiler, emitter


@pytest.fixture(scope="module")
def ic_bytes():
    return nativelib.mlperf_path("pretrainedResnet_quant.tflite").read_bytes()


def test_compile_writes_model_and_only_the_kernels_it_needs(ic_bytes, tmp_path):
    result = native.compile_model(ic_bytes, tmp_path, name="resnet")
    names = sorted(p.name for p in result.files)
    assert {"resnet.c", "resnet.h", "td_qmath.h", "td_conv.c", "td_softmax.c",
            "td_activation.c"} <= set(names)
    assert "td_depthwise.c" not in names and "td_mean.c" not in names
    assert sorted(p.name for p in tmp_path.iterdir()) == names
    assert result.ops_used == ["ADD", "AVERAGE_POOL_2D", "CONV_2D", "FULLY_CONNECTED",
                               "RESHAPE", "SOFTMAX"]
    # two ResNet blocks run row by row (tinydeploy/native/stream.py); TFLM: 49,152 + persistent
    assert result.arena_bytes == 20_600 and result.scratch_bytes == 0
    flash = [t for t in result.tensors if t.place == "flash"]
    arena = [t for t in result.tensors if t.place == "arena"]
    assert sum(t.nbytes for t in flash) == result.weights_bytes > 70_000
    assert all(0 <= t.offset and t.offset + t.nbytes <= result.arena_bytes for t in arena)


def test_header_documents_the_api_and_io(ic_bytes, tmp_path):
    native.compile_model(ic_bytes, tmp_path)
    header = (tmp_path / "model.h").read_text()
    for symbol in ("td_model_init", "td_model_input", "td_model_input_size", "td_model_invoke",
                   "td_model_output", "td_model_output_size", "td_model_num_inputs",
                   "td_model_arena_used", "td_model_runtime_name"):
        assert re.search(rf"\b{symbol}\(", header), symbol
    assert "#define TD_MODEL_ARENA_SIZE 20600u" in header
    assert "#define TD_MODEL_INPUT0_SHAPE {1, 32, 32, 3}" in header
    assert "#define TD_MODEL_INPUT0_ZERO_POINT -128" in header
    assert "#define TD_MODEL_OUTPUT0_SCALE 0.00390625f" in header
    source = (tmp_path / "model.c").read_text()
    assert "td_model_info" not in source  # `tinydeploy build` generates that one
    assert "malloc" not in source


def test_estimate_matches_compile(ic_bytes, tmp_path):
    est = native.estimate(ic_bytes)
    result = native.compile_model(ic_bytes, tmp_path)
    assert est.supported and est.arena_bytes == result.arena_bytes
    assert est.weights_bytes == result.weights_bytes
    assert result.weights_bytes < est.flash_bytes < len(ic_bytes) + 30_000


def test_unsupported_op_is_named_with_the_fix(ic_bytes):
    model = tflite.parse(ic_bytes)
    model.main.operators[3].opcode = "LSTM"
    assert compiler.unsupported_ops(model) == ["LSTM"]
    with pytest.raises(UnsupportedOpError, match="LSTM") as err:
        compiler.build_program(model)
    assert "--runtime tflm" in str(err.value)


def test_unsupported_op_variant_is_refused_not_approximated(ic_bytes):
    model = tflite.parse(ic_bytes)
    conv = next(op for op in model.main.operators if op.opcode == "CONV_2D")
    conv.options["fused_activation_function"] = "TANH"
    with pytest.raises(UnsupportedOpError, match="CONV_2D.*TANH"):
        compiler.build_program(model)


def test_supported_ops_cover_the_issue():
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "AVERAGE_POOL_2D", "MAX_POOL_2D",
            "ADD", "MUL", "SOFTMAX", "RESHAPE", "MEAN", "PAD", "CONCATENATION", "LOGISTIC",
            "TANH", "HARD_SWISH", "QUANTIZE", "DEQUANTIZE"} <= native.SUPPORTED_OPS


def test_hostile_tensor_names_stay_inside_comments(ic_bytes, tmp_path):
    model = tflite.parse(ic_bytes)
    graph = model.main
    graph.tensors[graph.inputs[0]].name = "evil */ int x = \n 1; /*"
    graph.tensors[graph.operators[0].inputs[1]].name = "weights */ #error boom"
    emitter.write(compiler.build_program(model), tmp_path, "model")
    proc = subprocess.run(["gcc", "-std=c99", "-Wall", "-Wextra", "-Werror", "-c", "model.c",
                           "-o", "model.o"], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_estimate_reports_unsupported_variants_instead_of_raising(ic_bytes, monkeypatch):
    real_parse = tflite.parse

    def parse_with_tanh(data):
        model = real_parse(data)
        next(op for op in model.main.operators
             if op.opcode == "CONV_2D").options["fused_activation_function"] = "TANH"
        return model

    monkeypatch.setattr(tflite, "parse", parse_with_tanh)
    est = native.estimate(ic_bytes)
    assert not est.supported and est.unsupported_ops == ["CONV_2D"]
    assert "TANH" in est.problem
