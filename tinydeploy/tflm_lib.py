"""The TFLM library a firmware is built with: where it comes from, and compiled once per target.

Real boards get TensorFlow Lite Micro from PlatformIO (``lib_deps`` pins the Arduino library
``Arduino_TensorFlowLite`` for the Arm boards). TFLM's C++ sources are in no package registry, so
tinydeploy never carries them: it *finds* the library, first found wins:

1. ``--tflm-lib DIR`` (an explicit option);
2. the ``TINYDEPLOY_TFLM_LIB`` environment variable;
3. the project's PlatformIO libdeps, ``.pio/libdeps/<env>/Arduino_TensorFlowLite`` — what a user
   has after one ``pio run`` of a rendered project;
4. the library the project was built with (recorded in its ``tinydeploy.json``).

A found library is compiled the way PlatformIO compiles it for an Arduino board (the ``ARDUINO``
define, which selects the CMSIS-NN kernels' API, ``-Os``, ``gnu++14``, no RTTI, no exceptions),
for one *target*: an Arm core (the emulated boards' ``cpu_flags``) or this host (the reference).
Each compiled library is an archive in the cache (``TINYDEPLOY_CACHE``, else
``$XDG_CACHE_HOME/tinydeploy``, else ``~/.cache/tinydeploy``), keyed by the library's content, the
flags and the compiler, so a second build compiles only the model.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterator

from tinydeploy.errors import BuildError, InputError, ToolMissingError

LIB_ENV = "TINYDEPLOY_TFLM_LIB"
CACHE_ENV = "TINYDEPLOY_CACHE"
#: Folder name PlatformIO gives the pinned library under .pio/libdeps/<env>/ (its library.properties name).
PIO_LIB_NAME = "Arduino_TensorFlowLite"
#: A file every TFLM library has, relative to its src/.
_MARKER = Path("tensorflow/lite/micro/micro_interpreter.h")
#: Parts of the Arduino library that are not TFLM itself: board peripherals, the serial test
#: harness, the audio front end and its FFT. PlatformIO compiles them too, but no model links them.
_NOT_TFLM = ("peripherals/", "test_over_serial/", "tensorflow/lite/experimental/microfrontend/",
             "third_party/kissfft/")
_SOURCE_SUFFIXES = (".c", ".cc", ".cpp")
_FINGERPRINT_SUFFIXES = (*_SOURCE_SUFFIXES, ".h", ".hpp")

#: What ArduinoCore-mbed's cxxflags/cflags (variants/ARDUINO_NANO33BLE) pass besides the core's
#: -mcpu/-mfpu; PlatformIO adds ARDUINO=10810. The library's headers switch on ARDUINO (CMSIS-NN
#: kernel registrations, no abort on assertions, global-namespace math).
ARDUINO_DEFINES = ("-DARDUINO=10810",)
COMMON_FLAGS = ("-Os", "-ffunction-sections", "-fdata-sections", "-funsigned-char",
                "-fno-delete-null-pointer-checks", "-fomit-frame-pointer")
CXX_FLAGS = ("-std=gnu++14", "-fno-rtti", "-fno-exceptions")
C_FLAGS = ("-std=gnu11",)
#: The host build (the reference): CMSIS-NN's portable C path (its unit-test configuration,
#: __GNUC_PYTHON__, plus the one CMSIS-Core intrinsic it still calls), position-independent for a
#: shared library.
HOST_FLAGS = ("-fPIC", "-D__GNUC_PYTHON__", "-D__RESTRICT=__restrict")
HOST_INCLUDE = "tflm/td_host_cmsis.h"   # under firmware/


@dataclass(frozen=True)
class TflmLibrary:
    """A TFLM library folder (the Arduino layout: ``src/tensorflow/lite/micro/...``)."""

    root: Path
    origin: str          # how it was found: "--tflm-lib", "TINYDEPLOY_TFLM_LIB", "libdeps", "manifest"

    @property
    def src(self) -> Path:
        return self.root / "src"

    @property
    def properties(self) -> dict[str, str]:
        path = self.root / "library.properties"
        if not path.is_file():
            return {}
        pairs = (line.split("=", 1) for line in path.read_text(errors="replace").splitlines()
                 if "=" in line)
        return {k.strip(): v.strip() for k, v in pairs}

    @property
    def name(self) -> str:
        return self.properties.get("name", self.root.name)

    @property
    def version(self) -> str:
        return self.properties.get("version", "unknown")

    def describe(self) -> str:
        return f"{self.name} {self.version} at {self.root}"

    def sources(self) -> list[Path]:
        """The library's C/C++ sources (relative to src/), TFLM and CMSIS-NN only."""
        return [p for p in _files(self.src, _SOURCE_SUFFIXES) if not str(p).startswith(_NOT_TFLM)]

    def fingerprint(self) -> str:
        """SHA-256 over every source and header: two folders with the same library share a cache."""
        return _fingerprint(self.src, _tree_stamp(self.src))

    def to_dict(self) -> dict:
        return {"name": self.name, "version": self.version, "path": str(self.root),
                "origin": self.origin, "fingerprint": self.fingerprint()[:16]}


def _files(src: Path, suffixes: tuple[str, ...]) -> list[Path]:
    return sorted(p.relative_to(src) for p in src.rglob("*") if p.suffix in suffixes and p.is_file())


def _tree_stamp(src: Path) -> tuple:
    """Cheap change detector for the fingerprint cache: (path, size, mtime) of every file."""
    return tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns)
                 for p in sorted(src.rglob("*")) if p.suffix in _FINGERPRINT_SUFFIXES)


@lru_cache(maxsize=8)
def _fingerprint(src: Path, _stamp: tuple) -> str:
    digest = hashlib.sha256()
    for rel in _files(src, _FINGERPRINT_SUFFIXES):
        digest.update(str(rel).encode() + b"\0" + (src / rel).read_bytes() + b"\0")
    return digest.hexdigest()


# --------------------------------------------------------------------------- finding it

def library_at(path: str | Path, origin: str) -> TflmLibrary:
    """The library in ``path`` (the folder holding src/, or src/ itself); InputError otherwise."""
    path = Path(path).expanduser()
    for root in (path, path.parent):
        if (root / "src" / _MARKER).is_file():
            return TflmLibrary(root.resolve(), origin)
    if (path / _MARKER).is_file() or (path / "tensorflow" / "lite" / "micro").is_dir():
        raise InputError(f"{path} looks like a TFLM source tree, not an Arduino-layout library",
                         f"pass the {PIO_LIB_NAME} library folder (the one holding src/ and "
                         "library.properties)")
    raise InputError(f"{origin} {path} is not a TFLM library (no src/{_MARKER})",
                     f"pass the {PIO_LIB_NAME} library folder, e.g. .pio/libdeps/<env>/{PIO_LIB_NAME} "
                     "of a project PlatformIO has built once")


def find_library(explicit: str | Path | None = None, *, project_dir: str | Path | None = None,
                 env_name: str | None = None, recorded: str | None = None) -> TflmLibrary | None:
    """The TFLM library to build and validate with, first found (see the module doc), or None."""
    if explicit:
        return library_at(explicit, "--tflm-lib")
    if os.environ.get(LIB_ENV):
        return library_at(os.environ[LIB_ENV], LIB_ENV)
    if project_dir is not None:
        libdeps = Path(project_dir) / ".pio" / "libdeps"
        envs = [libdeps / env_name] if env_name else sorted(libdeps.glob("*"))
        for env in envs:
            candidate = env / PIO_LIB_NAME
            if (candidate / "src" / _MARKER).is_file():
                return TflmLibrary(candidate.resolve(), "libdeps")
    if recorded and (Path(recorded) / "src" / _MARKER).is_file():
        return TflmLibrary(Path(recorded), "manifest")
    return None


def require_library(explicit: str | Path | None = None, **where) -> TflmLibrary:
    """Like :func:`find_library`, but a missing library is an error saying where to put it."""
    lib = find_library(explicit, **where)
    if lib is None:
        raise ToolMissingError(
            "no TFLM library to build the tflm runtime with (its C++ sources are in no package "
            "registry)",
            f"pass --tflm-lib DIR or set {LIB_ENV}=DIR to the {PIO_LIB_NAME} library (git clone "
            "tensorflow/tflite-micro-arduino-examples, or .pio/libdeps/<env>/ after one 'pio run' "
            "of a rendered project), or use --runtime native")
    return lib


# --------------------------------------------------------------------------- compiling it

@dataclass(frozen=True)
class Target:
    """What the library is compiled for: compilers and flags."""

    name: str                       # e.g. "cortex-m4", "host"
    cc: str
    cxx: str
    ar: str
    flags: tuple[str, ...]          # for C and C++ alike (core, optimisation, defines)
    inputs: tuple[Path, ...] = ()   # files the flags name (forced includes): part of the key

    @property
    def cxx_flags(self) -> tuple[str, ...]:
        return (*self.flags, *CXX_FLAGS)

    @property
    def c_flags(self) -> tuple[str, ...]:
        return (*self.flags, *C_FLAGS)

    def key(self) -> str:
        """Flags and the compilers' versions: what the compiled objects depend on besides sources."""
        versions = [_compiler_version(self.cc), _compiler_version(self.cxx)]
        contents = [hashlib.sha256(p.read_bytes()).hexdigest() for p in self.inputs]
        flags = [f for f in self.flags if f not in map(str, self.inputs)]  # not install paths
        return hashlib.sha256(json.dumps([self.name, flags, CXX_FLAGS, C_FLAGS, versions, contents])
                              .encode()).hexdigest()


def arm_target(name: str, cpu_flags: tuple[str, ...] | list[str]) -> Target:
    """An Arm core, with the emulated board's ``cpu_flags`` (e.g. -mcpu=cortex-m4 -mthumb ...)."""
    return Target(name, "arm-none-eabi-gcc", "arm-none-eabi-g++", "arm-none-eabi-ar",
                  (*cpu_flags, *COMMON_FLAGS, *ARDUINO_DEFINES))


def host_target() -> Target:
    from tinydeploy.resources import firmware_dir

    include = firmware_dir() / HOST_INCLUDE
    return Target("host", "gcc", "g++", "ar",
                  (*COMMON_FLAGS, *ARDUINO_DEFINES, *HOST_FLAGS, "-include", str(include)), (include,))


@lru_cache(maxsize=None)
def _compiler_version(program: str) -> str:
    if shutil.which(program) is None:
        raise ToolMissingError(f"{program} is not installed",
                               "install the Debian packages gcc-arm-none-eabi and "
                               "libstdc++-arm-none-eabi-newlib (Arm) or g++ (host)")
    return subprocess.run([program, "--version"], capture_output=True, text=True).stdout.split("\n")[0]


def cache_dir() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "tinydeploy"


@contextmanager
def cache_lock(folder: Path) -> Iterator[None]:
    """An exclusive lock on ``folder`` (another tinydeploy compiling the same thing waits)."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@dataclass(frozen=True)
class CompiledLibrary:
    library: TflmLibrary
    target: Target
    archive: Path
    seconds: float        # time the compile took (0 when it came from the cache)
    complete: bool        # every source is in the archive (False: only what the ops need)

    @property
    def include_dirs(self) -> list[Path]:
        return [self.library.src]


Progress = Callable[[str], None]

_KERNELS = "tensorflow/lite/micro/kernels/"
_REGISTRATION_DEF = re.compile(r"\b(Register_[A-Z0-9_]+)\s*\(\s*\)\s*\{")
_ADD_METHOD = re.compile(r"TfLiteStatus\s+(Add\w+)\s*\((.*?)\)\s*\{(.*?)\n  \}", re.DOTALL)
_REGISTRATION_USE = re.compile(r"\b(Register_[A-Z0-9_]+)\s*\(")


def kernel_sources(lib: TflmLibrary, ops: list[str]) -> list[Path] | None:
    """The sources the ``ops`` need: everything but the kernels of other ops (a kernel file is one
    that defines a Register_* function; kernel helpers such as conv_common.cpp are always in).
    None when an op's kernel cannot be told from the library's files: then compile everything."""
    from tinydeploy.tflm_ops import RESOLVER_METHODS

    registrations = _registrations_of_methods(lib)
    defined_in: dict[str, list[Path]] = {}
    kernel_files = set()
    for rel in lib.sources():
        if str(rel).startswith(_KERNELS):
            names = _REGISTRATION_DEF.findall((lib.src / rel).read_text(errors="replace"))
            for name in names:
                defined_in.setdefault(name, []).append(rel)
            if names:
                kernel_files.add(rel)
    wanted = set()
    for op in dict.fromkeys(ops):
        method = RESOLVER_METHODS.get(op)
        names = registrations.get(method or "", [])
        files = [f for name in names for f in defined_in.get(name, [])]
        if not files:
            return None
        wanted.update(files)
    return [rel for rel in lib.sources() if rel not in kernel_files or rel in wanted]


def _registrations_of_methods(lib: TflmLibrary) -> dict[str, list[str]]:
    """Add<Op> method of MicroMutableOpResolver -> the Register_* functions it calls by default."""
    header = (lib.src / "tensorflow/lite/micro/micro_mutable_op_resolver.h").read_text(errors="replace")
    return {method: _REGISTRATION_USE.findall(args + body)
            for method, args, body in _ADD_METHOD.findall(header)}


def compile_library(lib: TflmLibrary, target: Target, progress: Progress | None = None,
                    jobs: int | None = None, ops: list[str] | None = None) -> CompiledLibrary:
    """The library compiled for ``target`` as a static archive: every source, or with ``ops`` only
    what those ops need (the other kernels are left out; a link that misses something should then
    ask again without ``ops``). Each object is compiled once per library, target and compiler and
    kept in the cache, so a later archive with more ops compiles only the new kernels."""
    folder = cache_dir() / "tflm" / f"{lib.fingerprint()[:16]}-{target.name}-{target.key()[:12]}"
    sources = kernel_sources(lib, ops) if ops is not None else None
    complete = sources is None or len(sources) == len(lib.sources())
    sources = lib.sources() if sources is None else sources
    tag = "all" if complete else hashlib.sha256("\n".join(map(str, sources)).encode()).hexdigest()[:12]
    archive = folder / f"libtflm-{tag}.a"
    if archive.is_file():
        return CompiledLibrary(lib, target, archive, 0.0, complete)
    with cache_lock(folder):
        if archive.is_file():  # made by another process while this one waited
            return CompiledLibrary(lib, target, archive, 0.0, complete)
        start = time.monotonic()
        objects_dir = folder / "objects"
        objects_dir.mkdir(exist_ok=True)
        missing = [rel for rel in sources if not _object_path(objects_dir, rel).is_file()]
        if missing and progress:
            progress(f"compiling {lib.name} {lib.version} for {target.name} ({len(missing)} of "
                     f"{len(lib.sources())} files; once, then cached in {folder})")
        _compile_all(lib, target, missing, objects_dir, jobs)
        staged = folder / f".{archive.name}.tmp"
        staged.unlink(missing_ok=True)
        _run([target.ar, "rcs", str(staged), *(str(_object_path(objects_dir, rel)) for rel in sources)],
             "archiving the TFLM library")
        (folder / "build.json").write_text(json.dumps({
            "library": lib.to_dict(), "target": target.name, "flags": list(target.flags),
            "cxx_flags": list(CXX_FLAGS), "compilers": [_compiler_version(target.cc),
                                                        _compiler_version(target.cxx)],
            "objects": len(list(objects_dir.glob("*.o")))}, indent=2))
        os.replace(staged, archive)
        return CompiledLibrary(lib, target, archive, time.monotonic() - start, complete)


def _object_path(objects_dir: Path, rel: Path) -> Path:
    return objects_dir / (str(rel).replace("/", "__") + ".o")


def _compile_all(lib: TflmLibrary, target: Target, sources: list[Path], out: Path,
                 jobs: int | None) -> None:
    def one(rel: Path) -> None:
        obj = _object_path(out, rel)
        tmp = obj.with_suffix(f".{os.getpid()}.tmp")
        cmd = ([target.cc, *target.c_flags] if rel.suffix == ".c" else [target.cxx, *target.cxx_flags])
        _run([*cmd, "-w", f"-I{lib.src}", "-c", str(lib.src / rel), "-o", str(tmp)],
             f"compiling {rel} of {lib.name}")
        os.replace(tmp, obj)

    with ThreadPoolExecutor(max_workers=jobs or os.cpu_count() or 2) as pool:
        list(pool.map(one, sources))


def _run(cmd: list[str], what: str) -> None:
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        lines = [ln for ln in result.stderr.splitlines() if "error" in ln] or result.stderr.splitlines()
        raise BuildError(f"{what} failed: {' | '.join(lines[:3])}",
                         "check that --tflm-lib is an intact Arduino_TensorFlowLite library")
