"""Model surgery for ``fit``: which channels of a Keras model belong together, and the model rebuilt
with fewer of them, with factorised layers, or narrower and freshly initialised.

A *channel group* is a set of channels that must be removed together. Every layer that makes new
channels (Dense units, convolution filters) starts a group; layers that keep channels as they are
(batch normalisation, activations, pooling, depthwise convolutions, dropout) pass the group on; a
residual ``Add`` ties its inputs' groups into one (the same channel index on both sides must go);
``Concatenate`` puts groups side by side; ``Flatten`` repeats a group once per spatial position.
The channels of a group are removed from the layer that makes them (output axis), from every layer
that passes them on (their per-channel weights) and from every layer that reads them (input axis,
at every flattened position).

Every tensor's last axis gets a *layout*: for each element, its group and its channel in that
group. The model is traced with ``keras.models.clone_model`` and a ``call_function`` that records
each layer call in order, so Sequential and functional models (residual and branching ones too) are
handled alike. What is not understood is never cut: a layer of an unknown kind, a reshape that mixes
channels with positions, the model's inputs and outputs — their groups are *frozen*.

Rebuilding goes through ``clone_model`` too: a ``clone_function`` gives layers their new widths and
a ``call_function`` replaces a factorised layer's call by its two factors; the weights are then
sliced from the original's (or, for a distillation student, left freshly initialised).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# Layers that keep each channel where it is and have no per-channel weights.
_PASS = {
    "Activation", "ReLU", "LeakyReLU", "ELU", "Softmax", "Dropout", "SpatialDropout1D",
    "SpatialDropout2D", "SpatialDropout3D", "GaussianNoise", "GaussianDropout", "AlphaDropout",
    "ActivityRegularization", "Identity", "MaxPooling1D", "MaxPooling2D", "MaxPooling3D",
    "AveragePooling1D", "AveragePooling2D", "AveragePooling3D", "GlobalAveragePooling1D",
    "GlobalAveragePooling2D", "GlobalAveragePooling3D", "GlobalMaxPooling1D", "GlobalMaxPooling2D",
    "GlobalMaxPooling3D", "ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D", "Cropping1D",
    "Cropping2D", "Cropping3D", "UpSampling1D", "UpSampling2D", "UpSampling3D", "Rescaling",
}
# Element-wise merges: every input has the same layout, channel by channel.
_MERGE = {"Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum"}
# Layers that mix their input channels into channels of their own: weight -> (input axis, output axis).
_MIXERS = {
    "Dense": {"kernel": (0, 1), "bias": (None, 0)},
    "Conv1D": {"kernel": (-2, -1), "bias": (None, 0)},
    "Conv2D": {"kernel": (-2, -1), "bias": (None, 0)},
    "Conv3D": {"kernel": (-2, -1), "bias": (None, 0)},
    "Conv1DTranspose": {"kernel": (-1, -2), "bias": (None, 0)},
    "Conv2DTranspose": {"kernel": (-1, -2), "bias": (None, 0)},
    "Conv3DTranspose": {"kernel": (-1, -2), "bias": (None, 0)},
    "SeparableConv1D": {"depthwise_kernel": (-2, None), "pointwise_kernel": (-2, -1),
                        "bias": (None, 0)},
    "SeparableConv2D": {"depthwise_kernel": (-2, None), "pointwise_kernel": (-2, -1),
                        "bias": (None, 0)},
}
# Layers that keep channels where they are but hold weights per channel: weight -> axis.
_PER_CHANNEL = {
    "BatchNormalization": {"gamma": 0, "beta": 0, "moving_mean": 0, "moving_variance": 0},
    "LayerNormalization": {"gamma": 0, "beta": 0},
    "DepthwiseConv1D": {"kernel": -2, "bias": 0},
    "DepthwiseConv2D": {"kernel": -2, "bias": 0},
}
_WIDTH_KEY = {"Dense": "units", "SeparableConv1D": "filters", "SeparableConv2D": "filters"}
FACTORISABLE = ("Dense", "Conv1D", "Conv2D")

# What a call was understood as.
INPUT, MIXER, PER_CHANNEL, PASS, MERGE, CONCAT, RESHAPE, UNKNOWN = (
    "input", "mixer", "per-channel", "pass", "merge", "concat", "reshape", "unknown")


@dataclass
class Layout:
    """For each element of a tensor's last axis: its channel group and its channel in the group."""

    groups: np.ndarray
    chans: np.ndarray

    def __len__(self) -> int:
        return len(self.groups)


@dataclass
class Call:
    """One layer call of the traced model, in execution order."""

    layer: str
    kind: str                       # INPUT, MIXER, ... (what the tracer understood)
    class_name: str
    inputs: list[int]               # tensor ids
    outputs: list[int]
    in_shapes: list[tuple]
    out_shapes: list[tuple]
    why: str = ""                   # for UNKNOWN: why it is not understood


@dataclass
class Groups:
    """Channel groups, merged with union-find."""

    parent: list[int] = field(default_factory=list)
    size: list[int] = field(default_factory=list)
    frozen: list[bool] = field(default_factory=list)
    producer: list[str] = field(default_factory=list)

    def new(self, size: int, producer: str, frozen: bool = False) -> int:
        self.parent.append(len(self.parent))
        self.size.append(int(size))
        self.frozen.append(frozen)
        self.producer.append(producer)
        return len(self.parent) - 1

    def find(self, g: int) -> int:
        while self.parent[g] != g:
            self.parent[g] = self.parent[self.parent[g]]
            g = self.parent[g]
        return g

    def union(self, a: int, b: int) -> None:
        a, b = self.find(a), self.find(b)
        if a != b:
            self.parent[b] = a
            self.frozen[a] = self.frozen[a] or self.frozen[b]

    def freeze(self, g: int) -> None:
        self.frozen[self.find(g)] = True

    def roots(self, layout: Layout) -> np.ndarray:
        return np.array([self.find(int(g)) for g in layout.groups], dtype=np.int64)


class Structure:
    """A traced Keras model: its calls in order, every tensor's layout, the channel groups.

    ``model`` is the (functional) model that was traced; its layers are the original's, so probing
    it computes with the original weights.
    """

    def __init__(self, model, calls: list[Call], layouts: dict[int, Layout], groups: Groups,
                 tensors: dict[int, object], own: dict[str, int]):
        self.model = model
        self.calls = calls
        self.layouts = layouts
        self.groups = groups
        self.tensors = tensors           # tensor id -> KerasTensor of the traced model
        self.own = own                   # layer name -> the group its output channels start
        self.layers = {layer.name: layer for layer in _all_layers(model)}

    # ------------------------------------------------------------------ what can be cut

    def prunable(self) -> dict[int, int]:
        """Groups that may lose channels: root -> number of channels (at least 2)."""
        found = {}
        for g in self.own.values():
            root = self.groups.find(g)
            if not self.groups.frozen[root] and self.groups.size[root] >= 2:
                found[root] = self.groups.size[root]
        return found

    def factorisable(self, min_share: float = 0.05) -> dict[str, tuple[int, int]]:
        """Dense and 1x1 convolution layers holding at least ``min_share`` of the parameters whose
        kernel a rank-r product can replace with fewer weights: name -> (inputs, outputs)."""
        total = max(1, sum(int(np.prod(w.shape)) for w in self.model.weights))
        found = {}
        for call in self.calls:
            layer = self.layers.get(call.layer)
            if call.kind != MIXER or call.class_name not in FACTORISABLE or layer is None:
                continue
            config = layer.get_config()
            if call.class_name != "Dense" and (any(k != 1 for k in config["kernel_size"])
                                               or config.get("groups", 1) != 1):
                continue
            kernel = _weights_by_name(layer).get("kernel")
            if kernel is None:
                continue
            n_in, n_out = int(kernel.shape[-2]), int(kernel.shape[-1])
            if min(n_in, n_out) < 4 or kernel.size < min_share * total:
                continue
            found[call.layer] = (n_in, n_out)
        return found

    # ------------------------------------------------------------------ costs and importance

    def group_costs(self) -> dict[int, tuple[float, float]]:
        """root -> (weights that go with its channels, share of the largest activation tensor it
        holds): what removing the whole group would save, for sizing each group's cut."""
        params: dict[int, float] = {}
        acts: dict[int, float] = {}
        largest = max([_elements(s) for c in self.calls for s in c.out_shapes] + [1])
        for call in self.calls:
            for tid, shape in zip(call.outputs, call.out_shapes):
                layout = self.layouts.get(tid)
                if layout is None or not len(layout):
                    continue
                spatial = _elements(shape) / max(1, len(layout))
                roots, counts = np.unique(self.groups.roots(layout), return_counts=True)
                for r, n in zip(roots, counts):
                    acts[int(r)] = max(acts.get(int(r), 0.0), spatial * n / largest)
            layer = self.layers.get(call.layer)
            if layer is None or call.kind not in (MIXER, PER_CHANNEL):
                continue
            in_layout = self.layouts.get(call.inputs[0]) if call.inputs else None
            for name, value in _weights_by_name(layer).items():
                for axis, layout in self._axes(call, name, in_layout):
                    if layout is None:
                        continue
                    per_position = value.size / value.shape[axis]
                    roots = self.groups.roots(layout)
                    for r in np.unique(roots):
                        params[int(r)] = params.get(int(r), 0.0) + per_position * np.sum(roots == r)
        return {int(r): (params.get(int(r), 0.0), acts.get(int(r), 0.0))
                for r in self.prunable()}

    def _axes(self, call: Call, weight: str, in_layout: Layout | None):
        """(axis, layout) pairs saying which axes of a weight are indexed by which channels."""
        if call.kind == MIXER:
            spec = _MIXERS[call.class_name].get(weight)
            if spec is None:
                return []
            pairs = []
            if spec[0] is not None:
                pairs.append((spec[0], in_layout))
            if spec[1] is not None:
                pairs.append((spec[1], self.layouts[call.outputs[0]]))
            return pairs
        if call.kind == PER_CHANNEL:
            axis = _PER_CHANNEL[call.class_name].get(weight)
            return [] if axis is None else [(axis, in_layout)]
        return []

    def importance(self, samples: np.ndarray, batch: int = 32) -> dict[int, np.ndarray]:
        """root -> importance of each channel: over every layer that reads the channel, the mean
        |activation| it reads times the norm of the weights it reads it with (a channel that is
        always zero, or that nothing downstream listens to, scores 0). Computed on ``samples``
        with the original weights."""
        import keras

        readers = [c for c in self.calls if c.kind == MIXER and c.inputs]
        wanted = list(dict.fromkeys(c.inputs[0] for c in readers))
        producers = {self.groups.find(g): name for name, g in self.own.items()}
        fallback = [self._output_of(name) for name in producers.values()]
        wanted += [t for t in fallback if t is not None and t not in wanted]
        if not wanted:
            return {}
        probe = keras.Model(self.model.inputs, [self.tensors[t] for t in wanted])
        # mean |activation| of each element of the last axis, over samples and positions: what
        # one output element of the reader gets from it, per unit of weight
        sums, counts = [None] * len(wanted), [0] * len(wanted)
        for start in range(0, len(samples), batch):
            outs = probe([samples[start:start + batch]], training=False)
            outs = outs if isinstance(outs, (list, tuple)) else [outs]
            for i, out in enumerate(outs):
                a = np.abs(np.asarray(out, dtype=np.float64))
                a = a.reshape(-1, a.shape[-1])
                sums[i] = a.sum(axis=0) if sums[i] is None else sums[i] + a.sum(axis=0)
                counts[i] += len(a)
        mean_abs = {t: sums[i] / max(1, counts[i]) for i, t in enumerate(wanted)}
        prunable = self.prunable()
        scores = {r: np.zeros(n) for r, n in prunable.items()}
        seen = {r: False for r in prunable}
        for call in readers:
            layout = self.layouts[call.inputs[0]]
            norms = self._input_norms(call)
            if norms is None or len(norms) != len(layout):
                continue
            contribution = mean_abs[call.inputs[0]] * norms
            roots = self.groups.roots(layout)
            for r in prunable:
                mask = roots == r
                if mask.any():
                    np.add.at(scores[r], layout.chans[mask], contribution[mask])
                    seen[r] = True
        for r, name in producers.items():
            t = self._output_of(name)
            if r in scores and not seen[r] and t in mean_abs:
                layout = self.layouts[t]
                mask = self.groups.roots(layout) == r
                np.add.at(scores[r], layout.chans[mask], mean_abs[t][mask])
        return scores

    def _output_of(self, layer: str) -> int | None:
        for call in self.calls:
            if call.layer == layer and call.outputs:
                return call.outputs[0]
        return None

    def _input_norms(self, call: Call) -> np.ndarray | None:
        """The L2 norm of the weights each input element is read with."""
        weights = _weights_by_name(self.layers[call.layer])
        norms = None
        for name, (in_axis, _) in _MIXERS[call.class_name].items():
            if in_axis is None or name not in weights:
                continue
            w = np.moveaxis(weights[name].astype(np.float64), in_axis, 0)
            n = np.sqrt(np.sum(w.reshape(w.shape[0], -1) ** 2, axis=1))
            norms = n if norms is None else norms * n
        return norms

    # ------------------------------------------------------------------ plans

    def keep_counts(self, keep: dict[int, np.ndarray]) -> dict[str, int]:
        """layer -> the number of output channels it keeps under ``keep`` (only layers that
        change), for reports."""
        changed = {}
        for name, g in self.own.items():
            root = self.groups.find(g)
            if root in keep and len(keep[root]) != self.groups.size[root]:
                changed[name] = int(len(keep[root]))
        return changed

    def kept_positions(self, layout: Layout, keep: dict[int, np.ndarray]) -> np.ndarray:
        roots = self.groups.roots(layout)
        mask = np.ones(len(layout), dtype=bool)
        for r, kept in keep.items():
            sel = roots == r
            if sel.any():
                mask[sel] = np.isin(layout.chans[sel], kept)
        return np.nonzero(mask)[0]


# --------------------------------------------------------------------------- tracing

def functional(model):
    """``model`` as a functional model over the same layers (Sequential models are called layer by
    layer on a new input). Subclassed models cannot be traced: ValueError."""
    import keras

    if isinstance(model, keras.Sequential):
        if not model.inputs:
            raise ValueError("the Sequential model has no known input shape")
        inp = keras.Input(batch_shape=model.inputs[0].shape, dtype=model.inputs[0].dtype,
                          name=model.inputs[0].name)
        x = inp
        for layer in model.layers:
            x = layer(x)
        return keras.Model(inp, x, name=model.name)
    if not isinstance(model, keras.Model) or not hasattr(model, "_run_through_graph") or \
            type(model).__name__ not in ("Functional", "Model"):
        raise ValueError(f"a {type(model).__name__} (subclassed) model has no layer graph to edit")
    return model


def trace(model) -> Structure:
    """Trace ``model`` (Sequential or functional) into a :class:`Structure`."""
    import keras

    graph = functional(model)
    calls: list[Call] = []
    layouts: dict[int, Layout] = {}
    tensors: dict[int, object] = {}
    groups = Groups()
    own: dict[str, int] = {}

    def tid(t) -> int:
        tensors[id(t)] = t
        return id(t)

    def fresh(t, producer: str, frozen: bool) -> Layout:
        n = _last_dim(t.shape)
        g = groups.new(n, producer, frozen=frozen)
        return Layout(np.full(n, g, dtype=np.int64), np.arange(n, dtype=np.int64))

    def record(layer, *args, **kwargs):
        out = layer(*args, **kwargs)
        ins = [t for t in keras.tree.flatten(args) if isinstance(t, keras.KerasTensor)]
        outs = [t for t in keras.tree.flatten(out) if isinstance(t, keras.KerasTensor)]
        for t in ins:
            if id(t) not in layouts:    # made by something the tracer did not see: keep it whole
                layouts[tid(t)] = fresh(t, "?", frozen=True)
        extra = [t for t in keras.tree.flatten(kwargs) if isinstance(t, keras.KerasTensor)]
        call = Call(layer.name, UNKNOWN, type(layer).__name__, [tid(t) for t in ins],
                    [tid(t) for t in outs], [tuple(t.shape) for t in ins],
                    [tuple(t.shape) for t in outs])
        earlier = [c for c in calls if c.layer == layer.name]
        if extra:
            call.why = "takes tensors as keyword arguments"
        elif earlier and layer.weights:
            # a layer called more than once keeps one set of weights for every call: cut nothing
            # around it
            call.why = "called more than once (shared weights)"
            for c in earlier:
                for t in c.inputs + c.outputs:
                    for g in layouts[t].groups:
                        groups.freeze(int(g))
        else:
            _understand(layer, call, layouts, groups, own)
        if call.kind == UNKNOWN:
            for t in call.inputs:
                for g in layouts[t].groups:
                    groups.freeze(int(g))
            for t in outs:
                layouts[tid(t)] = fresh(t, layer.name, frozen=True)
        calls.append(call)
        return out

    traced = keras.models.clone_model(graph, clone_function=lambda layer: layer,
                                      call_function=record)
    for t in keras.tree.flatten(traced.inputs):
        if id(t) not in layouts:
            layouts[tid(t)] = fresh(t, "input", frozen=True)
    for t in keras.tree.flatten(traced.outputs):
        for g in layouts.get(id(t), Layout(np.zeros(0, np.int64), np.zeros(0, np.int64))).groups:
            groups.freeze(int(g))
    return Structure(traced, calls, layouts, groups, tensors, own)


def _understand(layer, call: Call, layouts, groups: Groups, own: dict[str, int]) -> None:
    """Set ``call.kind`` and the layouts of its outputs, merging and freezing groups as needed."""
    name = call.class_name
    if not type(layer).__module__.startswith("keras.src.layers"):
        call.why = f"{name} is not one of Keras' own layers"
        return
    config = _config(layer)
    if config.get("data_format", "channels_last") != "channels_last":
        call.why = "channels_first data format"
        return
    if len(call.outputs) != 1 or not call.inputs:
        call.why = "several outputs" if call.inputs else "no tensor input"
        return
    ins = [layouts[t] for t in call.inputs]
    out_id = call.outputs[0]
    out_n = _last_dim(call.out_shapes[0])
    if name in _MIXERS and len(ins) == 1:
        expected = set(_MIXERS[name])
        have = set(_weights_by_name(layer))
        if config.get("groups", 1) != 1 or config.get("depth_multiplier", 1) != 1:
            call.why = "grouped convolution or depth multiplier"
            return
        if not have <= expected or "kernel" not in have and "pointwise_kernel" not in have:
            call.why = f"unexpected weights {sorted(have - expected)}"
            return
        if name == "Dense" and len(call.in_shapes[0]) < 2:
            call.why = "no feature axis"
            return
        g = groups.new(out_n, layer.name)
        own[layer.name] = g
        call.kind = MIXER
        layouts[out_id] = Layout(np.full(out_n, g, dtype=np.int64), np.arange(out_n))
        return
    if name in _PER_CHANNEL and len(ins) == 1:
        if name == "BatchNormalization" and config.get("axis") not in (-1, len(call.in_shapes[0]) - 1):
            call.why = "normalises another axis than the channels"
            return
        if name == "LayerNormalization" and _axes(config.get("axis")) not in ([-1], [len(call.in_shapes[0]) - 1]):
            call.why = "normalises over more than the channel axis"
            return
        if config.get("depth_multiplier", 1) != 1:
            call.why = "depth multiplier above 1"
            return
        call.kind = PER_CHANNEL
        layouts[out_id] = ins[0]
        return
    if name in _PASS and len(ins) == 1:
        if name == "Softmax" and _axes(config.get("axis", -1)) not in ([-1], [len(call.in_shapes[0]) - 1]):
            call.why = "softmax over another axis"
            return
        if name == "Rescaling" and not all(np.ndim(config.get(k, 0)) == 0
                                           for k in ("scale", "offset")):
            call.why = "per-channel rescaling"
            return
        if _last_dim(call.in_shapes[0]) != out_n:
            call.why = "changes the channel axis"
            return
        call.kind = PASS
        layouts[out_id] = ins[0]
        return
    if name in _MERGE:
        shapes = set(call.in_shapes)
        if len(shapes) != 1 or any(len(lay) != len(ins[0]) for lay in ins):
            call.why = "inputs of different shapes (broadcasting)"
            return
        if not all(np.array_equal(lay.chans, ins[0].chans) for lay in ins):
            call.why = "inputs whose channels do not line up"
            return
        for lay in ins[1:]:
            for a, b in zip(ins[0].groups, lay.groups):
                groups.union(int(a), int(b))
        call.kind = MERGE
        layouts[out_id] = ins[0]
        return
    if name == "Concatenate":
        rank = len(call.in_shapes[0])
        if config.get("axis", -1) in (-1, rank - 1):
            call.kind = CONCAT
            layouts[out_id] = Layout(np.concatenate([lay.groups for lay in ins]),
                                     np.concatenate([lay.chans for lay in ins]))
            return
        call.why = "concatenates along another axis than the channels"
        return
    if name in ("Flatten", "Reshape") and len(ins) == 1:
        in_shape, out_shape = call.in_shapes[0], call.out_shapes[0]
        spatial = in_shape[1:-1]
        if any(d is None for d in (*spatial, out_n)) or out_n == 0:
            call.why = "unknown sizes"
            return
        tiles = int(np.prod(spatial)) if spatial else 1
        flat_g, flat_c = np.tile(ins[0].groups, tiles), np.tile(ins[0].chans, tiles)
        if len(flat_g) % out_n:
            call.why = "reshape that does not keep whole channels"
            return
        rows_g, rows_c = flat_g.reshape(-1, out_n), flat_c.reshape(-1, out_n)
        if not ((rows_g == rows_g[0]).all() and (rows_c == rows_c[0]).all()):
            call.why = "reshape that mixes channels with positions"
            return
        if name == "Reshape" and config.get("target_shape", (None,))[-1] in (-1, None):
            call.why = "reshape to an open last axis"
            return
        call.kind = RESHAPE
        layouts[out_id] = Layout(rows_g[0].copy(), rows_c[0].copy())
        return
    call.why = f"{name} is not a layer fit knows how to cut"


# --------------------------------------------------------------------------- rebuilding

def rebuild(structure: Structure, *, keep: dict[int, np.ndarray] | None = None,
            ranks: dict[str, int] | None = None, fresh: bool = False, name: str | None = None):
    """A new model: ``structure``'s model with only the ``keep`` channels of each group (root ->
    sorted channel indices), and the layers in ``ranks`` replaced by two factors of that rank
    (initialised from the truncated SVD of their kernel). With ``fresh`` the weights are left as
    Keras initialises them (a distillation student), except in layers without trainable weights
    (fixed preprocessing such as Normalization), which keep theirs."""
    import keras

    keep = {structure.groups.find(r): np.sort(np.asarray(k, dtype=np.int64))
            for r, k in (keep or {}).items()}
    ranks = dict(ranks or {})
    by_layer = {}
    for call in structure.calls:
        by_layer.setdefault(call.layer, call)
    factors: dict[str, tuple] = {}

    def clone(layer):
        config = layer.get_config()
        call = by_layer.get(layer.name)
        if call is not None and call.kind == MIXER:
            key = _WIDTH_KEY.get(call.class_name, "filters")
            root = structure.groups.find(structure.own[layer.name])
            if root in keep:
                config[key] = int(len(keep[root]))
        if call is not None and call.kind == RESHAPE and call.class_name == "Reshape":
            out = structure.layouts[call.outputs[0]]
            target = list(config["target_shape"])
            target[-1] = int(len(structure.kept_positions(out, keep)))
            config["target_shape"] = tuple(target)
        return layer.__class__.from_config(config)

    def call_function(layer, *args, **kwargs):
        if layer.name not in ranks:
            return layer(*args, **kwargs)
        first, second = _factor_layers(layer, ranks[layer.name])
        factors[layer.name] = (first, second)
        return second(first(*args, **kwargs))

    new = keras.models.clone_model(structure.model, clone_function=clone,
                                   call_function=call_function)
    if name:
        new.name = name
    if fresh:
        _copy_fixed_layers(structure, new)
        return new
    _copy_weights(structure, new, keep, factors)
    return new


def _factor_layers(layer, rank: int):
    """Two layers computing ``layer`` through a rank-``rank`` bottleneck: the first (no bias, no
    activation, the original's strides) projects to ``rank`` channels, the second (the original's
    name, bias and activation) expands them."""
    config = layer.get_config()
    first_config = dict(config, name=f"{layer.name}_lowrank", use_bias=False, activation="linear",
                        kernel_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                        kernel_constraint=None, bias_constraint=None)
    second_config = dict(config)
    if type(layer).__name__ == "Dense":
        first_config["units"] = rank
    else:
        first_config["filters"] = rank
        second_config["strides"] = (1,) * len(config["kernel_size"])
        second_config["padding"] = "valid"
    return layer.__class__.from_config(first_config), layer.__class__.from_config(second_config)


def svd_factors(kernel: np.ndarray, rank: int) -> tuple[np.ndarray, np.ndarray]:
    """Kernels (..., in, r) and (..., r, out) whose product is the best rank-``rank`` approximation
    of ``kernel`` (..., in, out) (leading axes of size 1, as in a 1x1 convolution)."""
    lead = kernel.shape[:-2]
    matrix = kernel.reshape(kernel.shape[-2], kernel.shape[-1]).astype(np.float64)
    u, s, vt = np.linalg.svd(matrix, full_matrices=False)
    root = np.sqrt(s[:rank])
    a = (u[:, :rank] * root).astype(np.float32)
    b = (root[:, None] * vt[:rank]).astype(np.float32)
    return a.reshape(*lead, *a.shape), b.reshape(*lead, *b.shape)


def _copy_weights(structure: Structure, new, keep, factors) -> None:
    new_layers = {layer.name: layer for layer in _all_layers(new)}
    for call in structure.calls:
        old = structure.layers.get(call.layer)
        if old is None or not old.weights or call.layer not in structure.layers:
            continue
        values = _weights_by_name(old)
        in_layout = structure.layouts.get(call.inputs[0]) if call.inputs else None
        if call.kind in (MIXER, PER_CHANNEL):
            for weight, value in list(values.items()):
                for axis, layout in structure._axes(call, weight, in_layout):
                    value = np.take(value, structure.kept_positions(layout, keep), axis=axis)
                values[weight] = value
        if call.layer in factors:
            first, second = factors[call.layer]
            rank = first.get_config()["units" if call.class_name == "Dense" else "filters"]
            a, b = svd_factors(values["kernel"], rank)
            _assign(first, {"kernel": a})
            _assign(second, dict(values, kernel=b))
            continue
        target = new_layers.get(call.layer)
        if target is not None:
            _assign(target, values)


def _copy_fixed_layers(structure: Structure, new) -> None:
    new_layers = {layer.name: layer for layer in _all_layers(new)}
    for name, old in structure.layers.items():
        target = new_layers.get(name)
        if target is None or not old.weights or old.trainable_weights:
            continue
        _assign(target, _weights_by_name(old))


def _assign(layer, values: dict[str, np.ndarray]) -> None:
    variables = layer.weights
    names = [v.name for v in variables]
    if len(set(names)) != len(names):  # a nested model: _weights_by_name keyed them by position
        for v, value in zip(variables, values.values()):
            v.assign(value)
        return
    for v in variables:
        if v.name in values:
            if tuple(v.shape) != tuple(values[v.name].shape):
                raise ValueError(f"{layer.name}/{v.name}: the rebuilt weight is {tuple(v.shape)}, "
                                 f"the sliced one {values[v.name].shape}")
            v.assign(values[v.name])


# --------------------------------------------------------------------------- small helpers

def _weights_by_name(layer) -> dict[str, np.ndarray]:
    variables = layer.weights
    names = [v.name for v in variables]
    if len(set(names)) != len(names):  # a nested model: names repeat; positions are the key
        return {f"{i}:{v.name}": np.asarray(v.numpy()) for i, v in enumerate(variables)}
    return {v.name: np.asarray(v.numpy()) for v in variables}


def _all_layers(model) -> list:
    return [layer for layer in model.layers if not type(layer).__name__ == "InputLayer"]


def _config(layer) -> dict:
    try:
        return layer.get_config()
    except Exception:  # noqa: BLE001 - a layer without a config is one fit leaves alone
        return {}


def _axes(axis) -> list[int]:
    if isinstance(axis, (list, tuple)):
        return [int(a) for a in axis]
    return [int(axis)] if axis is not None else []


def _last_dim(shape) -> int:
    if not shape:
        return 1
    d = shape[-1]
    return int(d) if d is not None else 0


def _elements(shape) -> int:
    return int(np.prod([d for d in shape[1:] if d is not None])) if len(shape) > 1 else 1


def count_params(model) -> int:
    return int(sum(int(np.prod(w.shape)) for w in model.weights))
