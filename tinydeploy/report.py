"""Human-readable reports: REPORT.md with its charts, and the CLI's tables.

``build`` writes REPORT.md and, next to it, ``memory.png``: flash and RAM by part against the
board's limits (the external RAM too, when the arena goes there). ``validate --profile`` adds the
per-layer times to the project (:func:`add_profile`): ``profile.png``, a section of REPORT.md and
the ``validation`` entry of report.json. The charts are drawn with matplotlib's Agg backend at a
fixed size and resolution, without a timestamp or version in the file: the same report gives the
same bytes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tinydeploy.analyze import Analysis
    from tinydeploy.build import BuildResult
    from tinydeploy.check import CheckResult
    from tinydeploy.validate import Profile, ValidationReport

MEMORY_CHART = "memory.png"
PROFILE_CHART = "profile.png"
_PROFILE_START = "<!-- tinydeploy: per-layer profile -->"
_PROFILE_END = "<!-- tinydeploy: end of per-layer profile -->"
#: One colour per memory part, the same in every chart.
_PART_COLOURS = {"arena": "#4c72b0", "runtime": "#dd8452", "stack": "#55a868",
                 "framework": "#8c8c8c", "model": "#c44e52", "code": "#8172b3"}
_OP_COLOURS = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3",
               "#8c8c8c", "#ccb974", "#64b5cd")
_DPI = 100


def kb(n: int) -> str:
    return f"{n / 1024:,.1f} KB"


def ops_table(a: "Analysis") -> str:
    rows = ["| # | op | v | output shape | MACs | weights (B) |",
            "|---:|---|---:|---|---:|---:|"]
    for op in a.ops:
        out = " ".join("x".join(map(str, s)) for s in op.output_shapes)
        rows.append(f"| {op.index} | {op.op} | {op.version} | {out} | {op.macs:,} | "
                    f"{op.weight_bytes:,} |")
    rows.append(f"| | **total** | | | **{a.total_macs:,}** | **{a.weight_bytes:,}** |")
    return "\n".join(rows)


def regions(c: "CheckResult") -> list[tuple[str, object]]:
    """(name, Region) of every memory region the check counts: RAM and flash, and with the arena in
    the board's external RAM, "internal RAM" and "external PSRAM"/"external SDRAM" instead of RAM."""
    if c.external is None:
        return [("RAM", c.ram), ("flash", c.flash)]
    return [("internal RAM", c.ram), (f"external {c.board.external_ram.kind.upper()}", c.external),
            ("flash", c.flash)]


def memory_table(c: "CheckResult") -> str:
    rows = ["| region | part | bytes |", "|---|---|---:|"]
    for name, region in regions(c):
        for part, n in region.parts.items():
            rows.append(f"| {name} | {part} | {n:,} |")
        rows.append(f"| {name} | **used / available** | **{region.used:,} / {region.available:,}** |")
        rows.append(f"| {name} | margin | {region.margin:,} |")
    return "\n".join(rows)


def check_matrix(results: list["CheckResult"]) -> str:
    """One line per board: the compact view of `check --board all`."""
    head = f"{'board':<22} {'runtime':<7} {'RAM used/avail':>21} {'flash used/avail':>23}  verdict"
    lines = [head, "-" * len(head)]
    for c in results:
        verdict = ("fits, arena in ext. RAM" if c.fits and c.external else "fits" if c.fits else
                   "not available" if c.unavailable else
                   "unsupported op" if c.unsupported else "DOES NOT FIT")
        lines.append(f"{c.board.id:<22} {c.runtime:<7} "
                     f"{kb(c.ram.used):>9} / {kb(c.ram.available):>9} "
                     f"{kb(c.flash.used):>10} / {kb(c.flash.available):>10}  {verdict}")
    return "\n".join(lines)


def markdown(result: "BuildResult") -> str:
    p, c = result.prepared, result.check
    q = p.quantization
    lines = [f"# {p.name} on {c.board.name}", "",
             f"Runtime **{c.runtime}**; verdict: **{'fits' if c.fits else 'does not fit'}** — "
             f"{c.verdict()}.", "",
             "## Quantization", "",
             ("The input was already a full-int8 .tflite; used as is." if q.skipped else
              f"Full-int8 post-training quantization with {q.calib_samples} calibration samples "
              f"from `{q.calib_source}`."), ""]
    for w in q.warnings:
        lines.append(f"> **Warning:** {w}")
    lines += ["", "| tensor | shape | dtype | scale | zero point |", "|---|---|---|---:|---:|"]
    for kind, specs in (("input", p.analysis.inputs), ("output", p.analysis.outputs)):
        for t in specs:
            lines.append(f"| {kind} `{t.name}` | {'x'.join(map(str, t.shape))} | {t.dtype} | "
                         f"{t.scale:.6g} | {t.zero_point} |")
    lines += ["", "## Accuracy (float vs int8)", ""]
    lines.append(p.accuracy.to_markdown() if p.accuracy else
                 "Not measured: pass `--eval DATA` to compare the float and int8 models.")
    lines += ["", "## Analysis", "", ops_table(p.analysis), ""]
    if p.measured.tflm:
        t = p.measured.tflm
        lines += ["## Memory", "",
                  f"TFLM tensor arena on a 32-bit MCU: **{t.total:,} B** "
                  f"({t.non_persistent:,} B activations + {t.persistent:,} B persistent; "
                  f"measured on this host as {t.host.total:,} B with 64-bit structs).", ""]
    else:
        lines += ["## Memory", ""]
    if c.external is not None:
        from tinydeploy.check import external_words

        lines += [f"The arena does not fit internal RAM: it goes to the board's "
                  f"{external_words(c.board.external_ram)}.", ""]
    lines += [f"![Flash and RAM by part against the board's limits]({MEMORY_CHART})", "",
              memory_table(c), ""]
    for w in c.warnings:
        lines.append(f"- {w}")
    return "\n".join(lines) + "\n"


def write_report(result: "BuildResult", folder: Path) -> list[str]:
    """Write REPORT.md and its memory chart into ``folder``; return the names written."""
    folder = Path(folder)
    memory_chart(result.check, folder / MEMORY_CHART,
                 f"{result.prepared.name} on {result.check.board.id} ({result.check.runtime})")
    (folder / "REPORT.md").write_text(markdown(result))
    return ["REPORT.md", MEMORY_CHART]


# --------------------------------------------------------------------------- charts

def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _drawable(text: str) -> str:
    """``text`` with what the chart's font cannot draw (control characters, symbols outside the
    font, from a model's file name) shown as '?', instead of a missing-glyph warning and a box."""
    from matplotlib import font_manager, ft2font

    font = ft2font.FT2Font(font_manager.findfont(font_manager.FontProperties()))
    drawable = font.get_charmap()
    return "".join(c if ord(c) in drawable and c.isprintable() else "?" for c in text)


def _save(fig, path: Path) -> None:
    # no "Software" entry (matplotlib's version): the same chart is the same bytes everywhere
    fig.savefig(path, dpi=_DPI, format="png", metadata={"Software": None})
    import matplotlib.pyplot as plt

    plt.close(fig)


def memory_chart(c: "CheckResult", path: Path, title: str) -> Path:
    """One bar per memory region (RAM, or internal and external RAM; flash), its parts stacked,
    as a percentage of what the board has for it; the board's limit is the line at 100 %."""
    plt = _pyplot()
    regs = regions(c)
    fig, ax = plt.subplots(figsize=(8.0, 1.6 + 0.75 * len(regs)))
    seen: set[str] = set()
    widest = 100.0
    for row, (name, region) in enumerate(regs):
        y = len(regs) - 1 - row
        left = 0.0
        for part, n in region.parts.items():
            width = 100.0 * n / region.available if region.available else 0.0
            colour = _PART_COLOURS.get(part, "#bbbbbb")
            ax.barh(y, width, left=left, height=0.6, color=colour, edgecolor="white",
                    linewidth=0.8, label=None if part in seen else part)
            seen.add(part)
            if width >= 7:
                ax.text(left + width / 2, y, part, ha="center", va="center", fontsize=8,
                        color="white")
            left += width
        widest = max(widest, left)
        share = region.used / region.available if region.available else 0.0
        ax.text(left + 1.0, y, f"{region.used:,} / {region.available:,} B ({share:.0%})",
                va="center", fontsize=8, color="black" if region.fits else "#b00000")
    ax.axvline(100.0, color="#b00000", linestyle="--", linewidth=1.0, label="board limit")
    ax.set_yticks(range(len(regs)))
    ax.set_yticklabels([name for name, _ in reversed(regs)])
    ax.set_xlim(0.0, max(widest + 40.0, 115.0))
    ax.set_ylim(-0.6, len(regs) - 0.4)
    ax.set_xlabel("% of the board's memory")
    verdict = ("fits, arena in external RAM" if c.fits and c.external is not None else
               "fits" if c.fits else "does not fit")
    ax.set_title(_drawable(f"{title}: {verdict}"), fontsize=10)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.28), fontsize=7, ncol=7, frameon=False)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    fig.tight_layout()
    _save(fig, path)
    return path


def profile_chart(profile: "Profile", path: Path, title: str) -> Path:
    """The time of every layer (first at the top), coloured by op, with its share of the whole
    inference and its MACs/cycle written beside it."""
    plt = _pyplot()
    layers = profile.layers
    n = max(len(layers), 1)
    fig, ax = plt.subplots(figsize=(8.0, 1.8 + 0.28 * n))
    colours: dict[str, str] = {}
    for k, layer in enumerate(layers):
        colour = colours.setdefault(layer.op, _OP_COLOURS[len(colours) % len(_OP_COLOURS)])
        y = n - 1 - k
        ax.barh(y, layer.time_us, height=0.7, color=colour)
        share = layer.time_us / profile.inference_us if profile.inference_us else 0.0
        mpc = "" if not layer.macs_per_cycle else f", {layer.macs_per_cycle:.2f} MACs/cycle"
        ax.text(layer.time_us, y, f" {share:.1%}{mpc}", va="center", fontsize=7)
    ax.set_yticks([n - 1 - k for k in range(len(layers))])
    ax.set_yticklabels([f"{layer.label} {layer.op[:28]} {layer.output_shape}" for layer in layers],
                       fontsize=7)
    longest = max((layer.time_us for layer in layers), default=1.0) or 1.0
    ax.set_xlim(0.0, longest * 1.45)
    ax.set_ylim(-0.6, n - 0.4)
    ax.set_xlabel("time on the device (µs)")
    ax.set_title(f"{_drawable(title)}\n{profile.total_us:,.0f} µs in {len(layers)} steps = "
                 f"{profile.coverage:.1%} of the whole inference", fontsize=10)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    fig.tight_layout()
    _save(fig, path)
    return path


# --------------------------------------------------------------------------- the profile

def profile_markdown(profile: "Profile") -> str:
    """The per-layer section of REPORT.md: the chart, then the table."""
    note = {"QEMU instructions": "cycles are QEMU instructions (`-icount shift=0`: one per virtual "
                                 "ns), the emulator's stand-in for a core's cycles",
            "core cycles": "cycles from the core's cycle counter",
            "none": "the board counts no cycles, so MACs/cycle is not known"}[profile.cycles_are]
    lines = [_PROFILE_START, "## Per-layer profile", "",
             f"Measured on the device by `tinydeploy validate --profile` (sample {profile.sample}, "
             f"the last; {note}). A layer's time runs from the end of the one before it; together "
             f"they take **{profile.total_us:,.1f} µs = {profile.coverage:.1%}** of the whole "
             f"inference ({profile.inference_us:,.1f} µs).", "",
             f"![Time of each layer on the device]({PROFILE_CHART})", "",
             "| op | layer | output shape | MACs | time (µs) | MACs/cycle | share |",
             "|---:|---|---|---:|---:|---:|---:|"]
    for layer in profile.layers:
        share = layer.time_us / profile.inference_us if profile.inference_us else 0.0
        mpc = "n/a" if layer.macs_per_cycle is None else f"{layer.macs_per_cycle:.3f}"
        lines.append(f"| {layer.label} | {layer.op} | {layer.output_shape} | {layer.macs:,} | "
                     f"{layer.time_us:,.1f} | {mpc} | {share:.1%} |")
    lines.append(f"| | **total** | | **{sum(l.macs for l in profile.layers):,}** | "
                 f"**{profile.total_us:,.1f}** | | **{profile.coverage:.1%}** |")
    if profile.not_timed:
        lines += ["", f"Ops {', '.join(map(str, profile.not_timed))} have no code on the device "
                      "(removed at build time)."]
    if profile.dropped:
        lines += ["", f"**Warning:** the device ran {profile.dropped} steps more than its table "
                      "holds; they are missing here."]
    return "\n".join(lines + [_PROFILE_END])


def add_profile(project: Path, report: "ValidationReport") -> list[str]:
    """Put a validation's per-layer profile into a project folder: ``profile.png``, its section of
    REPORT.md (replacing an earlier one) and ``validation`` in report.json. Returns the names."""
    project = Path(project)
    profile = report.profile
    try:
        manifest = json.loads((project / "tinydeploy.json").read_text())
        title = f"{manifest['name']} on {manifest['board']} ({manifest['runtime']})"
    except (OSError, ValueError, KeyError, TypeError):
        title = project.name
    profile_chart(profile, project / PROFILE_CHART, title)
    md_path = project / "REPORT.md"
    text = md_path.read_text() if md_path.is_file() else f"# {title}\n"
    start, end = text.find(_PROFILE_START), text.find(_PROFILE_END)
    if start >= 0 and end > start:
        text = text[:start].rstrip("\n") + "\n\n" + text[end + len(_PROFILE_END):].lstrip("\n")
    md_path.write_text(text.rstrip("\n") + "\n\n" + profile_markdown(profile) + "\n")
    json_path = project / "report.json"
    try:
        data = json.loads(json_path.read_text())
    except (OSError, ValueError):
        data = None
    if not isinstance(data, dict):
        data = {}
    data["validation"] = report.to_dict()
    tmp = json_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(json_path)
    return [PROFILE_CHART, "REPORT.md", "report.json"]
