"""Every command the README shows runs as shown and prints what the README says it prints.

The README's shell blocks (```sh) are run one command at a time, from a scratch folder that sees the
repository's examples/ (so build/ outputs land there, not in the checkout). A block followed
directly by a plain ``` block is an example with its output: every line of that block must appear
in what the command printed, numbers of timing lines (latency, link speed, inferences/s) aside.
Commands that need a real board, templates (MODEL, DATA) and the test command itself are left out
(test_only_real_board_commands... says which and why); those that need the TFLM library skip
without it, as the other tests that need it do.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from paths import REPO, TFLM_LIB_SKIP_REASON, tflm_lib_dir

README = REPO / "README.md"
_BLOCK = re.compile(r"```(\w*)\n(.*?)```", re.DOTALL)
#: Lines whose numbers depend on the machine's speed, compared without their numbers.
_TIMING = ("latency", "link ", "took", "inferences/s")


def examples() -> list[tuple[str, list[str]]]:
    """(command, expected output lines) for each command of the README's sh blocks."""
    text = README.read_text()
    blocks = [(m.group(1), m.group(2), m.end(), m.start()) for m in _BLOCK.finditer(text)]
    found = []
    for i, (lang, body, end, _) in enumerate(blocks):
        if lang != "sh":
            continue
        expected = []
        if i + 1 < len(blocks) and blocks[i + 1][0] == "" and text[end:blocks[i + 1][3]].strip() == "":
            expected = [ln for ln in blocks[i + 1][1].splitlines() if ln.strip()]
        commands = _commands(body)
        for j, command in enumerate(commands):
            found.append((command, expected if j == len(commands) - 1 else []))
    return found


def _commands(body: str) -> list[str]:
    joined = body.replace("\\\n", " ")
    commands = []
    for line in joined.splitlines():
        line = line.split(" #")[0].strip() if not line.lstrip().startswith("#") else ""
        if line:
            commands.append(" ".join(line.split()))
    return commands


def _why_not(command: str) -> str | None:
    if "bash .ci/setup" in command and "pytest" in command:
        return "the test command itself"
    if "pio run" in command or re.search(r"\b(flash|validate)\s+build/\S+-(?!qemu)", command):
        return "needs a real board attached"
    board = re.search(r"--board (\S+)", command)
    if " deploy " in f" {command} " and board and not board.group(1).startswith("qemu"):
        return "needs a real board attached"
    if "MODEL" in command or "DATA" in command:
        return "a template, not a command"
    return None


def _normalise(line: str) -> str:
    line = " ".join(line.split())
    return re.sub(r"[\d,.]+", "N", line) if line.lstrip().startswith(_TIMING) else line


EXAMPLES = examples()
#: The commands a clone can run, and those it cannot (with the reason), each once.
RUNNABLE = [(c, e) for c, e in EXAMPLES if _why_not(c) is None]
NOT_RUN = {c: _why_not(c) for c, _ in EXAMPLES if _why_not(c) is not None}


def test_the_readme_has_runnable_examples():
    assert len(RUNNABLE) >= 6
    assert any("deploy examples/digits/digits.keras" in c for c, _ in RUNNABLE)


def test_only_real_board_commands_templates_and_the_test_command_are_not_run():
    """What the README shows but this test cannot run is left out on purpose, for these reasons
    only: a real board, a template with placeholders, the test command (it is this suite)."""
    assert set(NOT_RUN.values()) <= {"needs a real board attached", "a template, not a command",
                                     "the test command itself"}
    assert sum(r == "the test command itself" for r in NOT_RUN.values()) == 1
    assert all("qemu" not in c for c, r in NOT_RUN.items() if r == "needs a real board attached")


@pytest.mark.slow
@pytest.mark.parametrize("command, expected", RUNNABLE, ids=[c[:60] for c, _ in RUNNABLE])
def test_readme_command_runs_and_prints_what_the_readme_shows(command, expected, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TINYDEPLOY_TFLM_LIB"}  # as on a clone
    # only a tflm firmware for an emulated board needs the library; other commands show what a
    # clone without one prints (check's estimates)
    if "--runtime tflm" in command and re.search(r"\b(deploy|flash)\b", command):
        lib = tflm_lib_dir()
        if lib is None:
            pytest.skip(TFLM_LIB_SKIP_REASON)
        env["TINYDEPLOY_TFLM_LIB"] = str(lib)
    (tmp_path / "examples").symlink_to(REPO / "examples")
    (tmp_path / ".ci").symlink_to(REPO / ".ci")
    argv = shlex.split(command.replace("bash .ci/setup && ", ""))
    assert argv[0] in ("tinydeploy", "python3", "gcc", "arm-none-eabi-gcc"), command
    if argv[0] == "tinydeploy":
        argv = [sys.executable, "-m", "tinydeploy", *argv[1:]]
    elif argv[:3] == ["python3", "-m", "tinydeploy"]:
        argv[0] = sys.executable
    proc = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
                          stdin=subprocess.DEVNULL)
    output = proc.stdout + proc.stderr
    assert "Traceback" not in output, output
    if not expected:  # an example without output shown must simply work
        assert proc.returncode == 0, f"{command}\n{output}"
    said = {_normalise(line) for line in output.splitlines()}
    missing = [line for line in expected if _normalise(line) not in said]
    assert missing == [], f"{command}\n--- printed ---\n{output}"
