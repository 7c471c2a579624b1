"""Session fixtures of the native-runtime tests: the converted corpus (cached across runs under
pytest's cache dir) and the kernels built once for the host."""

from __future__ import annotations

from pathlib import Path

import pytest

import native_corpus
import nativelib


@pytest.fixture(scope="session")
def kernel_archive(tmp_path_factory) -> Path:
    return nativelib.build_kernel_archive(tmp_path_factory.mktemp("kernels"))


@pytest.fixture(scope="session")
def model_cache(request, tmp_path_factory):
    """cache(name) -> a folder kept across runs (pytest's cache) for converted models."""
    def folder(name: str) -> Path:
        if getattr(request.config, "cache", None) is not None:
            return Path(request.config.cache.mkdir(f"tinydeploy_native_{name}"))
        return tmp_path_factory.mktemp(name)  # -p no:cacheprovider: this session only
    return folder


@pytest.fixture(scope="session")
def corpus(model_cache) -> dict[str, bytes]:
    """group name -> .tflite bytes for every corpus group, converting only what is not cached."""
    cache = model_cache("corpus")
    models = {}
    for group in native_corpus.groups():
        path = cache / f"{group.name}-{group.key()}.tflite"
        if not path.exists():
            for stale in cache.glob(f"{group.name}-*.tflite"):
                stale.unlink()
            path.write_bytes(native_corpus.convert_group(group))
        models[group.name] = path.read_bytes()
    return models
