"""`SourceData`: what every named data set returns — train/test tensors, class names and, for data
sets defined by per-sample metadata (CORe50 sessions, CLEAR time buckets), each sample's domain."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lifelong.core.errors import DataError, ShapeMismatchError


@dataclass(frozen=True)
class SourceData:
    """Train/test tensors of one data set: float inputs (N, C, H, W) in [0, 1], int64 labels.

    `train_domain`/`test_domain` (optional, given together with `domain_names`) hold each sample's
    domain as an int64 index into `domain_names`; the `domains` scenario makes one experience each.
    """

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    class_names: tuple[str, ...]
    train_domain: torch.Tensor | None = None
    test_domain: torch.Tensor | None = None
    domain_names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        given = (self.train_domain is not None, self.test_domain is not None, bool(self.domain_names))
        if any(given) and not all(given):
            raise DataError(
                f"source {self.name!r}: give train_domain, test_domain and domain_names together "
                f"(got {'/'.join(str(g) for g in given)})"
            )
        if self.has_domains:
            _check_domains(self, "train", self.train_domain, self.train_y)
            _check_domains(self, "test", self.test_domain, self.test_y)

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train_x.shape[1:])

    @property
    def has_domains(self) -> bool:
        """True when every sample carries a domain (a session, a time bucket, ...)."""
        return bool(self.domain_names)


def _check_domains(data: SourceData, part: str, domain: torch.Tensor, y: torch.Tensor) -> None:
    """Domains are int64, one per sample, each an index into `domain_names`."""
    where = f"source {data.name!r}: {part}_domain"
    if domain.dtype != torch.int64 or domain.shape != y.shape:
        raise ShapeMismatchError(
            f"{where} must be an int64 tensor of shape {tuple(y.shape)} (one per label), got "
            f"{domain.dtype} {tuple(domain.shape)}"
        )
    if domain.numel() and not 0 <= int(domain.min()) <= int(domain.max()) < len(data.domain_names):
        raise DataError(
            f"{where} spans [{int(domain.min())}, {int(domain.max())}], outside the "
            f"{len(data.domain_names)} domain names"
        )


def subsample(data: SourceData, n_train: int | None = None, n_test: int | None = None,
              seed: int = 0) -> SourceData:
    """A seeded random subset of at most `n_train` training and `n_test` test samples.

    Per-sample domains are subset with the same indices, so they stay aligned with the labels.
    """
    gen = torch.Generator().manual_seed(seed)

    def pick(n: int | None, *tensors: torch.Tensor | None) -> list[torch.Tensor | None]:
        if n is None or n >= len(tensors[0]):
            return list(tensors)
        idx = torch.randperm(len(tensors[0]), generator=gen)[:n].sort().values
        return [None if t is None else t[idx] for t in tensors]

    tr_y, tr_x, tr_d = pick(n_train, data.train_y, data.train_x, data.train_domain)
    te_y, te_x, te_d = pick(n_test, data.test_y, data.test_x, data.test_domain)
    return SourceData(data.name, tr_x, tr_y, te_x, te_y, data.class_names, tr_d, te_d,
                      data.domain_names)
