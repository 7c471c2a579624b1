"""``tinydeploy export``: the click command over tinydeploy.export (registered in tinydeploy.cli)."""

from __future__ import annotations

from pathlib import Path

import click

from tinydeploy.cli import (_fail, _library, _prepare, _print_model_and_board, emit_json,
                            friendly_errors, model_options, status, tflm_lib_option)
from tinydeploy.export import FORMATS


@click.command("export")
@model_options
@click.option("--board", "-b", required=True, metavar="ID",
              help="Board profile id the export is checked for (see 'tinydeploy boards').")
@click.option("--runtime", type=click.Choice(["tflm", "native"]),
              help="Runtime behind the API (default: the board's; tflm on real boards).")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="pio-lib", show_default=True,
              help="pio-lib: a PlatformIO library folder; arduino-zip: an Arduino IDE library .zip; "
                   "folder: plain sources for any build system.")
@click.option("-o", "--out", "out", type=click.Path(path_type=Path), required=True,
              help="The folder (or .zip) to write: new, empty, or a previous export to update.")
@click.option("--eval", "eval_data", metavar="DATA",
              help="Samples (.npz with x, optional y) for the float-vs-int8 accuracy report.")
@click.option("--force", is_flag=True,
              help="Export even if the model does not fit; replace generated files you edited.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@tflm_lib_option
@friendly_errors
def export(model, calib, calib_samples, io, board, runtime, fmt, out, eval_data, force, as_json,
           tflm_lib):
    """Export MODEL as a library for the firmware you already have: the model array, op resolver,
    settings and a small API (td_model_init/input/invoke/output, the same for both runtimes).

    Exporting again over a previous export updates the files it wrote (listed in its
    tinydeploy-export.json), leaves every other file alone and says what changed. Exit 1 when the
    model does not fit the board (nothing is written unless --force).

    \b
    Examples:
      tinydeploy export examples/digits/digits.keras --board nano33ble \\
          --calib examples/digits/calib.npz -o lib/digits
      tinydeploy export model.tflite --board esp32 --format arduino-zip -o model.zip
      tinydeploy export model.tflite --board qemu-m4 --runtime native --format folder -o model_c
    """
    from tinydeploy import export as stage
    from tinydeploy.boards import load_board

    board_profile = load_board(board)
    runtime = stage.check_format(board_profile, fmt, runtime)
    library = _library(tflm_lib)
    stage.open_target(out, fmt)          # checked before the seconds of quantization
    with stage.claim(out):
        prepared = _prepare(model, calib, calib_samples, io, eval_data, library)
        result = stage.export(prepared, board_profile, runtime=runtime, fmt=fmt, out=out,
                              force=force)
    if as_json:
        emit_json(result.to_dict())
    else:
        _print(result)
    if not result.written:
        _fail(f"{result.check.verdict()}; nothing exported (--force exports anyway)", 1)


def _print(result) -> None:
    c = result.check
    _print_model_and_board(result)
    click.echo(f"verdict    {c.verdict()}")
    if not result.written:
        return
    if not c.fits:
        status(f"warning: exported although it does not fit {c.board.id} (--force)")
    click.echo(f"arena      {c.arena:,} B, {c.source}")
    files = result.manifest["files"]
    where = result.target.shown.rstrip("/") + ("" if result.fmt == "arduino-zip" else "/")
    what = f"{result.fmt} {result.library} {result.version}"
    if result.changes is None:
        click.echo(f"wrote      {where} ({what}, {len(files)} files)")
    else:
        ch = result.changes
        click.echo(f"updated    {where} ({what}): {len(ch.updated)} changed, {len(ch.added)} added, "
                   f"{len(ch.removed)} removed, {len(ch.unchanged)} unchanged")
        for line in ch.lines(result.manifest):
            click.echo(line)
    if result.edits_replaced:
        click.echo(f"replaced   your edits of {', '.join(result.edits_replaced)} (--force)")
    if result.others:
        shown = ", ".join(result.others[:3]) + (" ..." if len(result.others) > 3 else "")
        click.echo(f"left alone {len(result.others)} file(s) of yours: {shown}")
    click.echo("use        " + _usage(result))


def _usage(result) -> str:
    if result.fmt == "pio-lib":
        return ("put it under lib/ of your PlatformIO project (or lib_deps = symlink://"
                f"{result.target.path}) and #include <tinydeploy_model.h>")
    if result.fmt == "arduino-zip":
        return "Arduino IDE: Sketch > Include Library > Add .ZIP Library; see its README.md"
    return "add src/ to the include path and compile src/tinydeploy/*.c *.cpp; see its README.md"
