"""User-facing errors.

Every problem a user can cause (a bad file, a missing tool, a model that does not fit) is raised as
a :class:`TinydeployError`. The CLI prints ``error: <problem> (<fix>)`` on one line and exits with
``exit_code``; it never shows a traceback for these. Anything else escaping is a bug in tinydeploy.
"""

from __future__ import annotations


class TinydeployError(Exception):
    """A problem the user can fix. ``problem`` says what is wrong, ``fix`` what to do about it."""

    exit_code = 2

    def __init__(self, problem: str, fix: str | None = None):
        super().__init__(problem)
        self.problem = problem
        self.fix = fix

    def __str__(self) -> str:
        return f"{self.problem} ({self.fix})" if self.fix else self.problem

    def __reduce__(self):
        # Errors cross process boundaries (the converter runs in a child process): keep the fix
        # and any extra attributes, which the default Exception pickling would drop.
        return (self.__class__, (self.problem, self.fix), self.__dict__)


class InputError(TinydeployError):
    """A file or option the user gave is missing, unreadable or of the wrong kind/shape."""


class ModelError(TinydeployError):
    """The model itself cannot be used (corrupt, hybrid-quantized, unsupported structure)."""


class UnsupportedOpError(ModelError):
    """The model uses an op (or op version) that the chosen runtime does not provide."""


class DoesNotFitError(TinydeployError):
    """The model does not fit the board's flash or RAM. Exit code 1, like a failed check."""

    exit_code = 1


class ToolMissingError(TinydeployError):
    """An external program (qemu, arm-none-eabi-gcc, pio) is not installed."""


class BuildError(TinydeployError):
    """Compiling or linking generated firmware failed."""


class DeviceError(TinydeployError):
    """The device did not answer, answered garbage, or runs another model."""


class ValidationFailed(TinydeployError):
    """The device's outputs disagree with the host reference beyond the tolerance."""

    exit_code = 1
