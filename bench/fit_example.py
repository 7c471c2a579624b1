"""The issue-13 acceptance run: ``tinydeploy fit`` on examples/wide_digits, timed, then the result
flashed and validated on the emulated board.

Runs the example's one command as a user would (a child process, the installed command), measures
its wall time, reads the candidates it wrote (fit.json), then ``tinydeploy flash`` and
``tinydeploy validate`` on the folder, and prints:

  baseline   the original's parameters, flash, RAM and int8 accuracy (and why it does not fit)
  chosen     the chosen candidate's, with the accuracy it lost (the requirement: at most 1 point)
  took       the fit's wall time and the machine's cores (the requirement: under 10 minutes on 2)
  device     exact-match rate and device accuracy from the validation on QEMU (required: 100%)

    python bench/fit_example.py [--board qemu-m3] [--keep DIR]

Exit 1 when a requirement is missed. Every figure is measured in this run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "wide_digits"
LIMIT_SECONDS = 600
MAX_DROP = 1.0


def tinydeploy(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tinydeploy", *args], cwd=REPO, text=True,
                          capture_output=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--board", default="qemu-m3")
    parser.add_argument("--keep", type=Path, help="write the fit's folder here (default: a temp dir)")
    args = parser.parse_args()
    out = args.keep or Path(tempfile.mkdtemp(prefix="fit-bench-")) / "wide_digits-fit"
    command = ["fit", str(EXAMPLE / "wide_digits.keras"), "--board", args.board,
               "--train", str(EXAMPLE / "train.npz"), "--eval", str(EXAMPLE / "eval.npz"),
               "-o", str(out), "--force"]
    started = time.monotonic()
    done = tinydeploy(*command)
    took = time.monotonic() - started
    if done.returncode != 0:
        print(done.stdout + done.stderr)
        print(f"fit failed (exit {done.returncode})")
        return 1
    table = json.loads((out / "fit.json").read_text())
    base = table["candidates"][0]
    chosen = table["candidates"][table["chosen"]]
    print(f"baseline   {base['params']:,} parameters, flash {base['flash']:,} B, RAM {base['ram']:,} B, "
          f"int8 {base['int8_accuracy']:.2%} ({base['verdict']})")
    print(f"chosen     #{chosen['index']} {chosen['method']} ({chosen['detail']}): "
          f"{chosen['params']:,} parameters, flash {chosen['flash']:,} B, RAM {chosen['ram']:,} B, "
          f"int8 {chosen['int8_accuracy']:.2%}, drop {chosen['drop_points']:+.2f} points "
          f"(at most {MAX_DROP:g})")
    print(f"took       {took:.0f} s for {len(table['candidates']) - 1} candidates on "
          f"{os.cpu_count()} cores (at most {LIMIT_SECONDS} s)")
    flashed = tinydeploy("flash", str(out))
    print(f"firmware   {flashed.stdout.strip() or flashed.stderr.strip()}")
    validated = tinydeploy("validate", str(out), "--samples", str(EXAMPLE / "eval.npz"))
    exact = re.search(r"exact match\s+([\d.]+)%", validated.stdout)
    accuracy = re.search(r"accuracy\s+device ([\d.]+)%", validated.stdout)
    print(f"device     exact match {exact.group(1) if exact else '?'}%, accuracy "
          f"{accuracy.group(1) if accuracy else '?'}% (validate exit {validated.returncode})")
    print(f"folder     {out}")
    ok = (chosen["fits"] and chosen["drop_points"] <= MAX_DROP and took < LIMIT_SECONDS
          and validated.returncode == 0 and exact is not None and float(exact.group(1)) == 100.0)
    print("requirements met" if ok else "REQUIREMENT MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
