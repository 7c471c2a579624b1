"""The export stage: the model as a library for firmware the user already has.

``export(prepared, board, runtime=..., fmt=..., out=...)`` checks the prepared model against the
board (as ``build`` does) and writes, for ``fmt``:

* ``pio-lib`` — a PlatformIO library folder: ``library.json`` (frameworks, platforms and, for the
  tflm runtime, the board profile's pinned TFLM library as a dependency);
* ``arduino-zip`` — the same as an Arduino IDE library zip (``library.properties``, one top folder);
* ``folder`` — the sources alone, with a README of include paths and build-system snippets.

Each holds ``src/tinydeploy_model.h`` (the API, the same for both runtimes: td_model_init, _input,
_invoke, _output, ...), ``src/tinydeploy/`` (the model array, op resolver, settings and the runtime:
the TFLM adapter of firmware/tflm, or the model compiled to C by tinydeploy.native), a README with
the memory verdict, ``model.tflite``, and — for the two library formats — ``examples/Inference``.

Ownership. Every export carries ``tinydeploy-export.json`` (MANIFEST): each file it wrote with its
SHA-256, and the model's hash, arena, ops and verdict. An export writes into a new or empty folder,
or over a previous export, and then touches only the files that manifest lists: a file of the
user's where it would write stops it (always), and so does one of its own files that the user
edited (unless ``force``). Files of the user's beside the export stay as they are. The manifest is
deliberately not ``tinydeploy.json``: ``build --force`` must never take an export folder (holding
the user's files) for one of its projects and replace it whole.

All or nothing. Everything is rendered into a staging folder beside the target first. A new folder
then appears in one rename; an update moves the old files aside, moves the new ones in and writes
the manifest last, and puts everything back if anything fails on the way. Before it moves anything
it records the new files' hashes in the manifest too (``pending``), so that an update killed
half-way is recognised as tinydeploy's on the next run and simply completed. A zip is written
beside and renamed over the old one. One tinydeploy at a time writes a target (the lock of
tinydeploy.output).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from tinydeploy import __version__, output
from tinydeploy.boards import BoardProfile, load_board
from tinydeploy.check import RUNTIMES, CheckResult, check
from tinydeploy.errors import InputError
from tinydeploy.render import ModelSources, c_identifier, environment, render_model_sources
from tinydeploy.resources import firmware_dir

FORMATS = ("pio-lib", "arduino-zip", "folder")
MANIFEST = "tinydeploy-export.json"
API_HEADER = "tinydeploy_model.h"
GENERATED = "src/tinydeploy"          # every generated source, beside the API header's folder
EXAMPLE = "examples/Inference/Inference.ino"
#: The native runtime's generated files are <NATIVE_NAME>.c/.h (not model.c: users have those).
NATIVE_NAME = "td_model"
#: What an empty zip entry's date is: fixed, so the same export gives the same zip bytes.
_ZIP_DATE = (2024, 1, 1, 0, 0, 0)
_SHA = re.compile(r"^[0-9a-f]{64}$")


# --------------------------------------------------------------------------- the target

@dataclass
class Target:
    """Where an export goes, and what a previous export left there (its manifest)."""

    path: Path                 # absolute, symlinks resolved
    shown: str                 # as the user wrote it
    fmt: str
    exists: bool
    previous: dict | None      # the previous export's manifest, None for a first export


def check_format(board: BoardProfile, fmt: str, runtime: str | None = None) -> str:
    """The runtime to export (the board's by default); refuse a format the board cannot take."""
    if fmt not in FORMATS:
        raise InputError(f"unknown export format '{fmt}'",
                         "use --format pio-lib, --format arduino-zip or --format folder")
    runtime = runtime or board.default_runtime
    if runtime not in RUNTIMES:
        raise InputError(f"unknown runtime '{runtime}'", "use --runtime tflm or --runtime native")
    if fmt != "folder" and board.platformio is None:
        raise InputError(f"board {board.id} is emulated, and a {fmt} is a library for a real "
                         "board's PlatformIO or Arduino build",
                         "use --format folder, or a real board's id from 'tinydeploy boards'")
    return runtime


def open_target(out: str | Path, fmt: str) -> Target:
    """Check ``out`` before any work: a new or empty folder, a previous export (its manifest is
    read), or for ``arduino-zip`` a new .zip or one tinydeploy exported. InputError otherwise."""
    shown = str(out)
    path = output.absolute(out)
    if fmt == "arduino-zip":
        if path.suffix.lower() != ".zip":
            raise InputError(f"-o {shown}: an arduino-zip is written to a .zip file",
                             "give a file name ending in .zip, e.g. -o model.zip")
        if path.is_dir():
            raise InputError(f"-o {shown} is a folder", "give the .zip file to write, e.g. -o model.zip")
        previous = _zip_manifest(path, shown) if path.exists() else None
        _check_parent(path, shown)
        return Target(path, shown, fmt, path.exists(), previous)
    if path.suffix.lower() == ".zip":
        raise InputError(f"-o {shown} names a .zip file, and a {fmt} export is a folder",
                         "pass --format arduino-zip for a zip, or give a folder name")
    if not path.exists():
        _check_parent(path, shown)
        return Target(path, shown, fmt, False, None)
    if not path.is_dir():
        raise InputError(f"{shown} exists and is not a folder", "choose another -o")
    previous = None
    if (path / MANIFEST).exists():
        previous = read_manifest(path / MANIFEST)
    else:
        try:
            empty = not any(path.iterdir())
        except OSError as exc:
            raise InputError(f"cannot read the folder {shown}: {exc.strerror or exc}",
                             "check its permissions, or choose another -o") from None
        if not empty:
            raise InputError(f"{shown} holds files that tinydeploy did not export (it has no "
                             f"{MANIFEST})", "give -o a new or empty folder, which the export "
                                             "creates; an export never writes among your files")
    output._check_writable(path, shown)
    return Target(path, shown, fmt, True, previous)


def _check_parent(path: Path, shown: str) -> None:
    """The nearest existing folder above ``path`` is a folder we can write in."""
    for candidate in path.parents:
        if candidate.exists():
            break
    if not candidate.is_dir():
        raise InputError(f"-o {shown} would be under {candidate}, which is a file",
                         "choose another -o")
    output._check_writable(candidate, shown)


_MANIFEST_FIX = ("restore it, or export to a new folder: without it tinydeploy cannot tell its files "
                 "from yours")


def read_manifest(path: Path, text: str | None = None) -> dict:
    """A previous export's manifest, with every path in it checked to stay inside the export."""
    if text is None:
        data = output.read_json_object(path, "the export manifest", _MANIFEST_FIX)
    else:
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise InputError(f"the export manifest {path} is not a JSON object", _MANIFEST_FIX)
    for key in ("files", "pending"):
        files = data.get(key, {})
        if not isinstance(files, dict) or not all(
                isinstance(k, str) and _safe_relative(k) and isinstance(v, str) and _SHA.match(v)
                for k, v in files.items()):
            raise InputError(f"the export manifest {path} has a damaged '{key}' list",
                             _MANIFEST_FIX)
    if "files" not in data:
        raise InputError(f"the export manifest {path} lists no files", _MANIFEST_FIX)
    return data


def _safe_relative(name: str) -> bool:
    """A path the manifest may name: relative, inside the export, in plain '/' form."""
    p = PurePosixPath(name)
    return (bool(name) and not p.is_absolute() and "\\" not in name and "\0" not in name
            and all(part not in ("", ".", "..") for part in name.split("/"))
            and name != MANIFEST)


def _zip_manifest(path: Path, shown: str) -> dict:
    not_ours = InputError(f"{shown} exists and is not a library zip that tinydeploy exported",
                          "choose another -o; an export replaces only a zip it wrote")
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            tops = {name.split("/", 1)[0] for name in names}
            manifests = [n for n in names if n.count("/") == 1 and n.endswith("/" + MANIFEST)]
            if len(tops) != 1 or len(manifests) != 1:
                raise not_ours
            text = archive.read(manifests[0]).decode("utf-8")
    except (zipfile.BadZipFile, OSError, UnicodeDecodeError, KeyError, RuntimeError):
        raise not_ours from None
    return read_manifest(path / manifests[0], text)


# --------------------------------------------------------------------------- one writer

_claimed: set[Path] = set()


@contextlib.contextmanager
def claim(out: str | Path):
    """Hold the target for this process until the block ends (tinydeploy.output's lock beside it:
    a second tinydeploy aiming at it stops at once, naming this one's pid). Nested claims of one
    target share the first. The lock also removes what a killed writer left beside the target."""
    path = output.absolute(out)
    if path in _claimed:
        yield path
        return
    lock = output._Claim(path, False)
    lock.acquire()
    _claimed.add(path)
    try:
        yield path
    finally:
        _claimed.discard(path)
        lock.release()


# --------------------------------------------------------------------------- the result

@dataclass
class Changes:
    """What a re-export changed, compared with the previous export's manifest."""

    previous: dict
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)

    def lines(self, now: dict) -> list[str]:
        before = self.previous
        old_sha = (before.get("model") or {}).get("sha256") or "?"
        new_sha = now["model"]["sha256"]
        lines = [f"model      sha256 {old_sha[:16]} -> {new_sha[:16]}"
                 + (" (unchanged)" if old_sha == new_sha else " (changed)")]
        for key, label in (("board", "board"), ("runtime", "runtime"), ("format", "format")):
            if before.get(key) != now[key]:
                lines.append(f"{label:<10} {before.get(key)} -> {now[key]}")
        old_arena, new_arena = before.get("arena_bytes"), now["arena_bytes"]
        if isinstance(old_arena, int) and old_arena != new_arena:
            lines.append(f"arena      {old_arena:,} B -> {new_arena:,} B "
                         f"({new_arena - old_arena:+,} B)")
        else:
            lines.append(f"arena      {new_arena:,} B (unchanged)")
        old_ops = [o for o in before.get("ops") or [] if isinstance(o, str)]
        added = [o for o in now["ops"] if o not in old_ops]
        removed = [o for o in old_ops if o not in now["ops"]]
        lines.append("ops        " + ("; ".join(
            part for part in (f"added {', '.join(added)}" if added else "",
                              f"removed {', '.join(removed)}" if removed else "") if part)
            or "unchanged"))
        return lines

    def to_dict(self) -> dict:
        return {"added": self.added, "updated": self.updated, "removed": self.removed,
                "unchanged": len(self.unchanged),
                "previous_model_sha256": (self.previous.get("model") or {}).get("sha256"),
                "previous_arena_bytes": self.previous.get("arena_bytes"),
                "previous_ops": self.previous.get("ops")}


@dataclass
class ExportResult:
    prepared: object                  # tinydeploy.build.Prepared
    check: CheckResult
    fmt: str
    target: Target
    library: str
    version: str
    manifest: dict | None = None      # what was written (None: nothing, the model does not fit)
    changes: Changes | None = None    # None for a first export
    others: list[str] = field(default_factory=list)   # the user's files beside it, left alone
    edits_replaced: list[str] = field(default_factory=list)   # its own files the user had edited

    @property
    def written(self) -> bool:
        return self.manifest is not None

    def to_dict(self) -> dict:
        p = self.prepared
        return {"tinydeploy": __version__, "format": self.fmt, "output": str(self.target.path),
                "written": self.written, "library": self.library, "version": self.version,
                "model": {"name": p.name, "source": str(p.source), "bytes": len(p.model_bytes),
                          "sha256": hashlib.sha256(p.model_bytes).hexdigest()},
                "check": self.check.to_dict(),
                "arena_bytes": self.check.arena,
                "files": sorted(self.manifest["files"]) if self.manifest else [],
                "changes": self.changes.to_dict() if self.changes else None,
                "left_alone": self.others, "edits_replaced": self.edits_replaced}


# --------------------------------------------------------------------------- export

def library_name(model_name: str) -> str:
    """The library's name in library.json / library.properties (also the zip's top folder)."""
    return c_identifier(model_name) + "_model"


def export(prepared, board: BoardProfile | str, *, runtime: str | None = None,
           fmt: str = "pio-lib", out: str | Path, force: bool = False) -> ExportResult:
    """Check ``prepared`` against ``board`` and export it to ``out`` as ``fmt`` (see the module
    doc). A model that does not fit is not written unless ``force`` (the result's ``written`` is
    then False); ``force`` also replaces generated files the user edited."""
    board = load_board(board) if isinstance(board, str) else board
    runtime = check_format(board, fmt, runtime)
    result = check(prepared.measured, board, runtime)
    target = open_target(out, fmt)
    library = library_name(prepared.name)
    version = _next_version(target.previous, prepared.model_bytes)
    exported = ExportResult(prepared, result, fmt, target, library, version)
    if not result.fits and not force:
        return exported
    if result.unsupported:
        raise InputError(f"cannot export for {board.id}: the {runtime} runtime lacks "
                         f"{', '.join(result.unsupported)}",
                         "choose the other --runtime, or replace the op in the model")
    with claim(target.path):
        target = open_target(out, fmt)   # again: it may have changed while the model was prepared
        exported.target = target
        exported.version = version = _next_version(target.previous, prepared.model_bytes)
        stage = _stage_folder(target.path)
        try:
            root = stage / library if fmt == "arduino-zip" else stage / "export"
            render(prepared, board, runtime, fmt, result, root, library, version)
            files = {rel: _sha256(root / rel) for rel in _walk(root)}
            manifest = _manifest(prepared, result, fmt, library, version, files)
            if fmt == "arduino-zip":
                _write_zip(root, manifest, target)
                exported.changes = _changes(target.previous, files)
            elif not target.exists:
                (root / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
                _rename_into_place(root, target)
            else:
                exported.changes, exported.others, exported.edits_replaced = _update(
                    root, manifest, target, force, stage)
        finally:
            shutil.rmtree(stage, ignore_errors=True)
    exported.manifest = manifest
    return exported


def _next_version(previous: dict | None, model_bytes: bytes) -> str:
    """1.0.0 for a first export; the minor number goes up each time the model changes, so the
    library's version says which model a firmware was built with."""
    if not previous:
        return "1.0.0"
    match = re.fullmatch(r"1\.(\d+)\.0", str(previous.get("version", "")))
    minor = int(match.group(1)) if match else 0
    same = (previous.get("model") or {}).get("sha256") == hashlib.sha256(model_bytes).hexdigest()
    return f"1.{minor if same else minor + 1}.0"


def _stage_folder(target: Path) -> Path:
    try:
        stage = Path(tempfile.mkdtemp(prefix=f".{target.name}{output.STAGE_TAG}",
                                      dir=target.parent))
    except OSError as exc:
        raise InputError(f"cannot write beside {target}: {exc.strerror or exc}",
                         "choose another -o") from None
    os.chmod(stage, output.folder_mode())
    return stage


def _manifest(prepared, result: CheckResult, fmt: str, library: str, version: str,
              files: dict[str, str]) -> dict:
    board = result.board
    return {
        "tinydeploy": __version__, "format": fmt, "library": library, "version": version,
        "board": board.id, "runtime": result.runtime,
        "model": {"name": prepared.name, "source": str(prepared.source),
                  "bytes": len(prepared.model_bytes),
                  "sha256": hashlib.sha256(prepared.model_bytes).hexdigest()},
        "arena_bytes": result.arena, "ops": list(prepared.analysis.distinct_ops),
        "fits": result.fits, "verdict": result.verdict(), "check": result.to_dict(),
        "tflm_dependencies": _tflm_deps(board, result.runtime),
        "files": dict(sorted(files.items())),
    }


def _walk(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --------------------------------------------------------------------------- rendering

def _c_string(text) -> str:
    """``text`` inside a C string literal: plain characters as they are, anything else (quotes,
    backslashes, '?' of trigraphs, non-ASCII as UTF-8 bytes) as a 3-digit octal escape."""
    out = []
    for byte in str(text).encode("utf-8"):
        ch = chr(byte)
        out.append(ch if 32 <= byte < 127 and ch not in '"\\?' else f"\\{byte:03o}")
    return "".join(out)


def _environment():
    env = environment("export")
    env.filters["c_string"] = _c_string
    env.filters["thousands"] = lambda n: f"{n:,}"
    return env


def _tflm_deps(board: BoardProfile, runtime: str) -> list[str]:
    return list(board.platformio.lib_deps) if runtime == "tflm" and board.platformio else []


def _pio_dependency(spec: str, library: str) -> dict:
    """A lib_deps entry of a board profile as a library.json dependency."""
    if "://" in spec:                      # a pinned repository: PlatformIO needs its name
        return {"name": library, "version": spec}
    name, _, version = spec.partition("@")
    owner, _, name = name.rpartition("/")
    return {**({"owner": owner} if owner else {}), "name": name, "version": version or "*"}


def _pio_platform(platform: str) -> str:
    """library.json names platforms, not their URLs: a custom platform's repository
    (…/platform-apollo3blue.git) is the platform called apollo3blue."""
    if "/" not in platform:
        return platform
    name = platform.rstrip("/").rsplit("/", 1)[-1].split("#")[0]
    name = name[:-4] if name.endswith(".git") else name
    return name[len("platform-"):] if name.startswith("platform-") else name


def _arduino_depends(deps: list[str]) -> str:
    """library.properties ``depends`` for registry libraries (name (=version)); a library pinned
    to a repository commit cannot be installed by the IDE, and is explained in the README instead."""
    names = []
    for spec in deps:
        if "://" in spec:
            continue
        name, _, version = spec.partition("@")
        name = name.rpartition("/")[2]
        names.append(f"{name} (={version})" if version else name)
    return ", ".join(names)


def render(prepared, board: BoardProfile, runtime: str, fmt: str, result: CheckResult, root: Path,
           library: str, version: str) -> None:
    """Write the export's files (all but the manifest) into the new folder ``root``."""
    a = prepared.analysis
    gen = root / GENERATED
    if runtime == "tflm":
        note = (f"What {board.tflm.library} ({board.tflm.kernels} kernels) needs to initialise this "
                f"model, {result.source}.")
    else:
        note = "The native runtime's static arena, planned at build time (exact)."
    sources = ModelSources(prepared.name, prepared.model_bytes, a, board, runtime, result.arena,
                           result.arena, note)
    render_model_sources(sources, gen)
    if runtime == "tflm":
        from tinydeploy.render import write_op_resolver

        (gen / "model_data.cc").rename(gen / "model_data.cpp")  # .cpp: every Arduino IDE builds it
        write_op_resolver(gen, prepared.name, a.distinct_ops)
    else:
        from tinydeploy import native

        for name in ("model_data.h", "model_data.cc"):  # the native runtime has no flatbuffer
            (gen / name).unlink()
        native.compile_model(prepared.model_bytes, gen, name=NATIVE_NAME)
    shutil.copyfile(firmware_dir() / "td_runtime.h", gen / "td_runtime.h")
    for path in gen.iterdir():   # the rendered files say how to regenerate them: by exporting
        text = path.read_text()
        if "re-run `tinydeploy build`" in text:
            path.write_text(text.replace("re-run `tinydeploy build`", "re-run `tinydeploy export`"))

    deps = _tflm_deps(board, runtime)
    pio = board.platformio
    context = sources.context() | {
        "format": fmt, "library": library, "lib_version": version, "fits": result.fits,
        "verdict": result.verdict(), "arena_source": result.source,
        "arena_measured": result.source.startswith("measured"),
        "memory_table": _memory_table(result),
        "runtime_text": ("TensorFlow Lite Micro: " + board.tflm.library + f" with {board.tflm.kernels}"
                         " kernels" if runtime == "tflm" else
                         "native: the model compiled to C99 by tinydeploy (no interpreter, no "
                         "dependency)"),
        "tflm_deps": deps, "arduino_depends": _arduino_depends(deps),
        "tflm_commit": next((d.split("#", 1)[1] for d in deps if "#" in d), ""),
        "sources": sorted(p.name for p in gen.iterdir() if p.suffix in (".c", ".cpp")),
        "baud": board.serial.baud,
        "accuracy": prepared.accuracy.summary() if prepared.accuracy is not None else "",
        "warnings": [*prepared.quantization.warnings, *result.warnings],
        "output_float": bool(a.outputs) and a.outputs[0].dtype == "float32",
    }
    env = _environment()
    if runtime == "tflm":
        adapter = (firmware_dir() / "tflm" / "td_runtime_tflm.cc").read_text()
        (gen / "td_runtime_tflm.cpp").write_text(env.get_template("td_runtime_tflm.cpp.j2").render(
            adapter=adapter.rstrip("\n"), umbrella=pio.tflm_header if pio else "",
            library_name=board.tflm.library, board_id=board.id))
    (root / "src" / API_HEADER).write_text(env.get_template("tinydeploy_model.h.j2").render(
        **context))
    (root / "README.md").write_text(env.get_template("README.md.j2").render(**context))
    (root / "model.tflite").write_bytes(prepared.model_bytes)
    if fmt != "folder":
        example = root / EXAMPLE
        example.parent.mkdir(parents=True)
        example.write_text(env.get_template("Inference.ino.j2").render(**context))
    if fmt == "pio-lib":
        (root / "library.json").write_text(json.dumps(_library_json(
            library, version, prepared.name, board, runtime, deps), indent=2) + "\n")
    elif fmt == "arduino-zip":
        (root / "library.properties").write_text(_library_properties(
            library, version, prepared.name, board, runtime, context["arduino_depends"]))


def _memory_table(result: CheckResult) -> str:
    from tinydeploy.report import memory_table

    return memory_table(result)


def _description(model_name: str, board: BoardProfile, runtime: str) -> str:
    what = ("TensorFlow Lite Micro" if runtime == "tflm" else "tinydeploy's native C runtime")
    text = (f"The int8 model {model_name} with {what}, exported by tinydeploy for {board.name}: "
            "td_model_init/input/invoke/output.")
    return " ".join(text.split())[:900]


def _library_json(library: str, version: str, model_name: str, board: BoardProfile, runtime: str,
                  deps: list[str]) -> dict:
    data = {"name": library, "version": version,
            "description": _description(model_name, board, runtime),
            "keywords": ["tinydeploy", "tflite", "tinyml"],
            "headers": [API_HEADER]}
    if runtime == "tflm":
        data["frameworks"] = [board.platformio.framework]
        data["platforms"] = [_pio_platform(board.platformio.platform)]
        data["dependencies"] = [_pio_dependency(d, board.tflm.library) for d in deps]
        # Follow #includes inside libraries (and their #if), as the projects of `build` do.
        data["build"] = {"libLDFMode": "chain+"}
    else:
        data["frameworks"] = ["*"]
        data["platforms"] = ["*"]
    data["export"] = {"exclude": [MANIFEST]}
    return data


def _properties_value(text: str) -> str:
    return " ".join(str(text).split())


def _library_properties(library: str, version: str, model_name: str, board: BoardProfile,
                        runtime: str, depends: str) -> str:
    lines = [f"name={library}", f"version={version}", "author=tinydeploy export",
             "maintainer=tinydeploy export",
             f"sentence={_properties_value(_description(model_name, board, runtime))}",
             "paragraph=Generated: re-run tinydeploy export to update it. The API is "
             "tinydeploy_model.h; see README.md.",
             "category=Data Processing", "architectures=*", f"includes={API_HEADER}"]
    if depends:
        lines.append(f"depends={depends}")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- writing

def _write_zip(root: Path, manifest: dict, target: Target) -> None:
    """The library folder as a zip (one top folder, as the Arduino IDE wants), written beside the
    target and renamed over it."""
    fd, tmp = tempfile.mkstemp(prefix=f".{target.path.name}{output.STAGE_TAG}",
                               dir=target.path.parent)
    os.close(fd)
    try:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as archive:
            entries = [(rel, (root / rel).read_bytes()) for rel in _walk(root)]
            entries.append((MANIFEST, (json.dumps(manifest, indent=2) + "\n").encode()))
            for rel, data in sorted(entries):
                info = zipfile.ZipInfo(f"{root.name}/{rel}", _ZIP_DATE)
                info.external_attr = 0o644 << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                archive.writestr(info, data)
        os.chmod(tmp, 0o666 & ~output._umask())
        os.replace(tmp, target.path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _rename_into_place(root: Path, target: Target) -> None:
    try:
        os.rename(root, target.path)
    except OSError as exc:
        raise InputError(f"cannot write {target.shown}: {exc.strerror or exc}",
                         "choose another -o") from None


def _changes(previous: dict | None, files: dict[str, str]) -> Changes | None:
    if previous is None:
        return None
    old = previous["files"]
    changes = Changes(previous)
    for rel, sha in files.items():
        (changes.unchanged if old.get(rel) == sha else
         changes.updated if rel in old else changes.added).append(rel)
    changes.removed = sorted(set(old) - set(files))
    return changes


def _state(folder: Path, rel: str) -> tuple[str, str | None]:
    """What stands at ``folder/rel``: ("missing", None), ("file", its sha256), or ("other", what
    blocks it) — a link or a folder there, or a link or a file on the way (never written through)."""
    path, walked = folder, []
    for part in rel.split("/"):
        path = path / part
        walked.append(part)
        last = len(walked) == len(rel.split("/"))
        if path.is_symlink():
            return "other", f"{'/'.join(walked)} (a link)"
        if not path.exists():
            return "missing", None
        if not last and not path.is_dir():
            return "other", f"{'/'.join(walked)} (a file)"
    if not path.is_file():
        return "other", f"{rel} (a folder)"
    return "file", _sha256(path)


def _update(root: Path, manifest: dict, target: Target, force: bool,
            stage: Path) -> tuple[Changes | None, list[str], list[str]]:
    """Update the export at ``target`` in place with the files under ``root`` (see the module doc);
    return what changed, the user's files left alone and the edited files replaced (``force``)."""
    folder, previous = target.path, target.previous
    new = manifest["files"]
    ours: dict[str, set[str]] = {}
    for key in ("files", "pending"):
        for rel, sha in (previous or {}).get(key, {}).items():
            ours.setdefault(rel, set()).add(sha)
    theirs, edited, to_place, to_remove = [], [], [], []
    for rel, sha in new.items():
        kind, disk = _state(folder, rel)
        if kind == "file" and disk == sha:
            continue                     # already what the export would write
        if kind == "other":
            theirs.append(disk)
        elif kind == "file" and rel not in ours:
            theirs.append(rel)
        elif kind == "file" and disk not in ours[rel]:
            edited.append(rel)
        to_place.append(rel)
    for rel in sorted(set(ours) - set(new)):
        kind, disk = _state(folder, rel)
        if kind == "file":
            if disk not in ours[rel]:
                edited.append(rel)
            to_remove.append(rel)
    if theirs:
        theirs = list(dict.fromkeys(theirs))
        raise InputError(f"{target.shown} holds {_some(theirs)} where the export writes, and "
                         f"tinydeploy did not write {'it' if len(theirs) == 1 else 'them'}",
                         f"move or rename your file{'s' if len(theirs) > 1 else ''}: an export "
                         f"never overwrites a file its {MANIFEST} does not list")
    if edited and not force:
        raise InputError(f"{_some(edited)} in {target.shown} changed since tinydeploy exported "
                         f"{'it' if len(edited) == 1 else 'them'}",
                         "move your changes out of the export, whose files are replaced on every "
                         "export, or pass --force to replace them")
    changes = _changes(previous, new)
    if changes is not None:   # a folder emptied by the user is compared with the manifest, too
        changes.removed = [rel for rel in changes.removed if rel in to_remove]
    _apply(folder, root, manifest, previous, to_place, to_remove, stage)
    others = sorted(rel for rel in _walk(folder) if rel not in new and rel != MANIFEST)
    return changes, others, sorted(edited)


def _some(names: list[str]) -> str:
    shown = ", ".join(names[:3])
    return shown + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def _apply(folder: Path, root: Path, manifest: dict, previous: dict | None, to_place: list[str],
           to_remove: list[str], stage: Path) -> None:
    """Move the old files aside, the new ones in, then write the manifest; undo it all on failure."""
    manifest_path = folder / MANIFEST
    old_manifest = manifest_path.read_bytes() if manifest_path.exists() else None
    pending = dict(previous or {"files": {}})
    pending["pending"] = {rel: manifest["files"][rel] for rel in to_place}
    backup = stage / "old"
    moved_aside: list[str] = []
    placed: list[str] = []
    made: list[Path] = []
    try:
        _write_json(manifest_path, pending, stage)
        for rel in sorted(set(to_place) | set(to_remove)):
            if (folder / rel).exists():
                (backup / rel).parent.mkdir(parents=True, exist_ok=True)
                os.rename(folder / rel, backup / rel)
                moved_aside.append(rel)
        for rel in to_place:
            made += _make_folders(folder, rel)
            os.rename(root / rel, folder / rel)
            placed.append(rel)
        _write_json(manifest_path, manifest, stage)
    except BaseException:
        for rel in placed:
            with contextlib.suppress(OSError):
                os.unlink(folder / rel)
        for rel in moved_aside:
            with contextlib.suppress(OSError):
                os.rename(backup / rel, folder / rel)
        for path in reversed(made):
            with contextlib.suppress(OSError):
                os.rmdir(path)
        with contextlib.suppress(OSError):
            if old_manifest is None:
                manifest_path.unlink()
            else:
                manifest_path.write_bytes(old_manifest)
        raise
    for rel in to_remove:   # folders the removed files leave empty go too (never the export's own)
        parent = (folder / rel).parent
        while parent != folder:
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent


def _make_folders(folder: Path, rel: str) -> list[Path]:
    made = []
    path = folder
    for part in rel.split("/")[:-1]:
        path = path / part
        if not path.exists():
            path.mkdir()
            made.append(path)
    return made


def _write_json(path: Path, data: dict, stage: Path) -> None:
    tmp = stage / f"{path.name}.tmp"
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.chmod(tmp, 0o666 & ~output._umask())
    os.replace(tmp, path)
