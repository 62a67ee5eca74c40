"""Multi-task data sets as tensors: shared inputs with a dict of targets, or one data set per task.

Built-in benchmarks (registered in `BENCHMARKS`, all offline and seeded):
`mmoe-synthetic` (Ma et al., 2018), `multi-fashion` (Lin et al., 2019), `multi-digits` and
`scenes` (procedural shapes with segmentation, depth and count tasks for dense heads).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from lifelong.core.checks import check_count, check_counts
from lifelong.core.errors import ConfigError, DataError, ShapeMismatchError
from lifelong.core.registry import Registry

BENCHMARKS: Registry = Registry("multi-task benchmark")


@dataclass(frozen=True)
class TaskSpec:
    """One task: its name, loss kind (`ce`, `token-ce`, `pixel-ce`, `mse`) and output size.

    `n_outputs` is the number of classes for the cross-entropy kinds and the number of
    regressed values (channels, for dense targets) for `mse`.
    """

    name: str
    kind: str
    n_outputs: int


@dataclass(frozen=True)
class TaskSplit:
    """Train and test tensors of one task (inputs and targets)."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor


@dataclass(frozen=True)
class MultiTaskData:
    """Tasks with their tensors: `shared=True` when every task has the same inputs.

    With shared inputs each split's `train_x`/`test_x` tensors are the same objects for all tasks
    and a batch is one `x` with a dict of targets; otherwise each task is sampled on its own.
    """

    name: str
    tasks: tuple[TaskSpec, ...]
    splits: Mapping[str, TaskSplit]
    shared: bool

    def __post_init__(self) -> None:
        validate(self)

    @property
    def task_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tasks)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.splits[self.tasks[0].name].train_x.shape[1:])

    def n_train(self, task: str) -> int:
        """Number of training samples of `task`."""
        return int(self.splits[task].train_x.shape[0])

    def select(self, names: Sequence[str]) -> MultiTaskData:
        """The same data restricted to the tasks `names` (e.g. a single-task baseline)."""
        unknown = sorted(set(names) - set(self.task_names))
        if unknown:
            raise DataError(f"{self.name}: no tasks {unknown}; it has {list(self.task_names)}")
        tasks = tuple(t for t in self.tasks if t.name in names)
        return MultiTaskData(self.name, tasks, {t.name: self.splits[t.name] for t in tasks},
                             self.shared)


def shared_inputs(name: str, tasks: Sequence[TaskSpec], train_x: torch.Tensor,
                  train_y: Mapping[str, torch.Tensor], test_x: torch.Tensor,
                  test_y: Mapping[str, torch.Tensor]) -> MultiTaskData:
    """A multi-task data set whose tasks share one input tensor per split (a dict of targets)."""
    splits = {t.name: TaskSplit(train_x, train_y[t.name], test_x, test_y[t.name]) for t in tasks}
    return MultiTaskData(name, tuple(tasks), splits, shared=True)


def per_task(name: str, tasks: Sequence[TaskSpec], splits: Mapping[str, TaskSplit]) -> MultiTaskData:
    """A multi-task data set whose tasks each have their own inputs (sampled by a task sampler)."""
    return MultiTaskData(name, tuple(tasks), dict(splits), shared=False)


def validate(data: MultiTaskData) -> None:
    """Check names, one split per task, matching sample counts, non-empty splits, finite
    floating-point inputs and test targets shaped as the train targets."""
    names = [t.name for t in data.tasks]
    if not names or len(set(names)) != len(names):
        raise DataError(f"{data.name}: task names {names} must be non-empty and unique")
    if set(data.splits) != set(names):
        raise DataError(
            f"{data.name}: splits are given for {sorted(data.splits)} but the tasks are {names}"
        )
    shape = tuple(data.splits[names[0]].train_x.shape[1:])
    checked: set[int] = set()  # shared inputs are one tensor per split: check it once
    for t in data.tasks:
        s = data.splits[t.name]
        if t.n_outputs < 1:
            raise DataError(f"{data.name}: task {t.name!r} has n_outputs={t.n_outputs}; use >= 1")
        for part, x, y in (("train", s.train_x, s.train_y), ("test", s.test_x, s.test_y)):
            if x.shape[0] == 0 or x.shape[0] != y.shape[0]:
                raise ShapeMismatchError(
                    f"{data.name}, task {t.name!r}: {part} inputs {tuple(x.shape)} and targets "
                    f"{tuple(y.shape)} need the same non-zero number of samples"
                )
            if tuple(x.shape[1:]) != shape:
                raise ShapeMismatchError(
                    f"{data.name}, task {t.name!r}: {part} inputs have per-sample shape "
                    f"{tuple(x.shape[1:])} but the first task's are {shape}"
                )
            if x.is_floating_point() and id(x) not in checked:
                checked.add(id(x))
                check_finite_inputs(f"{data.name}, task {t.name!r}", part, x)
        if tuple(s.test_y.shape[1:]) != tuple(s.train_y.shape[1:]):
            raise ShapeMismatchError(
                f"{data.name}, task {t.name!r}: test targets have per-sample shape {tuple(s.test_y.shape[1:])} "
                f"but train targets {tuple(s.train_y.shape[1:])}; reshape the test targets to "
                f"{tuple(s.test_y.shape[:1]) + tuple(s.train_y.shape[1:])}"
            )
        if data.shared and s.train_x is not data.splits[names[0]].train_x:
            raise DataError(f"{data.name}: shared=True but task {t.name!r} has its own inputs")


def check_finite_inputs(where: str, part: str, x: torch.Tensor) -> None:
    """Raise a DataError naming the first rows of the `part` inputs `x` that hold NaN or infinite values."""
    if bool(torch.isfinite(x.sum())):  # a fast pass: a NaN or infinity anywhere makes the sum non-finite
        return
    finite = torch.isfinite(x).reshape(x.shape[0], -1).all(1)
    if not bool(finite.all()):  # else the sum overflowed on finite values
        bad = (~finite).nonzero().flatten()
        first = ", ".join(str(i) for i in bad[:5].tolist()) + (", ..." if len(bad) > 5 else "")
        raise DataError(
            f"{where}: {len(bad)} {part} input row(s) hold NaN or infinite values (rows {first}); drop or "
            f"impute them, e.g. rows = torch.isfinite(x).reshape(len(x), -1).all(1); x, y = x[rows], y[rows]"
        )


def load_benchmark(name: str, **kwargs) -> MultiTaskData:
    """Build the multi-task benchmark registered as `name` with its keyword arguments."""
    return BENCHMARKS.build(name, **kwargs)


@BENCHMARKS.register("mmoe-synthetic", aliases=("mmoe_synthetic", "synthetic"),
                     paper="Ma et al., 2018 (MMoE), section 4")
def mmoe_synthetic(correlation: float = 0.5, n_train: int = 8000, n_test: int = 2000,
                   dim: int = 100, n_sines: int = 10, scale: float = 1.0,
                   noise: float = 0.1, seed: int = 0) -> MultiTaskData:
    """Two regression tasks whose weight vectors have cosine `correlation` (Ma et al., 2018).

    w1 = c·u1, w2 = c·(p·u1 + sqrt(1−p²)·u2) for orthonormal u1, u2; x ~ N(0, I);
    y_i = w_iᵀx + Σ_{m=1}^{M} sin(α_m w_iᵀx + β_m) + ε_i with α, β ~ N(0, 1) and
    ε ~ N(0, noise²); paper defaults d=100, M=10, c=1, noise variance 0.01.
    """
    check_counts("mmoe-synthetic", n_train=n_train, n_test=n_test, dim=dim)
    check_count("mmoe-synthetic: n_sines", n_sines, allow_zero=True)
    if dim < 2:
        raise ConfigError(f"mmoe-synthetic: dim must be ≥ 2 to hold the two tasks' orthogonal directions, got {dim}")
    if not -1.0 <= correlation <= 1.0:
        raise DataError(f"mmoe-synthetic: correlation={correlation} must lie in [-1, 1]")
    gen = torch.Generator().manual_seed(seed)
    basis, _ = torch.linalg.qr(torch.randn(dim, 2, generator=gen, dtype=torch.float64))
    u1, u2 = basis[:, 0], basis[:, 1]
    w = scale * torch.stack([u1, correlation * u1 + math.sqrt(1 - correlation**2) * u2])
    alpha = torch.randn(n_sines, generator=gen, dtype=torch.float64)
    beta = torch.randn(n_sines, generator=gen, dtype=torch.float64)
    x = torch.randn(n_train + n_test, dim, generator=gen, dtype=torch.float64)
    proj = x @ w.T  # (N, 2)
    waves = torch.sin(alpha * proj.unsqueeze(-1) + beta).sum(-1)
    y = proj + waves + noise * torch.randn(proj.shape, generator=gen, dtype=torch.float64)
    x, y = x.float(), y.float()
    tasks = (TaskSpec("task1", "mse", 1), TaskSpec("task2", "mse", 1))
    ys = {t.name: y[:, i:i + 1] for i, t in enumerate(tasks)}
    return shared_inputs(
        f"mmoe-synthetic(p={correlation})", tasks, x[:n_train],
        {k: v[:n_train] for k, v in ys.items()}, x[n_train:], {k: v[n_train:] for k, v in ys.items()},
    )


def overlap_pairs(images: torch.Tensor, labels: torch.Tensor, gen: torch.Generator,
                  size: int = 36) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Overlay each image (top-left) with a random partner (bottom-right) on a size×size canvas.

    The MultiMNIST construction of Sener & Koltun (2018), which Lin et al. (2019) use for
    Multi-Fashion on a 36×36 canvas: the pixel-wise maximum of the item at the top-left corner and
    a partner drawn at random (it may share the class) at the bottom-right; returns (images, left
    labels, right labels).
    """
    n, _, h, w = images.shape
    if size < max(h, w):
        raise DataError(f"canvas size {size} is smaller than the {h}x{w} items; use >= {max(h, w)}")
    partner = torch.randperm(n, generator=gen)
    canvas = images.new_zeros(n, 1, size, size)
    left = canvas.clone()
    left[:, :, :h, :w] = images
    right = canvas
    right[:, :, size - h:, size - w:] = images[partner]
    return torch.maximum(left, right), labels, labels[partner]


def _two_item_tasks(n_classes: int) -> tuple[TaskSpec, TaskSpec]:
    return TaskSpec("left", "ce", n_classes), TaskSpec("right", "ce", n_classes)


@BENCHMARKS.register("multi-fashion", aliases=("multi_fashion", "MultiFashion"),
                     paper="Lin et al., 2019 (Pareto MTL)")
def multi_fashion(n_train: int = 10000, n_test: int = 2000, size: int = 36, seed: int = 0,
                  root: str | None = None) -> MultiTaskData:
    """Two overlapped Fashion-MNIST items in a 36×36 image; tasks: left and right item's class."""
    from lifelong.data.sources import load_source

    check_counts("multi-fashion", n_train=n_train, n_test=n_test, size=size)
    src = load_source("fashion-mnist", root=root, download=False)
    for asked, have, split in ((n_train, len(src.train_y), "n_train"), (n_test, len(src.test_y), "n_test")):
        if asked > have:
            raise ConfigError(f"multi-fashion: {split}={asked} but Fashion-MNIST has {have} images in that split; "
                              f"ask for at most {have}")
    gen = torch.Generator().manual_seed(seed)
    tr = torch.randperm(src.train_y.shape[0], generator=gen)[:n_train]
    te = torch.randperm(src.test_y.shape[0], generator=gen)[:n_test]
    x_tr, l_tr, r_tr = overlap_pairs(src.train_x[tr], src.train_y[tr], gen, size)
    x_te, l_te, r_te = overlap_pairs(src.test_x[te], src.test_y[te], gen, size)
    tasks = _two_item_tasks(len(src.class_names))
    return shared_inputs("multi-fashion", tasks, x_tr, {"left": l_tr, "right": r_tr},
                         x_te, {"left": l_te, "right": r_te})


@BENCHMARKS.register("multi-digits", aliases=("multi_digits",))
def multi_digits() -> MultiTaskData:
    """The embedded 8×8 digits with three tasks: the digit, its parity and whether it is ≥ 5."""
    from lifelong.data.sources import load_source

    src = load_source("digits")
    tasks = (TaskSpec("digit", "ce", 10), TaskSpec("parity", "ce", 2), TaskSpec("large", "ce", 2))

    def targets(y: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"digit": y, "parity": y % 2, "large": (y >= 5).long()}

    return shared_inputs("multi-digits", tasks, src.train_x, targets(src.train_y),
                         src.test_x, targets(src.test_y))


@BENCHMARKS.register("scenes", aliases=("shapes",))
def scenes(n_train: int = 2000, n_test: int = 500, size: int = 16, max_objects: int = 3,
           seed: int = 0) -> MultiTaskData:
    """Procedural scenes of rectangles and discs on a noisy background, for dense heads.

    Tasks: `segment` (per-pixel class: background, rectangle, disc), `depth` (per-pixel depth
    in (0, 1], background at 1, nearer objects occlude farther ones) and `count` (the objects
    visible in the image, 0..K: one hidden behind nearer ones is not counted).
    """
    check_counts("scenes", n_train=n_train, n_test=n_test, size=size, max_objects=max_objects)
    gen = torch.Generator().manual_seed(seed)
    n = n_train + n_test
    k = max_objects
    count = torch.randint(0, k + 1, (n,), generator=gen)
    present = torch.arange(k) < count.unsqueeze(1)  # (n, k)
    kind = torch.randint(1, 3, (n, k), generator=gen)  # 1 rectangle, 2 disc
    centre = torch.rand(n, k, 2, generator=gen) * (size - 4) + 2
    radius = torch.rand(n, k, 2, generator=gen) * size / 6 + size / 10
    depth = torch.rand(n, k, generator=gen) * 0.8 + 0.1
    grid = torch.arange(size, dtype=torch.float32) + 0.5
    dy = (grid.view(1, 1, size, 1) - centre[..., 0, None, None]) / radius[..., 0, None, None]
    dx = (grid.view(1, 1, 1, size) - centre[..., 1, None, None]) / radius[..., 1, None, None]
    rect = (dy.abs() <= 1) & (dx.abs() <= 1)
    disc = dy**2 + dx**2 <= 1
    mask = torch.where((kind == 1)[..., None, None], rect, disc) & present[..., None, None]
    # painter's algorithm: visit objects far to near so nearer ones overwrite
    order = depth.masked_fill(~present, 2.0).argsort(dim=1, descending=True)
    seg = torch.zeros(n, size, size, dtype=torch.long)
    dep = torch.ones(n, size, size)
    owner = torch.full((n, size, size), -1)
    rows = torch.arange(n)
    for j in range(k):  # over object slots (k is small), each step vectorised over images
        o = order[:, j]
        m = mask[rows, o]
        seg = torch.where(m, kind[rows, o, None, None], seg)
        dep = torch.where(m, depth[rows, o, None, None], dep)
        owner = torch.where(m, o[:, None, None], owner)
    count = (owner.unsqueeze(1) == torch.arange(k).view(1, k, 1, 1)).flatten(2).any(2).sum(1)
    shade = torch.tensor([0.1, 0.9, 0.5])[seg] * (1.2 - dep)
    image = (shade + 0.05 * torch.randn(n, size, size, generator=gen)).unsqueeze(1)
    tasks = (TaskSpec("segment", "pixel-ce", 3), TaskSpec("depth", "mse", 1),
             TaskSpec("count", "ce", k + 1))
    ys = {"segment": seg, "depth": dep.unsqueeze(1), "count": count}
    return shared_inputs("scenes", tasks, image[:n_train], {t: v[:n_train] for t, v in ys.items()},
                         image[n_train:], {t: v[n_train:] for t, v in ys.items()})

