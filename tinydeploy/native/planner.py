"""Static arena planning: every activation tensor gets a fixed offset in one byte array.

Why this shape: the device has no allocator, so the compiler decides once where each tensor
lives. Two tensors may share bytes when their lifetimes (first op that writes them .. last op
that reads them, both inclusive) do not overlap. Placement is TFLM's greedy-by-size strategy
(largest buffer first, at the lowest offset that clashes with no live neighbour), tried over a
few orderings; the smallest arena wins. RESHAPE-like ops make their output an alias of their
input: one buffer whose lifetime covers both tensors, and no copy.

Beyond TFLM: an op that streams its output in order may write over the input it is consuming,
when that input dies at this op. ``Overlap(op, out, inp, gap)`` says the output buffer may start
up to ``gap`` bytes before the input and run over it (gap 0: elementwise, in place; a convolution
needs the rows its remaining windows still read, see compiler.overlap_gap).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

ALIGNMENT = 4  # float32 boundary tensors and int32 views need it; int8 costs at most 3 bytes


@dataclass
class Buffer:
    """One arena region shared by a tensor and its aliases."""

    tensors: list[int]
    size: int
    first: int          # index of the first op that needs it (-1: a model input)
    last: int           # index of the last op that needs it (num_ops: a model output)
    offset: int = -1

    def overlaps_in_time(self, other: "Buffer") -> bool:
        return self.first <= other.last and other.first <= self.last


@dataclass(frozen=True)
class Overlap:
    """Op ``op`` may write tensor ``out`` starting >= ``gap`` bytes before tensor ``inp``."""

    op: int
    out: int
    inp: int
    gap: int


@dataclass
class ArenaPlan:
    """Where every activation tensor lives: ``offsets[tensor_index]`` in an arena of ``size``."""

    size: int
    offsets: dict[int, int]
    buffers: list[Buffer] = field(default_factory=list)
    overlaps_used: list[Overlap] = field(default_factory=list)
    live_bound: int = 0        # largest sum of buffers live during one op (see live_bound())
    in_place_bound: int = 0    # the same, with the permitted overlaps (see in_place_bound())


def _align(n: int) -> int:
    return (n + ALIGNMENT - 1) // ALIGNMENT * ALIGNMENT


def build_buffers(sizes: dict[int, int], uses: dict[int, list[int]],
                  aliases: dict[int, int]) -> dict[int, Buffer]:
    """Group tensors into buffers; returns tensor -> its buffer.

    sizes: activation tensor -> bytes; uses: tensor -> op indices touching it (with -1 for model
    inputs and num_ops for model outputs); aliases: output tensor -> input tensor it views.
    """
    def root(t: int) -> int:
        while t in aliases:
            t = aliases[t]
        return t

    groups: dict[int, list[int]] = {}
    for t in sizes:
        groups.setdefault(root(t), []).append(t)
    by_tensor: dict[int, Buffer] = {}
    for members in groups.values():
        times = [i for t in members for i in uses.get(t, [])]
        if not times:
            continue  # never read nor written: needs no memory
        buf = Buffer(tensors=sorted(members), size=_align(max(sizes[t] for t in members)),
                     first=min(times), last=max(times))
        for t in members:
            by_tensor[t] = buf
    return by_tensor


def _valid_overlaps(by_tensor: dict[int, Buffer], overlaps: list[Overlap]
                    ) -> dict[tuple[int, int], Overlap]:
    """(id(out buffer), id(in buffer)) -> overlap, for those whose input really dies at the op
    and whose output is really born there (aliases can stretch lifetimes)."""
    valid = {}
    for ov in overlaps:
        out_b, in_b = by_tensor.get(ov.out), by_tensor.get(ov.inp)
        if out_b is None or in_b is None or out_b is in_b:
            continue
        if in_b.last == ov.op and out_b.first == ov.op:
            valid[(id(out_b), id(in_b))] = ov
    return valid


def _forbidden(buf: Buffer, other: Buffer, valid: dict) -> tuple[int, int]:
    """Open interval of offsets for buf that would clash with the placed buffer other."""
    ov = valid.get((id(buf), id(other)))
    if ov is not None:   # buf is the output: may start at or before other.offset - gap
        return other.offset - ov.gap, other.offset + other.size
    ov = valid.get((id(other), id(buf)))
    if ov is not None:   # buf is the input: must start at or after other.offset + gap
        return other.offset - buf.size, other.offset + ov.gap
    return other.offset - buf.size, other.offset + other.size


def _conflicts(buffers: list[Buffer]) -> dict[int, list[Buffer]]:
    """id(buffer) -> the buffers live at some common op (computed once per plan)."""
    by_first = sorted(buffers, key=lambda b: b.first)
    found: dict[int, list[Buffer]] = {id(b): [] for b in buffers}
    for i, a in enumerate(by_first):
        for b in by_first[i + 1:]:
            if b.first > a.last:
                break
            found[id(a)].append(b)
            found[id(b)].append(a)
    return found


def _place(order: list[Buffer], valid: dict, conflicts: dict[int, list[Buffer]],
           compact: bool) -> int:
    """Greedy placement in the given order; returns the arena size (offsets normalised to 0).

    Each buffer goes to a candidate offset that clashes with no placed buffer it lives with: 0,
    right after a neighbour, or right at the start of a clash zone (where an overlapping output
    sits snugly before its input). Plain placement takes the lowest candidate >= 0; ``compact``
    placement may also go below 0 (before everything placed so far) and takes the candidate
    that grows the arena's extent least - which lets a chain of in-place ops walk downwards.
    """
    placed: set[int] = set()
    bottom = top = 0
    for buf in order:
        intervals = [_forbidden(buf, p, valid) for p in conflicts[id(buf)] if id(p) in placed]
        edges = {0, *(hi for _, hi in intervals), *(lo for lo, _ in intervals)}
        if compact:
            edges |= {bottom - buf.size, top}
            fits = [c for c in edges if not any(lo < c < hi for lo, hi in intervals)]
            buf.offset = min(fits, key=lambda c: (max(top, c + buf.size) - min(bottom, c),
                                                  abs(c)))
        else:
            buf.offset = min(c for c in edges
                             if c >= 0 and not any(lo < c < hi for lo, hi in intervals))
        bottom, top = min(bottom, buf.offset), max(top, buf.offset + buf.size)
        placed.add(id(buf))
    for buf in order:
        buf.offset -= bottom
    return top - bottom


_ORDERINGS = (
    lambda b: (-b.size, b.first),                       # TFLM's greedy: biggest first
    lambda b: (b.first, -b.size),                       # in execution order
    lambda b: (-(b.size * (b.last - b.first + 1)), b.first),  # biggest area first
    lambda b: (-(b.last - b.first), -b.size),           # longest-lived first
    lambda b: (-b.first, -b.size),                      # reverse execution order: an output
    lambda b: (-b.size, -b.first),                      # is placed before the input it overlaps
)
# Local search after the greedy orderings: tries of a perturbed best ordering, seeded so that a
# model always gets the same plan. It stops at the lower bound, after SEARCH_PATIENCE tries
# without progress, or when the tries' work (clash checks, ~ sum of conflicts^2 per placement)
# would exceed SEARCH_WORK - a fraction of a second in Python for any model.
SEARCH_TRIES = 300
SEARCH_PATIENCE = 40
SEARCH_WORK = 3_000_000


def _live_at(buffers: list[Buffer]) -> dict[int, list[Buffer]]:
    times = sorted({t for b in buffers for t in (b.first, b.last)})
    return {t: [b for b in buffers if b.first <= t <= b.last] for t in times}


def live_bound(buffers: list[Buffer]) -> int:
    """The largest total size of the buffers live during one op: no plan that gives every live
    tensor its own bytes can be smaller."""
    return max((sum(b.size for b in live) for live in _live_at(buffers).values()), default=0)


def in_place_bound(buffers: list[Buffer], valid: dict) -> int:
    """live_bound, where an op's output may overlap the input it consumes as far as the
    permitted overlap allows: the pair then needs max(out, gap + in) bytes, not out + in. No plan
    within the kernels' rules can be smaller (for this op order)."""
    return max(in_place_profile(buffers, valid).values(), default=0)


def in_place_profile(buffers: list[Buffer], valid: dict) -> dict[int, int]:
    """in_place_bound's bytes at each op time.

    An output O running over dying inputs I_j (each at its gap g_j, the inputs disjoint) covers
    at least max(O, sum I_j, max_j (g_j + I_j)) bytes with them, so it saves at most
    O + sum I_j minus that; the best subset of inputs is taken (there are one or two)."""
    by_id = {id(b): b for b in buffers}
    profile: dict[int, int] = {}
    for t, live in _live_at(buffers).items():
        ids = {id(b) for b in live}
        over: dict[int, list[tuple[int, int]]] = {}   # output -> [(input size, gap)]
        for (out_id, in_id), ov in valid.items():
            if ov.op == t and out_id in ids and in_id in ids:
                over.setdefault(out_id, []).append((by_id[in_id].size, ov.gap))
        saving = 0
        for out_id, inputs in over.items():
            out = by_id[out_id].size
            inputs = sorted(inputs, key=lambda ig: -ig[0])[:4]
            best = 0
            for mask in range(1, 1 << len(inputs)):
                chosen = [ig for k, ig in enumerate(inputs) if mask >> k & 1]
                total = sum(i for i, _ in chosen)
                cover = max(out, total, max(g + i for i, g in chosen))
                best = max(best, out + total - cover)
            saving += best
        profile[t] = sum(b.size for b in live) - saving
    return profile


def plan_arena(sizes: dict[int, int], uses: dict[int, list[int]], aliases: dict[int, int],
               overlaps: list[Overlap] | None = None) -> ArenaPlan:
    """Plan the arena: the smallest of several greedy orderings x both placement policies, with
    and without the permitted overlaps (so allowing them can never make the plan worse; on a tie
    the plan with overlaps wins, which keeps in-place execution exercised by every test), then a
    seeded local search that swaps buffers in the best ordering while that shrinks the arena,
    stopping early at the in-place lower bound."""
    key = (tuple(sorted(sizes.items())), tuple(sorted((t, tuple(u)) for t, u in uses.items())),
           tuple(sorted(aliases.items())), tuple(overlaps or ()))
    if key not in _PLANS:
        _PLANS.clear()  # one entry: compile_model and estimate of the same model share it
        _PLANS[key] = _plan(sizes, uses, aliases, list(overlaps or []))
    plan = _PLANS[key]
    return ArenaPlan(size=plan.size, offsets=dict(plan.offsets), buffers=plan.buffers,
                     overlaps_used=list(plan.overlaps_used), live_bound=plan.live_bound,
                     in_place_bound=plan.in_place_bound)


_PLANS: dict = {}


def _plan(sizes, uses, aliases, overlaps: list[Overlap]) -> ArenaPlan:
    by_tensor = build_buffers(sizes, uses, aliases)
    buffers = list({id(b): b for b in by_tensor.values()}.values())
    conflicts = _conflicts(buffers)
    bound = in_place_bound(buffers, _valid_overlaps(by_tensor, overlaps))
    best: tuple[int, list[Buffer], dict, bool] | None = None   # size, order, valid, compact
    for allowed in (overlaps, []):
        valid = _valid_overlaps(by_tensor, allowed)
        for key in _ORDERINGS:
            order = sorted(buffers, key=key)
            for compact in (False, True):
                size = _place(order, valid, conflicts, compact)
                if best is None or size < best[0]:
                    best = (size, order, valid, compact)
    assert best is not None
    rng = random.Random(len(buffers))
    work = 2 * sum(len(c) ** 2 for c in conflicts.values()) + 1
    since_progress = 0
    for _ in range(min(SEARCH_TRIES, SEARCH_WORK // work)):
        if best[0] <= bound or len(buffers) < 2 or since_progress >= SEARCH_PATIENCE:
            break
        since_progress += 1
        order = list(best[1])
        for _ in range(rng.randint(1, 3)):
            i, j = rng.randrange(len(order)), rng.randrange(len(order))
            order[i], order[j] = order[j], order[i]
        for compact in (True, False):
            size = _place(order, best[2], conflicts, compact)
            if size < best[0]:
                best = (size, order, best[2], compact)
                since_progress = 0
    size, order, valid, compact = best
    _place(order, valid, conflicts, compact)   # the offsets of the winner
    used = [ov for ov in valid.values() if _overlapping(by_tensor[ov.out], by_tensor[ov.inp])]
    return ArenaPlan(size=size, offsets={t: b.offset for t, b in by_tensor.items()},
                     buffers=buffers, overlaps_used=used, live_bound=live_bound(buffers),
                     in_place_bound=bound)


def _overlapping(a: Buffer, b: Buffer) -> bool:
    return a.offset < b.offset + b.size and b.offset < a.offset + a.size
