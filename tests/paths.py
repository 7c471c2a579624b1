"""Where the tests find their data: everything in the repository, except the TFLM library.

The MLPerf Tiny int8 models are in ``examples/mlperf_tiny`` (origin, licence and sha256 in its
README). The one thing a clone cannot carry is the pinned TensorFlow Lite Micro library (C++
sources in no package registry): tests that need it take the ``tflm_lib`` fixture, which finds it
in ``TINYDEPLOY_TFLM_LIB`` or in ``shared/tflm/arduino-07d1cca`` beside the checkout, and skips
with a reason saying how to provide it otherwise.
"""

import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
MLPERF = EXAMPLES / "mlperf_tiny"

#: The Arduino_TensorFlowLite library (commit 07d1cca) that the Arm boards' PlatformIO projects pin.
TFLM_LIB_BESIDE_REPO = REPO.parent / "shared" / "tflm" / "arduino-07d1cca"
TFLM_LIB_SKIP_REASON = ("needs the pinned TFLM library (Arduino_TensorFlowLite 07d1cca): set "
                        "TINYDEPLOY_TFLM_LIB=DIR or pass --tflm-lib DIR, or put shared/tflm beside "
                        "the checkout")


def tflm_lib_dir() -> Path | None:
    """The pinned TFLM library if this machine has it, else None."""
    env = os.environ.get("TINYDEPLOY_TFLM_LIB")
    for candidate in ([Path(env)] if env else []) + [TFLM_LIB_BESIDE_REPO]:
        if (candidate / "src" / "tensorflow" / "lite" / "micro").is_dir():
            return candidate
    return None
