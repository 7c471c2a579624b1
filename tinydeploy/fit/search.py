"""The search of ``fit``: smaller models, cheapest first, each measured by the real pipeline.

Every candidate is a Keras model saved to a file and put through what ``tinydeploy build`` runs —
``build.prepare`` (TensorFlow's int8 conversion in the isolation worker, the analysis, the native
compiler's plan, TFLM's arena) and ``check.check`` for each runtime — and its int8 accuracy is that
of the int8 model as TFLM's reference kernels run it (``evaluate.micro_outputs``, in the worker) on
the evaluation samples. Nothing about a candidate is estimated.

The stages, in the order they are tried (the search stops after the first stage that yields a
candidate which fits and loses at most ``max_drop`` points):

1. *prune*: remove whole filters/units, the least important first (graph.Structure.importance),
   each channel group cut in proportion to what it costs in the resource that is over (weights for
   flash, activations for RAM), then fine-tune;
2. *low-rank*: replace large Dense and 1x1 convolution kernels by two factors from their truncated
   SVD, then fine-tune;
3. *prune+low-rank*: a gentler factorisation, then pruning until it fits, then fine-tune;
4. *+distil*: the best fitting candidate so far trained further against the original's softened
   outputs (knowledge distillation, the original as teacher);
5. *distil*: a student of the same architecture with every group's width scaled down, freshly
   initialised and trained by distillation from the original.

How much to cut is searched, not guessed: the size of a structure does not depend on its weight
values, so each stage first measures untrained structures (*probes*) to find the least cut that
fits (bisection, helped by how far over each probe is), and only that one is trained. Probes are
candidates too, with the accuracy they really have, and appear in the table.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tinydeploy.boards import BoardProfile
from tinydeploy.check import RUNTIMES, CheckResult
from tinydeploy.errors import DoesNotFitError, InputError, ModelError, TinydeployError
from tinydeploy.fit import graph
from tinydeploy.fit.train import Task, class_labels, predict, targets, task_of, tempered, train

FINE_TUNE_STEPS = 600         # default fine-tuning length, in optimizer steps (--epochs overrides)
MAX_AUTO_EPOCHS = 30
FINE_TUNE_RATE = 1e-3
DISTIL_RATE = 5e-4
STUDENT_EPOCH_FACTOR = 3      # a student from scratch trains this many times longer
IMPORTANCE_SAMPLES = 256
CALIB_SAMPLES = 200
MIN_KEEP = 0.03               # a group keeps at least this share of its channels (and 1)
PROBES = 6                    # size probes per stage after the first
# (name, method of _Search), in the order they are tried
STAGES = (("prune", "_stage_prune"), ("low-rank", "_stage_lowrank"),
          ("prune+low-rank", "_stage_prune_lowrank"), ("+distil", "_stage_distil_further"),
          ("distil", "_stage_student"))


@dataclass
class FitSettings:
    """What ``fit`` is asked to do (the CLI's options)."""

    board: BoardProfile
    train: str
    eval: str
    calib: str | None = None
    calib_samples: int | None = None
    io: str = "int8"
    max_drop: float = 1.0              # accuracy points
    time_budget: float = 600.0         # seconds
    epochs: int | None = None          # fine-tuning epochs (None: about FINE_TUNE_STEPS steps)
    batch_size: int = 32
    seed: int = 0
    runtimes: tuple[str, ...] = RUNTIMES
    tflm_library: object | None = None
    stages: tuple[str, ...] = tuple(name for name, _ in STAGES)   # which stages to try
    probes: int = PROBES               # size probes per stage after the deepest cut


@dataclass
class Candidate:
    """One measured model."""

    index: int
    method: str                      # original | prune | low-rank | prune+low-rank | ...+distil | distil
    detail: str                      # what was cut, e.g. "conv2 43/64, hidden 345/512"
    trained: bool                    # False for the original and for probes
    epochs: int
    params: int
    float_accuracy: float
    int8_accuracy: float
    drop: float                      # accuracy points lost against the original's int8 accuracy
    checks: dict[str, CheckResult]
    runtime: str                     # the runtime its figures are for (one that fits, if any)
    seconds: float
    changes: dict = field(default_factory=dict)
    keras_path: Path | None = None
    prepared: object | None = field(default=None, repr=False)
    model: object | None = field(default=None, repr=False)

    @property
    def check(self) -> CheckResult:
        return self.checks[self.runtime]

    @property
    def fits(self) -> bool:
        return self.check.fits

    @property
    def flash(self) -> int:
        return self.check.flash.used

    @property
    def ram(self) -> int:
        return self.check.ram.used

    @property
    def label(self) -> str:
        return self.method if self.trained or self.method == "original" else f"{self.method} probe"

    def overflow(self) -> float:
        """How far over the board it is: the larger relative overrun of RAM and flash (<= 0 fits)."""
        return _overflow(self.check)

    def verdict(self) -> str:
        c = self.check
        if c.unsupported:
            return f"{c.runtime} lacks {', '.join(c.unsupported)}"
        over = [f"{name} over by {-r.margin:,} B" for name, r in (("RAM", c.ram), ("flash", c.flash))
                if not r.fits]
        return "; ".join(over) or "fits"

    def to_dict(self) -> dict:
        return {
            "index": self.index, "method": self.method, "detail": self.detail,
            "trained": self.trained, "epochs": self.epochs, "params": self.params,
            "float_accuracy": self.float_accuracy, "int8_accuracy": self.int8_accuracy,
            "drop_points": round(self.drop, 4), "runtime": self.runtime, "fits": self.fits,
            "flash": self.flash, "ram": self.ram, "verdict": self.verdict(),
            "seconds": round(self.seconds, 2), "changes": self.changes,
            "model_bytes": len(self.prepared.model_bytes) if self.prepared else None,
            "checks": {rt: c.to_dict() for rt, c in self.checks.items()},
        }


@dataclass
class FitResult:
    """What the search found. ``status``: "fits" (the model already fits: nothing to do),
    "chosen" (``chosen`` fits and loses at most max_drop points, or is the best fitting candidate
    when the search was interrupted), or "none"."""

    name: str
    source: Path
    settings: FitSettings
    task: Task
    eval_samples: int
    baseline: Candidate
    candidates: list[Candidate]
    status: str
    chosen: Candidate | None = None
    keras_bytes: bytes | None = None      # the chosen model's .keras file
    calib_x: np.ndarray | None = None     # the calibration samples every candidate was quantized with
    interrupted: bool = False
    out_of_time: bool = False
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def board(self) -> BoardProfile:
        return self.settings.board

    @property
    def acceptable(self) -> bool:
        return self.chosen is not None and self.chosen.drop <= self.settings.max_drop + 1e-9

    def failure(self) -> DoesNotFitError:
        """The error that says why nothing was chosen, with what to try."""
        s, board = self.settings, self.settings.board.id
        fitting = [c for c in self.candidates if c.fits]
        budget = _clock(s.time_budget)
        if fitting:
            best = min(fitting, key=lambda c: (c.drop, c.flash))
            more = " before the time budget ran out" if self.out_of_time else ""
            return DoesNotFitError(
                f"no candidate that fits {board} stays within --max-drop {s.max_drop:g} points"
                f"{more}: the best, #{best.index} {best.label} ({best.detail}), loses "
                f"{best.drop:.2f} points",
                f"accept it with --max-drop {math.ceil(best.drop * 10) / 10:g}, give the search "
                f"more time (--time-budget, now {budget}) or epochs (--epochs), or choose a larger "
                "board")
        if self.out_of_time:
            return DoesNotFitError(
                f"the time budget ({budget}) ran out before any candidate fit {board}",
                "give the search more time with --time-budget")
        smallest = min(self.candidates, key=lambda c: c.overflow())
        return DoesNotFitError(
            f"cannot make {self.name} fit {board}: the smallest candidate, #{smallest.index} "
            f"{smallest.label} ({smallest.detail}), still has {smallest.verdict()}",
            "what fit cannot cut (the input, the output layer, layers of kinds it does not edit) "
            "is too large for this board: choose a larger board, or a smaller input or model")


class Reporter:
    """Progress of the search; the CLI draws it on stderr. Every method may be left as is."""

    def stage(self, name: str, number: int, total: int) -> None: ...

    def working(self, text: str) -> None: ...

    def epoch(self, done: int, total: int) -> None: ...

    def candidate(self, candidate: Candidate) -> None: ...


class _OutOfTime(Exception):
    pass


class _Unmeasurable(Exception):
    """A candidate the pipeline refused (e.g. a degenerate student whose int8 softmax TFLM cannot
    run): noted and skipped, never the end of the search."""


def fit(model_path: str | Path, settings: FitSettings, reporter: Reporter | None = None) -> FitResult:
    """Search for a smaller model that fits ``settings.board`` (see the module's docstring)."""
    search = _Search(Path(model_path), settings, reporter or Reporter())
    try:
        return search.run()
    finally:
        search.close()


class _Search:
    def __init__(self, path: Path, settings: FitSettings, reporter: Reporter):
        self.path, self.s, self.report = path, settings, reporter
        self.started = time.monotonic()
        self.deadline = self.started + settings.time_budget
        self.workdir: Path | None = None
        self.candidates: list[Candidate] = []
        self.sizes: dict[tuple, Candidate] = {}    # structure signature -> its probe
        self.measure_seconds: list[float] = []
        self.epoch_seconds: list[float] = []
        self.notes: list[str] = []
        self.saved = 0                              # models saved to the work folder

    def close(self) -> None:
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)

    # ------------------------------------------------------------------ set-up

    def run(self) -> FitResult:
        from tinydeploy.data import load_samples
        from tinydeploy.loading import check_model_path, load_model, tensorflow

        check_model_path(self.path)
        self.report.working(f"loading {self.path}")
        loaded = load_model(self.path)
        _require_keras3(loaded, self.path)
        tf = tensorflow()
        tf.config.experimental.enable_op_determinism()
        _seed(self.s.seed)
        self.name = loaded.name
        self.original = loaded.keras_model
        if len(self.original.outputs) != 1:
            raise ModelError(f"{self.name} has {len(self.original.outputs)} outputs; fit measures "
                             "one classifier output", "give fit a model with one output")
        shape = loaded.input_shape
        self.train = load_samples(self.s.train, input_shape=shape, what="training samples")
        self.eval = load_samples(self.s.eval, input_shape=shape, what="evaluation samples")
        rng = np.random.default_rng(self.s.seed)
        self.probe_x = self.train.x[np.sort(rng.permutation(len(self.train))[:IMPORTANCE_SAMPLES])]
        self.task = task_of(predict(self.original, self.probe_x), self.name)
        self.y_train = class_labels(self.train.y, self.task, len(self.train), "the training samples",
                                    self.s.train)
        self.y_eval = class_labels(self.eval.y, self.task, len(self.eval), "the evaluation samples",
                                   self.s.eval)
        if self.s.calib:
            calib = load_samples(self.s.calib, input_shape=shape, limit=self.s.calib_samples,
                                 what="calibration samples").x
        else:
            count = min(len(self.train), self.s.calib_samples or CALIB_SAMPLES)
            calib = self.train.x[np.sort(rng.permutation(len(self.train))[:count])]
        self.calib_x = calib
        self.workdir = Path(tempfile.mkdtemp(prefix=f"tinydeploy-fit-{os.getpid()}-"))
        self.calib_path = self.workdir / "calib.npz"
        np.savez(self.calib_path, x=calib)
        self.epochs = self.s.epochs or max(1, min(MAX_AUTO_EPOCHS, math.ceil(
            FINE_TUNE_STEPS * self.s.batch_size / len(self.train))))

        self.report.working(f"measuring {self.name} as it is")
        self.baseline_accuracy = None
        self.baseline = self._measure(self.original, "original", "as given", trained=False,
                                      epochs=0, path=self.path)
        result = FitResult(self.name, self.path, self.s, self.task, len(self.eval), self.baseline,
                           self.candidates, "none", calib_x=calib, notes=self.notes)
        if self.baseline.fits:
            result.status = "fits"
            return self._finish(result)
        self._refuse_what_cutting_cannot_fix()
        try:
            self.structure = graph.trace(self.original)
        except ValueError as exc:
            raise ModelError(f"fit cannot edit {self.name}: {exc}",
                             "build the model with the Sequential or functional Keras API") from None
        if not self.structure.prunable() and not self.structure.factorisable():
            raise ModelError(f"fit finds nothing it can cut in {self.name}: "
                             f"{self._why_nothing_prunable()}",
                             "give fit a model made of Keras layers it edits (Dense, Conv, "
                             "BatchNormalization, pooling, Add, Concatenate, ...)")
        self.teacher = tempered(self.task.log_probs_np(predict(self.original, self.train.x)))
        self.weights = self._pressure()
        try:
            self._stages()
        except _OutOfTime:
            result.out_of_time = True
        except KeyboardInterrupt as exc:
            if type(exc) is not KeyboardInterrupt:   # SIGTERM/SIGHUP: unwind, keep nothing
                raise
            result.interrupted = True
        self._choose(result)
        return self._finish(result)

    def _finish(self, result: FitResult) -> FitResult:
        for c in self.candidates:
            c.model = None
        result.seconds = time.monotonic() - self.started
        return result

    def _choose(self, result: FitResult) -> None:
        fitting = [c for c in self.candidates if c.fits]
        within = [c for c in fitting if c.drop <= self.s.max_drop + 1e-9]
        pool = within or (fitting if result.interrupted else [])
        if not pool:
            result.status = "none"
            return
        chosen = min(pool, key=lambda c: (round(c.drop, 6), c.flash + c.ram))
        result.status, result.chosen = "chosen", chosen
        result.keras_bytes = chosen.keras_path.read_bytes()

    def _refuse_what_cutting_cannot_fix(self) -> None:
        checks = [self.baseline.checks[rt] for rt in self.s.runtimes]
        if all(c.unsupported for c in checks):
            lacking = "; ".join(f"{c.runtime} lacks {', '.join(c.unsupported)}" for c in checks)
            raise ModelError(f"{self.name} cannot run on {self.s.board.id} at any size: {lacking}",
                             "fit makes models smaller, it does not replace ops; replace the layer "
                             "in the model")

    def _why_nothing_prunable(self) -> str:
        unknown = [f"{c.layer} ({c.why})" for c in self.structure.calls if c.why][:3]
        if unknown:
            return "its layers feed the output directly or are of kinds it does not edit: " + \
                ", ".join(unknown)
        return "every layer feeds the model's input or output directly"

    def _pressure(self) -> tuple[float, float]:
        """How much flash and RAM are over (relative), for the runtime closest to fitting: how much
        each group's cut weighs its weights against its activations."""
        checks = [self.baseline.checks[rt] for rt in self.s.runtimes
                  if not self.baseline.checks[rt].unsupported]
        best = min(checks, key=_overflow)
        flash = max(0.0, -best.flash.margin) / max(1, best.flash.parts.get("model", 1))
        ram = max(0.0, -best.ram.margin) / max(1, best.arena)
        if flash == 0 and ram == 0:
            return 1.0, 0.0
        return flash, ram

    # ------------------------------------------------------------------ the stages

    def _stages(self) -> None:
        stages = [(name, method) for name, method in STAGES if name in self.s.stages]
        for number, (name, method) in enumerate(stages, 1):
            if any(c.fits and c.drop <= self.s.max_drop + 1e-9 for c in self.candidates):
                return
            self._time_left(self._measure_estimate())
            self.report.stage(name, number, len(stages))
            getattr(self, method)()

    def _stage_prune(self) -> None:
        structure = self.structure
        importance = structure.importance(self.probe_x)
        costs = structure.group_costs()

        def make(level: float):
            keep = prune_plan(structure, importance, costs, level, self.weights)
            changes = _keep_changes(structure, keep)
            return (lambda: graph.rebuild(structure, keep=keep)), _describe(changes), changes

        best = self._least_cut("prune", make)
        if best is not None:
            self._fine_tune(best, "prune")

    def _stage_lowrank(self) -> None:
        layers = self.structure.factorisable()
        if not layers:
            self.notes.append("low-rank: no Dense or 1x1 convolution layer is large enough to "
                              "factorise")
            return

        def make(level: float):
            ranks = rank_plan(layers, level)
            changes = {f"{k} rank": v for k, v in ranks.items()}
            return (lambda: graph.rebuild(self.structure, ranks=ranks)), _describe(changes), changes

        self.lowrank_level = None
        best = self._least_cut("low-rank", make)
        if best is not None:
            self.lowrank_level = best.changes.get("_level")
            self._fine_tune(best, "low-rank")

    def _stage_prune_lowrank(self) -> None:
        layers = self.structure.factorisable()
        if not layers or not self.structure.prunable():
            return
        found = getattr(self, "lowrank_level", None)
        gentle = found / 2 if found else 0.5
        ranks = rank_plan(layers, gentle)
        self.report.working("factorising " + _describe({f"{k} rank": v for k, v in ranks.items()}))
        _seed(self.s.seed)
        factored = graph.rebuild(self.structure, ranks=ranks)
        structure = graph.trace(factored)
        importance = structure.importance(self.probe_x)
        costs = structure.group_costs()
        # the factors' own bottleneck channels are what the rank already decided: cut around them
        bottlenecks = {structure.groups.find(structure.own[f"{k}_lowrank"]) for k in ranks
                       if f"{k}_lowrank" in structure.own}
        importance = {g: v for g, v in importance.items() if g not in bottlenecks}

        def make(level: float):
            keep = prune_plan(structure, importance, costs, level, self.weights)
            changes = {**{f"{k} rank": v for k, v in ranks.items()},
                       **_keep_changes(structure, keep)}
            return (lambda: graph.rebuild(structure, keep=keep)), _describe(changes), changes

        best = self._least_cut("prune+low-rank", make)
        if best is not None:
            self._fine_tune(best, "prune+low-rank")

    def _stage_distil_further(self) -> None:
        """+distil: the best fitting trained candidate so far, trained on against the teacher."""
        trained = [c for c in self.candidates if c.fits and c.trained]
        if not trained:
            return
        base = max(trained, key=lambda c: (c.int8_accuracy, -c.flash))
        import keras

        _seed(self.s.seed)
        model = keras.models.load_model(base.keras_path, compile=False)
        self._train_and_measure(model, f"{base.method}+distil", base.detail, dict(base.changes),
                                epochs=self.epochs, rate=DISTIL_RATE, soft=True)

    def _stage_student(self) -> None:
        """distil: a narrower copy of the architecture, trained from scratch against the teacher."""
        structure = self.structure
        if not structure.prunable():
            return

        def make(level: float):
            keep = width_plan(structure, level)
            changes = {"width": _width(structure, keep), **_keep_changes(structure, keep)}

            def build():
                return graph.rebuild(structure, keep=keep, fresh=True)
            return build, _describe(changes), changes

        best = self._least_cut("distil", make)
        if best is not None:
            model, best.model = best.model, None
            self._train_and_measure(model, "distil", best.detail, dict(best.changes),
                                    epochs=self.epochs * STUDENT_EPOCH_FACTOR, rate=FINE_TUNE_RATE,
                                    soft=True)

    # ------------------------------------------------------------------ searching a level

    def _least_cut(self, method: str, make) -> Candidate | None:
        """The probe that fits with the least cut ``level`` in (0, 1] (``make(level)`` gives the
        model's builder, its description and changes); None when even level 1 does not fit."""
        def probe(level: float) -> Candidate:
            build, detail, changes = make(level)
            key = (method, tuple(sorted((k, v) for k, v in changes.items())))
            if key in self.sizes:
                return self.sizes[key]
            self._time_left(self._measure_estimate())
            self.report.working(f"{method} probe: {detail}")
            _seed(self.s.seed)          # layers draw their seed generators when they are made
            model = build()
            try:
                candidate = self._measure(model, method, detail, trained=False, epochs=0,
                                          changes={**changes, "_level": round(level, 4)})
            except _Unmeasurable as exc:
                self.notes.append(f"{method} probe ({detail}) skipped: {exc}")
                self.sizes[key] = None
                return None
            candidate.model = model
            self.sizes[key] = candidate
            return candidate

        hi, hi_level = None, 1.0
        for hi_level in (1.0, 0.9, 0.75):   # the deepest cut that the pipeline can measure
            hi = probe(hi_level)
            if hi is not None:
                break
        if hi is None:
            return None
        if not hi.fits:
            self.notes.append(f"{method}: even the deepest cut does not fit ({hi.verdict()})")
            return None
        lo_level, lo_over = 0.0, self.baseline.overflow()
        hi_over = hi.overflow()
        best = hi
        for _ in range(self.s.probes):
            width = hi_level - lo_level
            if width <= 0.03:
                break
            guess = lo_level + width * lo_over / max(1e-9, lo_over - hi_over)
            level = min(max(guess, lo_level + 0.2 * width), hi_level - 0.2 * width)
            c = probe(level)
            if c is None:                   # not measurable: search the other side of it
                lo_level = level
            elif c.fits:
                if c is best:      # the same structure as the best: the boundary is below
                    hi_level = level
                    continue
                hi_level, hi_over, best = level, c.overflow(), c
            else:
                lo_level, lo_over = level, max(c.overflow(), 1e-6)
        for c in self.candidates:          # only the chosen probe's model is still needed
            if c is not best:
                c.model = None
        return best

    # ------------------------------------------------------------------ training

    def _fine_tune(self, probe: Candidate, method: str) -> Candidate | None:
        model, probe.model = probe.model, None
        return self._train_and_measure(model, method, probe.detail, dict(probe.changes),
                                       epochs=self.epochs, rate=FINE_TUNE_RATE, soft=False)

    def _train_and_measure(self, model, method: str, detail: str, changes: dict, *, epochs: int,
                           rate: float, soft: bool) -> Candidate:
        per_epoch = np.median(self.epoch_seconds) if self.epoch_seconds else 0.0
        self._time_left(self._measure_estimate() + per_epoch)
        self.report.working(f"{method}: training {epochs} epochs")
        y = targets(self.y_train, self.task, self.teacher if soft else None)
        started = time.monotonic()

        def on_epoch(done: int, total: int) -> None:
            self.report.epoch(done, total)

        done = train(model, self.train.x, y, self.task, epochs=epochs,
                     batch_size=self.s.batch_size, learning_rate=rate, seed=self.s.seed,
                     soft_weight=0.7 if soft else 0.0,
                     deadline=self.deadline - self._measure_estimate(), on_epoch=on_epoch)
        if done:
            self.epoch_seconds.append((time.monotonic() - started) / done)
        if done < epochs:
            self.notes.append(f"{method}: the time budget stopped training after {done} of "
                              f"{epochs} epochs")
        try:
            return self._measure(model, method, detail, trained=True, epochs=done,
                                 changes=changes, started=started)
        except _Unmeasurable as exc:
            self.notes.append(f"{method} ({detail}) skipped after training: {exc}")
            return None

    # ------------------------------------------------------------------ measuring

    def _measure(self, model, method: str, detail: str, *, trained: bool, epochs: int,
                 changes: dict | None = None, path: Path | None = None,
                 started: float | None = None) -> Candidate:
        from tinydeploy import isolation
        from tinydeploy.build import prepare
        from tinydeploy.check import check

        started = started or time.monotonic()
        measuring = time.monotonic()
        index = len(self.candidates)
        baseline = path is not None
        if path is None:
            self.saved += 1
            path = self.workdir / f"{self.saved:03d}" / f"{self.name}_fit.keras"
            path.parent.mkdir()
            model.save(path)
        try:
            prepared = prepare(path, calib=str(self.calib_path), io=self.s.io,
                               tflm_library=self.s.tflm_library)
            checks = {rt: check(prepared.measured, self.s.board, rt) for rt in self.s.runtimes}
            int8_out = isolation.run("tinydeploy.evaluate", "micro_outputs", prepared.model_bytes,
                                     self.eval.x, crash_fix="a bug in TFLM's reference kernels "
                                     "that this model triggers; replace the layer it fails on")
        except TinydeployError as exc:
            if baseline:      # the model as given: the user's to fix
                raise
            raise _Unmeasurable(str(exc)) from None
        int8_accuracy = self.task.accuracy(int8_out, self.y_eval)
        float_accuracy = self.task.accuracy(predict(model, self.eval.x), self.y_eval)
        if self.baseline_accuracy is None:
            self.baseline_accuracy = int8_accuracy
        candidate = Candidate(
            index=index, method=method, detail=detail, trained=trained, epochs=epochs,
            params=graph.count_params(model), float_accuracy=float_accuracy,
            int8_accuracy=int8_accuracy, drop=100.0 * (self.baseline_accuracy - int8_accuracy),
            checks=checks, runtime=_best_runtime(checks, self.s.board), seconds=0.0,
            changes=changes or {}, keras_path=path, prepared=prepared)
        self.measure_seconds.append(time.monotonic() - measuring)
        candidate.seconds = time.monotonic() - started
        self.candidates.append(candidate)
        self.report.candidate(candidate)
        return candidate

    def _measure_estimate(self) -> float:
        return float(np.median(self.measure_seconds)) if self.measure_seconds else 5.0

    def _time_left(self, needed: float) -> None:
        if time.monotonic() + needed > self.deadline:
            raise _OutOfTime


# --------------------------------------------------------------------------- plans

def prune_plan(structure: graph.Structure, importance: dict[int, np.ndarray],
               costs: dict[int, tuple[float, float]], level: float,
               pressure: tuple[float, float]) -> dict[int, np.ndarray]:
    """Which channels each group keeps at cut ``level`` in [0, 1]: a group loses up to ``level`` of
    its channels, in proportion to its share of the resources that are over (``pressure``: how far
    over flash and RAM are), its least important channels first."""
    flash_p, ram_p = pressure
    total = sum(p for p, _ in costs.values()) or 1.0
    share = {g: flash_p * p / total + ram_p * a for g, (p, a) in costs.items() if g in importance}
    top = max(share.values(), default=0.0) or 1.0
    keep = {}
    for g, scores in importance.items():
        n = len(scores)
        cut = level * share.get(g, 0.0) / top
        count = max(1, math.ceil(MIN_KEEP * n), int(round(n * (1.0 - cut))))
        count = min(n, count)
        if count < n:
            order = np.argsort(-scores, kind="stable")
            keep[g] = np.sort(order[:count])
    return keep


def rank_plan(layers: dict[str, tuple[int, int]], level: float) -> dict[str, int]:
    """The rank of each factorised layer at cut ``level`` in [0, 1]: from just under the rank at
    which the two factors stop saving weights (level 0) down to 1 (level 1)."""
    ranks = {}
    for name, (n_in, n_out) in layers.items():
        even = n_in * n_out // (n_in + n_out)
        ranks[name] = max(1, int(round((even - 1) * (1.0 - level))))
    return ranks


def width_plan(structure: graph.Structure, level: float) -> dict[int, np.ndarray]:
    """Every group scaled to the same width 1 - level (at least one channel): a student."""
    keep = {}
    for g, n in structure.prunable().items():
        count = max(1, int(round(n * (1.0 - level))))
        if count < n:
            keep[g] = np.arange(count)
    return keep


# --------------------------------------------------------------------------- helpers

def _seed(seed: int) -> None:
    import keras

    keras.utils.set_random_seed(seed)


def _width(structure: graph.Structure, keep) -> str:
    """The width a plan leaves, as the median share of channels kept per group."""
    shares = [len(keep[g]) / n if g in keep else 1.0 for g, n in structure.prunable().items()]
    return f"{float(np.median(shares)):.0%}" if shares else "100%"


def _keep_changes(structure: graph.Structure, keep) -> dict:
    counts = structure.keep_counts(keep)
    return {name: f"{n}/{structure.groups.size[structure.groups.find(structure.own[name])]}"
            for name, n in counts.items()}


def _describe(changes: dict) -> str:
    shown = [f"{k} {v}" for k, v in changes.items() if not k.startswith("_")]
    return ", ".join(shown) or "no change"


def _overflow(check: CheckResult) -> float:
    if check.unsupported:
        return math.inf
    return max(-check.ram.margin / check.ram.available, -check.flash.margin / check.flash.available)


def _best_runtime(checks: dict[str, CheckResult], board: BoardProfile) -> str:
    fitting = [rt for rt, c in checks.items() if c.fits]
    if fitting:
        return board.default_runtime if board.default_runtime in fitting else fitting[0]
    return min(checks, key=lambda rt: _overflow(checks[rt]))


def _require_keras3(loaded, path: Path) -> None:
    if loaded.kind != "keras":
        kind = "a .tflite" if loaded.kind == "tflite" else "a SavedModel"
        raise InputError(f"fit retrains the model, and {path} is {kind}, which holds no Keras "
                         "layers to cut and train", "pass the Keras model it came from (.keras "
                         "or .h5)")
    if loaded.keras_flavor != "keras":
        raise InputError(f"{path} loads only with tf_keras (Keras 2), and fit edits Keras 3 models",
                         "rebuild the model with Keras 3, load its weights (model.load_weights) "
                         "and save it as .keras")


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}" if seconds < 3600 else \
        f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
