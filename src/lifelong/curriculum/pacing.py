"""Pacing functions: the fraction of the data, easiest first, allowed at step t of a curriculum of T.

Every pacing starts at `c0` (t = 0), grows monotonically and reaches 1 at t = T; past T the whole
data set is used. Writing s = t / T clipped to [0, 1]:

| name        | fraction at s                          | source                                 |
|-------------|----------------------------------------|----------------------------------------|
| linear      | c0 + (1 − c0)·s                        | Platanios et al. 2019 (linear)         |
| competence  | (s·(1 − c0^p) + c0^p)^(1/p), p = 2     | Platanios et al. 2019 (root-p)         |
| root        | c0 + (1 − c0)·s^(1/p), p = 2           | Wu, Dyer & Neyshabur 2021 (root)       |
| step        | c0 + (1 − c0)·⌊k·s⌋ / k, k = 5         | Bengio et al. 2009; Hacohen & Weinshall 2019 |
| exponential | c0 + (1 − c0)·(e^{r·s} − 1)/(e^r − 1)  | Wu, Dyer & Neyshabur 2021 (exp, r = 10) |
| geometric   | c0^(1 − s)                             | Hacohen & Weinshall 2019 (exponential pacing) |

Anti-curriculum (hardest first) is not a pacing but an option of the samplers and the plugin, so
it combines with every function here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

from lifelong.core.checks import check_numbers
from lifelong.core.errors import ConfigError
from lifelong.core.registries import PACINGS

C0 = 0.01  # Platanios et al. (2019) start every competence schedule at c0 = 0.01


@dataclass(frozen=True)
class Pacing:
    """Base of the pacing functions: `pacing(t, total)` is the allowed fraction in (0, 1]."""

    c0: float = C0

    def __post_init__(self) -> None:
        name = type(self).__name__
        check_numbers(name, c0=self.c0)
        if not 0.0 < self.c0 <= 1.0:
            raise ConfigError(f"{name}: starting fraction c0={self.c0} must lie in (0, 1]; "
                              "e.g. c0=0.01 starts with the easiest 1% of the data")
        for f in fields(self)[1:]:  # the shape parameters: root degree, stages, rate
            value = getattr(self, f.name)
            number = isinstance(value, int | float) and not isinstance(value, bool)
            if not (number and value > 0) or (f.type == "int" and not isinstance(value, int)):
                raise ConfigError(f"{name}: {f.name}={value!r} must be a positive {f.type}")

    def __call__(self, t: float, total: float) -> float:
        """The fraction of the data allowed at step `t` of a curriculum lasting `total` steps."""
        if not total > 0:
            raise ConfigError(f"{type(self).__name__}: curriculum length total={total} must be > 0")
        s = min(max(t / total, 0.0), 1.0)
        return min(1.0, max(self.c0, self.curve(s)))

    def curve(self, s: float) -> float:
        """The fraction at progress s ∈ [0, 1] (c0 at 0, 1 at 1)."""
        raise NotImplementedError


@PACINGS.register("linear", paper="Platanios et al. 2019")
@dataclass(frozen=True)
class Linear(Pacing):
    """Linear competence c0 + (1 − c0)·t/T (Platanios et al., 2019); c0 = 1 is plain random order."""

    def curve(self, s: float) -> float:
        return self.c0 + (1.0 - self.c0) * s


@PACINGS.register("competence", aliases=("root-p", "platanios"), paper="Platanios et al. 2019")
@dataclass(frozen=True)
class Competence(Pacing):
    """Competence c(t) = min(1, (t·(1 − c0^p)/T + c0^p)^(1/p)) (Platanios et al., 2019); p = 2 is sqrt."""

    p: float = 2.0

    def curve(self, s: float) -> float:
        c0p = self.c0**self.p
        return (s * (1.0 - c0p) + c0p) ** (1.0 / self.p)


@PACINGS.register("root", aliases=("sqrt",), paper="Wu, Dyer & Neyshabur 2021")
@dataclass(frozen=True)
class Root(Pacing):
    """Root pacing c0 + (1 − c0)·(t/T)^(1/p) (Wu, Dyer & Neyshabur, 2021); p = 2 by default."""

    p: float = 2.0

    def curve(self, s: float) -> float:
        return self.c0 + (1.0 - self.c0) * s ** (1.0 / self.p)


@PACINGS.register("step", aliases=("stepwise",), paper="Bengio et al. 2009; Hacohen & Weinshall 2019")
@dataclass(frozen=True)
class Step(Pacing):
    """`stages` equal steps c0 + (1 − c0)·⌊stages·t/T⌋/stages (Bengio et al. 2009; Hacohen & Weinshall 2019)."""

    stages: int = 5

    def curve(self, s: float) -> float:
        return self.c0 + (1.0 - self.c0) * math.floor(self.stages * s) / self.stages


@PACINGS.register("exponential", aliases=("exp",), paper="Wu, Dyer & Neyshabur 2021")
@dataclass(frozen=True)
class Exponential(Pacing):
    """Exp pacing c0 + (1 − c0)·(e^{r·t/T} − 1)/(e^r − 1), slow then fast (Wu et al., 2021; r = 10)."""

    rate: float = 10.0

    def curve(self, s: float) -> float:
        return self.c0 + (1.0 - self.c0) * math.expm1(self.rate * s) / math.expm1(self.rate)


@PACINGS.register("geometric", aliases=("fixed-exponential",), paper="Hacohen & Weinshall 2019")
@dataclass(frozen=True)
class Geometric(Pacing):
    """c0^(1 − t/T): the fraction grows by a constant factor per step (Hacohen & Weinshall, 2019)."""

    def curve(self, s: float) -> float:
        return self.c0 ** (1.0 - s)

