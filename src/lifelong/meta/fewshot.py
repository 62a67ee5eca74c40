"""Few-shot continual classification from a library data set, with disjoint meta-train/test classes.

As in OML's and ANML's Omniglot protocol (Javed & White 2019; Beaulieu et al. 2020), scaled to
10-class data: the first `meta_train_classes` classes are for meta-training, the others form the
meta-test stream, learned one class after another from `shots` samples each, one SGD step per
sample. Both splits are relabelled 0..n-1; output rows are reset before a class is learned.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lifelong.core.checks import check_counts, check_positive
from lifelong.core.errors import ConfigError
from lifelong.data.sources import SourceData, load_source
from lifelong.meta.benchmark import CLASSIFICATION, Episode, MetaBenchmark, Task


def class_table(y: torch.Tensor, classes: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """(n_classes, n_min) indices of each class's samples in a random order, cut to the rarest."""
    rows = [torch.nonzero(y == c).flatten() for c in classes.tolist()]
    n_min = min(len(r) for r in rows)
    return torch.stack([r[torch.randperm(len(r), generator=gen)[:n_min]] for r in rows])


def dihedral_classes(x: torch.Tensor, y: torch.Tensor, n_classes: int, variants: int
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Each of the first `variants` symmetries of the square (rotations, then transposed
    rotations) makes new classes: label `y + v * n_classes` (Santoro et al. 2016's Omniglot trick)."""
    views = [torch.rot90(x.transpose(-1, -2) if v >= 4 else x, v % 4, dims=(-2, -1))
             for v in range(variants)]
    return torch.cat(views), torch.cat([y + v * n_classes for v in range(variants)])


def fewshot_from_source(data: SourceData | str, seed: int = 0, *, meta_train_classes: int = 5,
                        shots: int = 5, classes_per_trajectory: int = 5, trajectory_shots: int = 5,
                        remember: int = 32, class_variants: int = 8, max_per_class: int = 200,
                        online_lr: float = 0.1) -> MetaBenchmark:
    """Few-shot continual classification: meta-train on the first classes, meta-test on the rest.

    `data` is a `SourceData` or a name for `load_source`; `seed` draws the samples used and
    their order. A meta-training trajectory is `trajectory_shots` samples of each of
    `classes_per_trajectory` classes, in order; its remember set is `remember` random
    meta-training samples. `class_variants` > 1 adds rotated/transposed copies of the
    meta-training classes as further classes (square images); each meta-training class keeps
    at most `max_per_class` random samples. The meta-test stream has one task per held-out
    class: `shots` training samples, then all of the class's test samples. The papers sample
    one class per trajectory out of Omniglot's 963; with 5 classes that over-fits them
    (near-perfect on meta-training classes, chance on new ones), so the defaults train on
    trajectories shaped like the meta-test stream (5 classes of 5 shots) over 40 classes
    (8 symmetries × 5); ANML's inner lr 0.1 is the online rate.
    """
    check_counts("fewshot", meta_train_classes=meta_train_classes, shots=shots,
                 classes_per_trajectory=classes_per_trajectory, trajectory_shots=trajectory_shots,
                 remember=remember, class_variants=class_variants, max_per_class=max_per_class)
    online_lr = check_positive("fewshot: online_lr", online_lr, allow_zero=False)
    if isinstance(data, str):
        data = load_source(data)
    n_classes = data.n_classes
    n_test_classes = n_classes - meta_train_classes
    square = len(data.input_shape) == 3 and data.input_shape[1] == data.input_shape[2]
    if meta_train_classes >= n_classes or class_variants > (8 if square else 1):
        raise ConfigError(
            f"fewshot: meta_train_classes={meta_train_classes} must leave classes on both sides of "
            f"the {n_classes} classes of {data.name!r} and class_variants={class_variants} must be "
            "1 (or up to 8 for square images)"
        )
    gen = torch.Generator().manual_seed(seed)
    kept = class_table(data.train_y, torch.arange(meta_train_classes), gen)[:, :max_per_class]
    meta_x, meta_y = dihedral_classes(data.train_x[kept.flatten()], data.train_y[kept.flatten()],
                                      meta_train_classes, class_variants)
    n_meta = meta_train_classes * class_variants
    table = torch.arange(len(meta_y)).view(n_meta, -1)  # row r: the samples labelled r
    test_classes = torch.arange(meta_train_classes, n_classes)
    test_table = class_table(data.train_y, test_classes, gen)
    if trajectory_shots > table.shape[1] or shots > test_table.shape[1] or \
            classes_per_trajectory > n_meta:
        raise ConfigError(
            f"fewshot: trajectory_shots={trajectory_shots} must be at most {table.shape[1]} and "
            f"shots={shots} at most {test_table.shape[1]} (samples kept of the rarest meta-train "
            f"/ meta-test class of {data.name!r}), classes_per_trajectory="
            f"{classes_per_trajectory} at most {n_meta}"
        )
    n_outputs = max(n_meta, n_test_classes)
    shape = data.input_shape

    def sample(g: torch.Generator, n_episodes: int) -> Episode:
        c, k = classes_per_trajectory, trajectory_shots
        chosen = torch.rand(n_episodes, n_meta, generator=g).argsort(dim=1)[:, :c]
        picks = torch.rand(n_episodes, c, table.shape[1], generator=g).argsort(dim=2)[..., :k]
        idx = table[chosen.unsqueeze(-1), picks].flatten(1)
        rem = torch.randint(len(meta_y), (n_episodes, remember), generator=g)
        keep = 1.0 - F.one_hot(chosen, n_outputs).float().sum(dim=1)
        return Episode(
            meta_x[idx].reshape(n_episodes, c * k, 1, *shape),
            meta_y[idx].reshape(n_episodes, c * k, 1), meta_x[rem], meta_y[rem], keep,
        )

    tasks = tuple(
        Task(data.train_x[test_table[i, :shots]], torch.full((shots,), i, dtype=torch.int64),
             data.test_x[data.test_y == cls],
             torch.full((int((data.test_y == cls).sum()),), i, dtype=torch.int64))
        for i, cls in enumerate(test_classes.tolist())
    )
    return MetaBenchmark(
        f"fewshot-{data.name}", CLASSIFICATION, shape, n_outputs, sample, meta_x, meta_y, tasks,
        online_lr=online_lr, online_batch=1, reset_head=True,
    )
