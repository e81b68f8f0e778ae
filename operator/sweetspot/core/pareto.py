"""Pareto arithmetic over points to minimise (pure): domination, non-dominated sorting, crowding distance, the knee
and the hypervolume. Every objective is turned into one to minimise before it gets here (`core.objectives`).

The plain O(n² m) sort, in one pass over the pairs: tens to hundreds of trials sort in milliseconds, 1,000 in about a
second on one core (two objectives).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

Point = Sequence[float]


def dominates(a: Point, b: Point) -> bool:
    """`a` is no worse than `b` in every objective and better in one (all minimised)."""
    return all(x <= y for x, y in zip(a, b, strict=True)) and any(x < y for x, y in zip(a, b, strict=True))


def fronts(points: Sequence[Point]) -> list[list[int]]:
    """Non-dominated sorting: the indices of `points` by front, the Pareto front first (each front in index
    order). Equal points share a front."""
    dominated_by = [0] * len(points)
    beats: list[list[int]] = [[] for _ in points]
    for i, j in itertools.combinations(range(len(points)), 2):
        if dominates(points[i], points[j]):
            beats[i].append(j)
            dominated_by[j] += 1
        elif dominates(points[j], points[i]):
            beats[j].append(i)
            dominated_by[i] += 1
    out: list[list[int]] = []
    current = [i for i, count in enumerate(dominated_by) if count == 0]
    while current:
        out.append(current)
        following: list[int] = []
        for i in current:
            for j in beats[i]:
                dominated_by[j] -= 1
                if dominated_by[j] == 0:
                    following.append(j)
        current = sorted(following)
    return out


def crowding(points: Sequence[Point], front: Sequence[int]) -> dict[int, float]:
    """Crowding distance of each index of `front` (NSGA-II's): the sum over objectives of the gap between its
    neighbours, scaled by the front's range; the extremes of every objective get infinity, so they are kept first."""
    distance = dict.fromkeys(front, 0.0)
    if len(front) <= 2:
        return dict.fromkeys(front, math.inf)
    for m in range(len(points[front[0]])):
        ordered = sorted(front, key=lambda i: (points[i][m], i))
        low, high = points[ordered[0]][m], points[ordered[-1]][m]
        if high == low:  # the same for every point (a cost nobody varies): it tells no point apart
            continue
        distance[ordered[0]] = distance[ordered[-1]] = math.inf
        for before, here, after in zip(ordered, ordered[1:], ordered[2:], strict=False):
            distance[here] += (points[after][m] - points[before][m]) / (high - low)
    return distance


def ranked(points: Sequence[Point]) -> list[int]:
    """Every index, best first: by front, and inside a front by crowding distance (most isolated first, which
    keeps the front's spread), then by index."""
    order: list[int] = []
    for front in fronts(points):
        distance = crowding(points, front)
        order += sorted(front, key=lambda i: (-distance[i], i))
    return order


def knee(points: Sequence[Point], prefer: int = 0) -> int | None:
    """The knee of a front: with each objective scaled to span 0 to 1 over the points, the one with the least sum
    (the point where a further share of one objective's range costs more than a share of the others'). For two
    objectives, quality and cost, that is where each extra unit of cost stops buying as much quality. Ties (two points
    always tie) go to the best in objective `prefer` (the quality). None when empty."""
    if not points:
        return None
    dims = range(len(points[0]))
    lows = [min(p[m] for p in points) for m in dims]
    spans = [max(p[m] for p in points) - lows[m] for m in dims]

    def scaled(p: Point) -> float:
        return round(sum((p[m] - lows[m]) / spans[m] for m in dims if spans[m] > 0), 9)

    return min(range(len(points)), key=lambda i: (scaled(points[i]), points[i][prefer], i))


def hypervolume(points: Sequence[Point], reference: Point) -> float:
    """The volume dominated by `points` and bounded by `reference` (all minimised; points not better than the
    reference in every objective add nothing). Exact, by slicing along the first objective: fine for the few
    objectives and tens of points of a study."""
    inside = [tuple(p) for p in points if all(x < r for x, r in zip(p, reference, strict=True))]
    if not inside:
        return 0.0
    if len(reference) == 1:
        return reference[0] - min(p[0] for p in inside)
    cuts = [*sorted({p[0] for p in inside}), reference[0]]
    volume = 0.0
    for low, high in itertools.pairwise(cuts):
        slab = [p[1:] for p in inside if p[0] <= low]
        volume += (high - low) * hypervolume(slab, reference[1:])
    return volume
