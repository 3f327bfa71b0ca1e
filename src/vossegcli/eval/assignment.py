"""Optimal one-to-one assignment (the Hungarian / Kuhn–Munkres algorithm), as the DAVIS-2017
unsupervised protocol uses to match predicted objects to ground-truth objects."""

from __future__ import annotations

import math

import numpy as np


def best_assignment(score: np.ndarray) -> list[tuple[int, int]]:
    """(R, C) scores → the (row, column) pairs of a one-to-one matching with the largest total
    score (min(R, C) pairs; rows or columns left over stay unmatched). O(n³) on the padded square."""
    score = np.asarray(score, dtype=np.float64)
    rows, cols = score.shape
    n = max(rows, cols)
    if n == 0:
        return []
    cost = np.zeros((n, n))
    cost[:rows, :cols] = -score  # padding: matches worth 0
    u, v = np.zeros(n + 1), np.zeros(n + 1)
    match = np.zeros(n + 1, dtype=np.int64)  # column j (1-based) → row (1-based), 0 = free
    way = np.zeros(n + 1, dtype=np.int64)
    for i in range(1, n + 1):
        match[0] = i
        j0 = 0
        minv = np.full(n + 1, math.inf)
        used = np.zeros(n + 1, dtype=bool)
        while True:
            used[j0] = True
            i0 = match[j0]
            free = ~used[1:]
            reduced = cost[i0 - 1] - u[i0] - v[1:]
            better = free & (reduced < minv[1:])
            minv[1:][better] = reduced[better]
            way[1:][better] = j0
            masked = np.where(free, minv[1:], math.inf)
            j1 = int(np.argmin(masked)) + 1
            delta = masked[j1 - 1]
            u[match[used]] += delta
            v[used] -= delta
            minv[~used] -= delta
            j0 = j1
            if match[j0] == 0:
                break
        while j0:
            j1 = way[j0]
            match[j0] = match[j1]
            j0 = j1
    return sorted((int(match[j]) - 1, j - 1) for j in range(1, n + 1)
                  if match[j] and match[j] - 1 < rows and j - 1 < cols)
