"""The build pipeline: load -> quantize -> (evaluate) -> analyze -> check -> render.

``prepare()`` runs the board-independent part once; ``build()`` adds the board's check and writes
the project. Both are plain functions over dataclasses, so tests and scripts use them directly.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from tinydeploy import __version__, report
from tinydeploy.analyze import Analysis, analyze
from tinydeploy.boards import BoardProfile, load_board
from tinydeploy.check import RUNTIMES, CheckResult, Measured, check, measure
from tinydeploy.errors import InputError
from tinydeploy.output import MANIFEST, staged_output
from tinydeploy.render import ModelSources


@dataclass
class Prepared:
    """A model quantized, analyzed and measured: everything that does not depend on the board."""

    name: str
    source: Path
    quantization: object            # tinydeploy.quantize.QuantizeResult
    analysis: Analysis
    measured: Measured
    accuracy: object | None = None  # tinydeploy.evaluate.AccuracyReport

    @property
    def model_bytes(self) -> bytes:
        return self.quantization.tflite


def prepare(model_path: str | Path, *, calib: str | None = None, calib_samples: int | None = None,
            io: str = "int8", eval_data: str | None = None, isolate: bool = True,
            tflm_library=None, progress=None) -> Prepared:
    """Load, quantize (and with ``eval_data`` evaluate) the model, then analyze and measure it.

    ``tflm_library`` (a tinydeploy.tflm_lib.TflmLibrary) is the TFLM library that the tflm runtime's
    arena and code are measured with, board by board, when a check asks (tinydeploy.check).

    Whatever needs TensorFlow (a Keras or SavedModel model, a float .tflite) runs in a child
    process unless ``isolate`` is False (tinydeploy.isolation): a crash of TensorFlow's converter
    then becomes a ModelError instead of killing the caller. A full-int8 .tflite needs no
    TensorFlow and is handled here.
    """
    from tinydeploy import isolation
    from tinydeploy.loading import check_model_path

    path = Path(model_path)
    check_model_path(path)
    isolation.remove_orphans()  # what a killed tinydeploy's converter call left in the temp dir
    if isolate and _needs_tensorflow(path):
        name, quantized, accuracy = isolation.run(
            "tinydeploy.build", "convert", path, calib=calib, calib_samples=calib_samples, io=io,
            eval_data=eval_data, crash_fix=CONVERTER_CRASH_FIX)
    else:
        name, quantized, accuracy = convert(path, calib=calib, calib_samples=calib_samples, io=io,
                                            eval_data=eval_data)
    analysis = analyze(quantized.tflite)
    return Prepared(name, path, quantized, analysis,
                    measure(quantized.tflite, analysis, tflm_library, progress), accuracy)


CONVERTER_CRASH_FIX = ("a bug in TensorFlow that this model triggers; check that the model converts "
                       "to a float .tflite with tf.lite.TFLiteConverter, replace the layer it fails "
                       "on, or pass a ready full-int8 .tflite")


def _needs_tensorflow(path: Path) -> bool:
    """Keras and SavedModel models do; a .tflite only when it is float (to be quantized)."""
    if path.is_dir() or path.suffix.lower() != ".tflite":
        return True
    from tinydeploy.loading import FLOAT, load_model

    return load_model(path).tflite_kind == FLOAT


def convert(model_path: Path, *, calib: str | None = None, calib_samples: int | None = None,
            io: str = "int8", eval_data: str | None = None):
    """(name, QuantizeResult, AccuracyReport or None) of the model: the part of ``prepare`` that
    may need TensorFlow, and that ``prepare`` runs in the isolation worker."""
    from tinydeploy.data import load_samples
    from tinydeploy.isolation import stage
    from tinydeploy.loading import load_model
    from tinydeploy.quantize import quantize

    stage(f"loading the model {model_path}",
          "the file may be damaged, or trigger a bug in Keras/TensorFlow; save the model again")
    loaded = load_model(model_path)
    random_calib = calib == "random"
    samples = None
    if calib and not random_calib:
        stage(f"reading the calibration samples {calib}",
              "fix the calibration data or function: it crashed the process reading it")
        samples = load_samples(calib, input_shape=loaded.input_shape, limit=calib_samples,
                               what="calibration samples")
    eval_samples = None
    if eval_data:  # read before the long conversion, so a bad file fails fast
        stage(f"reading the evaluation samples {eval_data}",
              "fix the evaluation data or function: it crashed the process reading it")
        eval_samples = load_samples(eval_data, input_shape=loaded.input_shape,
                                    what="evaluation samples")
    quantized = quantize(loaded, samples, io=io, calib_samples=calib_samples,
                         random_calib=random_calib)
    accuracy = None
    if eval_samples is not None:
        from tinydeploy.evaluate import evaluate

        stage(f"evaluating {loaded.name} (float against int8)")
        accuracy = evaluate(loaded, quantized.tflite, eval_samples)
    return loaded.name, quantized, accuracy


@dataclass
class BuildResult:
    prepared: Prepared
    check: CheckResult
    out_dir: Path | None                      # None when nothing was rendered
    files: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        p = self.prepared
        return {
            "tinydeploy": __version__,
            "model": {"name": p.name, "source": str(p.source), "bytes": len(p.model_bytes),
                      "sha256": hashlib.sha256(p.model_bytes).hexdigest()},
            "quantization": p.quantization.to_dict(),
            "accuracy": p.accuracy.to_dict() if p.accuracy else None,
            "analysis": p.analysis.to_dict(),
            "tflm_arena": p.measured.tflm.to_dict() if p.measured.tflm else None,
            "tflm_library": p.measured.library.to_dict() if p.measured.library else None,
            "check": self.check.to_dict(),
            "output": str(self.out_dir) if self.out_dir else None,
            "files": self.files,
        }


def default_out_dir(name: str, board: BoardProfile) -> Path:
    return Path("build") / f"{name}-{board.id}"


def model_name(model_path: str | Path) -> str:
    """The name ``prepare`` will give the model at ``model_path`` (known before loading it)."""
    path = Path(model_path)
    if path.is_dir():
        return path.name if path.name not in ("", ".", "..") else path.resolve().name
    return path.stem


def build(prepared: Prepared, board: BoardProfile | str, *, runtime: str | None = None,
          out_dir: str | Path | None = None, force: bool = False,
          protocol: str = "tinydeploy", profile: bool = False) -> BuildResult:
    """Check the prepared model against ``board`` and render its firmware project.

    When the model does not fit (or the runtime lacks an op) nothing is rendered unless ``force``;
    the returned result's ``out_dir`` is then None and ``check.fits`` False. ``protocol`` "eembc"
    gives a firmware that speaks EEMBC's MLPerf Tiny benchmark protocol (tinydeploy.eembc).
    ``profile`` builds a real board's firmware with TD_PROFILE, so that it times every layer
    (validate --profile; emulated boards build that firmware at validate time).
    """
    from tinydeploy.eembc import check_protocol, settings_for

    board = load_board(board) if isinstance(board, str) else board
    runtime = runtime or board.default_runtime
    if runtime not in RUNTIMES:
        raise InputError(f"unknown runtime '{runtime}'", "use --runtime tflm or --runtime native")
    if check_protocol(protocol) == "eembc":
        settings_for(prepared.analysis, prepared.name)  # a model it cannot serve fails before any work
    result = check(prepared.measured, board, runtime)
    if not result.fits and not force:
        return BuildResult(prepared, result, None)
    if result.unsupported:
        raise InputError(f"cannot render for {board.id}: the {runtime} runtime lacks "
                         f"{', '.join(result.unsupported)}",
                         "choose the other --runtime, or replace the op in the model")
    out = Path(out_dir) if out_dir else default_out_dir(prepared.name, board)
    build_result = BuildResult(prepared, result, out)
    with staged_output(out, force) as stage:
        _render(prepared, board, runtime, result, stage, protocol, profile)
        build_result.files = sorted(str(p.relative_to(stage)) for p in stage.rglob("*")
                                    if p.is_file())
        _write_reports(build_result, stage, protocol)
    build_result.files += [MANIFEST, "report.json", "REPORT.md", report.MEMORY_CHART]
    if board.origin != "bundled":
        build_result.files.append(board_file_name(board))
    return build_result


def board_file_name(board: BoardProfile) -> str:
    """The name of the copy of a user's board file in a project built for it (the file's name
    is its id, as board files require)."""
    return f"{board.id}.toml"


def _render(prepared: Prepared, board: BoardProfile, runtime: str, result: CheckResult,
            stage: Path, protocol: str = "tinydeploy", profile: bool = False) -> None:
    from tinydeploy import projects

    arena_needed = arena = result.arena
    if runtime == "tflm":
        note = (f"What {board.tflm.library} ({board.tflm.kernels} kernels) needs to initialise this "
                f"model, {result.source}.")
    else:
        note = "The native runtime's static arena, planned at build time (exact)."
    sources = ModelSources(prepared.name, prepared.model_bytes, prepared.analysis, board, runtime,
                           arena, arena_needed, note,
                           board.external_ram if result.arena_external else None, profile)
    (stage / "model.tflite").write_bytes(prepared.model_bytes)
    projects.render_project(stage, sources, protocol)


def _write_reports(result: BuildResult, stage: Path, protocol: str = "tinydeploy") -> None:
    data = result.to_dict()
    (stage / "report.json").write_text(json.dumps(data, indent=2) + "\n")
    report.write_report(result, stage)  # REPORT.md and its chart
    manifest = {"tinydeploy": __version__, "board": result.check.board.id,
                "runtime": result.check.runtime, "model": "model.tflite",
                "model_sha256": data["model"]["sha256"], "name": result.prepared.name}
    board = result.check.board
    if board.origin != "bundled":
        # the user's own board file travels with the project: flash and validate find it there,
        # even after the original is moved or edited
        (stage / board_file_name(board)).write_bytes(Path(board.source).read_bytes())
        manifest["board_file"] = board_file_name(board)
    if result.check.runtime == "tflm" and data["tflm_library"]:
        manifest["tflm_library"] = data["tflm_library"]  # found again by flash and validate
    if protocol != "tinydeploy":  # the default leaves the manifest as it always was
        from tinydeploy.eembc import settings_for

        manifest["protocol"] = protocol
        manifest["eembc"] = settings_for(result.prepared.analysis, result.prepared.name).to_dict()
    (stage / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")


def read_manifest(project_dir: str | Path) -> dict:
    """The manifest of a rendered project, with a clear error for folders that are not one, and
    for a manifest that is unreadable, not a JSON object, or lacks what flash/validate need."""
    from tinydeploy.output import read_json_object

    folder = Path(project_dir)
    path = folder / MANIFEST
    if not folder.is_dir():
        raise InputError(f"project folder not found: {project_dir}",
                         "pass a folder written by 'tinydeploy build'")
    if not path.is_file():
        raise InputError(f"{project_dir} is not a tinydeploy project (no {MANIFEST})",
                         "pass a folder written by 'tinydeploy build'")
    fix = "rebuild the project with 'tinydeploy build ... --force'"
    manifest = read_json_object(path, "the project manifest", fix)
    for key in ("board", "runtime", "model"):
        if not isinstance(manifest.get(key), str) or not manifest[key]:
            raise InputError(f"the project manifest {path} has no valid '{key}'", fix)
    model = manifest["model"]
    if Path(model).name != model or model in (".", ".."):
        raise InputError(f"the project manifest {path} names a model outside the project "
                         f"({model!r})", fix)
    if not (folder / model).is_file():
        raise InputError(f"the project {project_dir} lacks its model file {model}", fix)
    board_file = manifest.get("board_file")
    if board_file is not None and (not isinstance(board_file, str) or not board_file
                                   or Path(board_file).name != board_file
                                   or not (folder / board_file).is_file()):
        raise InputError(f"the project {project_dir} lacks the board file its manifest names "
                         f"({board_file!r})", fix)
    return manifest


def project_board(project_dir: str | Path, manifest: dict):
    """The board a project was built for: its own copy of a user's board file, else the id."""
    from tinydeploy.boards import load_board, load_board_file

    if manifest.get("board_file"):
        return load_board_file(Path(project_dir) / manifest["board_file"])
    return load_board(manifest["board"])
