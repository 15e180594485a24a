"""NUTS's trajectories, every chain's advanced one leapfrog step at a time.

Multinomial NUTS with the generalised U-turn criterion (Betancourt 2017) and Stan's
extra checks across merged subtrees, biased progressive sampling between subtrees and
uniform progressive sampling within them, divergence detection (energy error > 1000)
and a maximum tree depth.

Chains do not wait for each other. A chain whose subtree ends merges it at once; a chain
whose transition ends hands its draw to the sampler (which records it and adapts) and
starts its next transition at the next step, while the others are still deep in their
trees. So the number of batched density calls is that of the chain with the most
leapfrog steps over the whole run, not the sum over iterations of the deepest tree (the
lock-step sampler this replaced made about 1.4 times as many calls with 4 chains, twice
as many with 64). Each chain reads its own random stream in the order a lone chain
would (a direction per subtree, a uniform per point and per merge, a momentum per
transition), so its draws do not depend on its neighbours; they equal the lock-step
sampler's bit for bit when the adaptation's arithmetic is the same.

Subtrees are built iteratively: within a subtree of 2^d steps, the U-turn checks of its
aligned segments need only the momentum at the start of the latest aligned segment of
each size 2^k and the running momentum sum there, and the momentum at the end of the
latest left half ("checkpoints", [C, K, D] each, K the maximum depth).

This runs once per leapfrog step, so it is written for few array operations, in numpy on
a CPU (runtime/arrays.py says why): points are packed as [C, 3, D] (position, momentum,
gradient) so one `where` moves a whole point; the checks of a step (every level of every
chain's subtree, or the three checks of a merge) are one batched product.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from runtime.arrays import ArrayOps
from runtime.streams import ChainStreams

MAX_DELTA_H = 1000.0

# Which (end point, momentum sum) pairs each U-turn check takes, as flat indices into the
# [ends, sums] matrix of dot products; a check passes when both of its dots are positive.
# Within a subtree, per level k >= 1, ends (start of the level-k segment, start of its
# right half, end of its left half, this point) and sums (the segment's, the left half's
# plus the right half's first point, the right half's plus the left half's last point).
_SEGMENT_PAIRS = ((0, 0), (3, 0), (0, 1), (1, 1), (2, 2), (3, 2))
# At a merge: ends (tree's left, tree's right, the old tree's outer end, the subtree's
# first point, the point the subtree started from, its last point) and sums (the tree's,
# the old tree's plus the subtree's first point, the subtree's plus its starting point).
_MERGE_PAIRS = ((0, 0), (1, 0), (2, 1), (3, 1), (4, 2), (5, 2))


class Trajectories:
    """The state of every chain's current transition and subtree (arrays of `ops`)."""

    def __init__(self, ops: ArrayOps, potential: Callable[[Any], tuple[Any, Any]],
                 metric: Any, step: Any, q: Any, lp: Any, g: Any,
                 streams: ChainStreams, max_depth: int):
        """potential: array q [C, D] -> arrays (log density [C], gradient [C, D]);
        metric: runtime.nuts.Metric (torch); step [C] and the starting point: arrays."""
        self.ops, self.potential, self.streams = ops, potential, streams
        self.max_depth = max_depth
        self.set_metric(metric)
        self.step = step
        c, d = q.shape
        k = max(max_depth, 1)
        full = ops.full
        self.chains = ops.arange(c)
        self.levels = ops.arange(k)
        self.level_mask = (1 << self.levels) - 1  # n & mask == 0: 2^k divides n
        self.zero, self.half = full((), 0.0), full((), 0.5)
        self.neg_inf, self.min_log_w = full((), -math.inf), full((), -MAX_DELTA_H)
        self.int_zero, self.one = full((), 0, "int"), full((), 1.0)
        self.sample = ops.stack((q, full((c, d), 0.0), g), 1)  # the tree's draw
        self.sample_lp = lp
        self.h0 = full((c,), 0.0)
        self.left, self.right = ops.copy(self.sample), ops.copy(self.sample)
        self.log_w = full((c,), 0.0)
        self.rho = full((c, d), 0.0)
        self.depth = full((c,), 0, "int")
        self.n_leapfrog = full((c,), 0, "int")
        self.sum_accept = full((c,), 0.0)
        self.divergent = full((c,), False, "bool")
        # the subtree being built
        self.forward = full((c,), False, "bool")
        self.signed = full((c, 1), 0.0)  # its step, signed; 0 once a chain's run is over
        self.half_signed = self.signed
        self.edge = ops.copy(self.sample)
        self.q, self.p, self.g = q, full((c, d), 0.0), g
        self.start_p = full((c, d), 0.0)
        self.n = full((c,), 0, "int")
        self.size = full((c,), 1, "int")  # 2^depth
        self.within = full((c, k), False, "bool")  # the levels <= depth
        self.sub_log_w = full((c,), 0.0)
        self.sub_rho = full((c, d), 0.0)
        self.sub_sample = ops.copy(self.sample)
        self.sub_lp = lp
        self.ck_p = full((c, k, d), 0.0)
        self.ck_rho = full((c, k, d), 0.0)
        self.end_p = full((c, k, d), 0.0)
        self.top = 1  # levels 0..top-1 are in use: the deepest subtree of any chain
        self.u = self._uniforms(full((c,), True, "bool"))  # the first subtree's direction
        self.segment_pairs = _pair_index(ops, _SEGMENT_PAIRS, 3)
        self.merge_pairs = _pair_index(ops, _MERGE_PAIRS, 3)

    # ---- the metric ---------------------------------------------------------------------

    def set_metric(self, metric: Any) -> None:
        """Use `metric` (runtime.nuts.Metric) from now on."""
        self.metric = metric
        self.dense = metric.dense
        self.inverse = self.ops.array(metric.inverse)

    def velocity(self, p: Any) -> Any:
        """M^{-1} p for p [C, ..., D]."""
        inverse = self.inverse
        if p.ndim > 2:
            inverse = inverse.reshape(inverse.shape[:1] + (1,) * (p.ndim - 2)
                                      + inverse.shape[1:])
        if self.dense:
            return (inverse @ p[..., None])[..., 0]
        return inverse * p

    def kinetic(self, p: Any) -> Any:
        return (p * self.velocity(p)).sum(-1) * self.half

    # ---- random numbers, each chain's from its own stream -------------------------------

    def _uniforms(self, mask: Any) -> Any:
        """A row of three uniforms per chain in `mask`, read once per leapfrog step: for
        taking this point into the subtree's draw, for taking the subtree into the tree's
        if it ends here, and for the direction of the subtree after it."""
        rows = self.streams.uniforms(3, mask if self.ops.numpy else mask.cpu())
        return rows if self.ops.numpy else torch.from_numpy(rows).to(self.ops.device)

    def _momentum(self, mask: Any) -> Any:
        return self.ops.array(self.metric.draw_momentum(self.streams, self.ops.tensor(mask)))

    # ---- transitions and subtrees --------------------------------------------------------

    def begin(self, mask: Any) -> None:
        """A new transition from the current draw, for the chains in `mask`."""
        ops = self.ops
        p = self._momentum(mask)
        start = ops.stack((self.sample[:, 0], p, self.sample[:, 2]), 1)
        m1, m3 = mask.reshape(-1, 1), mask.reshape(-1, 1, 1)
        self.h0 = ops.where(mask, self.kinetic(p) - self.sample_lp, self.h0)
        self.left = ops.where(m3, start, self.left)
        self.right = ops.where(m3, start, self.right)
        self.log_w = ops.where(mask, self.zero, self.log_w)
        self.rho = ops.where(m1, p, self.rho)
        self.depth = ops.where(mask, self.int_zero, self.depth)
        self.n_leapfrog = ops.where(mask, self.int_zero, self.n_leapfrog)
        self.sum_accept = ops.where(mask, self.zero, self.sum_accept)
        self.divergent = self.divergent & ~mask
        self._subtree(mask)

    def _subtree(self, mask: Any) -> None:
        """Start a subtree of 2^depth steps in a random direction, for `mask`'s chains."""
        ops = self.ops
        m1 = mask.reshape(-1, 1)
        self.forward = ops.where(mask, self.u[:, 2] < 0.5, self.forward)
        outer = ops.where(self.forward.reshape(-1, 1, 1), self.right, self.left)
        self.edge = ops.where(mask.reshape(-1, 1, 1), outer, self.edge)
        e = self.edge
        self.q, self.p, self.g = e[:, 0], e[:, 1], e[:, 2]
        self.start_p = ops.where(m1, self.p, self.start_p)
        signed = ops.where(self.forward, self.step, -self.step).reshape(-1, 1)
        self.signed = ops.where(m1, signed, self.signed)
        self.half_signed = self.signed * self.half
        self.n = ops.where(mask, self.int_zero, self.n)
        self.size = 1 << self.depth
        self.top = int(self.depth.max()) + 1
        self.within = self.levels[:self.top] <= self.depth.reshape(-1, 1)
        self.sub_log_w = ops.where(mask, self.neg_inf, self.sub_log_w)
        self.sub_rho = ops.where(m1, self.zero, self.sub_rho)

    def freeze(self, chains: Any) -> None:
        """The chains in `chains` have ended their run: they stay where they are."""
        self.signed = self.ops.where(chains.reshape(-1, 1), self.zero, self.signed)
        self.half_signed = self.signed * self.half

    # ---- one step ----------------------------------------------------------------------

    def advance(self, live: Any) -> Any | None:
        """One leapfrog step of every chain in `live`; the mask of the chains whose
        transition ended at this step (None if none did)."""
        ops = self.ops
        p_half = self.p + self.half_signed * self.g
        q = self.q + self.signed * self.velocity(p_half)
        lp, g = self.potential(q)
        p = p_half + self.half_signed * g
        self.q, self.p, self.g = q, p, g
        e = self.edge = ops.stack((q, p, g), 1)
        # minus the energy error; NaN (an undefined point) is an infinite error
        neg_delta = ops.nan_to_num(self.h0 + lp - self.kinetic(p), nan=-math.inf,
                                   posinf=math.inf, neginf=-math.inf)
        fine = neg_delta >= self.min_log_w
        self.n_leapfrog = self.n_leapfrog + 1
        self.sum_accept = self.sum_accept + ops.minimum(ops.exp(neg_delta), self.one)
        new_log_w = ops.logaddexp(self.sub_log_w, neg_delta)
        self.u = self._uniforms(live)
        take = live & fine & (ops.log(self.u[:, 0]) < neg_delta - new_log_w)
        self.sub_sample = ops.where(take.reshape(-1, 1, 1), e, self.sub_sample)
        self.sub_lp = ops.where(take, lp, self.sub_lp)
        before = self.sub_rho
        self.sub_log_w = new_log_w
        self.sub_rho = before + p
        # checkpoints at the start of aligned segments of each size 2^k (k < top)
        top = self.top
        level_mask = self.level_mask[:top]
        n = self.n.reshape(-1, 1)
        starts = ((n & level_mask) == 0)[..., None]
        ops.copyto(self.ck_p[:, :top], p[:, None], starts)
        ops.copyto(self.ck_rho[:, :top], before[:, None], starts)
        # the levels k <= depth whose segment ends here: 2^k divides n + 1
        n1 = n + 1
        ends = ((n1 & level_mask) == 0) & self.within
        ok = self._segments_ok(p, ends, top)
        # the end of the left half of a later check: the highest level ending here
        highest = ends.sum(-1).reshape(-1, 1) - 1
        ops.copyto(self.end_p[:, :top], p[:, None], (self.levels[:top] == highest)[..., None])
        stop = ~fine if ok is None else ~(fine & ok)
        self.divergent = self.divergent | (live & ~fine)
        self.n = n1 = n1.reshape(-1)
        ended = live & (stop | (n1 == self.size))
        if not bool(ended.any()):
            return None
        return self._merge(ended, ~stop)

    def _segments_ok(self, p: Any, ends: Any, top: int) -> Any | None:
        """Within the subtree, no aligned segment ending here (levels k >= 1 in `ends`)
        has turned back, nor its left half with the right half's first point, nor its
        right half with the left half's last point (Stan's checks, at every level). None
        where no segment of any chain ends here."""
        ends = ends[:, 1:]
        if not bool(ends.any()):
            return None
        ops = self.ops
        rho, here = self.sub_rho[:, None], p[:, None]
        hi_p, lo_p = self.ck_p[:, 1:top], self.ck_p[:, :top - 1]
        hi_rho, lo_rho = self.ck_rho[:, 1:top], self.ck_rho[:, :top - 1]
        left_end = self.end_p[:, :top - 1]
        spans = ops.stack((rho - hi_rho, lo_rho - hi_rho + lo_p, rho - lo_rho + left_end), 2)
        ends_at = ops.stack((hi_p, lo_p, left_end, ops.broadcast_to(here, hi_p.shape)), 2)
        apart = self._apart(ends_at, spans, self.segment_pairs)
        return ~(ends & ~apart).any(-1)

    def _merge(self, ended: Any, valid: Any) -> Any | None:
        """Merge the subtrees that ended (a valid one joins the tree); continue or end
        each chain's transition. Returns the chains whose transition ended."""
        ops, e, forward = self.ops, self.edge, self.forward
        ok = ended & valid
        old_outer = ops.where(forward.reshape(-1, 1), self.left[:, 1], self.right[:, 1])
        first_p = self.ck_p[self.chains, self.depth]  # the subtree's first point
        self.left = ops.where((ok & ~forward).reshape(-1, 1, 1), e, self.left)
        self.right = ops.where((ok & forward).reshape(-1, 1, 1), e, self.right)
        accept = ok & (ops.log(self.u[:, 1]) < self.sub_log_w - self.log_w)
        self.sample = ops.where(accept.reshape(-1, 1, 1), self.sub_sample, self.sample)
        self.sample_lp = ops.where(accept, self.sub_lp, self.sample_lp)
        self.log_w = ops.where(ok, ops.logaddexp(self.log_w, self.sub_log_w), self.log_w)
        rho_old = self.rho
        self.rho = ops.where(ok.reshape(-1, 1), rho_old + self.sub_rho, rho_old)
        self.depth = self.depth + ended
        # the whole tree, and Stan's extra checks across the old tree and the new subtree
        ends_at = ops.stack((self.left[:, 1], self.right[:, 1], old_outer, first_p,
                             self.start_p, self.p), 1)
        spans = ops.stack((self.rho, rho_old + first_p, self.sub_rho + self.start_p), 1)
        keep = ok & self._apart(ends_at, spans, self.merge_pairs) \
            & (self.depth < self.max_depth)
        going_on = ended & keep
        if bool(going_on.any()):
            self._subtree(going_on)
        done = ended & ~keep
        return done if bool(done.any()) else None

    def _apart(self, ends_at: Any, spans: Any, index: Any) -> Any:
        """The generalised no-U-turn criterion for several checks at once: ends_at
        [..., E, D] momenta, spans [..., S, D] momentum sums, `index` the (end, sum)
        dots each check needs, two per check. A check passes when both of its end points'
        velocities have a positive dot with its sum; True where all checks pass [...]."""
        weights = self.velocity(spans)  # M^{-1} is symmetric: v(a) . r = a . M^{-1} r
        dots = ends_at @ weights.swapaxes(-1, -2)
        positive = dots.reshape(dots.shape[:-2] + (-1,))[..., index] > 0
        return positive.all(-1)

    def stats(self) -> dict[str, Any]:
        """The statistics of each chain's latest transition (read when it ends)."""
        steps = self.ops.where(self.n_leapfrog > 0, self.n_leapfrog, 1)
        return {
            "accept_stat": self.ops.real(self.sum_accept / steps),
            "n_leapfrog": self.n_leapfrog,
            "tree_depth": self.depth,
            "diverging": self.divergent,
            "energy": self.h0,
            "step_size": self.step,
        }


def _pair_index(ops: ArrayOps, pairs: tuple[tuple[int, int], ...], sums: int) -> Any:
    """The flat indices of `pairs` (end point, momentum sum) in a [E, S] matrix of dots."""
    return ops.array(torch.tensor([a * sums + s for a, s in pairs], device=ops.device))
