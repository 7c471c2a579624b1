"""Human-readable text for build results: REPORT.md and the CLI's tables."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tinydeploy.analyze import Analysis
    from tinydeploy.build import BuildResult
    from tinydeploy.check import CheckResult


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


def memory_table(c: "CheckResult") -> str:
    rows = ["| region | part | bytes |", "|---|---|---:|"]
    for name, region in (("RAM", c.ram), ("flash", c.flash)):
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
        verdict = ("fits" if c.fits else "not available" if c.unavailable else
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
    lines += [memory_table(c), ""]
    for w in c.warnings:
        lines.append(f"- {w}")
    return "\n".join(lines) + "\n"
