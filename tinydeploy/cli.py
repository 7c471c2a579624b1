"""The ``tinydeploy`` command: a thin click layer over the stage functions.

Every command parses options, calls stages, prints. Problems the user can fix arrive as
TinydeployError and leave as one ``error:`` line with a non-zero exit; anything else is a bug and
says so (set TINYDEPLOY_DEBUG=1 for its traceback). Progress goes to stderr, results to stdout,
so ``--json`` output can be piped.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import sys
from pathlib import Path

import click

from tinydeploy import __version__
from tinydeploy.errors import InputError, TinydeployError

DEFAULT_EMULATED_BOARD = "qemu-m4"


def one_line(text: str) -> str:
    """``text`` with control characters shown as escapes: a name holding a newline (a file name,
    a tensor name) must not break an error or status line in two."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in str(text))


def _fail(message: str, code: int, details=()) -> None:
    """One ``error:`` line; an error made of several mistakes (a board file's) lists each one
    indented below it, one line per mistake."""
    click.echo(f"error: {one_line(message)}", err=True)
    for detail in details:
        click.echo(f"  {one_line(detail)}", err=True)
    sys.exit(code)


def friendly_errors(fn):
    """Turn TinydeployError into one line + exit code; never show a traceback to a user."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except TinydeployError as exc:
            _fail(str(exc), exc.exit_code, getattr(exc, "details", ()))
        except Terminated as exc:  # SIGTERM/SIGHUP: unwound like Ctrl-C, so QEMU and folders are cleaned
            _fail(f"terminated by {signal.Signals(exc.signum).name}", 128 + exc.signum)
        except KeyboardInterrupt:
            _fail("interrupted", 130)
        except (click.exceptions.Exit, click.ClickException, SystemExit):
            raise
        except BrokenPipeError:  # the reader went away (`| head`): stop quietly, like any tool
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            sys.exit(141)
        except Exception as exc:  # noqa: BLE001 - the last line of defence
            if os.environ.get("TINYDEPLOY_DEBUG"):
                raise
            _fail(f"internal error: {type(exc).__name__}: {exc} "
                  "(a bug in tinydeploy; rerun with TINYDEPLOY_DEBUG=1 and report the traceback)", 3)

    return wrapper


def status(message: str) -> None:
    click.echo(one_line(message), err=True)


def emit_json(data) -> None:
    click.echo(json.dumps(data, indent=2))


# --------------------------------------------------------------------------- shared options

def model_options(fn):
    """Options for turning MODEL into an int8 .tflite (shared by build, check, inspect, ...)."""
    for decorator in reversed([
        click.argument("model", type=click.Path(path_type=Path)),
        click.option("--calib", metavar="DATA",
                     help="Calibration samples: .npy (samples on axis 0), .npz (array x), "
                          "'module:function' returning samples, or 'random' (smoke tests only)."),
        click.option("--calib-samples", type=click.IntRange(1), metavar="N",
                     help="Use at most N calibration samples."),
        click.option("--io", type=click.Choice(["int8", "float"]), default="int8", show_default=True,
                     help="Type of the model's input/output tensors on the device."),
    ]):
        fn = decorator(fn)
    return fn


def tflm_lib_option(fn):
    """--tflm-lib: the TFLM library to build tflm firmware with, measure it with and validate
    against (default: $TINYDEPLOY_TFLM_LIB, then the project's PlatformIO libdeps)."""
    return click.option(
        "--tflm-lib", "tflm_lib", metavar="DIR", type=click.Path(path_type=Path),
        help="TFLM library folder (Arduino_TensorFlowLite, e.g. .pio/libdeps/<env>/"
             "Arduino_TensorFlowLite); default $TINYDEPLOY_TFLM_LIB.")(fn)


def _library(tflm_lib):
    """The TFLM library from --tflm-lib or the environment (a bad --tflm-lib fails here)."""
    from tinydeploy.tflm_lib import find_library

    return find_library(tflm_lib)


def _require_runtime_buildable(board, runtime, library) -> None:
    """Refuse, before any work, a tflm firmware for an emulated board with no library to build it."""
    from tinydeploy.tflm_lib import require_library

    if (runtime or board.default_runtime) == "tflm" and board.emulated and library is None:
        require_library(None)


def _refuse_profiled_eembc(profile: bool, protocol: str) -> None:
    if profile and protocol == "eembc":
        raise InputError("--profile times layers over tinydeploy's protocol, not EEMBC's",
                         "leave out --protocol eembc, or --profile")


def _prepare(model: Path, calib, calib_samples, io, eval_data=None, tflm_library=None):
    from tinydeploy.build import prepare

    status(f"loading {model} ...")
    return prepare(model, calib=calib, calib_samples=calib_samples, io=io, eval_data=eval_data,
                   tflm_library=tflm_library, progress=status)


def _out_dir(model: Path, board, out_dir: Path | None) -> Path:
    """The project folder: -o, or build/<model name>-<board> (known before loading the model)."""
    from tinydeploy.build import default_out_dir, model_name
    from tinydeploy.loading import check_model_path

    if out_dir is not None:
        return out_dir
    check_model_path(model)  # its name must be a model's before it names a folder
    return default_out_dir(model_name(model), board)


def _boards(board_id: str):
    from tinydeploy.boards import list_boards, load_board

    return list_boards() if board_id == "all" else [load_board(board_id)]


# --------------------------------------------------------------------------- the group

@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="tinydeploy")
def cli():
    """tinydeploy: from a trained Keras model to verified int8 inference on a microcontroller.

    \b
    Examples:
      tinydeploy build examples/digits/digits.keras --board nano33ble \\
          --calib examples/digits/calib.npz --eval examples/digits/eval.npz
      tinydeploy check model.tflite --board all
      tinydeploy deploy examples/digits/digits.keras --calib examples/digits/calib.npz \\
          --samples examples/digits/eval.npz      # builds, runs on QEMU, validates
    """


@cli.command()
@model_options
@click.option("--board", "-b", required=True, metavar="ID|FILE",
              help="Board profile id (see 'tinydeploy boards') or a board .toml file of yours.")
@click.option("--runtime", type=click.Choice(["tflm", "native"]),
              help="Runtime on the device (default: the board's; tflm on real boards).")
@click.option("--protocol", type=click.Choice(["tinydeploy", "eembc"]), default="tinydeploy",
              show_default=True, help="What the firmware speaks: tinydeploy's protocol (validate) or "
                                      "EEMBC's MLPerf Tiny benchmark protocol (benchmark, the "
                                      "official runner; firmware/EEMBC.md).")
@click.option("--eval", "eval_data", metavar="DATA", help="Samples (.npz with x, optional y) for the float-vs-int8 accuracy report.")
@click.option("-o", "--out", "out_dir", type=click.Path(path_type=Path),
              help="Output folder (default build/<model>-<board>).")
@click.option("--force", is_flag=True, help="Replace an existing output folder; render even if the model does not fit.")
@click.option("--json", "as_json", is_flag=True, help="Print the build report as JSON.")
@click.option("--profile", is_flag=True,
              help="Build a real board's firmware with TD_PROFILE: it times every layer for "
                   "'validate --profile' (emulated boards build that firmware when validating).")
@tflm_lib_option
@friendly_errors
def build(model, calib, calib_samples, io, board, runtime, eval_data, out_dir, force, as_json,
          tflm_lib, protocol, profile):
    """Quantize MODEL, check it against a board and render its firmware project.

    \b
    MODEL: .keras, .h5 (Keras 2 files too), a SavedModel folder, or a .tflite
    (a full-int8 .tflite is used as is).
    \b
    Example:
      tinydeploy build examples/sine/sine.keras --board nano33ble \\
          --calib examples/sine/calib.npz --eval examples/sine/eval.npz
    """
    from tinydeploy.boards import load_board
    from tinydeploy.build import build as run_build
    from tinydeploy.output import claim_output

    board_profile = load_board(board)
    library = _library(tflm_lib)
    _refuse_profiled_eembc(profile, protocol)
    out_dir = _out_dir(model, board_profile, out_dir)
    with claim_output(out_dir, force):  # checked and held before the seconds of quantization
        prepared = _prepare(model, calib, calib_samples, io, eval_data, library)
        result = run_build(prepared, board_profile, runtime=runtime, out_dir=out_dir, force=force,
                           protocol=protocol, profile=profile)
    if as_json:
        emit_json(result.to_dict())
    else:
        _print_build(result)
    if result.out_dir is None:
        _fail(f"{result.check.verdict()}; nothing rendered (--force renders anyway)", 1)


def _print_model_and_board(result) -> None:
    """The first lines of build's and export's reports: warnings, model, accuracy, board."""
    p, c = result.prepared, result.check
    for w in [*p.quantization.warnings, *c.warnings]:
        status(f"warning: {w}")
    click.echo(f"model      {p.name}: {len(p.model_bytes):,} B int8 .tflite, "
               f"{len(p.analysis.ops)} ops, {p.analysis.total_macs:,} MACs")
    if p.accuracy is not None:
        click.echo("accuracy   " + p.accuracy.summary())
    click.echo(f"board      {c.board.name} ({c.board.id}), runtime {c.runtime}")


def _print_build(result) -> None:
    from tinydeploy.report import memory_table

    c = result.check
    _print_model_and_board(result)
    click.echo(memory_table(c))
    click.echo(f"verdict    {c.verdict()}")
    if result.out_dir:
        click.echo(f"wrote      {result.out_dir}/ ({len(result.files)} files; see REPORT.md)")


@cli.command()
@model_options
@click.option("--board", "-b", required=True, metavar="ID|FILE|all",
              help="Board profile id, a board .toml file of yours, or 'all' for a matrix.")
@click.option("--runtime", type=click.Choice(["tflm", "native"]), help="Runtime (default: each board's).")
@click.option("--json", "as_json", is_flag=True, help="Print the verdict(s) as JSON.")
@tflm_lib_option
@friendly_errors
def check(model, calib, calib_samples, io, board, runtime, as_json, tflm_lib):
    """Do MODEL's ops run on the runtime, and do flash and RAM fit the board?

    Exit 1 when it does not fit (with --board all: when it fits no board).

    \b
    Examples:
      tinydeploy check model.tflite --board nano33ble
      tinydeploy check model.tflite --board all --json
    """
    from tinydeploy.check import check as run_check
    from tinydeploy.report import check_matrix, memory_table

    boards = _boards(board)
    prepared = _prepare(model, calib, calib_samples, io, tflm_library=_library(tflm_lib))
    results = [run_check(prepared.measured, b, runtime) for b in boards]
    for w in dict.fromkeys(w for r in results for w in r.warnings):
        status(f"warning: {w}")
    if as_json:
        emit_json(results[0].to_dict() if board != "all" else [r.to_dict() for r in results])
    elif board == "all":
        click.echo(check_matrix(results))
    else:
        click.echo(memory_table(results[0]))
        if runtime is None:  # the other runtime's verdict, for comparison
            other = "tflm" if results[0].runtime == "native" else "native"
            click.echo(f"(with --runtime {other}: {run_check(prepared.measured, boards[0], other).verdict()})")
        click.echo(results[0].verdict())
    if not any(r.fits for r in results):
        sys.exit(1)


@cli.command()
@model_options
@click.option("--json", "as_json", is_flag=True, help="Print the analysis as JSON.")
@friendly_errors
def inspect(model, calib, calib_samples, io, as_json):
    """List MODEL's ops with versions, shapes, MACs and weights, and what each runtime lacks.

    \b
    Example:
      tinydeploy inspect examples/mlperf_tiny/vww_96_int8.tflite
    """
    from tinydeploy.report import ops_table

    p = _prepare(model, calib, calib_samples, io)
    a = p.analysis
    native = p.measured.native
    data = a.to_dict() | {
        "native_missing": list(native.unsupported_ops),
        "tflm_arena": p.measured.tflm.to_dict() if p.measured.tflm else None,
        "native_arena": native.arena_bytes if not native.unsupported_ops else None,
    }
    if as_json:
        emit_json(data)
        return
    click.echo(ops_table(a))
    for kind, specs in (("input", a.inputs), ("output", a.outputs)):
        for t in specs:
            click.echo(f"{kind:<7}{t.name}: {t.dtype}{list(t.shape)} scale {t.scale:.6g} "
                       f"zero point {t.zero_point}")
    click.echo(f"tflm     missing ops: {', '.join(a.tflm_missing) or 'none'}"
               + (f"; newer than supported: {', '.join(a.tflm_too_new)}" if a.tflm_too_new else ""))
    if p.measured.tflm:
        t = p.measured.tflm
        click.echo(f"tflm     arena {t.total:,} B on a 32-bit MCU with TFLM's reference kernels "
                   f"({t.non_persistent:,} activations + {t.persistent:,} persistent; a board's own "
                   "library may need more: check --board ID)")
    click.echo(f"native   missing ops: {', '.join(native.unsupported_ops) or 'none'}"
               + ("" if native.unsupported_ops else f"; arena {native.arena_bytes:,} B"))


@cli.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_context
@friendly_errors
def boards(ctx, as_json):
    """List board profiles; 'boards show ID' for one board's details."""
    if ctx.invoked_subcommand:
        return
    from tinydeploy.boards import list_boards

    profiles = list_boards()
    if as_json:
        emit_json([b.to_dict() for b in profiles])
        return
    click.echo(f"{'id':<24} {'name':<40} {'core':<14} {'flash':>9} {'RAM':>9} {'ext. RAM':>13}  "
               f"runtimes/runner")
    for b in profiles:
        ext = b.external_ram
        ext_text = (f"{ext.bytes // 1024 ** 2} MB {ext.kind}{'?' if ext.optional else ''}"
                    if ext else "")
        runtimes = ",".join(b.runtimes) or "none"
        mark = " (yours)" if b.origin != "bundled" else ""
        click.echo(f"{b.id:<24} {b.name[:40]:<40} {b.core:<14} {b.flash_bytes // 1024:>6} KB "
                   f"{b.ram_bytes // 1024:>6} KB {ext_text:>13}  {runtimes}/{b.default_runner}{mark}")
    for b in profiles:
        if b.shadows:
            status(f"note: {b.id} is your board file {b.source}; it replaces the bundled {b.shadows}")
    status("runtimes: those that run on the board (default first; 'boards show ID' says why one "
           "does not); ext. RAM: '?' = optional, not on every board")


@boards.command("show")
@click.argument("board_id")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@friendly_errors
def boards_show(board_id, as_json):
    """Show one board profile."""
    from tinydeploy.boards import load_board

    data = load_board(board_id).to_dict()
    if as_json:
        emit_json(data)
        return
    for key, value in data.items():
        if isinstance(value, dict):
            for k, v in value.items():
                click.echo(f"{key + '.' + k:<28} {v}")
        else:
            click.echo(f"{key:<28} {value}")


@cli.command("compile")
@model_options
@click.option("-o", "--out", "out_dir", type=click.Path(path_type=Path), required=True,
              help="Folder for the C sources.")
@click.option("--force", is_flag=True, help="Replace an existing output folder.")
@friendly_errors
def compile_cmd(model, calib, calib_samples, io, out_dir, force):
    """Compile MODEL to dependency-free C99 (the native runtime): model.c, model.h (the API) and
    the kernels the model calls.

    \b
    Example:
      tinydeploy compile examples/mlperf_tiny/ad01_int8.tflite -o ad01_c
      gcc -std=c99 -O2 -c ad01_c/*.c
    """
    from tinydeploy import native
    from tinydeploy.output import claim_output
    from tinydeploy.output import staged_output

    with claim_output(out_dir, force):
        p = _prepare(model, calib, calib_samples, io)
        if p.measured.native.unsupported_ops:
            raise InputError(f"the native runtime lacks "
                             f"{', '.join(p.measured.native.unsupported_ops)}",
                             "build with --runtime tflm instead")
        with staged_output(out_dir, force) as stage:
            result = native.compile_model(p.model_bytes, stage, name="model")
    click.echo(f"wrote {out_dir}/: {len(result.files)} files, arena {result.arena_bytes:,} B")


# --------------------------------------------------------------------------- device commands

@cli.command()
@click.argument("project", type=click.Path(path_type=Path))
@click.option("--port", metavar="PORT", help="Serial port of a real board (default: found by USB VID/PID).")
@tflm_lib_option
@friendly_errors
def flash(project, port, tflm_lib):
    """Put PROJECT's firmware on its board.

    Real boards: 'pio run -t upload' (PlatformIO). Emulated boards: builds build/firmware.elf with
    arm-none-eabi-gcc; a firmware that overflows the board's flash or RAM fails with the verdict.

    \b
    Example:
      tinydeploy flash build/digits-qemu-m4
    """
    from tinydeploy.device import flash as run_flash, open_project

    click.echo(run_flash(open_project(project, tflm_lib), port, progress=status))


def _validation_options(fn):
    for decorator in reversed([
        click.option("--samples", metavar="DATA",
                     help="Samples to send: .npz (x float or int8, optional labels y) or .npy."),
        click.option("--limit", type=click.IntRange(1), metavar="N", help="Send at most N samples."),
        click.option("--tolerance", type=click.IntRange(0), default=0, show_default=True,
                     metavar="T", help="Largest |device - reference| in quantized units that still "
                                       "counts as agreement (0 = bit-exact)."),
        click.option("--timeout", type=click.FloatRange(0, min_open=True), metavar="SECONDS",
                     help="Longest the device may take to answer one inference, besides moving the "
                          "bytes (default: from the model's MACs and the board's clock)."),
        click.option("--json", "json_path", type=click.Path(path_type=Path), metavar="FILE",
                     help="Also write the report as JSON to FILE ('-' for stdout)."),
        click.option("--profile", is_flag=True,
                     help="Also time every layer on the device (op, output shape, MACs, time, "
                          "MACs/cycle), into the project's report.json and REPORT.md. Emulated "
                          "boards build the profiling firmware themselves; a real board's must be "
                          "built with -DTD_PROFILE."),
        tflm_lib_option,
    ]):
        fn = decorator(fn)
    return fn


def _validation_samples(samples, model_bytes: bytes, limit):
    from tinydeploy.analyze import analyze
    from tinydeploy.data import load_samples, random_samples

    spec = analyze(model_bytes).inputs[0]
    shape = spec.shape[1:] if len(spec.shape) > 1 and spec.shape[0] == 1 else spec.shape
    if samples:
        return load_samples(samples, input_shape=shape, limit=limit, what="validation samples",
                            keep_dtype=True)
    status("warning: no --samples given: validating on 20 random inputs (agreement only, "
           "no accuracy)")
    return random_samples(shape, limit or 20)


def _check_json_path(json_path) -> None:
    """Refuse a --json FILE that cannot be written, before any work (not after the validation)."""
    if json_path is None or str(json_path) == "-":
        return
    path = Path(json_path)
    folder = path.parent
    if path.is_dir():
        raise InputError(f"--json {json_path} is a folder", "give a file name, e.g. --json report.json")
    if not folder.is_dir():
        raise InputError(f"--json {json_path}: the folder {folder} does not exist",
                         "create it first, or choose another --json path")
    if not os.access(folder, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise InputError(f"--json {json_path} cannot be written (permission denied)",
                         "choose another --json path")


def _write_json(json_path, text: str) -> None:
    try:
        Path(json_path).write_text(text + "\n")
    except OSError as exc:
        raise InputError(f"cannot write --json {json_path}: {exc.strerror or exc}",
                         "choose another --json path") from None


def _emit_report_json(json_path, data: dict) -> None:
    """--json FILE: the report to FILE, or to stdout for '-'; nothing without the option."""
    if json_path:
        text = json.dumps(data, indent=2)
        if str(json_path) == "-":
            click.echo(text)
        else:
            _write_json(json_path, text)


def _run_validation(project, port, data, limit, tolerance, json_path, timeout=None,
                    profile=False) -> None:
    from tinydeploy.device import link_options, running
    from tinydeploy.errors import ValidationFailed
    from tinydeploy.validate import device_clock, reference_for, validate

    library = project.tflm_library() if project.runtime == "tflm" else None
    if project.runtime == "tflm" and library is None:
        status("warning: no TFLM library given: comparing with the tflite_micro wheel, which can "
               "differ from the device's TFLM by 1 on rounding ties (--tflm-lib DIR for the "
               "device's own library)")
    reference = reference_for(project.runtime, project.model_bytes, library, progress=status)
    waits = link_options(project, timeout)
    status(f"starting {project.board.id} ({project.kind}; an inference may take up to "
           f"{waits['invoke_timeout']:.1f} s) ...")
    if profile and project.kind == "baremetal" and port is None:
        status("building the profiling firmware (TD_PROFILE) ...")
    with running(project, port, timeout, profile=profile) as link:
        with click.progressbar(length=len(data.x), label="validating", file=sys.stderr) as bar:
            report = validate(link, project.model_bytes, data.x, data.y, tolerance=tolerance,
                              limit=limit, progress=lambda done, total: bar.update(1),
                              reference=reference,
                              profile=device_clock(project.board) if profile else None)
    for line in report.lines():
        click.echo(line)
    if report.profile is not None:
        from tinydeploy.report import add_profile

        written = add_profile(project.path, report)
        click.echo(f"wrote           {', '.join(str(project.path / name) for name in written)}")
    _emit_report_json(json_path, report.to_dict())
    if not report.passed:
        first = report.mismatches[0] if report.mismatches else "?"
        raise ValidationFailed(
            f"the device disagrees with the host reference on {1 - report.agreement:.1%} of "
            f"samples (max |diff| {report.max_abs_diff}, first at sample {first})",
            "check the runtime's kernels, or raise --tolerance if a difference is expected")


@cli.command("validate")
@click.argument("project", type=click.Path(path_type=Path))
@click.option("--port", metavar="PORT", help="Serial port of a real board (default: found by USB VID/PID; "
                                             "emulated boards: QEMU is started).")
@_validation_options
@friendly_errors
def validate_cmd(project, port, samples, limit, tolerance, timeout, json_path, tflm_lib, profile):
    """Send samples to PROJECT's running firmware and compare with the host reference.

    Exit 1 when any sample's outputs differ from the host reference by more than --tolerance.
    The reference of a TFLM device is its own TFLM library built for this host (found like
    --tflm-lib says), else the tflite_micro wheel; the native runtime's is the wheel.

    \b
    Examples:
      tinydeploy validate build/digits-qemu-m4 --samples examples/digits/eval.npz --json report.json
      tinydeploy validate build/digits-qemu-m4 --samples examples/digits/eval.npz --profile
    """
    from tinydeploy.device import open_project

    _check_json_path(json_path)
    project = open_project(project, tflm_lib)
    data = _validation_samples(samples, project.model_bytes, limit)
    _run_validation(project, port, data, limit, tolerance, json_path, timeout, profile)


@cli.command()
@model_options
@click.option("--board", "-b", default=DEFAULT_EMULATED_BOARD, show_default=True, metavar="ID",
              help="Board profile id.")
@click.option("--runtime", type=click.Choice(["tflm", "native"]), help="Runtime (default: the board's).")
@click.option("--eval", "eval_data", metavar="DATA", help="Samples for the float-vs-int8 report.")
@click.option("--protocol", type=click.Choice(["tinydeploy", "eembc"]), default="tinydeploy",
              show_default=True, help="What the firmware speaks: tinydeploy's protocol (validate) or "
                                      "EEMBC's MLPerf Tiny benchmark protocol (benchmark, the "
                                      "official runner; firmware/EEMBC.md).")
@click.option("-o", "--out", "out_dir", type=click.Path(path_type=Path), help="Project folder.")
@click.option("--force", is_flag=True, help="Replace an existing project folder.")
@click.option("--port", metavar="PORT", help="Serial port of a real board.")
@_validation_options
@friendly_errors
def deploy(model, calib, calib_samples, io, board, runtime, eval_data, out_dir, force, port,
           samples, limit, tolerance, timeout, json_path, tflm_lib, protocol, profile):
    """Build, flash and validate MODEL in one go (on the emulated qemu-m4 by default).

    \b
    Example (the README's main command):
      tinydeploy deploy examples/digits/digits.keras --calib examples/digits/calib.npz \\
          --samples examples/digits/eval.npz
    """
    from tinydeploy.boards import load_board
    from tinydeploy.build import build as run_build
    from tinydeploy.data import check_samples_file
    from tinydeploy.device import flash as run_flash, open_project
    from tinydeploy.output import claim_output

    board_profile = load_board(board)
    library = _library(tflm_lib)
    _require_runtime_buildable(board_profile, runtime, library)
    _check_json_path(json_path)
    _refuse_profiled_eembc(profile, protocol)
    for spec, what in ((samples, "validation samples"), (eval_data, "evaluation samples")):
        check_samples_file(spec, what)  # a bad file fails now, not after the build
    out_dir = _out_dir(model, board_profile, out_dir)
    with claim_output(out_dir, force):
        existed = out_dir.exists()
        prepared = _prepare(model, calib, calib_samples, io, eval_data, library)
        data = _validation_samples(samples or eval_data, prepared.model_bytes, limit)
        result = run_build(prepared, board_profile, runtime=runtime, out_dir=out_dir, force=force,
                           protocol=protocol, profile=profile and not board_profile.emulated)
        if result.out_dir is None:
            _fail(f"{result.check.verdict()}; nothing built", 1)
        status(f"built {result.out_dir} ({result.check.verdict()})")
        project = open_project(result.out_dir, tflm_lib)
        try:
            status(run_flash(project, port, progress=status))
        except BaseException:
            if not existed:  # this board cannot run it: a corrected re-run needs no --force
                import shutil

                shutil.rmtree(result.out_dir, ignore_errors=True)
            raise
    if protocol == "eembc":  # benchmarked instead (tinydeploy.benchmark_cli)
        from tinydeploy.benchmark_cli import run_benchmark

        run_benchmark(project, port, data, limit, timeout=timeout, json_path=json_path)
        return
    _run_validation(project, port, data, limit, tolerance, json_path, timeout, profile)


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP arrived: unwind like Ctrl-C (context managers stop QEMU, remove staging
    folders), then exit with 128 + the signal number, as a shell reports it."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _terminate(signum, frame):
    raise Terminated(signum)


from tinydeploy.export_cli import export as _export  # noqa: E402 - needs the options above

cli.add_command(_export)

from tinydeploy.fit_cli import fit_cmd as _fit  # noqa: E402 - needs the options above

cli.add_command(_fit)

from tinydeploy.benchmark_cli import benchmark_cmd as _benchmark  # noqa: E402 - needs the options above

cli.add_command(_benchmark)


def main() -> None:
    """The console entry point: click's own usage errors become one ``error:`` line too."""
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _terminate)
    try:
        code = cli.main(prog_name="tinydeploy", standalone_mode=False)
    except click.UsageError as exc:
        where = f" (see '{exc.ctx.command_path} --help')" if exc.ctx else ""
        _fail(f"{exc.format_message()}{where}", exc.exit_code)
    except click.ClickException as exc:
        _fail(exc.format_message(), exc.exit_code)
    except click.exceptions.Abort:
        _fail("interrupted", 130)
    sys.exit(code if isinstance(code, int) else 0)
