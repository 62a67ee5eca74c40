"""Scenario builders: split, permuted, rotated, domains and custom streams in task/domain/class settings.

Settings (van de Ven & Tolias 2019; seed 37.6): `task` — task label given at test time, logits
restricted to the task's classes; `domain` — one shared output space, no task label; `class` —
every class seen so far competes, no task label. Split labels are renumbered in order of
appearance, so experience i of a `split` stream holds classes [i·k, (i+1)·k).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from lifelong.core.checks import check_count, check_counts, check_flag, check_list, check_numbers, check_vector
from lifelong.core.errors import ConfigError, DataError
from lifelong.core.registries import SCENARIOS
from lifelong.data.sources import SourceData, load_source
from lifelong.data.sources.base import subsample
from lifelong.data.stream import SETTINGS, Experience, Stream


def _check_setting(setting: str) -> None:
    if setting not in SETTINGS:
        raise ConfigError(f"scenario setting {setting!r} is not one of {SETTINGS}")


def group_sizes(n: int, n_experiences: int | None, classes_per_experience: int | Sequence[int] | None) -> list[int]:
    """How many classes each experience of a split takes: equal groups (default 5 experiences for
    up to 20 classes, else 10), or the sizes given, which must add up to the `n` classes."""
    check_count("split: n_experiences", n_experiences, allow_none=True)
    if classes_per_experience is None:
        n_exp = n_experiences or (5 if n <= 20 else 10)
        if n % n_exp:
            raise ConfigError(f"split: {n} classes cannot form {n_exp} equal experiences; choose "
                              f"n_experiences among the divisors of {n}, or give classes_per_experience")
        return [n // n_exp] * n_exp
    if isinstance(classes_per_experience, int) and not isinstance(classes_per_experience, bool):
        k = check_count("split: classes_per_experience", classes_per_experience)
        sizes = [k] * (n // k)
    else:
        sizes = [check_count("split: classes_per_experience", k)
                 for k in check_list("split: classes_per_experience", classes_per_experience, "a list of counts")]
    if sum(sizes) != n or (n_experiences is not None and n_experiences != len(sizes)):
        raise ConfigError(f"split: classes_per_experience {classes_per_experience} must cover the {n} classes "
                          f"exactly (sizes {sizes} add up to {sum(sizes)})"
                          + (f" in n_experiences={n_experiences} experiences" if n_experiences is not None else ""))
    return sizes


@SCENARIOS.register("split", description="disjoint groups of classes, one group per experience")
def split(source: SourceData, setting: str = "class", n_experiences: int | None = None,
          class_order: Sequence[int] | None = None, seed: int | None = None,
          classes_per_experience: int | Sequence[int] | None = None) -> Stream:
    """Split `source` into experiences of disjoint classes (default: 5×2 for 10 classes, 10×10 for 100).

    `classes_per_experience` gives unequal groups, e.g. [50] + [10] * 5 for CIFAR-100's "B50 Inc10"
    protocol or [10] + [5] * 8 for CORe50's NC shape. `class_order` fixes the order; otherwise
    `seed` draws one, and without a seed classes come in their natural order.
    """
    _check_setting(setting)
    check_count("split: seed", seed, allow_none=True, allow_zero=True)
    n = source.n_classes
    sizes = group_sizes(n, n_experiences, classes_per_experience)
    if setting == "domain" and len(set(sizes)) > 1:
        raise ConfigError(f"split: the domain setting relabels every experience to one label space, so "
                          f"its groups must be equal; got classes_per_experience {sizes}")
    if class_order is None:
        order = (torch.randperm(n, generator=torch.Generator().manual_seed(seed))
                 if seed is not None else torch.arange(n))
    else:
        order = check_vector("split: class_order", class_order).long()
        if sorted(order.tolist()) != list(range(n)):
            raise ConfigError(f"split: class_order must be a permutation of 0..{n - 1}, got {order.tolist()}")
    rank = torch.empty(n, dtype=torch.int64)
    rank[order] = torch.arange(n)
    ends = torch.tensor(sizes).cumsum(0)
    group = torch.bucketize(torch.arange(n), ends, right=True)  # the experience of each class rank
    tr_rank, te_rank = rank[source.train_y], rank[source.test_y]
    tr_group, te_group = group[tr_rank], group[te_rank]
    experiences = []
    for i, k in enumerate(sizes):
        start = int(ends[i]) - k
        tr, te = tr_group == i, te_group == i
        ytr, yte = tr_rank[tr], te_rank[te]
        classes = tuple(range(start, start + k))
        if setting == "domain":
            ytr, yte, classes = ytr - start, yte - start, tuple(range(k))
        experiences.append(Experience(i, source.train_x[tr], ytr, source.test_x[te], yte, classes, i))
    names = tuple(source.class_names[c] for c in order.tolist())
    return Stream(tuple(experiences), setting, sizes[0] if setting == "domain" else n,
                  f"split-{source.name}", names if setting != "domain" else names[:sizes[0]])


def _all_classes(parts: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]],
                 source: SourceData, setting: str, tags: list[str], name: str) -> Stream:
    """One experience per (train_x, train_y, test_x, test_y) part, each holding all the source's
    classes; labels shifted per experience in the class setting, tagged `<class>@<tag>`."""
    n = source.n_classes
    experiences = []
    for i, (train_x, train_y, test_x, test_y) in enumerate(parts):
        shift = i * n if setting == "class" else 0
        classes = tuple(range(shift, shift + n))
        if shift:
            train_y, test_y = train_y + shift, test_y + shift
        experiences.append(Experience(i, train_x, train_y, test_x, test_y, classes, i))
    n_out = n * len(parts) if setting == "class" else n
    names = tuple(f"{c}@{tag}" for tag in tags for c in source.class_names)
    return Stream(tuple(experiences), setting, n_out, f"{name}-{source.name}",
                  names if setting == "class" else source.class_names)


def _transformed(source: SourceData, setting: str, transforms: list, name: str) -> Stream:
    """One experience per input transform; labels shifted per experience in the class setting."""
    _check_setting(setting)
    parts = [(fn(source.train_x), source.train_y, fn(source.test_x), source.test_y) for fn in transforms]
    return _all_classes(parts, source, setting, [str(i) for i in range(len(transforms))], name)


@SCENARIOS.register("permuted", description="one fixed pixel permutation per experience")
def permuted(source: SourceData, setting: str = "domain", n_experiences: int = 5,
             seed: int = 0, keep_first: bool = True) -> Stream:
    """Permuted inputs (Goodfellow et al. 2013): experience i applies a seeded pixel permutation.

    With `keep_first` the first experience sees the original images.
    """
    check_counts("permuted", n_experiences=n_experiences)
    check_count("permuted: seed", seed, allow_zero=True)
    check_flag("permuted: keep_first", keep_first)
    gen = torch.Generator().manual_seed(seed)
    d = math.prod(source.input_shape)
    perms = [torch.randperm(d, generator=gen) for _ in range(n_experiences)]
    if keep_first:
        perms[0] = torch.arange(d)

    def permute(perm: torch.Tensor):
        return lambda x: x.flatten(1)[:, perm].reshape(x.shape)

    return _transformed(source, setting, [permute(p) for p in perms], "permuted")


def rotate(x: torch.Tensor, degrees: float) -> torch.Tensor:
    """Rotate images (N, C, H, W) by `degrees` counter-clockwise about their centre, bilinearly."""
    a = math.radians(degrees)
    theta = torch.tensor([[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0]],
                         dtype=x.dtype).expand(x.shape[0], 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


@SCENARIOS.register("rotated", description="one fixed rotation angle per experience")
def rotated(source: SourceData, setting: str = "domain", n_experiences: int = 5,
            angles: Sequence[float] | None = None, max_angle: float = 180.0) -> Stream:
    """Rotated inputs: experience i rotates every image by angles[i] (default i·max_angle/n)."""
    if source.train_x.ndim != 4:
        raise DataError(f"rotated needs images (N, C, H, W), got {tuple(source.train_x.shape)}")
    check_counts("rotated", n_experiences=n_experiences)
    (max_angle,) = check_numbers("rotated", max_angle=max_angle)
    angles = check_vector("rotated: angles", angles).tolist() if angles is not None else [
        i * max_angle / n_experiences for i in range(n_experiences)]
    return _transformed(source, setting, [lambda x, a=a: rotate(x, a) for a in angles], "rotated")


@SCENARIOS.register("domains", description="one experience per domain of the source (CORe50 sessions, CLEAR buckets)")
def domains(source: SourceData, setting: str = "domain") -> Stream:
    """One experience per training domain, in domain order: CORe50's NI scenario (Lomonaco &
    Maltoni 2017; one per training session) and CLEAR's time buckets (Lin et al. 2021).

    Experience i trains on the training samples of the i-th domain that has any and tests on the
    test samples of the same domain; when no test sample shares a domain with a training sample
    (CORe50's test sessions 3, 7 and 10), every experience tests on the whole test set, the NI
    protocol's fixed test set (one tensor, shared, evaluated once per row of R). A fixed test set
    cannot take the class setting: its images would carry another label in every experience.
    """
    if not source.has_domains:
        raise ConfigError(f"domains: source {source.name!r} has no per-sample domains; use one that "
                          f"has (core50, clear10, clear100) or a split/permuted/rotated scenario")
    _check_setting(setting)
    present, tested = torch.unique(source.train_domain), torch.unique(source.test_domain)
    shared = torch.isin(tested, present)
    shared_test = not bool(shared.any())
    if not shared_test and not (bool(shared.all()) and torch.equal(tested, present)):
        odd = sorted(set(present.tolist()) ^ set(tested.tolist()))
        raise DataError(f"domains: domain(s) {[source.domain_names[d] for d in odd]} of {source.name!r} have "
                        "training samples but no test samples or the other way round; each experience "
                        "needs both (a `limit` may have removed a whole domain: use a larger one or none)")
    if shared_test and setting == "class":
        raise ConfigError(f"domains-{source.name}: every experience tests on the same fixed test set (no test "
                          "sample shares a training domain, as in CORe50's NI protocol), so the class "
                          "setting would give each test image a new label in every experience; use "
                          "--scenario domain")
    parts = []
    for d in present.tolist():
        tr = source.train_domain == d
        te = source.test_domain == d
        test = (source.test_x, source.test_y) if shared_test else (source.test_x[te], source.test_y[te])
        parts.append((source.train_x[tr], source.train_y[tr], *test))
    return _all_classes(parts, source, setting, [source.domain_names[d] for d in present.tolist()],
                        "domains")


def _as_tensors(data: Any) -> tuple[torch.Tensor, torch.Tensor]:
    if isinstance(data, Dataset):
        items = [data[i] for i in range(len(data))]  # type: ignore[arg-type]
        if not items:
            return torch.empty(0), torch.empty(0, dtype=torch.int64)
        return torch.stack([torch.as_tensor(x) for x, _ in items]), torch.as_tensor([int(y) for _, y in items])
    x, y = data
    return torch.as_tensor(x), torch.as_tensor(y)


def custom(experiences: Sequence[tuple[Any, Any]], setting: str = "class",
           n_classes: int | None = None, task_labels: Sequence[int] | None = None,
           name: str = "custom") -> Stream:
    """A stream from the user's data: per experience a (train, test) pair of (x, y) or Datasets.

    Datasets are materialised into tensors once (they must fit in memory). Classes of an
    experience are the labels present in its training set.
    """
    _check_setting(setting)
    built = []
    for i, (train, test) in enumerate(experiences):
        tx, ty = _as_tensors(train)
        vx, vy = _as_tensors(test)
        classes = tuple(sorted(set(ty.tolist()) | set(vy.tolist())))
        task = task_labels[i] if task_labels is not None else i
        built.append(Experience(i, tx.float(), ty.long(), vx.float(), vy.long(), classes, task))
    width = n_classes or 1 + max((max(e.classes, default=-1) for e in built), default=0)
    return Stream(tuple(built), setting, width, name)


def build_benchmark(name: str, setting: str = "class", root: str | None = None,
                    download: bool = True, limit: tuple[int | None, int | None] | None = None,
                    source_args: dict[str, Any] | None = None, **kwargs: Any) -> Stream:
    """Build `<builder>-<source>` (e.g. `split-fashion-mnist`) in `setting`; kwargs go to the builder.

    `limit=(n_train, n_test)` keeps a seeded random subset of the source first; `source_args` go
    to the source (e.g. `{"image_size": 64, "labels": "category"}` for `core50`).
    """
    builder, _, source_name = name.partition("-")
    if not source_name:
        raise ConfigError(f"benchmark {name!r} must be named <builder>-<source>, e.g. split-digits; "
                          f"builders: {', '.join(SCENARIOS.names())}")
    SCENARIOS.canonical(builder)
    source_args = dict(source_args or {}) if isinstance(source_args, Mapping | None) else source_args
    if not isinstance(source_args, dict) or {"root", "download"} & set(source_args):
        raise ConfigError(f"source_args must map the source's own arguments (e.g. image_size) to values, "
                          f"got {source_args!r}; give root and download as build_benchmark's arguments")
    source = load_source(source_name, root=root, download=download, **source_args)
    if limit:
        limit = check_list("limit", limit, "(n_train, n_test), each a count or None")
        if len(limit) != 2:
            raise ConfigError(f"limit must be (n_train, n_test), each a count or None; got {limit!r}")
        for what, n in zip(("n_train", "n_test"), limit, strict=True):
            check_count(f"limit: {what}", n, allow_none=True)
        source = subsample(source, *limit)
    return SCENARIOS.build(builder, source, setting=setting, **kwargs)
