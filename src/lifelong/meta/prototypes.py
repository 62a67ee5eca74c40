"""Class prototypes: running means of embeddings per class, and nearest-prototype classification.

Prototypical Networks (Snell et al. 2017) classify by the negative squared Euclidean distance to
each class's mean embedding; kept as running means with counts, the prototypes are exactly the
class means of everything seen so far, however the data is split into batches, and learning a
new class never moves an old one (the nearest-class-mean rule of Mensink et al. 2013 and iCaRL,
Rebuffi et al. 2017).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from lifelong.core.errors import LabelOutOfRangeError, ShapeMismatchError


class ClassPrototypes:
    """Per-class running means (`means`, (C, D)) and sample counts (`counts`, (C,))."""

    def __init__(self, n_classes: int, dim: int, *, device: torch.device | str | None = None,
                 dtype: torch.dtype = torch.float32) -> None:
        self.means = torch.zeros(n_classes, dim, device=device, dtype=dtype)
        self.counts = torch.zeros(n_classes, dtype=torch.int64, device=device)

    @property
    def seen(self) -> torch.Tensor:
        """Boolean mask of the classes that have a prototype."""
        return self.counts > 0

    def update(self, z: torch.Tensor, y: torch.Tensor) -> None:
        """Fold a batch of embeddings `z` (N, D) with labels `y` (N,) into the running means."""
        n_classes, dim = self.means.shape
        if z.ndim != 2 or z.shape[1] != dim or y.shape != (z.shape[0],):
            raise ShapeMismatchError(
                f"prototypes: embeddings {tuple(z.shape)} and labels {tuple(y.shape)} must be "
                f"(N, {dim}) and (N,)"
            )
        if y.numel() and (int(y.min()) < 0 or int(y.max()) >= n_classes):
            raise LabelOutOfRangeError(
                f"prototypes: labels span [{int(y.min())}, {int(y.max())}] but there are "
                f"{n_classes} prototypes; labels must lie in [0, {n_classes - 1}]"
            )
        z = z.to(self.means.dtype)
        sums = torch.zeros_like(self.means).index_add_(0, y, z)
        batch_counts = torch.bincount(y, minlength=n_classes)
        self.counts += batch_counts
        # m_new = m + (sum_batch - n_batch * m) / n_total, exact for any batch split
        delta = sums - batch_counts.unsqueeze(1).to(z.dtype) * self.means
        self.means += delta / self.counts.clamp_min(1).unsqueeze(1).to(z.dtype)

    def scores(self, z: torch.Tensor) -> torch.Tensor:
        """Negative squared Euclidean distances (N, C); classes without prototype score lowest."""
        d2 = torch.cdist(z.to(self.means.dtype), self.means).pow(2)
        return (-d2).masked_fill(~self.seen, torch.finfo(d2.dtype).min)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Means and counts (tensors only)."""
        return {"means": self.means.clone(), "counts": self.counts.clone()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore `state_dict`."""
        self.means = state["means"].clone()
        self.counts = state["counts"].clone()

    @classmethod
    def from_state(cls, state: dict[str, torch.Tensor]) -> ClassPrototypes:
        """Prototypes restored from a `state_dict`."""
        protos = cls(*state["means"].shape)
        protos.load_state_dict(state)
        return protos


class PrototypeClassifier:
    """Nearest-prototype online learner on a fixed encoder (frozen or meta-learned)."""

    def __init__(self, encoder: Callable[[torch.Tensor], torch.Tensor], n_classes: int) -> None:
        self.encoder = encoder
        self.n_classes = n_classes
        self.prototypes: ClassPrototypes | None = None

    @torch.no_grad()
    def observe(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Fold the samples' embeddings into their class prototypes."""
        z = self.encoder(x)
        if self.prototypes is None:
            self.prototypes = ClassPrototypes(self.n_classes, z.shape[1], device=z.device)
        self.prototypes.update(z, y)

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Scores (N, C): negative squared distances to the prototypes (all 0 before any data)."""
        if self.prototypes is None:
            return torch.zeros(x.shape[0], self.n_classes, device=x.device)
        return self.prototypes.scores(self.encoder(x))
