"""`Experience` and `Stream`: the tensors a continual run trains and tests on, validated once."""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch

from lifelong.core.errors import (
    DataError,
    EmptyExperienceError,
    LabelOutOfRangeError,
    ShapeMismatchError,
)

SETTINGS = ("task", "domain", "class")


@dataclass(frozen=True)
class Experience:
    """One step of a stream: train/test tensors, the classes it holds and its task label."""

    id: int
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    classes: tuple[int, ...]
    task: int

    def __post_init__(self) -> None:
        # the conversions `custom()` makes, where they are exact: integer labels to int64, inputs of at
        # most 16-bit integers (uint8 images) or booleans to float32; `validate` refuses other dtypes
        for name in ("train_y", "test_y"):
            y = getattr(self, name)
            if not (y.dtype.is_floating_point or y.dtype.is_complex or y.dtype == torch.bool):
                object.__setattr__(self, name, y.long())
        for name in ("train_x", "test_x"):
            x = getattr(self, name)
            if x.dtype == torch.bool or (not (x.dtype.is_floating_point or x.dtype.is_complex)
                                         and torch.iinfo(x.dtype).bits <= 16):
                object.__setattr__(self, name, x.float())

    @property
    def n_train(self) -> int:
        return int(self.train_y.shape[0])

    def train_t(self) -> torch.Tensor:
        """Task labels of the training samples (all equal to `task`)."""
        return torch.full_like(self.train_y, self.task)

    def test_t(self) -> torch.Tensor:
        """Task labels of the test samples."""
        return torch.full_like(self.test_y, self.task)

    def to(self, device: torch.device | str) -> Experience:
        """A copy whose tensors live on `device`."""
        return Experience(
            self.id, self.train_x.to(device), self.train_y.to(device), self.test_x.to(device),
            self.test_y.to(device), self.classes, self.task,
        )


@dataclass(frozen=True)
class Stream(Sequence[Experience]):
    """An ordered sequence of experiences in one setting (`task`, `domain` or `class`)."""

    experiences: tuple[Experience, ...]
    setting: str
    n_classes: int
    name: str = "custom"
    class_names: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        validate(self)

    def __len__(self) -> int:
        return len(self.experiences)

    def __iter__(self) -> Iterator[Experience]:
        return iter(self.experiences)

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            experiences = self.experiences[index]
            if not experiences:
                raise EmptyExperienceError(f"stream {self.name!r}[{index.start}:{index.stop}:{index.step}] "
                                           f"selects none of its {len(self)} experiences")
            return self._with(experiences)
        return self.experiences[index]

    def _with(self, experiences: tuple[Experience, ...]) -> Stream:
        """This stream with some of its experiences (or copies of them on another device), not
        validated again: they were validated with this stream."""
        part = copy.copy(self)
        object.__setattr__(part, "experiences", experiences)
        return part

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.experiences[0].train_x.shape[1:])

    @property
    def n_tasks(self) -> int:
        return max(e.task for e in self.experiences) + 1

    def task_classes(self) -> list[tuple[int, ...]]:
        """Classes of each task label (index = task), merged over experiences sharing a label."""
        out: list[set[int]] = [set() for _ in range(self.n_tasks)]
        for e in self.experiences:
            out[e.task].update(e.classes)
        return [tuple(sorted(s)) for s in out]

    def class_mask(self) -> torch.Tensor:
        """Boolean (n_tasks, n_classes) mask of the classes each task may predict."""
        mask = torch.zeros(self.n_tasks, self.n_classes, dtype=torch.bool)
        for t, classes in enumerate(self.task_classes()):
            mask[t, list(classes)] = True
        return mask

    def to(self, device: torch.device | str) -> Stream:
        """A copy whose tensors live on `device`."""
        return self._with(tuple(e.to(device) for e in self.experiences))


def validate(stream: Stream) -> None:
    """Check a stream once: setting, non-empty experiences, shapes, dtypes, labels within the range and
    the experience's declared classes, finite inputs."""
    if stream.setting not in SETTINGS:
        raise DataError(f"setting {stream.setting!r} is not one of {SETTINGS}")
    if not stream.experiences:
        raise EmptyExperienceError("the stream has no experiences; give at least one")
    shape = tuple(stream.experiences[0].train_x.shape[1:])
    for e in stream.experiences:
        where = f"experience {e.id} of stream {stream.name!r}"
        for part, x, y in (("train", e.train_x, e.train_y), ("test", e.test_x, e.test_y)):
            if y.ndim != 1 or x.shape[0] != y.shape[0]:
                raise ShapeMismatchError(
                    f"{where}: {part} inputs have shape {tuple(x.shape)} but labels "
                    f"{tuple(y.shape)}; labels must be 1-D with one entry per input"
                )
            if x.shape[0] == 0:
                raise EmptyExperienceError(
                    f"{where} has no {part} samples; drop it or give it data"
                )
            if tuple(x.shape[1:]) != shape:
                raise ShapeMismatchError(
                    f"{where}: {part} inputs have per-sample shape {tuple(x.shape[1:])}, "
                    f"but the stream's first experience has {shape}"
                )
            if y.dtype != torch.long:
                raise DataError(f"{where}: {part} labels have dtype {y.dtype}; use integer labels (torch.long)")
            if not x.dtype.is_floating_point:
                raise DataError(f"{where}: {part} inputs have dtype {x.dtype}; give floating-point inputs (e.g. "
                                "x.float(), scaled as the model expects): only booleans and integers of at most "
                                "16 bits, which float32 holds exactly, are converted")
            lo, hi = int(y.min()), int(y.max())
            if lo < 0 or hi >= stream.n_classes:
                raise LabelOutOfRangeError(
                    f"{where}: {part} labels span [{lo}, {hi}] but the stream has "
                    f"{stream.n_classes} classes; labels must lie in [0, {stream.n_classes - 1}]"
                )
            declared = torch.tensor(e.classes, dtype=y.dtype, device=y.device)
            stray = y[~torch.isin(y, declared)].unique()
            if stray.numel():
                raise LabelOutOfRangeError(
                    f"{where}: {part} labels {stray.tolist()} are not among the experience's declared "
                    f"classes {e.classes}; declare every class its labels hold, or fix the labels"
                )
            if not bool(torch.isfinite(x).all()):
                raise DataError(f"{where}: {part} inputs contain NaN or infinite values")
        if e.task < 0:
            raise DataError(f"{where}: task label {e.task} is negative")
