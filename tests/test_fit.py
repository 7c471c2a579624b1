"""tinydeploy fit: the model surgery, the training, the search through the real pipeline, the command.

The surgery and training tests run on tiny Keras models in this process (seconds). The search tests
(marked slow) measure every candidate the way ``fit`` does — TensorFlow's int8 conversion in the
worker, the board check, int8 accuracy from TFLM's reference kernels — on tiny models and a copy of
qemu-m3 whose flash is made small enough that they do not fit. The end-to-end test runs the command
on a model too big for the real qemu-m3, then flashes and validates the result on QEMU.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from paths import EXAMPLES, REPO
from tinydeploy.cli import cli

DIGITS = EXAMPLES / "digits"
HAS_QEMU = bool(shutil.which("qemu-system-arm") and shutil.which("arm-none-eabi-gcc"))


# --------------------------------------------------------------------------- tiny models

def keras_module():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras

    return keras


def cnn(seed: int = 0):
    """Conv-BN-ReLU twice, pooling, Flatten, Dense: every kind of cut a Sequential model has."""
    keras = keras_module()
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([
        keras.Input((8, 8, 1)),
        keras.layers.Conv2D(6, 3, padding="same", use_bias=False, name="c1"),
        keras.layers.BatchNormalization(name="bn1"),
        keras.layers.ReLU(name="r1"),
        keras.layers.Conv2D(8, 3, padding="same", name="c2"),
        keras.layers.BatchNormalization(name="bn2"),
        keras.layers.ReLU(name="r2"),
        keras.layers.MaxPooling2D(2, name="pool"),
        keras.layers.Flatten(name="flat"),
        keras.layers.Dropout(0.1, name="drop"),
        keras.layers.Dense(12, activation="relu", name="hidden"),
        keras.layers.Dense(3, activation="softmax", name="out"),
    ])
    _randomise_batch_norm(model)
    return model


def residual(seed: int = 0):
    """A functional model with a residual Add, a depthwise convolution, a Concatenate, global
    pooling and a separable convolution."""
    keras = keras_module()
    keras.utils.set_random_seed(seed)
    L = keras.layers
    inp = keras.Input((8, 8, 2))
    a = L.Conv2D(6, 3, padding="same", activation="relu", name="a")(inp)
    b = L.Conv2D(6, 3, padding="same", name="b")(a)
    b = L.BatchNormalization(name="bn")(b)
    s = L.Add(name="add")([a, b])
    s = L.ReLU(name="relu")(s)
    d = L.DepthwiseConv2D(3, padding="same", name="dw")(s)
    c = L.Concatenate(name="cat")([d, a])
    p = L.Conv2D(7, 1, name="pw")(c)
    q = L.SeparableConv2D(5, 3, padding="same", name="sep")(p)
    g = L.GlobalAveragePooling2D(name="gap")(q)
    h = L.Dense(9, activation="relu", name="h")(g)
    out = L.Dense(4, name="logits")(h)
    model = keras.Model(inp, out)
    _randomise_batch_norm(model)
    return model


def _randomise_batch_norm(model):
    rng = np.random.default_rng(1)
    for layer in model.layers:
        if type(layer).__name__ == "BatchNormalization":
            n = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(0.5, 1.5, n), rng.normal(0, 0.2, n),
                               rng.normal(0, 0.2, n), rng.uniform(0.5, 2.0, n)])


def samples(shape, n: int = 16, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, *shape)).astype(np.float32)


def predict(model, x):
    return np.asarray(model(x, training=False))


def zero_what_is_cut(structure, keep):
    """The original model with every weight that reads a cut channel set to zero: what the pruned
    model must compute."""
    from tinydeploy.fit import graph

    clone = graph.rebuild(structure)   # an exact copy (tested below)
    layers = {layer.name: layer for layer in clone.layers}
    for call in structure.calls:
        if call.kind != graph.MIXER:
            continue
        layout = structure.layouts[call.inputs[0]]
        cut = np.setdiff1d(np.arange(len(layout)), structure.kept_positions(layout, keep))
        layer = layers[call.layer]
        for v in layer.weights:
            axis = graph._MIXERS[call.class_name].get(v.name, (None, None))[0]
            if axis is None or v.name == "depthwise_kernel":
                continue
            value = np.array(v.numpy())
            index = [slice(None)] * value.ndim
            index[axis] = cut
            value[tuple(index)] = 0
            v.assign(value)
    return clone


def half_of_every_group(structure):
    rng = np.random.default_rng(0)
    return {g: np.sort(rng.permutation(n)[: max(1, n // 2)])
            for g, n in structure.prunable().items()}


# --------------------------------------------------------------------------- surgery

@pytest.mark.parametrize("make, shape", [(cnn, (8, 8, 1)), (residual, (8, 8, 2))],
                         ids=["sequential-cnn", "residual-functional"])
def test_rebuilding_without_cuts_is_an_exact_copy(make, shape):
    from tinydeploy.fit import graph

    model = make()
    copy = graph.rebuild(graph.trace(model))
    x = samples(shape)
    assert copy is not model and graph.count_params(copy) == graph.count_params(model)
    np.testing.assert_array_equal(predict(copy, x), predict(model, x))


@pytest.mark.parametrize("make, shape", [(cnn, (8, 8, 1)), (residual, (8, 8, 2))],
                         ids=["sequential-cnn", "residual-functional"])
def test_a_pruned_model_computes_what_the_original_does_without_the_cut_channels(make, shape):
    from tinydeploy.fit import graph

    model = make()
    structure = graph.trace(model)
    keep = half_of_every_group(structure)
    pruned = graph.rebuild(structure, keep=keep)
    x = samples(shape)
    assert graph.count_params(pruned) < graph.count_params(model) * 0.6
    np.testing.assert_allclose(predict(pruned, x), predict(zero_what_is_cut(structure, keep), x),
                               rtol=1e-4, atol=1e-5)
    # and cutting really changed something (the test above would pass on a model that ignores keep)
    assert not np.allclose(predict(pruned, x), predict(model, x), atol=1e-3)


def test_channel_groups_follow_adds_concatenations_and_never_cut_inputs_or_outputs():
    from tinydeploy.fit import graph

    structure = graph.trace(residual())
    find = structure.groups.find
    own = {name: find(g) for name, g in structure.own.items()}
    assert own["a"] == own["b"]               # the residual Add ties a's and b's channels
    prunable = structure.prunable()
    assert own["a"] in prunable and own["pw"] in prunable and own["sep"] in prunable
    assert own["logits"] not in prunable      # the model's output
    cat = next(c for c in structure.calls if c.layer == "cat")
    layout = structure.layouts[cat.outputs[0]]
    assert [find(int(g)) for g in layout.groups] == [own["a"]] * 12   # depthwise passes a's group
    assert list(layout.chans) == list(range(6)) * 2


def test_a_layer_fit_does_not_know_freezes_the_channels_around_it():
    from tinydeploy.fit import graph

    keras = keras_module()
    inp = keras.Input((4, 4, 3))
    x = keras.layers.Conv2D(5, 1, name="before")(inp)
    x = keras.layers.Permute((1, 3, 2), name="permute")(x)    # mixes the channel axis away
    x = keras.layers.Conv2D(4, 1, name="after")(x)
    x = keras.layers.Flatten()(x)
    out = keras.layers.Dense(2, activation="softmax", name="out")(x)
    structure = graph.trace(keras.Model(inp, out))
    permute = next(c for c in structure.calls if c.layer == "permute")
    assert permute.kind == graph.UNKNOWN and "Permute" in permute.why
    prunable = structure.prunable()
    assert structure.groups.find(structure.own["before"]) not in prunable
    assert structure.groups.find(structure.own["after"]) in prunable


def test_low_rank_factors_are_exact_at_full_rank_and_the_truncated_svd_below():
    from tinydeploy.fit import graph

    model = cnn()
    structure = graph.trace(model)
    assert "hidden" in structure.factorisable(min_share=0.0)
    x = samples((8, 8, 1))
    full = graph.rebuild(structure, ranks={"hidden": 12})        # min(in, out): exact
    np.testing.assert_allclose(predict(full, x), predict(model, x), rtol=1e-4, atol=1e-5)
    low = graph.rebuild(structure, ranks={"hidden": 3})
    a = low.get_layer("hidden_lowrank").kernel.numpy()
    b = low.get_layer("hidden").kernel.numpy()
    assert a.shape == (128, 3) and b.shape == (3, 12)
    w = model.get_layer("hidden").kernel.numpy().astype(np.float64)
    u, s, vt = np.linalg.svd(w, full_matrices=False)
    np.testing.assert_allclose(a @ b, (u[:, :3] * s[:3]) @ vt[:3], rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(low.get_layer("hidden").bias.numpy(),
                                  model.get_layer("hidden").bias.numpy())


def test_a_1x1_convolution_is_factorised_too():
    from tinydeploy.fit import graph

    model = residual()
    structure = graph.trace(model)
    assert "pw" in structure.factorisable(min_share=0.0)
    factored = graph.rebuild(structure, ranks={"pw": 7})   # min(12, 7): exact
    x = samples((8, 8, 2))
    np.testing.assert_allclose(predict(factored, x), predict(model, x), rtol=1e-4, atol=1e-5)
    assert factored.get_layer("pw_lowrank").kernel.shape == (1, 1, 12, 7)


def test_a_student_is_narrower_freshly_initialised_and_keeps_fixed_preprocessing():
    from tinydeploy.fit import graph, search

    keras = keras_module()
    keras.utils.set_random_seed(0)
    norm = keras.layers.Normalization(name="norm")
    norm.adapt(samples((8, 8, 1), 32) * 4 + 1)       # mean about 3: not what a fresh layer holds
    model = keras.Sequential([keras.Input((8, 8, 1)), norm,
                              *[layer for layer in cnn().layers]])
    structure = graph.trace(model)
    keep = search.width_plan(structure, 0.5)
    student = graph.rebuild(structure, keep=keep, fresh=True)
    assert student.get_layer("c2").kernel.shape == (3, 3, 3, 4)
    assert student.get_layer("hidden").kernel.shape == (64, 6)
    assert student.get_layer("out").kernel.shape == (6, 3)
    pruned = graph.rebuild(structure, keep=keep)   # the same shapes, the teacher's weights
    assert not np.allclose(student.get_layer("c2").kernel.numpy(),
                           pruned.get_layer("c2").kernel.numpy())
    kept, adapted = student.get_layer("norm").get_weights(), norm.get_weights()
    assert len(adapted) >= 2 and adapted[0].mean() > 2
    for a, b in zip(kept, adapted):
        np.testing.assert_array_equal(a, b)


def test_importance_scores_a_channel_that_is_always_zero_at_zero():
    from tinydeploy.fit import graph

    model = cnn()
    c2 = model.get_layer("c2")
    kernel, bias = c2.get_weights()
    kernel[..., 5] = 0.0                 # channel 5 of c2 is then constant ...
    c2.set_weights([kernel, bias])
    bn = model.get_layer("bn2")
    gamma, beta, mean, var = bn.get_weights()
    beta[:] = 3.0                         # every other channel is mostly positive: alive
    beta[5], mean[5] = -5.0, bias[5]      # ... and ReLU makes channel 5 0
    bn.set_weights([gamma, beta, mean, var])
    structure = graph.trace(model)
    scores = structure.importance(samples((8, 8, 1), 32))[structure.groups.find(structure.own["c2"])]
    assert scores[5] == 0.0 and np.all(np.delete(scores, 5) > 0)


def test_the_prune_plan_cuts_where_the_pressure_is_and_the_least_important_first():
    from tinydeploy.fit import graph, search

    structure = graph.trace(cnn())
    importance = structure.importance(samples((8, 8, 1), 32))
    costs = structure.group_costs()
    g_c1, g_c2, g_hidden = (structure.groups.find(structure.own[n]) for n in ("c1", "c2", "hidden"))
    flash = search.prune_plan(structure, importance, costs, 0.5, (1.0, 0.0))
    assert len(flash[g_c2]) < 8 and len(flash[g_hidden]) < 12          # where the weights are
    assert len(flash.get(g_c1, range(6))) > len(flash[g_c2]) * 6 / 8   # c1 holds few weights
    kept = flash[g_c2]
    assert set(np.argsort(-importance[g_c2])[: len(kept)]) == set(kept)
    ram = search.prune_plan(structure, importance, costs, 0.5, (0.0, 1.0))
    assert len(ram[g_c1]) < 6            # c1 holds large 8x8 activations and few weights
    deeper = search.prune_plan(structure, importance, costs, 0.9, (1.0, 0.0))
    assert all(len(deeper[g]) <= len(flash[g]) for g in flash)
    deepest = search.prune_plan(structure, importance, costs, 1.0, (1.0, 1.0))
    assert all(len(k) >= 1 for k in deepest.values())


def test_rank_and_width_plans_go_from_almost_nothing_to_everything():
    from tinydeploy.fit import search

    assert search.rank_plan({"d": (1024, 512)}, 0.0) == {"d": 340}   # just below break-even 341
    assert search.rank_plan({"d": (1024, 512)}, 1.0) == {"d": 1}
    assert search.rank_plan({"d": (1024, 512)}, 0.5)["d"] == 170


# --------------------------------------------------------------------------- training

def test_the_task_is_read_from_the_outputs_and_labels_are_checked_against_it():
    from tinydeploy.errors import InputError
    from tinydeploy.fit import train

    probs = np.array([[0.2, 0.8], [0.9, 0.1]])
    assert train.task_of(probs, "m").kind == train.SOFTMAX
    assert train.task_of(np.array([[3.0, -1.0], [0.5, 2.0]]), "m").kind == train.LOGITS
    assert train.task_of(np.array([[0.3], [0.9]]), "m").kind == train.SIGMOID
    binary = train.task_of(np.array([[-2.0], [4.0]]), "m")
    assert binary.kind == train.BINARY_LOGIT and binary.classes == 2
    np.testing.assert_array_equal(binary.predict(np.array([[-2.0], [4.0]])), [0, 1])
    task = train.Task(train.SOFTMAX, 3)
    np.testing.assert_array_equal(train.class_labels(np.eye(3)[[2, 0]], task, 2, "t", "s"), [2, 0])
    np.testing.assert_array_equal(train.class_labels(np.array([[1], [2]]), task, 2, "t", "s"), [1, 2])
    for bad, words in ((np.array([0, 3]), "0..2"), (np.array([0.5, 1.0]), "whole numbers"),
                       (None, "no labels"), (np.zeros((2, 5)), "per sample")):
        with pytest.raises(InputError, match=words):
            train.class_labels(bad, task, 2, "the training samples", "s")


def test_the_distillation_loss_is_cross_entropy_plus_the_teachers_kl():
    from tinydeploy.fit import train

    task = train.Task(train.SOFTMAX, 3)
    student = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]], dtype=np.float32)
    labels = np.array([0, 2])
    ce = -np.log(student[[0, 1], labels])
    plain = train.make_loss(task, 0.0)(train.targets(labels, task, None), student)
    np.testing.assert_allclose(np.asarray(plain), ce, rtol=1e-5)
    teacher_same = train.tempered(task.log_probs_np(student))
    same = train.make_loss(task, 0.7)(train.targets(labels, task, teacher_same), student)
    np.testing.assert_allclose(np.asarray(same), 0.3 * ce, rtol=1e-4)      # KL(p || p) = 0
    teacher_other = train.tempered(task.log_probs_np(student[::-1].copy()))
    other = train.make_loss(task, 0.7)(train.targets(labels, task, teacher_other), student)
    assert np.all(np.asarray(other) > 0.3 * ce + 1e-3)


def test_training_is_deterministic_with_a_seed_and_distillation_pulls_towards_the_teacher():
    from tinydeploy.fit import graph, train

    keras = keras_module()
    x = samples((8, 8, 1), 64, seed=3)
    teacher_model = cnn(seed=5)
    task = train.Task(train.SOFTMAX, 3)
    labels = np.argmax(predict(teacher_model, x), axis=1)
    soft = train.tempered(task.log_probs_np(predict(teacher_model, x)))
    structure = graph.trace(cnn(seed=7))

    def student():
        keras.utils.set_random_seed(0)
        model = graph.rebuild(structure, keep={}, fresh=True)
        train.train(model, x, train.targets(labels, task, soft), task, epochs=6, batch_size=16,
                    learning_rate=3e-3, seed=0, soft_weight=0.7)
        return model

    first, second = student(), student()
    for a, b in zip(first.get_weights(), second.get_weights()):
        np.testing.assert_array_equal(a, b)
    keras.utils.set_random_seed(0)
    untrained = graph.rebuild(structure, keep={}, fresh=True)

    def gap(model):
        p = predict(model, x)
        return float(np.mean(np.abs(p - predict(teacher_model, x))))

    assert gap(first) < gap(untrained) * 0.8


# --------------------------------------------------------------------------- the search (slow)

def _digits(n_train: int = 600):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[..., None]
    x_train, x_eval, y_train, y_eval = train_test_split(x, d.target, test_size=0.2,
                                                        random_state=0, stratify=d.target)
    return x_train[:n_train], y_train[:n_train], x_eval, y_eval


def _trained(model, x, y, epochs: int):
    keras = keras_module()
    keras.utils.set_random_seed(0)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy")
    model.fit(x, y, epochs=epochs, batch_size=32, verbose=0)
    return model


def small_digits_model():
    """About 50k parameters: Conv-BN-ReLU, Flatten, a dense layer of 96 units."""
    keras = keras_module()
    keras.utils.set_random_seed(0)
    return keras.Sequential([
        keras.Input((8, 8, 1)),
        keras.layers.Conv2D(8, 3, padding="same", use_bias=False, name="conv"),
        keras.layers.BatchNormalization(name="bn"),
        keras.layers.ReLU(name="relu"),
        keras.layers.Flatten(name="flat"),
        keras.layers.Dense(96, activation="relu", name="hidden"),
        keras.layers.Dense(10, activation="softmax", name="probabilities"),
    ], name="small_digits")


@pytest.fixture(scope="module")
def small_case(tmp_path_factory):
    """A trained ~50k-parameter digits model, its data, and qemu-m3 with its flash cut to 48 KB."""
    from tinydeploy.boards import load_board

    folder = tmp_path_factory.mktemp("fit-small")
    x_train, y_train, x_eval, y_eval = _digits()
    model = _trained(small_digits_model(), x_train, y_train, epochs=8)
    path = folder / "small_digits.keras"
    model.save(path)
    np.savez(folder / "train.npz", x=x_train, y=y_train)
    np.savez(folder / "eval.npz", x=x_eval, y=y_eval)
    board = dataclasses.replace(load_board("qemu-m3"), flash_bytes=48 * 1024)
    return path, folder, board


def _settings(case, **changes):
    from tinydeploy.fit import FitSettings

    path, folder, board = case
    base = dict(board=board, train=str(folder / "train.npz"), eval=str(folder / "eval.npz"),
                epochs=2, time_budget=600.0, probes=2)
    return FitSettings(**{**base, **changes})


@pytest.fixture(scope="module")
def every_stage(small_case):
    """One search through every stage (nothing is accepted, so none stops it)."""
    from tinydeploy.fit import fit

    return fit(small_case[0], _settings(small_case, max_drop=-100.0))


@pytest.mark.slow
def test_every_compression_makes_a_candidate_that_fits_measured_by_the_real_pipeline(every_stage):
    from tinydeploy.check import check

    result = every_stage
    board = result.board
    assert not result.baseline.fits and result.baseline.method == "original"
    trained = {c.method: c for c in result.candidates if c.trained}
    assert {"prune", "low-rank", "prune+low-rank", "distil"} <= set(trained)
    assert any(m.endswith("+distil") for m in trained)
    for c in result.candidates:
        # the figures are the check of the int8 model that was really built
        again = check(c.prepared.measured, board, c.runtime)
        assert (again.flash.used, again.ram.used, again.fits) == (c.flash, c.ram, c.fits)
        assert c.drop == pytest.approx(100 * (result.baseline.int8_accuracy - c.int8_accuracy))
    for method, c in trained.items():
        assert c.fits and c.flash <= board.flash_bytes, method
        assert c.params < result.baseline.params
        assert c.int8_accuracy > 0.5, method      # trained: far above chance (10%)
    assert "rank" in trained["low-rank"].detail and "width" in trained["distil"].detail
    prune = trained["prune"]
    # the least cut that fits: the probes either side of it were measured
    probes = [c for c in result.candidates if c.method == "prune" and not c.trained]
    assert any(not p.fits for p in probes) and prune.detail in [p.detail for p in probes]


@pytest.mark.slow
def test_nothing_within_max_drop_is_a_failure_naming_the_best_candidate(every_stage):
    assert every_stage.status == "none" and every_stage.chosen is None
    error = every_stage.failure()
    assert error.exit_code == 1 and "--max-drop" in str(error) and "loses" in str(error)


@pytest.mark.slow
def test_the_chart_and_table_cover_every_candidate(every_stage, tmp_path):
    from tinydeploy.fit import report

    text = report.table_text(every_stage)
    assert len(text.splitlines()) == len(every_stage.candidates) + 1
    data = report.to_dict(every_stage)
    assert [c["index"] for c in data["candidates"]] == list(range(len(every_stage.candidates)))
    report.chart(every_stage, tmp_path / "fit.png")
    assert (tmp_path / "fit.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_ctrl_c_keeps_the_best_fitting_candidate_so_far(small_case, tmp_path):
    from tinydeploy.fit import Reporter, fit, write

    class CtrlCAfterFirstTrained(Reporter):
        def candidate(self, c):
            if c.trained:
                raise KeyboardInterrupt

    result = fit(small_case[0], _settings(small_case, max_drop=-100.0, stages=("prune",)),
                 CtrlCAfterFirstTrained())
    assert result.interrupted and result.status == "chosen"
    assert result.chosen.fits and not result.acceptable
    out = tmp_path / "out"
    files = write(result, out)
    assert {"small_digits_fit.keras", "model.tflite", "FIT.md", "fit.json", "fit.png",
            "tinydeploy.json"} <= set(files)
    assert "interrupted" in (out / "FIT.md").read_text()
    # the int8 model built is the chosen candidate's
    assert (out / "model.tflite").read_bytes() == result.chosen.prepared.model_bytes


@pytest.mark.slow
def test_a_time_budget_that_runs_out_first_is_one_error_and_nothing_is_written(
        small_case, too_big_for_qemu_m3, tmp_path):
    path, folder, _ = small_case
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, [
        "fit", str(path), "--board", "qemu-m3", "--train", str(folder / "train.npz"),
        "--eval", str(folder / "eval.npz"), "--time-budget", "1s", "-o", str(out)])
    # the small model fits the real qemu-m3: fit says so and stops, writing nothing
    assert result.exit_code == 0, result.output
    assert "already fits qemu-m3" in result.output and not out.exists()
    big = shutil.copy(too_big_for_qemu_m3, tmp_path / "wide.keras")
    result = CliRunner().invoke(cli, [
        "fit", str(big), "--board", "qemu-m3", "--train", str(folder / "train.npz"),
        "--eval", str(folder / "eval.npz"), "--time-budget", "1s", "-o", str(out)])
    assert result.exit_code == 1
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "time budget (0:01) ran out" in lines[0], result.stderr
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["wide.keras"]
    assert not list(Path(tempfile.gettempdir()).glob(f"tinydeploy-fit-{os.getpid()}-*"))


@pytest.fixture(scope="module")
def too_big_for_qemu_m3(tmp_path_factory) -> Path:
    """An MLP of about 300k parameters (int8: more than qemu-m3's 256 KB of flash), trained a little."""
    folder = tmp_path_factory.mktemp("fit-wide")
    keras = keras_module()
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((8, 8, 1)), keras.layers.Flatten(name="flat"),
        keras.layers.Dense(512, activation="relu", name="wide1"),
        keras.layers.Dense(512, activation="relu", name="wide2"),
        keras.layers.Dense(10, activation="softmax", name="probabilities"),
    ], name="wide")
    x_train, y_train, _, _ = _digits()
    _trained(model, x_train, y_train, epochs=4)
    path = folder / "wide.keras"
    model.save(path)
    return path


@pytest.mark.slow
@pytest.mark.qemu
@pytest.mark.skipif(not HAS_QEMU, reason="needs qemu-system-arm and arm-none-eabi-gcc")
def test_fit_command_end_to_end_then_the_result_validates_bit_exact_on_qemu(
        small_case, too_big_for_qemu_m3, tmp_path):
    _, folder, _ = small_case
    model = too_big_for_qemu_m3
    out = tmp_path / "wide-fit"
    result = CliRunner().invoke(cli, [
        "fit", str(model), "--board", "qemu-m3", "--train", str(folder / "train.npz"),
        "--eval", str(folder / "eval.npz"), "--epochs", "3", "--max-drop", "2", "-o", str(out)])
    assert result.exit_code == 0, result.output + result.stderr
    table = json.loads((out / "fit.json").read_text())
    chosen = table["candidates"][table["chosen"]]
    original = table["candidates"][0]
    assert not original["fits"] and chosen["fits"] and chosen["drop_points"] <= 2.0
    assert chosen["flash"] <= 262_144 and chosen["trained"]
    assert f"{chosen['index']}*" in result.output and "chosen" in result.output
    assert "epoch" in result.stderr and "stage 1/5: prune" in result.stderr   # progress
    for name in ("wide_fit.keras", "calib.npz", "FIT.md", "fit.png", "model.tflite",
                 "tinydeploy.json", "REPORT.md"):
        assert (out / name).is_file(), name
    # the Keras model written is the one that was measured: rebuilding it gives the same int8 model
    rebuilt = CliRunner().invoke(cli, ["build", str(out / "wide_fit.keras"), "--board", "qemu-m3",
                                       "--calib", str(out / "calib.npz"), "-o",
                                       str(tmp_path / "rebuilt")])
    assert rebuilt.exit_code == 0, rebuilt.output
    assert (tmp_path / "rebuilt" / "model.tflite").read_bytes() == (out / "model.tflite").read_bytes()
    flashed = CliRunner().invoke(cli, ["flash", str(out)])
    assert flashed.exit_code == 0, flashed.output + flashed.stderr
    validated = CliRunner().invoke(cli, ["validate", str(out), "--samples",
                                         str(folder / "eval.npz")])
    assert validated.exit_code == 0, validated.output + validated.stderr
    assert "exact match     100.00%" in validated.output
    assert f"device {chosen['int8_accuracy']:.2%}" in validated.output


@pytest.mark.slow
def test_a_model_whose_input_alone_is_too_big_cannot_be_made_to_fit(tmp_path):
    """A 160x160x3 int8 input takes 76,800 B of the arena: no cut gets it into qemu-m3's 64 KB."""
    keras = keras_module()
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((160, 160, 3)), keras.layers.Conv2D(8, 3, strides=4, activation="relu"),
        keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(16, activation="relu"),
        keras.layers.Dense(2, activation="softmax")], name="big_input")
    model.save(tmp_path / "big_input.keras")
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "data.npz", x=rng.random((24, 160, 160, 3), dtype=np.float32),
             y=rng.integers(0, 2, 24))
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, [
        "fit", str(tmp_path / "big_input.keras"), "--board", "qemu-m3", "--train",
        str(tmp_path / "data.npz"), "--eval", str(tmp_path / "data.npz"), "--epochs", "1",
        "-o", str(out)])
    assert result.exit_code == 1, result.output
    line = one_error_line(result.stderr)
    assert "cannot make big_input fit qemu-m3" in line and "RAM over by" in line
    assert "larger board" in line
    assert not out.exists() and not list(tmp_path.glob(".out*"))
    assert not list(Path(tempfile.gettempdir()).glob(f"tinydeploy-fit-{os.getpid()}-*"))


# --------------------------------------------------------------------------- bad input

def run_cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tinydeploy", *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=300)


def one_error_line(stderr: str) -> str:
    assert "Traceback" not in stderr
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error: ")]
    assert len(errors) == 1, stderr
    return errors[0]


@pytest.mark.parametrize("args, words", [
    (["--eval", DIGITS / "eval.npz"], ["needs training samples", "--train"]),
    (["--train", DIGITS / "eval.npz"], ["evaluation samples", "--eval"]),
    (["--train", "missing.npz", "--eval", DIGITS / "eval.npz"], ["not found", "missing.npz"]),
    (["--train", DIGITS / "eval.npz", "--eval", DIGITS / "eval.npz", "--time-budget", "soon"],
     ["not a duration", "10m"]),
    (["--train", DIGITS / "eval.npz", "--eval", DIGITS / "eval.npz", "--calib", "random"],
     ["--calib random"]),
    (["--train", DIGITS / "eval.npz", "--eval", DIGITS / "eval.npz", "--board", "nope"],
     ["unknown board"]),
])
def test_bad_options_are_one_error_line_before_any_work(tmp_path, args, words):
    out = tmp_path / "out"
    board = [] if "--board" in args else ["--board", "qemu-m3"]
    done = run_cli("fit", DIGITS / "digits.keras", *board, *args, "-o", out)
    assert done.returncode == 2
    line = one_error_line(done.stderr)
    for word in words:
        assert word in line, line
    assert not out.exists()


def test_a_tflite_model_is_refused_with_what_to_pass_instead(tmp_path):
    done = run_cli("fit", EXAMPLES / "mlperf_tiny" / "ad01_int8.tflite", "--board", "qemu-m3",
                   "--train", DIGITS / "eval.npz", "--eval", DIGITS / "eval.npz", "-o",
                   tmp_path / "out")
    assert done.returncode == 2
    line = one_error_line(done.stderr)
    assert ".tflite" in line and "Keras model" in line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("x_shape, y, words", [
    ((8, 8, 3), np.arange(20) % 10, ["shape (8, 8, 3)", "(8, 8, 1)"]),
    ((8, 8, 1), np.arange(20) % 12, ["run from 0 to 11", "10 outputs"]),
    ((8, 8, 1), None, ["no labels"]),
], ids=["wrong-shape", "labels-out-of-range", "no-labels"])
def test_data_that_does_not_match_the_model_is_one_error_line(tmp_path, x_shape, y, words):
    data = tmp_path / "train.npz"
    x = np.random.default_rng(0).random((20, *x_shape)).astype(np.float32)
    np.savez(data, x=x) if y is None else np.savez(data, x=x, y=y)
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["fit", str(DIGITS / "digits.keras"), "--board", "qemu-m3",
                                      "--train", str(data), "--eval", str(DIGITS / "eval.npz"),
                                      "-o", str(out)])
    assert result.exit_code == 2, result.output
    line = one_error_line(result.stderr)
    for word in words:
        assert word in line, line
    assert not out.exists()
