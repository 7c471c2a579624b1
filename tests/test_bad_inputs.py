"""A battery of bad inputs through the real CLI: each must end in exactly one clear line.

Every case asserts the same contract (issue 9):

- a non-zero exit code, and nothing on stdout that reads like a success ("wrote", "built");
- exactly one ``error:`` line on stderr, shaped ``error: <problem> (<fix>)``;
- no Python traceback and no "internal error";
- nothing left behind: the test's folder holds exactly what it held before (no partial -o
  folder, no hidden staging folder), and the temporary directory tinydeploy and its converter
  child were given is empty again.

Most cases run in-process through click's CliRunner (fast, and the converter child is shared);
those that need a real process (FIFOs, a calibration function that kills its process, the
console entry point's own handling of usage errors) run ``python -m tinydeploy``.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import subprocess
import sys
import textwrap
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from click.testing import CliRunner

from paths import MLPERF, REPO
from tinydeploy.cli import cli

AD01 = MLPERF / "ad01_int8.tflite"          # full int8, input (1, 640): needs no TensorFlow
ERROR_LINE = re.compile(r"^error: .+ \(.+\)$")

USER_MODULE = """
import os, sys, ctypes
import numpy as np

def good():
    return [np.zeros(SHAPE, np.float32) for _ in range(4)]
def raises():
    raise ValueError("no data today")
def returns_none():
    return None
def returns_int():
    return 7
def yields_text():
    yield "not a sample"
def mixed_shapes():
    yield np.zeros(SHAPE, np.float32)
    yield np.zeros(3, np.float32)
def dict_without_x():
    yield {"image": np.zeros(SHAPE, np.float32)}
def empty():
    return []
def exits():
    sys.exit()
def exits_zero():
    sys.exit(0)
def exits_text():
    sys.exit("done")
def exits_midway():
    yield np.zeros(SHAPE, np.float32)
    sys.exit(1)
class Stop(BaseException):
    pass
def base_exception():
    raise Stop("stop")
def text_labels():
    for label in ("cat", "dog"):
        yield {"x": np.zeros(SHAPE, np.float32), "y": label}
def aborts():
    os.abort()
def hard_exit():
    os._exit(0)
def segfaults():
    ctypes.string_at(0)
"""


# --------------------------------------------------------------------------- the contract

def _snapshot(root: Path) -> dict:
    """Every path under ``root`` (except the TMP folder) with its size: what 'nothing left' means."""
    seen = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if rel.parts[0] == "TMP":
            continue
        try:
            seen[str(rel)] = path.lstat().st_size if not path.is_dir() else -1
        except OSError:
            seen[str(rel)] = None
    return seen


def assert_one_clear_error(code: int, stdout: str, stderr: str, words=()) -> str:
    assert code != 0, f"a wrong success:\n{stdout}\n{stderr}"
    assert "Traceback" not in stderr and "internal error" not in stderr, stderr
    assert not re.search(r"^(wrote|built) ", stdout + stderr, re.M), stdout + stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr
    assert ERROR_LINE.match(errors[0]), f"no '(fix)' in: {errors[0]}"
    for word in words:
        assert word.lower() in errors[0].lower(), (word, errors[0])
    return errors[0]


@dataclass
class Case:
    id: str
    args: Callable[["Kit"], list]          # the command line, built from the kit
    words: tuple = ()                      # words the error line must hold
    process: bool = False                  # run as a real `python -m tinydeploy` process
    float_model: bool = False              # needs the float digits .tflite (quantized in the child)


class Kit:
    """The files a case may need, made fresh in the test's own folder."""

    def __init__(self, root: Path, project: Path, float_model: Path | None):
        self.root = root
        self.out = root / "out"
        self.project = project
        self.float_model = float_model

    def file(self, name: str, data: bytes | str = b"") -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        return path

    def npz(self, name: str, **arrays) -> Path:
        path = self.root / name
        with open(path, "wb") as f:
            np.savez(f, **arrays)
        return path

    def npy(self, name: str, array) -> Path:
        path = self.root / name
        with open(path, "wb") as f:
            np.save(f, array, allow_pickle=True)
        return path

    def fifo(self, name: str) -> Path:
        path = self.root / name
        os.mkfifo(path)
        return path

    def module(self, name: str, shape) -> str:
        self.file(f"{name}.py", USER_MODULE.replace("SHAPE", repr(tuple(shape))))
        return name

    def folder(self, name: str, files: dict | None = None) -> Path:
        path = self.root / name
        path.mkdir(parents=True, exist_ok=True)
        for rel, data in (files or {}).items():
            (path / rel).parent.mkdir(parents=True, exist_ok=True)
            (path / rel).write_text(data)
        return path

    def project_copy(self, manifest: str | None = None, model: bytes | None = None) -> Path:
        path = self.root / "proj"
        shutil.copytree(self.project, path)
        if manifest is not None:
            (path / "tinydeploy.json").write_text(manifest)
        if model is not None:
            (path / "model.tflite").write_bytes(model)
        return path


def build(extra):
    """A build of ad01 for qemu-m4 into kit.out, plus ``extra(kit)`` arguments."""
    return lambda k: ["build", AD01, "--board", "qemu-m4", "-o", k.out, *extra(k)]


def calib(make, model="ad01"):
    """A build whose --calib is made by ``make(kit, shape)``."""
    def args(k):
        model_path, shape = (AD01, (640,)) if model == "ad01" else (k.float_model, (8, 8, 1))
        return ["build", model_path, "--board", "qemu-m4", "--calib", make(k, shape), "-o", k.out]
    return args


def evaluation(make):
    return lambda k: ["build", AD01, "--board", "qemu-m4", "--eval", make(k, (640,)), "-o", k.out]


def validate(make):
    return lambda k: ["validate", k.project, "--samples", make(k, (640,))]


def user(function):
    return lambda k, shape: f"{k.module('user_data', shape)}:{function}"


# --------------------------------------------------------------------------- the cases

def _truncations():
    size = AD01.stat().st_size
    return [Case(f"model-truncated-at-{cut}", lambda k, cut=cut: [
        "build", k.file("cut.tflite", AD01.read_bytes()[:cut]), "--board", "qemu-m4", "-o", k.out])
        for cut in (4, 8, 12, 64, 300, 4_000, 40_000, 150_000, size - 5_000, size - 1)]


def _mutations(count: int = 25):
    """Seeded damage to ad01's structure (not its weights) that the reader refuses."""
    from tinydeploy import tflite
    from tinydeploy.analyze import analyze
    from tinydeploy.errors import ModelError

    base = AD01.read_bytes()
    spans = [(base.find(t.data.tobytes()), base.find(t.data.tobytes()) + t.data.nbytes)
             for t in tflite.parse(base).main.tensors if t.data is not None and t.data.nbytes > 8]
    rng, found = random.Random(2024), []
    while len(found) < count:
        data = bytearray(base)
        for _ in range(rng.choice([1, 2])):
            pos = rng.randrange(len(data))
            while any(a <= pos < b for a, b in spans):
                pos = rng.randrange(len(data))
            data[pos] = rng.choice([0, 1, 0x7F, 0x80, 0xFF, rng.randrange(256)])
        try:
            analyze(tflite.parse(bytes(data)))
        except ModelError:
            found.append(bytes(data))
    return [Case(f"model-mutated-{i}", lambda k, d=d: [
        "check", k.file("mutated.tflite", d), "--board", "qemu-m4"], ("corrupt",))
        for i, d in enumerate(found)]


def _bad_arrays(prefix: str, wrap, shape_words=()):
    """The same bad sample files for --calib, --eval and --samples (``wrap(make)`` -> args)."""
    def z(**arrays):
        return lambda k, shape: k.npz(f"{prefix}.npz", **{n: (a(shape) if callable(a) else a)
                                                          for n, a in arrays.items()})
    return [
        Case(f"{prefix}-missing-npz", wrap(lambda k, s: k.root / "nope.npz"), ("not found",)),
        Case(f"{prefix}-missing-npy", wrap(lambda k, s: k.root / "nope.npy"), ("not found",)),
        Case(f"{prefix}-folder", wrap(lambda k, s: k.folder("data.npz")), ("folder",)),
        Case(f"{prefix}-csv", wrap(lambda k, s: k.file("data.csv", "1,2\n")), ("file type",)),
        Case(f"{prefix}-empty-npz", wrap(lambda k, s: k.file("e.npz")), ("cannot read",)),
        Case(f"{prefix}-empty-npy", wrap(lambda k, s: k.file("e.npy")), ("cannot read",)),
        Case(f"{prefix}-junk-npz", wrap(lambda k, s: k.file("j.npz", os.urandom(300))),
             ("cannot read",)),
        Case(f"{prefix}-zip-not-npz", wrap(lambda k, s: _zip(k, "z.npz")), ("has no array 'x'",)),
        Case(f"{prefix}-no-x", wrap(z(images=lambda s: np.zeros((2, *s), np.float32))),
             ("no array 'x'",)),
        Case(f"{prefix}-object-x", wrap(z(x=np.array([None, 1], dtype=object))),
             ("python objects",)),
        Case(f"{prefix}-object-y", wrap(z(x=lambda s: np.zeros((2, *s), np.float32),
                                          y=np.array([None, {}], dtype=object))),
             ("python objects",)),
        Case(f"{prefix}-text-x", wrap(z(x=lambda s: np.full((2, *s), "a"))), ("not numbers",)),
        Case(f"{prefix}-complex-x", wrap(z(x=lambda s: np.zeros((2, *s), np.complex64))),
             ("not numbers",)),
        Case(f"{prefix}-nan-x", wrap(z(x=lambda s: np.full((2, *s), np.nan, np.float32))),
             ("nan",)),
        Case(f"{prefix}-inf-x", wrap(z(x=lambda s: np.full((2, *s), np.inf, np.float32))),
             ("infinite",)),
        Case(f"{prefix}-wrong-shape", wrap(z(x=np.zeros((2, 28, 28), np.float32))),
             ("(28, 28)", *shape_words)),
        Case(f"{prefix}-scalar-x", wrap(z(x=np.float32(3))), ("holds no",)),
        Case(f"{prefix}-no-samples", wrap(z(x=lambda s: np.zeros((0, *s), np.float32))),
             ("holds no",)),
        Case(f"{prefix}-text-labels", wrap(z(x=lambda s: np.zeros((2, *s), np.float32),
                                             y=np.array(["cat", "dog"]))), ("text",)),
        Case(f"{prefix}-short-labels", wrap(z(x=lambda s: np.zeros((3, *s), np.float32),
                                              y=np.array([1, 2]))), ("entries in 'y'",)),
        Case(f"{prefix}-nan-labels", wrap(z(x=lambda s: np.zeros((2, *s), np.float32),
                                            y=np.array([np.nan, 1.0]))), ("labels",)),
        Case(f"{prefix}-object-npy", wrap(lambda k, s: k.npy("o.npy", np.array([{}, []],
                                                                                dtype=object))),
             ("cannot read",)),
        Case(f"{prefix}-dev-zero", wrap(lambda k, s: Path("/dev/zero")), ("not a regular file",)),
        Case(f"{prefix}-fifo", wrap(lambda k, s: k.fifo("f.npz")), ("fifo",), process=True),
    ]


def _zip(k, name):
    path = k.root / name
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("readme.txt", "not numpy")
    return path


def _user_functions(wrap, process_extra=True):
    cases = [
        ("module-missing", lambda k, s: "no_such_module_xyz:samples", ("cannot import",)),
        ("function-missing", user("nope"), ("has no function",)),
        ("raises", user("raises"), ("no data today",)),
        ("returns-none", user("returns_none"), ("failed",)),
        ("returns-int", user("returns_int"), ("failed",)),
        ("yields-text", user("yields_text"), ("shape ()",)),
        ("mixed-shapes", user("mixed_shapes"), ("different shapes",)),
        ("dict-without-x", user("dict_without_x"), ("keyerror",)),
        ("empty", user("empty"), ("returned no",)),
        ("sys-exit", user("exits"), ("sys.exit()",)),
        ("sys-exit-0", user("exits_zero"), ("sys.exit(0)",)),
        ("sys-exit-text", user("exits_text"), ("sys.exit('done')",)),
        ("sys-exit-midway", user("exits_midway"), ("sys.exit(1)",)),
        ("base-exception", user("base_exception"), ("stop",)),
        ("text-labels", user("text_labels"), ("text",)),
        ("syntax-error", lambda k, s: (k.file("broken_mod.py", "def (:\n"), "broken_mod:f")[1],
         ("broken_mod",)),
        ("exit-at-import", lambda k, s: (k.file("exit_mod.py", "import sys\nsys.exit(0)\n"),
                                         "exit_mod:f")[1], ("sys.exit(0)",)),
        ("raise-at-import", lambda k, s: (k.file("raise_mod.py", "raise RuntimeError('x')\n"),
                                          "raise_mod:f")[1], ("importing raise_mod",)),
    ]
    return [Case(name, wrap(make), words) for name, make, words in cases]


def _worker_functions():
    """User code that kills the process it runs in: the converter child, never the tool."""
    return [Case(f"calib-worker-{name}", calib(user(function), model="float"), words, process=True,
                 float_model=True)
            for name, function, words in (
                ("abort", "aborts", ("crashed (SIGABRT",)),
                ("os-exit", "hard_exit", ("exit status 0",)),
                ("segfault", "segfaults", ("crashed (SIGSEGV",)))]


def _manifests():
    good = '{"board": "qemu-m4", "runtime": "native", "model": "model.tflite"}'
    cases = {"corrupt-json": "{not json", "list": "[1, 2, 3]", "string": '"qemu-m4"',
             "empty-object": "{}", "board-number": good.replace('"qemu-m4"', "7"),
             "unknown-board": good.replace("qemu-m4", "qemu-m99"),
             "model-outside": good.replace("model.tflite", "../../../etc/passwd"),
             "model-missing": good.replace("model.tflite", "gone.tflite"),
             "binary": "\x00\xff\xfe"}
    out = []
    for command in ("flash", "validate"):
        for name, text in cases.items():
            out.append(Case(f"{command}-manifest-{name}",
                            lambda k, c=command, t=text: [c, k.project_copy(manifest=t)]))
    out.append(Case("validate-corrupt-model-in-project",
                    lambda k: ["validate", k.project_copy(model=b"TFL3 junk junk junk")]))
    return out


CASES: list[Case] = [
    # ---- the model argument
    Case("model-missing", lambda k: ["build", k.root / "nope.tflite", "--board", "qemu-m4"],
         ("not found",)),
    Case("model-missing-folder", lambda k: ["check", k.root / "a" / "b.keras", "--board",
                                            "qemu-m4"], ("not found",)),
    Case("model-newline-name", lambda k: ["check", k.root / "x\ny.tflite", "--board", "qemu-m4"],
         ("x\\ny",)),
    *[Case(f"model-empty{suffix}", lambda k, s=suffix: [
        "build", k.file(f"m{s}"), "--board", "qemu-m4", "-o", k.out])
      for suffix in (".tflite", ".keras", ".h5", ".hdf5")],
    *[Case(f"model-text{suffix}", lambda k, s=suffix: [
        "build", k.file(f"m{s}", "I am a text file\n"), "--board", "qemu-m4", "-o", k.out])
      for suffix in (".tflite", ".keras", ".h5")],
    Case("model-random-bytes", lambda k: ["check", k.file("r.tflite", os.urandom(2048)),
                                          "--board", "qemu-m4"]),
    Case("model-tfl3-junk", lambda k: ["check", k.file("j.tflite", b"\x10\0\0\0TFL3" + b"\xff" * 64),
                                       "--board", "qemu-m4"], ("corrupt",)),
    Case("model-unknown-suffix", lambda k: ["check", k.file("m.onnx", b"\x08\x01"), "--board",
                                            "qemu-m4"], ("unknown model type",)),
    Case("model-no-suffix", lambda k: ["check", k.file("model", b"\x00" * 10), "--board",
                                       "qemu-m4"], ("unknown model type",)),
    Case("model-folder-not-savedmodel", lambda k: ["check", k.folder("sm", {"a.txt": "x"}),
                                                   "--board", "qemu-m4"], ("not a SavedModel",)),
    Case("model-saved-model-pb", lambda k: ["check", k.file("saved_model.pb", b"x"), "--board",
                                            "qemu-m4"], ("pass its folder",)),
    Case("model-zip-not-keras", lambda k: ["check", _zip(k, "z.keras"), "--board", "qemu-m4"]),
    Case("model-truncated-keras", lambda k: ["check", k.file(
        "t.keras", b"PK\x03\x04" + b"\x00" * 40), "--board", "qemu-m4"], ("damaged",)),
    Case("model-dev-zero", lambda k: ["check", "/dev/zero", "--board", "qemu-m4"], ("device",)),
    Case("model-dev-null", lambda k: ["check", "/dev/null", "--board", "qemu-m4"], ("device",)),
    Case("model-fifo", lambda k: ["check", k.fifo("m.tflite"), "--board", "qemu-m4"], ("fifo",),
         process=True),
    Case("model-broken-symlink", lambda k: ["check", _symlink(k, "l.tflite", "missing"),
                                            "--board", "qemu-m4"], ("not found",)),
    Case("model-symlink-loop", lambda k: ["check", _symlink(k, "loop.tflite", "loop.tflite"),
                                          "--board", "qemu-m4"], ("cannot reach",)),
    Case("inspect-text-model", lambda k: ["inspect", k.file("t.tflite", "text")]),
    Case("compile-missing-model", lambda k: ["compile", k.root / "no.tflite", "-o", k.out]),
    *_truncations(),
    *_mutations(),
    # ---- calibration, evaluation and validation samples
    *_bad_arrays("calib", calib, ("(640,)",)),
    *_bad_arrays("eval", evaluation, ("(640,)",)),
    *_bad_arrays("samples", validate, ("(640,)",)),
    *[Case(f"calib-fn-{c.id}", c.args, c.words) for c in _user_functions(calib)],
    *[Case(f"samples-fn-{c.id}", c.args, c.words) for c in _user_functions(validate)[:12]],
    *[Case(f"calib-float-{c.id}", c.args, c.words, float_model=True) for c in
      _bad_arrays("fcalib", lambda make: calib(make, model="float"), ("(8, 8, 1)",))[8:22]],
    *[Case(f"calib-float-fn-{c.id}", c.args, c.words, float_model=True) for c in
      _user_functions(lambda make: calib(make, model="float"))[9:15]],
    *_worker_functions(),
    Case("float-model-without-calib", lambda k: ["build", k.float_model, "--board", "qemu-m4",
                                                 "-o", k.out], ("needs calibration data",),
         float_model=True),
    Case("calib-bad-spec", calib(lambda k, s: "a:b:c"), ("not found",)),
    # ---- boards, runtimes, options (click's own errors too, through the real entry point)
    Case("unknown-board", build(lambda k: ["--board", "arduino-uno-r9"]), ("unknown board",)),
    Case("empty-board", lambda k: ["check", AD01, "--board", ""], ("unknown board",)),
    Case("boards-show-unknown", lambda k: ["boards", "show", "nope"], ("unknown board",)),
    Case("bad-runtime", build(lambda k: ["--runtime", "fast"]), ("--runtime",), process=True),
    Case("bad-io", build(lambda k: ["--io", "int4"]), ("--io",), process=True),
    Case("missing-board", lambda k: ["build", AD01], ("--board",), process=True),
    Case("missing-model", lambda k: ["build"], ("MODEL",), process=True),
    Case("unknown-command", lambda k: ["frobnicate"], ("frobnicate",), process=True),
    Case("calib-samples-zero", build(lambda k: ["--calib-samples", "0"]), ("--calib-samples",),
         process=True),
    Case("compile-without-o", lambda k: ["compile", AD01], ("-o",), process=True),
    Case("validate-limit-zero", lambda k: ["validate", k.project, "--limit", "0"], ("--limit",),
         process=True),
    Case("validate-negative-tolerance", lambda k: ["validate", k.project, "--tolerance", "-1"],
         ("--tolerance",), process=True),
    # ---- output folders
    Case("out-is-a-file", lambda k: ["build", AD01, "--board", "qemu-m4", "-o",
                                      k.file("taken", "x")], ("not a folder",)),
    Case("out-under-a-file", lambda k: ["build", AD01, "--board", "qemu-m4", "-o",
                                        k.file("f", "x") / "sub"], ("which is a file",)),
    Case("out-in-proc", lambda k: ["build", AD01, "--board", "qemu-m4", "-o",
                                   "/proc/tinydeploy-out"], ("not writable",)),
    Case("out-in-sys", lambda k: ["build", AD01, "--board", "qemu-m4", "-o", "/sys/td/out"]),
    Case("out-dev-null", lambda k: ["build", AD01, "--board", "qemu-m4", "-o", "/dev/null"],
         ("not a folder",)),
    Case("out-dot", lambda k: ["build", AD01, "--board", "qemu-m4", "-o", ".", "--force"],
         ("folder you are in",)),
    Case("out-dot-dot", lambda k: ["build", AD01, "--board", "qemu-m4", "-o", "..", "--force"],
         ("folder you are in",)),
    Case("out-empty-string", lambda k: ["build", AD01, "--board", "qemu-m4", "-o", ""],
         ("folder you are in",)),
    Case("out-exists", lambda k: ["build", AD01, "--board", "qemu-m4", "-o",
                                  k.folder("out", {"a": "1"})], ("already exists",)),
    Case("out-foreign-force", lambda k: ["build", AD01, "--board", "qemu-m4", "-o",
                                         k.folder("out", {"thesis.tex": "..."}), "--force"],
         ("did not write",)),
    Case("out-git-force", lambda k: ["build", AD01, "--board", "qemu-m4", "-o",
                                     k.folder("out", {".git/HEAD": "ref"}), "--force"],
         ("did not write",)),
    Case("out-project-with-git-force", lambda k: ["build", AD01, "--board", "qemu-m4", "-o",
                                                  _with_git(k), "--force"], ("did not write",)),
    Case("compile-out-exists", lambda k: ["compile", AD01, "-o", k.folder("out", {"a": "1"})],
         ("already exists",)),
    Case("compile-out-under-file", lambda k: ["compile", AD01, "-o", k.file("f", "x") / "c"],
         ("which is a file",)),
    Case("deploy-out-exists", lambda k: ["deploy", AD01, "-o", k.folder("out", {"a": "1"})],
         ("already exists",)),
    # ---- project folders and their manifests
    Case("flash-missing-project", lambda k: ["flash", k.root / "nope"], ("not found",)),
    Case("validate-project-is-a-file", lambda k: ["validate", k.file("p", "x")], ("not found",)),
    Case("validate-folder-without-manifest", lambda k: ["validate", k.folder("p", {"a": "1"})],
         ("not a tinydeploy project",)),
    *_manifests(),
    # ---- --json and deploy's checks before building
    Case("validate-json-missing-folder", lambda k: ["validate", k.project, "--json",
                                                    k.root / "no" / "r.json"], ("does not exist",)),
    Case("validate-json-is-folder", lambda k: ["validate", k.project, "--json", k.folder("r")],
         ("is a folder",)),
    Case("deploy-json-missing-folder", lambda k: ["deploy", AD01, "-o", k.out, "--json",
                                                  k.root / "no" / "r.json"], ("does not exist",)),
    Case("deploy-samples-missing", lambda k: ["deploy", AD01, "-o", k.out, "--samples",
                                              k.root / "none.npz"], ("not found",)),
    Case("deploy-samples-text", lambda k: ["deploy", AD01, "-o", k.out, "--samples", k.npz(
        "t.npz", x=np.full((2, 640), "a"))], ("not numbers",)),
    Case("deploy-samples-wrong-shape", lambda k: ["deploy", AD01, "-o", k.out, "--samples", k.npz(
        "w.npz", x=np.zeros((2, 5), np.float32))], ("(5,)",)),
    Case("deploy-unknown-board", lambda k: ["deploy", AD01, "-o", k.out, "--board", "qemu-m9"],
         ("unknown board",)),
]


def _symlink(k, name, target):
    path = k.root / name
    path.symlink_to(target)
    return path


def _with_git(k):
    path = k.root / "out"
    shutil.copytree(k.project, path)
    (path / ".git").mkdir()
    return path


# --------------------------------------------------------------------------- the test

@pytest.fixture(scope="module")
def project(tmp_path_factory):
    out = tmp_path_factory.mktemp("battery") / "ad01-qemu-m4"
    result = CliRunner().invoke(cli, ["build", str(AD01), "--board", "qemu-m4", "-o", str(out)])
    assert result.exit_code == 0, result.output + result.stderr
    return out


def test_battery_is_large():
    assert len(CASES) >= 200 and len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_gets_one_clear_line_and_leaves_nothing(case, tmp_path, project, monkeypatch,
                                                          request):
    import tempfile

    float_model = request.getfixturevalue("digits_float_tflite") if case.float_model else None
    work = tmp_path / "work"
    work.mkdir()
    tmp = tmp_path / "TMP"
    tmp.mkdir()
    kit = Kit(work, project, float_model)
    args = [str(a) for a in case.args(kit)]
    before = _snapshot(tmp_path)
    if case.process:
        proc = subprocess.run([sys.executable, "-m", "tinydeploy", *args], cwd=work,
                              capture_output=True, text=True, timeout=60,
                              env=dict(os.environ, TMPDIR=str(tmp)))
        code, stdout, stderr = proc.returncode, proc.stdout, proc.stderr
    else:
        monkeypatch.chdir(work)
        monkeypatch.setenv("TMPDIR", str(tmp))
        monkeypatch.setattr(tempfile, "tempdir", str(tmp))
        monkeypatch.syspath_prepend(str(work))
        for name in ("user_data", "broken_mod", "exit_mod", "raise_mod"):
            sys.modules.pop(name, None)
        result = CliRunner().invoke(cli, args)
        code, stdout, stderr = result.exit_code, result.stdout, result.stderr
    assert_one_clear_error(code, stdout, stderr, case.words)
    assert _snapshot(tmp_path) == before, "files were left behind"
    assert list(tmp.iterdir()) == [], "temporary files were left behind"
