"""Static arena planning: every activation tensor gets a fixed offset in one byte array.

Why this shape: the device has no allocator, so the compiler decides once where each tensor
lives. Two tensors may share bytes when their lifetimes (first op that writes them .. last op
that reads them, both inclusive) do not overlap. Placement is TFLM's greedy-by-size strategy
(largest buffer first, at the lowest offset that clashes with no live neighbour), tried over a
few orderings; the smallest arena wins. RESHAPE-like ops make their output an alias of their
input: one buffer whose lifetime covers both tensors, and no copy.
"""

from __future__ import annotations

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


@dataclass
class ArenaPlan:
    """Where every activation tensor lives: ``offsets[tensor_index]`` in an arena of ``size``."""

    size: int
    offsets: dict[int, int]
    buffers: list[Buffer] = field(default_factory=list)


def _align(n: int) -> int:
    return (n + ALIGNMENT - 1) // ALIGNMENT * ALIGNMENT


def build_buffers(sizes: dict[int, int], uses: dict[int, list[int]],
                  aliases: dict[int, int]) -> list[Buffer]:
    """Group tensors into buffers.

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
    buffers = []
    for members in groups.values():
        times = [i for t in members for i in uses.get(t, [])]
        if not times:
            continue  # never read nor written: needs no memory
        buffers.append(Buffer(tensors=sorted(members), size=_align(max(sizes[t] for t in members)),
                              first=min(times), last=max(times)))
    return buffers


def _place(buffers: list[Buffer]) -> int:
    """Greedy placement in the given order; returns the arena size."""
    placed: list[Buffer] = []
    for buf in buffers:
        live = sorted((p for p in placed if p.overlaps_in_time(buf)), key=lambda p: p.offset)
        offset = 0
        for p in live:
            if offset + buf.size <= p.offset:
                break
            offset = max(offset, p.offset + p.size)
        buf.offset = offset
        placed.append(buf)
    return max((b.offset + b.size for b in buffers), default=0)


_ORDERINGS = (
    lambda b: (-b.size, b.first),                       # TFLM's greedy: biggest first
    lambda b: (b.first, -b.size),                       # in execution order
    lambda b: (-(b.size * (b.last - b.first + 1)), b.first),  # biggest area first
    lambda b: (-(b.last - b.first), -b.size),           # longest-lived first
)


def plan_arena(sizes: dict[int, int], uses: dict[int, list[int]],
               aliases: dict[int, int]) -> ArenaPlan:
    """Plan the arena, keeping the smallest of several greedy orderings."""
    best: tuple[int, dict[int, int], list[Buffer]] | None = None
    for key in _ORDERINGS:
        buffers = build_buffers(sizes, uses, aliases)
        size = _place(sorted(buffers, key=key))
        if best is None or size < best[0]:
            offsets = {t: b.offset for b in buffers for t in b.tensors}
            best = (size, offsets, buffers)
    assert best is not None
    return ArenaPlan(size=best[0], offsets=best[1], buffers=best[2])
