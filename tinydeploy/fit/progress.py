"""The progress bar of ``tinydeploy fit`` (stderr) and its duration option, apart from the click
command (tinydeploy/fit_cli.py) so scripts and tests can use them without the CLI."""

from __future__ import annotations

import re
import shutil
import sys
import time

from tinydeploy.errors import InputError


def one_line(text: str) -> str:
    from tinydeploy.cli import one_line as escaped   # imported late: the CLI imports fit's command

    return escaped(text)


DEFAULT_BUDGET = "10m"
_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s?)?$")


def parse_duration(text: str) -> float:
    """Seconds from '600', '90s', '10m', '1h', '1h30m' or '2m30s'."""
    match = _DURATION.match(str(text).strip().lower())
    if not str(text).strip() or not match or not any(match.groups()):
        raise InputError(f"--time-budget {text!r} is not a duration",
                         "write it like 600, 90s, 10m or 1h30m")
    hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    total = hours * 3600 + minutes * 60 + seconds
    if total <= 0:
        raise InputError(f"--time-budget {text} leaves no time", "give a positive duration, e.g. 10m")
    return total


def clock(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


class ProgressBar:
    """The search's progress on stderr: on a terminal, one line redrawn in place with a bar over the
    stages and one over the current candidate's epochs, and each measured candidate printed above
    it; elsewhere (a log, a pipe), plain lines."""

    def __init__(self, budget: float, stream=None):
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.budget = budget
        self.started = time.monotonic()
        self.stage_number, self.stage_total, self.stage_name = 0, 0, ""
        self.work = "starting"
        self.epochs: tuple[int, int] | None = None
        self.count = 0

    # tinydeploy.fit.Reporter
    def stage(self, name: str, number: int, total: int) -> None:
        self.stage_number, self.stage_total, self.stage_name = number, total, name
        self._line(f"stage {number}/{total}: {name}")

    def working(self, text: str) -> None:
        self.work, self.epochs = text, None
        self._draw()

    def epoch(self, done: int, total: int) -> None:
        self.epochs = (done, total)
        if self.tty:
            self._draw()
        elif done == total or done % max(1, total // 4) == 0:   # a log gets a few lines, not all
            self._line(f"  epoch {done}/{total} ({clock(time.monotonic() - self.started)} of "
                       f"{clock(self.budget)})")

    def candidate(self, c) -> None:
        self.count += 1
        self.epochs = None
        drop = "" if c.method == "original" else f" (drop {c.drop:+.2f} points)"
        trained = f", {c.epochs} epochs" if c.trained else ""
        self._line(f"#{c.index} {c.label}{trained}: {c.detail} | flash {c.flash:,} B, RAM "
                   f"{c.ram:,} B ({c.runtime}) | int8 {c.int8_accuracy:.2%}{drop} | {c.verdict()}")

    def close(self) -> None:
        if self.tty:
            self.stream.write("\r\033[K")
            self.stream.flush()

    # drawing
    def _line(self, text: str) -> None:
        if self.tty:
            self.stream.write("\r\033[K")
        self.stream.write(one_line(text) + "\n")
        self._draw()

    def _draw(self) -> None:
        if not self.tty:
            return
        width = shutil.get_terminal_size((100, 20)).columns
        stages = _bar(self.stage_number, self.stage_total or 1, 10)
        text = f"fit {stages} stage {self.stage_number}/{self.stage_total or '?'}"
        text += f" · candidate {self.count}"
        if self.epochs:
            done, total = self.epochs
            text += f" · epochs {_bar(done, total, 16)} {done}/{total}"
        else:
            text += f" · {self.work}"
        text += f" · {clock(time.monotonic() - self.started)}/{clock(self.budget)}"
        self.stream.write("\r\033[K" + one_line(text)[:max(20, width - 1)])
        self.stream.flush()


def _bar(done: int, total: int, width: int) -> str:
    filled = int(round(width * min(1.0, done / max(1, total))))
    return "[" + "#" * filled + "-" * (width - filled) + "]"
