"""``tinydeploy fit``: when a model does not fit a board, search for a smaller one that does, with
the accuracy it costs measured.

- :mod:`tinydeploy.fit.graph` — the model's channel groups, and the model rebuilt with fewer
  channels, factorised layers or a narrower width (Keras 3 surgery);
- :mod:`tinydeploy.fit.train` — fine-tuning and distillation;
- :mod:`tinydeploy.fit.search` — the search, each candidate measured by the real pipeline;
- :mod:`tinydeploy.fit.report` — the table, the chart and the output folder.

From Python::

    from tinydeploy.boards import load_board
    from tinydeploy.fit import FitSettings, fit, write

    result = fit("model.keras", FitSettings(load_board("qemu-m3"), train="train.npz",
                                            eval="eval.npz"))
    if result.status == "chosen":
        write(result, "build/model-fit-qemu-m3")
"""

from tinydeploy.fit.search import Candidate, FitResult, FitSettings, Reporter, fit
from tinydeploy.fit.report import write

__all__ = ["Candidate", "FitResult", "FitSettings", "Reporter", "fit", "write"]
