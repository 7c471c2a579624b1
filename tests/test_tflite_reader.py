"""The .tflite reader against TFLM's own generated schema code, and on broken files."""

import numpy as np
import pytest

from tinydeploy import tflite
from tinydeploy.errors import InputError, ModelError

from paths import MLPERF


@pytest.fixture(scope="module")
def vww_bytes():
    return (MLPERF / "vww_96_int8.tflite").read_bytes()


def test_reader_agrees_with_tflm_schema_on_every_tensor_and_op(vww_bytes):
    schema = pytest.importorskip("tflite_micro.tensorflow.lite.micro.python.schema_py_generated")
    ref = schema.ModelT.InitFromPackedBuf(vww_bytes, 0)
    ours = tflite.parse(vww_bytes)
    for i, t in enumerate(ref.subgraphs[0].tensors):
        mine = ours.main.tensors[i]
        assert mine.shape == tuple(t.shape) and mine.name == t.name.decode()
        if t.quantization is not None and t.quantization.scale is not None:
            np.testing.assert_array_equal(mine.quantization.scale, t.quantization.scale)
            assert list(mine.quantization.zero_point) == list(t.quantization.zeroPoint)
        data = ref.buffers[t.buffer].data
        if data is not None and len(data):
            assert mine.data.tobytes() == bytes(np.asarray(data, np.uint8))
    for i, op in enumerate(ref.subgraphs[0].operators):
        mine = ours.main.operators[i]
        assert mine.inputs == list(op.inputs) and mine.outputs == list(op.outputs)
        if op.builtinOptionsType == 2:  # DepthwiseConv2DOptions
            assert mine.options["stride_w"] == op.builtinOptions.strideW
            assert mine.options["depth_multiplier"] == op.builtinOptions.depthMultiplier


def test_ops_and_io_of_the_image_classifier():
    m = tflite.load(MLPERF / "pretrainedResnet_quant.tflite")
    assert m.op_names == ["CONV_2D", "ADD", "AVERAGE_POOL_2D", "RESHAPE", "FULLY_CONNECTED",
                          "SOFTMAX"]
    (inp,) = m.main.input_tensors()
    assert inp.shape == (1, 32, 32, 3) and inp.type_name == "INT8"
    assert inp.scale == 1.0 and inp.zero_point == -128
    conv = m.main.operators[0]
    assert conv.options["padding"] == "SAME" and conv.options["fused_activation_function"] == "RELU"


@pytest.mark.parametrize("cut", [0, 7, 100, 5000, -1000])
def test_truncated_or_foreign_bytes_are_a_model_error(vww_bytes, cut):
    data = vww_bytes[:cut] if cut >= 0 else vww_bytes[:cut]
    with pytest.raises(ModelError):
        tflite.parse(data)


def test_text_file_named_tflite(tmp_path):
    p = tmp_path / "notes.tflite"
    p.write_text("this is not a model\n")
    with pytest.raises(ModelError, match="not a TensorFlow Lite flatbuffer"):
        tflite.load(p)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(InputError, match="not found"):
        tflite.load(tmp_path / "nope.tflite")
    with pytest.raises(InputError, match="folder"):
        tflite.load(tmp_path)
