"""Where the tests find shared data (the MLPerf Tiny models live beside the repo, never in it)."""

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MLPERF = REPO.parent / "shared" / "mlperf_tiny"
EXAMPLES = REPO / "examples"
