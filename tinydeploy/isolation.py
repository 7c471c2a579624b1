"""Run TensorFlow's converter where a native crash cannot take the tool down: a child process.

TensorFlow's TFLite converter and calibrator are C++; some models crash them (a Keras GRU in a
loop segfaults the calibrator). In the tool's own process that kills the tool with no message and
leaves its temporary SavedModel behind. Here the work runs in a child process (a *worker*):

- the parent sends one call (a function of a tinydeploy module and its arguments, pickled) and
  reads back the result, or the :class:`~tinydeploy.errors.TinydeployError` the call raised;
- a crash (SIGSEGV, SIGABRT, out of memory) ends only the worker: the parent turns it into one
  ``ModelError`` naming what was running (:func:`stage` reports it) and what to try;
- every temporary file of a call goes into a folder the parent creates and always removes, so a
  crash leaves nothing in the temporary directory;
- the worker dies with the parent (``PR_SET_PDEATHSIG``), and quits when its stdin closes.

Cost: the worker pays TensorFlow's import (~5 s) instead of the tool, so a build pays one import,
as before, plus the start of a second Python (~0.3 s). The worker stays up for the parent's
lifetime, so a process that prepares many models (a test session) imports TensorFlow once.
"""

from __future__ import annotations

import atexit
import ctypes
import importlib
import os
import pickle
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import traceback
from pathlib import Path

from tinydeploy.errors import ModelError, TinydeployError

_HEADER = struct.Struct("<Q")
_SIGNAL_WORDS = {
    signal.SIGSEGV: "segmentation fault", signal.SIGABRT: "abort", signal.SIGBUS: "bus error",
    signal.SIGFPE: "arithmetic fault", signal.SIGILL: "illegal instruction",
    signal.SIGKILL: "killed, probably out of memory",
}
# Lines of a crashing worker's log worth quoting (TensorFlow's and absl's fatal messages).
_TELLING = ("Check failed", "F0000", "terminate called", "Assertion", "what():", "Fatal", "error:")

_in_worker = False
_stage_out = None            # the worker's channel to the parent, for stage()


_WORK_PREFIX = "tinydeploy-work-"


def remove_orphans() -> None:
    """Remove the call folders of tinydeploy processes that were killed (SIGKILL leaves them)."""
    root = Path(tempfile.gettempdir())
    for folder in root.glob(f"{_WORK_PREFIX}*-*"):
        try:
            pid = int(folder.name[len(_WORK_PREFIX):].split("-", 1)[0])
        except ValueError:
            continue
        if pid == os.getpid():
            continue
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except OSError:
            pass


class WorkerBug(Exception):
    """The worker raised something that is not a TinydeployError: a bug, reported as one."""


def stage(text: str, fix: str | None = None) -> None:
    """Say what the current call is doing now, and what to try if it crashes there (quoted if the
    worker crashes); a no-op in-process."""
    if _in_worker and _stage_out is not None:
        _send(_stage_out, ("stage", text, fix))


def in_worker() -> bool:
    return _in_worker


# --------------------------------------------------------------------------- framing

def _send(stream, message) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(data)) + data)
    stream.flush()


def _recv(stream):
    head = stream.read(_HEADER.size)
    if len(head) < _HEADER.size:
        raise EOFError
    (size,) = _HEADER.unpack(head)
    data = stream.read(size)
    if len(data) < size:
        raise EOFError
    return pickle.loads(data)


# --------------------------------------------------------------------------- the parent's side

class Worker:
    """One child process that runs calls until the parent goes away."""

    def __init__(self):
        self._proc: subprocess.Popen | None = None
        self._log = None
        self._lock = threading.Lock()

    def _start(self) -> subprocess.Popen:
        if self._proc is not None and self._proc.poll() is None:
            return self._proc
        self._close_log()
        self._log = tempfile.TemporaryFile(prefix="tinydeploy-worker-", suffix=".log")
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3"))
        package_root = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "tinydeploy.isolation", str(os.getpid())],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, env=env,
            close_fds=True)
        return self._proc

    def call(self, module: str, function: str, *args, crash_fix: str, **kwargs):
        """Run ``module.function(*args, **kwargs)`` in the worker and return its result.

        A TinydeployError raised there is raised here; a crash of the worker becomes a ModelError
        that names the stage it was in, with ``crash_fix`` as the fix.
        """
        with self._lock:
            proc = self._start()
            remove_orphans()
            workdir = tempfile.mkdtemp(prefix=f"{_WORK_PREFIX}{os.getpid()}-")
            log_start = os.fstat(self._log.fileno()).st_size
            where, fix = "the converter process", crash_fix
            try:
                try:
                    _send(proc.stdin, ("call", module, function, args, kwargs, workdir,
                                       os.getcwd()))
                    while True:
                        kind, *payload = _recv(proc.stdout)
                        if kind == "stage":
                            where, fix = payload[0], payload[1] or crash_fix
                            continue
                        break
                except (EOFError, BrokenPipeError, ConnectionResetError):
                    raise self._crashed(where, log_start, fix) from None
            except BaseException:
                if self._proc is not None and self._proc.poll() is None:
                    self._stop(kill=True)
                raise
            finally:
                shutil.rmtree(workdir, ignore_errors=True)
        if kind == "ok":
            return payload[0]
        if kind == "error":
            raise payload[0]
        message, trace = payload
        if os.environ.get("TINYDEPLOY_DEBUG"):
            sys.stderr.write(trace)
        raise WorkerBug(message)

    def _crashed(self, where: str, log_start: int, fix: str) -> ModelError:
        proc = self._proc
        try:
            code = proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
        self._proc = None
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            how = f"crashed ({name}: {_SIGNAL_WORDS.get(-code, 'a native crash')})"
        else:
            how = f"ended the converter process unexpectedly (exit status {code})"
        said = self._telling_line(log_start)
        return ModelError(f"{where[:1].upper()}{where[1:]} {how}" + (f": {said}" if said else ""),
                          fix)

    def _telling_line(self, start: int) -> str:
        try:
            fd = self._log.fileno()
            size = os.fstat(fd).st_size
            text = os.pread(fd, min(size - start, 1 << 16), max(start, size - (1 << 16)))
        except (OSError, ValueError):
            return ""
        lines = [ln.strip() for ln in text.decode("utf-8", "replace").splitlines() if ln.strip()]
        for line in reversed(lines):
            if any(mark in line for mark in _TELLING):
                return " ".join(line.split())[:200]
        return ""

    def _stop(self, kill: bool = False) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            if kill:
                proc.kill()
            else:
                proc.stdin.close()
            proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait()
        for stream in (proc.stdin, proc.stdout):
            try:
                stream.close()
            except OSError:
                pass

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def close(self) -> None:
        with self._lock:
            self._stop()
            self._close_log()


_worker: Worker | None = None
_worker_lock = threading.Lock()


def worker() -> Worker:
    """The process-wide worker (started on first use, stopped at exit)."""
    global _worker
    with _worker_lock:
        if _worker is None:
            _worker = Worker()
            atexit.register(_worker.close)
        return _worker


def run(module: str, function: str, *args, crash_fix: str, **kwargs):
    """``module.function(*args, **kwargs)`` in the worker; see :meth:`Worker.call`."""
    return worker().call(module, function, *args, crash_fix=crash_fix, **kwargs)


# --------------------------------------------------------------------------- the worker's side

def _die_with_parent(parent: int) -> None:
    """Ask Linux to kill this process when the parent dies; quit now if it already has."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)   # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:
        os._exit(0)


def _serve(parent: int) -> None:
    # This file runs as __main__; the code it calls imports it as tinydeploy.isolation, whose
    # globals are the ones stage() reads.
    import tinydeploy.isolation as module

    _die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # Ctrl-C is the parent's to handle
    requests = os.fdopen(os.dup(0), "rb")
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)                                   # C++ prints must not corrupt the replies
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    sys.stdout = sys.stderr
    module._in_worker, module._stage_out = True, replies
    while True:
        try:
            request = _recv(requests)
        except EOFError:
            return
        _, module, function, args, kwargs, workdir, cwd = request
        tempfile.tempdir = workdir                  # the parent removes it after the call
        os.environ["TMPDIR"] = workdir
        known = set(sys.modules)
        try:
            os.chdir(cwd)                           # relative paths and user modules as the
            importlib.invalidate_caches()           # parent sees them now
            result = getattr(importlib.import_module(module), function)(*args, **kwargs)
            reply = ("ok", result)
        except TinydeployError as exc:
            reply = ("error", exc)
        except BaseException as exc:  # noqa: BLE001 - anything else is a bug, reported as one
            reply = ("bug", f"{type(exc).__name__}: {exc}", traceback.format_exc())
        try:
            _send(replies, reply)
        except Exception as exc:  # noqa: BLE001 - e.g. a result that cannot be pickled
            _send(replies, ("bug", f"{type(exc).__name__}: {exc}", traceback.format_exc()))
        finally:
            tempfile.tempdir = None
            _forget_user_modules(known, cwd)


def _forget_user_modules(known: set, cwd: str) -> None:
    """Drop the modules a call imported from the user's folder (a --calib module:function), so the
    next call, perhaps from another folder, imports its own."""
    root = os.path.realpath(cwd).rstrip(os.sep) + os.sep
    installed = tuple(os.path.realpath(p).rstrip(os.sep) + os.sep for p in
                      {sys.prefix, sys.base_prefix, sys.exec_prefix,
                       str(Path(__file__).resolve().parent.parent)})
    for name in set(sys.modules) - known:
        file = getattr(sys.modules.get(name), "__file__", None)
        if not file:
            continue
        path = os.path.realpath(file)
        if path.startswith(root) and not path.startswith(installed):
            del sys.modules[name]


if __name__ == "__main__":
    _serve(int(sys.argv[1]))
