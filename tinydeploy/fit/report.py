"""What ``fit`` shows and writes: the table of candidates, the chart, and the output folder.

The output folder is a tinydeploy build folder for the board (``tinydeploy flash`` and
``tinydeploy validate`` take it as it is) holding, besides the project, the chosen Keras model, the
calibration samples it was quantized with, ``FIT.md`` (the table and the chart), ``fit.json`` and
``fit.png``. It is written all at once (tinydeploy.output.staged_output): a failure or Ctrl-C
while writing leaves nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tinydeploy import __version__
from tinydeploy.errors import DoesNotFitError
from tinydeploy.fit.search import Candidate, FitResult

CHART = "fit.png"
TABLE_JSON = "fit.json"
TABLE_MD = "FIT.md"
CALIB = "calib.npz"


def keras_name(result: FitResult) -> str:
    return f"{result.name}_fit.keras"


# --------------------------------------------------------------------------- the table

_COLUMNS = ("#", "candidate", "what changed", "params", "flash B", "RAM B", "runtime", "int8 acc",
            "drop", "epochs", "verdict")


def _row(c: Candidate, chosen: Candidate | None, width: int | None = None) -> list[str]:
    detail = c.detail if width is None or len(c.detail) <= width else c.detail[:width - 1] + "…"
    mark = "*" if chosen is not None and c is chosen else ""
    return [f"{c.index}{mark}", c.label, detail, f"{c.params:,}", f"{c.flash:,}", f"{c.ram:,}",
            c.runtime, f"{c.int8_accuracy:.2%}", "—" if c.method == "original" else f"{c.drop:+.2f}",
            str(c.epochs) if c.trained else "—", c.verdict()]


def table_text(result: FitResult, detail_width: int = 40) -> str:
    """The candidates as aligned columns for the terminal (the chosen one marked *)."""
    rows = [list(_COLUMNS)] + [_row(c, result.chosen, detail_width) for c in result.candidates]
    widths = [max(len(r[i]) for r in rows) for i in range(len(_COLUMNS))]
    right = {0, 3, 4, 5, 7, 8, 9}
    lines = []
    for r in rows:
        cells = [cell.rjust(w) if i in right else cell.ljust(w)
                 for i, (cell, w) in enumerate(zip(r, widths))]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def table_markdown(result: FitResult) -> str:
    lines = ["| " + " | ".join(_COLUMNS) + " |",
             "|" + "|".join("---:" if i in (0, 3, 4, 5, 7, 8, 9) else "---"
                            for i in range(len(_COLUMNS))) + "|"]
    for c in result.candidates:
        cells = [cell.replace("|", "\\|") for cell in _row(c, result.chosen)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def to_dict(result: FitResult) -> dict:
    s = result.settings
    return {
        "tinydeploy": __version__,
        "model": {"name": result.name, "source": str(result.source)},
        "board": s.board.id,
        "task": {"kind": result.task.kind, "classes": result.task.classes},
        "settings": {"train": s.train, "eval": s.eval, "calib": s.calib or "from --train",
                     "max_drop_points": s.max_drop, "time_budget_s": s.time_budget,
                     "epochs": s.epochs, "batch_size": s.batch_size, "seed": s.seed,
                     "runtimes": list(s.runtimes), "io": s.io},
        "eval_samples": result.eval_samples,
        "status": result.status,
        "chosen": result.chosen.index if result.chosen else None,
        "within_max_drop": result.acceptable if result.chosen else None,
        "interrupted": result.interrupted,
        "out_of_time": result.out_of_time,
        "seconds": round(result.seconds, 1),
        "notes": list(result.notes),
        "candidates": [c.to_dict() for c in result.candidates],
    }


def summary_lines(result: FitResult) -> list[str]:
    """The lines after the table: the original and the chosen candidate, side by side."""
    b, board = result.baseline, result.board
    lines = [f"original   {result.name}: {b.params:,} parameters, int8 accuracy "
             f"{b.int8_accuracy:.2%} on {result.eval_samples} samples; {b.check.verdict()} "
             f"(runtime {b.runtime})"]
    c = result.chosen
    if c is not None:
        lines.append(f"chosen     #{c.index} {c.label} ({c.detail}): {c.params:,} parameters, "
                     f"int8 accuracy {c.int8_accuracy:.2%} ({change(c.drop)}); "
                     f"{c.check.verdict()} (runtime {c.runtime})")
        if not result.acceptable:
            lines.append(f"warning    it loses more than --max-drop "
                         f"{_points(result.settings.max_drop)}: the search was interrupted before a "
                         "candidate within it was found")
    return lines


def _points(value: float) -> str:
    return f"{value:g} point{'' if value == 1 else 's'}"


def change(drop: float) -> str:
    """A drop in accuracy points said in words: '0.83 points lost', '1.39 points gained'."""
    if abs(drop) < 0.005:
        return "no accuracy lost"
    return f"{abs(drop):.2f} points {'lost' if drop > 0 else 'gained'}"


# --------------------------------------------------------------------------- the chart

_COLOURS = {"original": "black", "prune": "tab:blue", "low-rank": "tab:orange",
            "prune+low-rank": "tab:green", "distil": "tab:purple"}


def chart(result: FitResult, path: Path) -> None:
    """int8 accuracy against flash and against RAM, one panel each, with the board's limits."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    board = result.board
    base = result.baseline.int8_accuracy * 100
    floor = base - result.settings.max_drop
    shown = [c.int8_accuracy * 100 for c in result.candidates
             if c.trained or c.method == "original" or c.int8_accuracy * 100 >= base - 25]
    low = min(shown + [floor]) - 2
    high = min(100.5, max(shown + [base]) + 1.5)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.6), sharey=True)
    for ax, what, limit in ((axes[0], "flash", board.flash_bytes), (axes[1], "RAM", board.ram_bytes)):
        for c in result.candidates:
            x = (c.flash if what == "flash" else c.ram) / 1024
            y = c.int8_accuracy * 100
            colour = _COLOURS.get(c.method.split("+distil")[0], "tab:red")
            if c.method.endswith("+distil"):
                colour = "tab:red"
            clipped = y < low
            marker = "v" if clipped else ("s" if c.method == "original" else
                                          ("o" if c.trained else "x"))
            ax.scatter([x], [max(y, low + 0.3)], marker=marker, s=70 if c.trained else 40,
                       color=colour, alpha=1.0 if c.trained or c.method == "original" else 0.55,
                       zorder=3)
            if c is result.chosen:
                ax.scatter([x], [y], marker="*", s=320, facecolors="none", edgecolors="gold",
                           linewidths=2, zorder=4)
        xs = [(c.flash if what == "flash" else c.ram) / 1024 for c in result.candidates]
        ax.set_xlim(min(xs + [limit / 1024]) / 1.4, max(xs + [limit / 1024]) * 1.4)
        ax.axvline(limit / 1024, color="red", linestyle="--", linewidth=1.2)
        ax.text(limit / 1024, high - 0.3, f"{board.id} {what} \n{limit // 1024} KB ", color="red",
                va="top", ha="right", fontsize=8, clip_on=True)
        if low <= floor <= high:
            ax.axhline(floor, color="grey", linestyle=":", linewidth=1)
        ax.set_xlabel(f"{what} used on the device (KB, log scale)")
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.grid(True, which="both", alpha=0.25)
    axes[0].set_ylim(low, high)
    axes[0].set_ylabel("int8 accuracy on the evaluation samples (%)")
    if low <= floor <= high:
        axes[0].text(axes[0].get_xlim()[0], floor, f" original − {result.settings.max_drop:g} pt",
                     color="grey", va="bottom", fontsize=8, clip_on=True)
    from matplotlib.lines import Line2D

    legend = [Line2D([], [], marker="s", color="black", linestyle="", label="original")]
    for method, colour in list(_COLOURS.items())[1:] + [("…+distil", "tab:red")]:
        if any(c.method == method or (method == "…+distil" and c.method.endswith("+distil"))
               for c in result.candidates):
            legend.append(Line2D([], [], marker="o", color=colour, linestyle="", label=method))
    legend.append(Line2D([], [], marker="x", color="grey", linestyle="", label="untrained probe"))
    if result.chosen is not None:
        legend.append(Line2D([], [], marker="*", markerfacecolor="none", markeredgecolor="gold",
                             markersize=14, linestyle="", label="chosen"))
    if any(c.int8_accuracy * 100 < low for c in result.candidates):
        legend.append(Line2D([], [], marker="v", color="grey", linestyle="",
                             label=f"below {low:.0f}% (drawn at the edge)"))
    axes[1].legend(handles=legend, fontsize=8, loc="lower right")
    fig.suptitle(f"tinydeploy fit: {result.name} on {board.id} — accuracy against size "
                 f"(the original and {len(result.candidates) - 1} candidates)", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------------- the folder

def markdown(result: FitResult) -> str:
    c, b, board = result.chosen, result.baseline, result.board
    lines = [f"# fit: {result.name} on {board.id}", "",
             f"`tinydeploy fit` searched {len(result.candidates) - 1} candidates in "
             f"{result.seconds:.0f} s (seed {result.settings.seed}) for a model that fits "
             f"{board.name} ({board.id}) and loses at most {_points(result.settings.max_drop)} of "
             f"int8 accuracy on the {result.eval_samples} evaluation samples "
             f"(`{result.settings.eval}`). Every candidate was quantized, checked and evaluated "
             "by the real pipeline; the drop is against the original's int8 accuracy.", ""]
    lines += ["| | original | chosen |", "|---|---:|---:|",
              f"| candidate | #0 | #{c.index} {c.label}: {c.detail} |",
              f"| parameters | {b.params:,} | {c.params:,} |",
              f"| flash | {b.flash:,} B of {board.flash_bytes:,} | {c.flash:,} B of "
              f"{board.flash_bytes:,} |",
              f"| RAM | {b.ram:,} B of {board.ram_bytes:,} | {c.ram:,} B of {board.ram_bytes:,} |",
              f"| runtime | {b.runtime} | {c.runtime} |",
              f"| float accuracy | {b.float_accuracy:.2%} | {c.float_accuracy:.2%} |",
              f"| int8 accuracy | {b.int8_accuracy:.2%} | {c.int8_accuracy:.2%} "
              f"({change(c.drop)}) |",
              f"| verdict | {b.verdict()} | {c.verdict()} |", ""]
    if not result.acceptable:
        lines += [f"> The search was interrupted before any candidate within "
                  f"{result.settings.max_drop:g} points fitted: this is the best fitting one so "
                  "far.", ""]
    lines += ["## Candidates", "",
              "Probes are untrained structures measured to find how much to cut (their size is "
              "final, their accuracy is before any training); `epochs` is the training each "
              "trained candidate had.", "", table_markdown(result),
              f"![int8 accuracy against flash and RAM]({CHART})", ""]
    if result.notes:
        lines += ["## Notes", ""] + [f"- {note}" for note in result.notes] + [""]
    lines += ["## Files", "",
              f"- `{keras_name(result)}`: the chosen model (float Keras); "
              f"`tinydeploy build {keras_name(result)} --calib {CALIB}` makes the same int8 model.",
              f"- `{CALIB}`: the calibration samples every candidate was quantized with.",
              f"- `{TABLE_JSON}`: every candidate's figures (both runtimes); `{CHART}`: the chart.",
              "- the rest is the firmware project for the board (`REPORT.md`): "
              "`tinydeploy flash .` and `tinydeploy validate . --samples DATA` run it.", ""]
    return "\n".join(lines)


def write(result: FitResult, out_dir: str | Path, force: bool = False) -> list[str]:
    """Write the chosen candidate's build folder with the fit report; return the files written."""
    from tinydeploy.build import build
    from tinydeploy.output import staged_output

    chosen = result.chosen
    if chosen is None or result.keras_bytes is None:
        raise ValueError("nothing was chosen")
    out = Path(out_dir)
    with staged_output(out, force) as stage:
        inner = stage / "project"
        built = build(chosen.prepared, result.board, runtime=chosen.runtime, out_dir=inner)
        if built.out_dir is None:   # measured as fitting a moment ago: cannot happen
            raise DoesNotFitError(f"{built.check.verdict()}; nothing written")
        for item in inner.iterdir():
            item.rename(stage / item.name)
        inner.rmdir()
        report_path = stage / "report.json"
        report = json.loads(report_path.read_text())
        report["output"] = str(out)
        report["fit"] = {"chosen": chosen.index, "method": chosen.method, "detail": chosen.detail,
                         "drop_points": round(chosen.drop, 4), "table": TABLE_JSON}
        report_path.write_text(json.dumps(report, indent=2) + "\n")
        (stage / keras_name(result)).write_bytes(result.keras_bytes)
        np.savez_compressed(stage / CALIB, x=result.calib_x)
        (stage / TABLE_JSON).write_text(json.dumps(to_dict(result), indent=2) + "\n")
        chart(result, stage / CHART)
        (stage / TABLE_MD).write_text(markdown(result))
        files = sorted(str(p.relative_to(stage)) for p in stage.rglob("*") if p.is_file())
    return files
