"""Tensor-backed replay memories: reservoir sampling, class/task-balanced rings, herding selection.

Every buffer preallocates `capacity` rows per field (inputs `x`, labels `y`, task labels `t`, and
whatever else a strategy stores, e.g. DER's `logits`) on its first insert, from the sample shapes,
dtypes and device; filled rows are always the prefix `[0, size)`. Memory is O(capacity), never
O(stream), and every random draw comes from the `torch.Generator` passed in.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from lifelong.core.checks import check_count
from lifelong.core.errors import CheckpointError, ConfigError, ShapeMismatchError


def on(v: Tensor, like: Tensor, dtype: bool = True) -> Tensor:
    """`v` detached on `like`'s device (and dtype), with no new tensor when it is there already."""
    if v.requires_grad:
        v = v.detach()
    if v.device != like.device or (dtype and v.dtype != like.dtype):
        v = v.to(like.device, like.dtype if dtype else v.dtype)
    return v


class TensorStore:
    """`capacity` preallocated rows of named tensors; rows `[0, size)` are filled.

    Subclasses name their integer counters in `counters`; `state_dict` saves them with the rows.
    """

    counters: ClassVar[tuple[str, ...]] = ()

    def __init__(self, capacity: int) -> None:
        self.capacity = check_count("buffer capacity (the strategy's buffer or memory size)", capacity)
        self.data: dict[str, Tensor] = {}
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def _check(self, fields: dict[str, Tensor]) -> int:
        n = next(iter(fields.values())).shape[0]
        if any(v.shape[0] != n for v in fields.values()):
            lengths = {k: v.shape[0] for k, v in fields.items()}
            raise ShapeMismatchError(f"buffer insert: fields have different row counts {lengths}")
        if self.data:
            if fields.keys() != self.data.keys():
                raise ShapeMismatchError(
                    f"buffer insert: fields {sorted(fields)} differ from the stored fields "
                    f"{sorted(self.data)}; insert the same fields every time")
            for k, v in fields.items():
                if v.shape[1:] != self.data[k].shape[1:]:
                    raise ShapeMismatchError(
                        f"buffer insert: field {k!r} has per-sample shape {tuple(v.shape[1:])}, "
                        f"the buffer stores {tuple(self.data[k].shape[1:])}; a buffer keeps "
                        "one shape per field")
        return n

    def write(self, slots: Tensor, fields: dict[str, Tensor]) -> None:
        """Write row i of each field into slot `slots[i]` (slots distinct); allocates at first."""
        self._check(fields)
        self._write(slots, fields)

    def _write(self, slots: Tensor, fields: dict[str, Tensor], rows: Tensor | None = None) -> None:
        """Row i of each field (or row rows[i]) into slot `slots[i]`."""
        if not self.data:
            self.data = {k: v.new_empty((self.capacity, *v.shape[1:])) for k, v in fields.items()}
        for k, v in fields.items():
            store = self.data[k]
            if rows is not None:
                v = v.index_select(0, on(rows, v, dtype=False))
            store.index_copy_(0, on(slots, store, dtype=False), on(v, store))

    def view(self) -> dict[str, Tensor]:
        """The filled rows of every field (views, not copies)."""
        return {k: v[: self.size] for k, v in self.data.items()}

    def sample(self, n: int, generator: torch.Generator) -> dict[str, Tensor]:
        """min(n, size) distinct rows drawn uniformly with `generator`."""
        idx = torch.randperm(self.size, generator=generator)[:n]
        return {k: v.index_select(0, on(idx, v, dtype=False)) for k, v in self.data.items()}

    def to(self, device: torch.device | str) -> TensorStore:
        """Move the storage to `device` (in place; a no-op when it is there already)."""
        self.data = {k: v.to(device) for k, v in self.data.items()}
        return self

    def state_dict(self) -> dict[str, Any]:
        """The filled rows and counters: tensors and plain values only."""
        return {"capacity": self.capacity, "size": self.size,
                "data": {k: v.clone() for k, v in self.view().items()},
                **{c: getattr(self, c) for c in self.counters}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` returned (storage reallocated at full capacity)."""
        self.capacity, self.size, self.data = int(state["capacity"]), 0, {}
        rows = next(iter(state["data"].values())).shape[0] if state["data"] else 0
        if rows > self.capacity or int(state["size"]) != rows:
            raise CheckpointError(f"buffer checkpoint: {rows} stored rows, size {state['size']} and capacity "
                                  f"{self.capacity} do not fit together; the checkpoint is damaged or was "
                                  "edited, resume from an intact one")
        if rows:
            self.write(torch.arange(rows), state["data"])
        self.size = rows
        for c in self.counters:
            setattr(self, c, int(state[c]))


def last_per_slot(items: Tensor, slots: Tensor) -> tuple[Tensor, Tensor]:
    """(items, slots) keeping, for each slot written several times, only its last (item order)."""
    if items.shape[0] < 2 or len(set(slots.tolist())) == items.shape[0]:
        return items, slots
    slots, order = torch.sort(slots, stable=True)
    last = torch.ones_like(slots, dtype=torch.bool)
    last[:-1] = slots[1:] != slots[:-1]
    return items.index_select(0, order)[last], slots[last]


def gaps(log_w: np.ndarray, u: np.ndarray) -> np.ndarray:
    """1 + Geometric(W) from uniforms u: the distance to the next item whose key falls below W."""
    with np.errstate(divide="ignore"):  # W → 0 (or u = 0): a gap no stream reaches
        return np.floor(np.minimum(np.log(u) / np.log1p(-np.exp(log_w)), 2.0**62)) + 1


class ReservoirBuffer(TensorStore):
    """Every item of the stream is held with equal probability capacity / n_seen.

    The first `capacity` items fill the slots in order; from then on algorithm L (Li 1994) draws
    the gap to the next accepted item directly instead of a number per item (algorithm R, Vitter
    1985): W, the largest of the held items' uniform keys, shrinks by U^(1/k) at each acceptance and
    the gap is geometric with success probability W. A batch holding no accepted item costs O(1),
    so inserting gets cheaper as the stream grows; the acceptances inside a batch are drawn
    together (cumulative sums), and where two hit one slot the later one stays, as one by one.
    """

    counters = ("seen", "next_item")

    def __init__(self, capacity: int) -> None:
        super().__init__(capacity)
        self.seen = 0
        self.next_item = -1  # stream position of the next accepted item; -1 before it is drawn
        self.log_w = 0.0  # log W

    def add(self, fields: dict[str, Tensor], generator: torch.Generator) -> None:
        """Offer a batch of rows; O(1) work when none is accepted, O(accepted) otherwise."""
        n = self._check(fields)
        start, end = self.seen, self.seen + n
        items = np.arange(min(max(self.capacity - start, 0), n))  # rows filling the free slots
        slots = items + start
        if end > self.capacity:
            if self.next_item < 0:
                self._start(max(start, self.capacity), generator)
            if self.next_item < end:
                accepted, chosen = self._accept(end, generator)
                items, slots = np.concatenate([items, accepted - start]), np.concatenate([slots, chosen])
        if items.shape[0]:
            rows, where = last_per_slot(torch.from_numpy(items), torch.from_numpy(slots))
            self._write(where, fields, rows=None if rows.shape[0] == n else rows)
        self.seen = end
        self.size = min(self.capacity, end)

    def _start(self, seen: int, generator: torch.Generator) -> None:
        """W ~ Beta(k, seen − k + 1), the k-th smallest of `seen` uniform keys (U^(1/k) when seen = k),
        and the first gap; at any stream position, so a buffer saved before algorithm L resumes too."""
        rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=generator)))
        self.log_w = math.log(rng.beta(self.capacity, seen - self.capacity + 1))
        u = torch.rand(1, generator=generator, dtype=torch.float64).numpy()
        self.next_item = seen + int(gaps(np.array([self.log_w]), u)[0]) - 1

    def _accept(self, end: int, generator: torch.Generator) -> tuple[np.ndarray, np.ndarray]:
        """The stream positions accepted before `end` and their slots (uniform), drawn in chunks of
        three uniforms per acceptance (W's shrink, the gap after it, the slot)."""
        k, positions, slots = self.capacity, [], []
        while self.next_item < end:
            # about k·ln(end / next) acceptances remain in the batch; drawn with a margin, extra ones unused
            m = min(end - self.next_item, int(1.5 * k * math.log(end / self.next_item)) + 4)
            u = torch.rand(3 * m, generator=generator, dtype=torch.float64).numpy()
            log_w = self.log_w + np.cumsum(np.log(u[:m]) / k)  # W after each of the m acceptances
            at = self.next_item + np.concatenate([[0], np.cumsum(gaps(log_w, u[m:2 * m]))]).astype(np.int64)
            c = min(int(np.searchsorted(at, end)), m)  # acceptances 0..c-1 fall in the batch
            positions.append(at[:c])
            slots.append((u[2 * m:2 * m + c] * k).astype(np.int64))
            self.next_item, self.log_w = int(at[c]), float(log_w[c - 1])
        return np.concatenate(positions), np.concatenate(slots)

    def state_dict(self) -> dict[str, Any]:
        """The rows, counters and log W (algorithm L's state)."""
        return {**super().state_dict(), "log_w": self.log_w}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore `state_dict`'s; a buffer saved without algorithm L's state draws it afresh."""
        super().load_state_dict({"next_item": -1, **state})
        self.log_w = float(state.get("log_w", 0.0))


def balanced_quotas(counts: Tensor, capacity: int) -> Tensor:
    """Shares of `capacity` per group, equal within one and capped by each group's count.

    Water-filling over groups in ascending count order (a loop over groups, not samples): a group
    with fewer items than its fair share keeps them all and leaves the rest to the others.
    """
    quotas = torch.zeros_like(counts)
    remaining = capacity
    order = torch.argsort(counts, stable=True).tolist()
    for rank, g in enumerate(order):
        quotas[g] = min(int(counts[g]), remaining // (len(order) - rank))
        remaining -= int(quotas[g])
    return quotas


def balanced_keep(groups: Tensor, priority: Tensor, capacity: int) -> Tensor:
    """Mask of the rows to keep: the `quota` highest-priority rows of each group."""
    _, inverse, counts = torch.unique(groups, return_inverse=True, return_counts=True)
    quotas = balanced_quotas(counts, capacity)
    order = torch.argsort(priority, descending=True, stable=True)
    order = order[torch.argsort(inverse[order], stable=True)]
    start = torch.cumsum(counts, 0) - counts
    rank = torch.arange(len(order)) - start[inverse[order]]
    keep = torch.zeros(len(order), dtype=torch.bool)
    keep[order] = rank < quotas[inverse[order]]
    return keep


class BalancedBuffer(TensorStore):
    """Equal space per group (class or task), shrinking old shares as new groups arrive.

    Within a group the highest `priority` rows stay; by default priority is the insertion count,
    so each group is a ring that drops its oldest rows first. iCaRL passes minus the herding rank
    instead, so reducing a class keeps its first exemplars (Rebuffi et al. 2017, Alg. 5).
    Fields `group` and `priority` are stored beside the caller's.
    """

    counters = ("inserted",)

    def __init__(self, capacity: int) -> None:
        super().__init__(capacity)
        self.inserted = 0

    def add(self, fields: dict[str, Tensor], groups: Tensor,
            priority: Tensor | None = None) -> None:
        """Offer rows with their group ids; keeps the balanced selection of old and new rows."""
        groups = groups.long().cpu()
        if priority is None:
            priority = self.inserted + torch.arange(len(groups))
        priority = priority.long().cpu()
        rows = {**fields, "group": groups, "priority": priority}
        self.inserted += self._check(rows)
        old = {k: v.cpu() for k, v in self.view().items() if k in ("group", "priority")}
        keep = balanced_keep(torch.cat([old.get("group", groups[:0]), groups]),
                             torch.cat([old.get("priority", priority[:0]), priority]),
                             self.capacity)
        new = keep[self.size:].nonzero().squeeze(1)
        dropped = (~keep[: self.size]).nonzero().squeeze(1)
        free = torch.cat([dropped, torch.arange(self.size, self.capacity)])
        if len(new):
            self._write(free[: len(new)], rows, rows=new)
        self.size = int(keep.sum())

    def counts(self) -> dict[int, int]:
        """Rows held per group."""
        if not self.size:
            return {}
        g, c = torch.unique(self.data["group"][: self.size], return_counts=True)
        return dict(zip(g.tolist(), c.tolist(), strict=True))


def herding_select(features: Tensor, m: int) -> Tensor:
    """Indices of m rows chosen greedily so their running mean best approximates the mean of all.

    iCaRL's herding (Rebuffi et al. 2017, Alg. 4): step k picks
    argmin_x ‖μ − (φ(x) + Σ_{j<k} φ(p_j)) / k‖ among unchosen rows. Since
    ‖μ − (s + φ)/k‖² = const − (2/k)⟨μ − s/k, φ⟩ + ‖φ‖²/k², each step is one matrix-vector
    product over all candidates. Pass L2-normalised features, as iCaRL does.
    """
    if features.ndim != 2:
        raise ShapeMismatchError(
            f"herding_select: features must be (n, d), got {tuple(features.shape)}")
    if m < 0:
        raise ConfigError(f"herding_select: m must be a number of exemplars >= 0, got {m}")
    n = features.shape[0]
    m = min(int(m), n)
    f = features.double()
    mu, sq = f.mean(0), (f * f).sum(1)
    total = torch.zeros_like(mu)
    taken = torch.zeros(n, dtype=torch.bool, device=f.device)
    chosen = torch.empty(m, dtype=torch.long, device=f.device)
    for k in range(1, m + 1):
        score = sq / k**2 - (2.0 / k) * (f @ (mu - total / k))
        i = score.masked_fill(taken, float("inf")).argmin()
        chosen[k - 1], taken[i] = i, True
        total += f[i]
    return chosen
