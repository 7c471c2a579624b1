"""``tinydeploy fit``: the click command over tinydeploy.fit (registered by tinydeploy.cli, which
imports this module; import tinydeploy.cli, not this one)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from tinydeploy.cli import _library, emit_json, friendly_errors, model_options, status, tflm_lib_option
from tinydeploy.errors import InputError, TinydeployError
from tinydeploy.fit.progress import DEFAULT_BUDGET, ProgressBar, clock, parse_duration


@click.command("fit")
@model_options
@click.option("--board", "-b", required=True, metavar="ID", help="Board profile id (see 'tinydeploy boards').")
@click.option("--train", "train_data", metavar="DATA",
              help="Training samples with labels (.npz with x and y): fine-tuning and distillation "
                   "train on them.")
@click.option("--eval", "eval_data", metavar="DATA",
              help="Evaluation samples with labels (.npz with x and y): every candidate's int8 "
                   "accuracy is measured on them.")
@click.option("--max-drop", type=click.FloatRange(0, 100), default=1.0, show_default=True,
              metavar="POINTS", help="Most accuracy points the chosen model may lose against the "
                                     "original's int8 accuracy.")
@click.option("-o", "--out", "out_dir", type=click.Path(path_type=Path),
              help="Output folder (default build/<model>-fit-<board>): the chosen model's build "
                   "folder with the Keras model, FIT.md, fit.json and fit.png.")
@click.option("--force", is_flag=True, help="Replace an existing output folder written by tinydeploy.")
@click.option("--time-budget", default=DEFAULT_BUDGET, show_default=True, metavar="DURATION",
              help="Stop searching after this long (600, 90s, 10m, 1h30m); the best candidate "
                   "within --max-drop so far is kept.")
@click.option("--epochs", type=click.IntRange(1), metavar="N",
              help="Fine-tuning epochs per candidate (default: about 600 steps; students train 3x).")
@click.option("--batch-size", type=click.IntRange(1), default=32, show_default=True, metavar="N")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of every random choice.")
@click.option("--runtime", type=click.Choice(["tflm", "native"]),
              help="Only this runtime (default: a candidate fits if it fits either).")
@click.option("--json", "as_json", is_flag=True, help="Print the candidates as JSON instead of a table.")
@tflm_lib_option
@friendly_errors
def fit_cmd(model, calib, calib_samples, io, board, train_data, eval_data, max_drop, out_dir, force,
            time_budget, epochs, batch_size, seed, runtime, as_json, tflm_lib):
    """Make MODEL fit a board: prune, factorise and distil it, measuring every candidate.

    If the int8 model already fits (either runtime), says so and stops. Otherwise tries, cheapest
    first, structured pruning, low-rank factorisation, their combination and knowledge distillation,
    each candidate fine-tuned on --train and measured by the real pipeline (int8 quantization, the
    board check, int8 accuracy on --eval), and keeps the one that fits with the smallest accuracy
    drop within --max-drop. Ctrl-C stops the search and keeps the best fitting candidate so far.

    \b
    Example:
      tinydeploy fit examples/wide_digits/wide_digits.keras --board qemu-m3 \\
          --train examples/wide_digits/train.npz --eval examples/wide_digits/eval.npz
    """
    from tinydeploy.boards import load_board
    from tinydeploy.build import model_name
    from tinydeploy.check import RUNTIMES
    from tinydeploy.data import check_samples_file
    from tinydeploy.fit import FitSettings, fit, write
    from tinydeploy.loading import check_model_path
    from tinydeploy.output import claim_output

    board_profile = load_board(board)
    if not train_data:
        raise InputError("fit needs training samples: it fine-tunes and distils every smaller "
                         "model it tries", "pass --train DATA (an .npz with x and labels y)")
    if not eval_data:
        raise InputError("fit needs evaluation samples: it measures every candidate's accuracy "
                         "on them", "pass --eval DATA (an .npz with x and labels y, not used for "
                         "training)")
    if calib == "random":
        raise InputError("fit measures accuracy, and --calib random would make every int8 model's "
                         "accuracy meaningless", "leave --calib out (samples of --train are used) "
                         "or pass real samples")
    for spec, what in ((train_data, "training samples"), (eval_data, "evaluation samples"),
                       (calib, "calibration samples")):
        check_samples_file(spec, what)
    budget = parse_duration(time_budget)
    library = _library(tflm_lib)
    check_model_path(model)
    out = out_dir or Path("build") / f"{model_name(model)}-fit-{board_profile.id}"
    settings = FitSettings(board=board_profile, train=str(train_data), eval=str(eval_data),
                           calib=calib, calib_samples=calib_samples, io=io, max_drop=max_drop,
                           time_budget=budget, epochs=epochs, batch_size=batch_size, seed=seed,
                           runtimes=(runtime,) if runtime else RUNTIMES, tflm_library=library)
    with claim_output(out, force):   # checked and held before minutes of search
        bar = ProgressBar(budget)
        try:
            result = fit(model, settings, bar)
        finally:
            bar.close()
        _show(result, as_json)
        if result.status == "fits":
            return
        if result.status != "chosen" and result.interrupted:
            raise Interrupted(f"interrupted before any candidate fit {board_profile.id}; nothing "
                              "written", "run it again and let the search reach a candidate that "
                              "fits; the table above shows what was measured")
        if result.status != "chosen":
            raise result.failure()
        write(result, out, force)
    say = status if as_json else click.echo      # --json keeps stdout for the JSON alone
    say(f"wrote      {out}/ (the firmware project, {result.name}_fit.keras, FIT.md, fit.png; "
        "see FIT.md)")
    say(f"took       {clock(result.seconds)} "
        f"({len(result.candidates) - 1} candidates{', interrupted' if result.interrupted else ''})")
    say(f"next       tinydeploy flash {out} && tinydeploy validate {out} --samples {eval_data}")
    if result.interrupted:
        status(f"interrupted: kept the best fitting candidate so far (#{result.chosen.index}) "
               f"in {out}")
        sys.exit(130)


class Interrupted(TinydeployError):
    """Ctrl-C before any candidate fit: nothing to keep."""

    exit_code = 130


def _show(result, as_json: bool) -> None:
    from tinydeploy.check import RUNTIMES
    from tinydeploy.fit.report import summary_lines, table_text, to_dict

    if as_json:
        emit_json(to_dict(result))
        return
    b = result.baseline
    if result.status == "fits":
        click.echo(f"{result.name} already fits {result.board.id} in int8 "
                   f"(runtime {b.runtime}): {b.check.verdict()}")
        for rt in RUNTIMES:
            if rt in b.checks and rt != b.runtime:
                click.echo(f"(with --runtime {rt}: {b.checks[rt].verdict()})")
        click.echo("nothing to do")
        return
    click.echo(table_text(result))
    for line in summary_lines(result):
        click.echo(line)
    for note in result.notes:
        status(f"note: {note}")
