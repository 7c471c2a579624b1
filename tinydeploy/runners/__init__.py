"""Runners: one per way of getting firmware running (see :mod:`tinydeploy.runners.core`)."""

from __future__ import annotations

from tinydeploy.errors import InputError
from tinydeploy.runners.core import Runner, RunnerCaps, RunningDevice
from tinydeploy.runners.platformio import PlatformioRunner
from tinydeploy.runners.qemu import QemuRunner

RUNNERS: dict[str, type[Runner]] = {cls.name: cls for cls in (QemuRunner, PlatformioRunner)}


def runner_class(name: str) -> type[Runner]:
    """The runner class called ``name`` (as a board profile's ``default_runner`` names it)."""
    try:
        return RUNNERS[name]
    except KeyError:
        raise InputError(f"unknown runner {name!r}", f"use one of {', '.join(sorted(RUNNERS))}") from None


__all__ = ["RUNNERS", "PlatformioRunner", "QemuRunner", "Runner", "RunnerCaps", "RunningDevice", "runner_class"]
