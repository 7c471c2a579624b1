"""Session fixtures of the native-runtime tests: the converted corpus (cached across runs under
pytest's cache dir) and the kernels built once for the host."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import native_corpus
import nativelib

# The shared MLPerf Tiny models live next to the checkout (never copied into the repo);
# TD_MLPERF_DIR points elsewhere.
MLPERF = Path(os.environ.get("TD_MLPERF_DIR",
                             Path(__file__).resolve().parents[3] / "shared" / "mlperf_tiny"))


@pytest.fixture(scope="session")
def kernel_archive(tmp_path_factory) -> Path:
    return nativelib.build_kernel_archive(tmp_path_factory.mktemp("kernels"))


@pytest.fixture(scope="session")
def corpus(request, tmp_path_factory) -> dict[str, bytes]:
    """group name -> .tflite bytes for every corpus group, converting only what is not cached."""
    if getattr(request.config, "cache", None) is not None:
        cache = Path(request.config.cache.mkdir("tinydeploy_native_corpus"))
    else:  # -p no:cacheprovider: convert into this session's temp dir
        cache = tmp_path_factory.mktemp("corpus")
    models = {}
    for group in native_corpus.groups():
        path = cache / f"{group.name}-{group.key()}.tflite"
        if not path.exists():
            path.write_bytes(native_corpus.convert_group(group))
        models[group.name] = path.read_bytes()
    return models


def mlperf_path(name: str) -> Path:
    path = MLPERF / name
    if not path.exists():
        pytest.skip(f"{path} is not on this machine")
    return path
