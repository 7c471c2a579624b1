"""`tinydeploy compile` output builds on its own, warning-free, for the host and for Cortex-M4.

Every generated model (each corpus group and the MLPerf models) is compiled with
arm-none-eabi-gcc -mcpu=cortex-m4 -Os -Wall -Wextra -Werror; the full output folder of an MLPerf
model is also built and linked standalone for the host and run through a C main, and linked for
the M4 against newlib to prove no symbol is missing.
"""

from __future__ import annotations

import subprocess

import pytest

import nativelib
from tinydeploy import native

pytestmark = pytest.mark.skipif(not nativelib.have("arm-none-eabi-gcc"),
                                reason="arm-none-eabi-gcc is not installed")

MAIN_C = r"""
#include <stdio.h>
#include <string.h>
#include "model.h"
#include "td_runtime.h"   /* model.h's prototypes must agree with the runtime contract */

int main(void)
{
    int i;
    if (td_model_init() != 0) return 1;
    for (i = 0; i < td_model_num_inputs(); ++i) {
        memset(td_model_input(i), 0, td_model_input_size(i));
    }
    if (td_model_invoke() != 0) return 2;
    if (td_model_output_size(0) != TD_MODEL_OUTPUT0_BYTES) return 3;
    if (td_model_arena_used() != TD_MODEL_ARENA_SIZE) return 4;
    printf("%s %d\n", td_model_runtime_name(), (int)td_model_output(0)[0]);
    return 0;
}
"""


@pytest.fixture(scope="module")
def arm_kernels(tmp_path_factory):
    """Every kernel compiled once for the M4 (the per-model builds reuse the headers only)."""
    out = tmp_path_factory.mktemp("arm_kernels")
    return nativelib.build_standalone(nativelib.KERNEL_DIR, "arm-none-eabi-gcc",
                                      nativelib.ARM_FLAGS, out)


def test_every_kernel_builds_for_cortex_m4(arm_kernels):
    assert len(arm_kernels) >= 10 and all(p.stat().st_size > 0 for p in arm_kernels)


@pytest.mark.slow
def test_every_corpus_model_builds_for_cortex_m4(corpus, tmp_path):
    for name, model_bytes in corpus.items():
        src = tmp_path / name
        native.compile_model(model_bytes, src)
        proc = subprocess.run(["arm-none-eabi-gcc", *nativelib.ARM_FLAGS, "-c", "model.c",
                               "-o", str(tmp_path / f"{name}.o")],
                              cwd=src, capture_output=True, text=True)
        assert proc.returncode == 0, f"{name}:\n{proc.stderr}"


@pytest.mark.slow
@pytest.mark.parametrize("model", ["pretrainedResnet_quant.tflite", "ad01_int8.tflite",
                                   "vww_96_int8.tflite"])
def test_mlperf_output_builds_alone(model, tmp_path):
    src = tmp_path / "out"
    result = native.compile_model(nativelib.mlperf_path(model).read_bytes(), src)
    (src / "main.c").write_text(MAIN_C)
    runtime_h = nativelib.KERNEL_DIR.parent / "td_runtime.h"
    (src / "td_runtime.h").write_text(runtime_h.read_text())
    sources = sorted(str(p.name) for p in src.glob("*.c"))
    assert {"model.c", "main.c"} <= set(sources) and len(result.kernel_sources) >= 3

    host = subprocess.run(["gcc", *nativelib.HOST_FLAGS, "-O1", "-o", "host_exe", *sources],
                          cwd=src, capture_output=True, text=True)
    assert host.returncode == 0, host.stderr
    run = subprocess.run([str(src / "host_exe")], capture_output=True, text=True)
    assert run.returncode == 0 and run.stdout.startswith("native ")

    arm = subprocess.run(["arm-none-eabi-gcc", *nativelib.ARM_FLAGS, "--specs=nosys.specs",
                          "-o", "m4.elf", *sources], cwd=src, capture_output=True, text=True)
    assert arm.returncode == 0, arm.stderr


def test_kernel_flash_table_matches_the_compiler(arm_kernels):
    """native.estimate's per-kernel flash figures are what arm-none-eabi-gcc really produces."""
    out = subprocess.run(["arm-none-eabi-size", *map(str, arm_kernels)], capture_output=True,
                         text=True, check=True).stdout
    measured = {}
    for line in out.splitlines()[1:]:
        fields = line.split()
        measured[fields[-1].rsplit("/", 1)[-1][:-2]] = int(fields[0]) + int(fields[1])
    for family, table_bytes in native.KERNEL_FLASH_BYTES.items():
        assert abs(measured[family] - table_bytes) <= table_bytes // 4, family
