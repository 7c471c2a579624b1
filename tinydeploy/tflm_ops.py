"""Which TFLite builtin ops TensorFlow Lite Micro can run, and how its op resolver registers them.

A fact table: builtin op name -> the ``MicroMutableOpResolver`` method that registers it, read
from tensorflow/lite/micro/micro_mutable_op_resolver.h of the TFLM generation that the pinned
Arduino libraries carry (2023: MicroPrintf, no ErrorReporter). An op missing here has no kernel
there, even if newer TFLM releases added one (BATCH_MATMUL, REDUCE_MIN, REVERSE_V2, ...).

``MAX_VERSION`` holds, for the ops tinydeploy's users meet most, the highest op version whose
semantics the pinned TFLM libraries implement (TFLM's resolver does not check versions itself, so a
newer version means a feature, e.g. int4 or int16 activations, that the kernel may not handle).
"""

from __future__ import annotations

RESOLVER_METHODS: dict[str, str] = {
    "ABS": "AddAbs", "ADD": "AddAdd", "ADD_N": "AddAddN", "ARG_MAX": "AddArgMax",
    "ARG_MIN": "AddArgMin", "ASSIGN_VARIABLE": "AddAssignVariable",
    "AVERAGE_POOL_2D": "AddAveragePool2D", "BATCH_TO_SPACE_ND": "AddBatchToSpaceNd", "BROADCAST_ARGS": "AddBroadcastArgs",
    "BROADCAST_TO": "AddBroadcastTo", "CALL_ONCE": "AddCallOnce", "CAST": "AddCast",
    "CEIL": "AddCeil", "CONCATENATION": "AddConcatenation", "CONV_2D": "AddConv2D",
    "COS": "AddCos", "CUMSUM": "AddCumSum", "DEPTH_TO_SPACE": "AddDepthToSpace",
    "DEPTHWISE_CONV_2D": "AddDepthwiseConv2D", "DEQUANTIZE": "AddDequantize", "DIV": "AddDiv",
    "ELU": "AddElu", "EQUAL": "AddEqual",
    "EXP": "AddExp", "EXPAND_DIMS": "AddExpandDims", "FILL": "AddFill", "FLOOR": "AddFloor",
    "FLOOR_DIV": "AddFloorDiv", "FLOOR_MOD": "AddFloorMod",
    "FULLY_CONNECTED": "AddFullyConnected", "GATHER": "AddGather", "GATHER_ND": "AddGatherNd",
    "GREATER": "AddGreater", "GREATER_EQUAL": "AddGreaterEqual", "HARD_SWISH": "AddHardSwish",
    "IF": "AddIf", "L2_NORMALIZATION": "AddL2Normalization", "L2_POOL_2D": "AddL2Pool2D",
    "LEAKY_RELU": "AddLeakyRelu", "LESS": "AddLess", "LESS_EQUAL": "AddLessEqual",
    "LOG": "AddLog", "LOGICAL_AND": "AddLogicalAnd", "LOGICAL_NOT": "AddLogicalNot",
    "LOGICAL_OR": "AddLogicalOr", "LOGISTIC": "AddLogistic", "LOG_SOFTMAX": "AddLogSoftmax",
    "MAXIMUM": "AddMaximum", "MAX_POOL_2D": "AddMaxPool2D", "MEAN": "AddMean",
    "MINIMUM": "AddMinimum", "MIRROR_PAD": "AddMirrorPad", "MUL": "AddMul", "NEG": "AddNeg",
    "NOT_EQUAL": "AddNotEqual", "PACK": "AddPack", "PAD": "AddPad", "PADV2": "AddPadV2",
    "PRELU": "AddPrelu", "QUANTIZE": "AddQuantize", "READ_VARIABLE": "AddReadVariable",
    "REDUCE_MAX": "AddReduceMax", "RELU": "AddRelu",
    "RELU6": "AddRelu6", "RESHAPE": "AddReshape", "RESIZE_BILINEAR": "AddResizeBilinear",
    "RESIZE_NEAREST_NEIGHBOR": "AddResizeNearestNeighbor", "ROUND": "AddRound", "RSQRT": "AddRsqrt", "SELECT_V2": "AddSelectV2", "SHAPE": "AddShape",
    "SIN": "AddSin", "SLICE": "AddSlice", "SOFTMAX": "AddSoftmax",
    "SPACE_TO_BATCH_ND": "AddSpaceToBatchNd", "SPACE_TO_DEPTH": "AddSpaceToDepth",
    "SPLIT": "AddSplit", "SPLIT_V": "AddSplitV", "SQRT": "AddSqrt", "SQUARE": "AddSquare",
    "SQUARED_DIFFERENCE": "AddSquaredDifference", "SQUEEZE": "AddSqueeze",
    "STRIDED_SLICE": "AddStridedSlice", "SUB": "AddSub", "SUM": "AddSum", "SVDF": "AddSvdf",
    "TANH": "AddTanh", "TRANSPOSE": "AddTranspose", "TRANSPOSE_CONV": "AddTransposeConv",
    "UNIDIRECTIONAL_SEQUENCE_LSTM": "AddUnidirectionalSequenceLSTM", "UNPACK": "AddUnpack",
    "VAR_HANDLE": "AddVarHandle", "WHILE": "AddWhile", "ZEROS_LIKE": "AddZerosLike",
}

MAX_VERSION: dict[str, int] = {
    "ADD": 5, "AVERAGE_POOL_2D": 3, "CONCATENATION": 4, "CONV_2D": 7, "DEPTHWISE_CONV_2D": 7,
    "DEQUANTIZE": 5, "FULLY_CONNECTED": 12, "HARD_SWISH": 1, "LOGISTIC": 3, "MAX_POOL_2D": 3,
    "MEAN": 3, "MUL": 6, "PAD": 4, "QUANTIZE": 3, "RESHAPE": 1, "SOFTMAX": 3, "TANH": 3,
}


def resolver_method(op: str) -> str | None:
    return RESOLVER_METHODS.get(op)


def resolver_calls(ops: list[str]) -> list[tuple[str, str]]:
    """(op, Add method) for each distinct op of ``ops`` in first-use order.

    An op without an Add method cannot run on TFLM: UnsupportedOpError names every such op.
    """
    from tinydeploy.errors import InputError, UnsupportedOpError

    distinct = list(dict.fromkeys(ops))
    if not distinct:
        raise InputError("the model has no operators", "check that the .tflite file holds a real model")
    missing = [op for op in distinct if op not in RESOLVER_METHODS]
    if missing:
        raise UnsupportedOpError(
            f"TFLM's op resolver has no kernel for {', '.join(missing)}",
            "replace those layers with supported ones or use the native runtime",
        )
    return [(op, RESOLVER_METHODS[op]) for op in distinct]
