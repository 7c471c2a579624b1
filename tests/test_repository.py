"""The repository stands on its own: the data its tests use is in it, intact, and no file names a
path of the machine it was written on."""

from __future__ import annotations

import hashlib
import re
import subprocess

import pytest

from paths import MLPERF, REPO


def _readme_checksums() -> dict[str, str]:
    rows = re.findall(r"^\| `([\w.]+\.tflite)` \|.*\| `([0-9a-f]{64})` \|$",
                      (MLPERF / "README.md").read_text(), re.MULTILINE)
    return dict(rows)


def test_every_mlperf_model_is_in_the_repository_with_the_readmes_sha256():
    sums = _readme_checksums()
    assert sorted(sums) == sorted(p.name for p in MLPERF.glob("*.tflite"))
    for name, digest in sums.items():
        assert hashlib.sha256((MLPERF / name).read_bytes()).hexdigest() == digest, name


def _tracked_text_files():
    try:
        names = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True,
                               check=True).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    for name in names:
        path = REPO / name
        if path.suffix in {".tflite", ".npz", ".keras", ".npy"} or not path.is_file():
            continue
        yield name, path.read_text(errors="replace")


def test_no_file_names_a_path_of_a_particular_machine():
    machine_path = re.compile(r"(?<![\w.])(/work/|/root/|/home/\w+|\.\./shared/mlperf)")
    offenders = [name for name, text in _tracked_text_files()
                 if name != "tests/test_repository.py" and machine_path.search(text)]
    assert offenders == []
