"""Meta-continual methods and benchmarks by name.

A method's builder checks its arguments and builds its networks; `train(generator, callback)`
then returns a deployable learner and the baseline it is compared against (the same network
pre-trained jointly, fine-tuned online). A benchmark's builder takes the seed as its first
argument. The methods' defaults are scaled to run on a CPU in about a minute; the papers' values
are given in each docstring (OML's sine net: 6+2 layers of 300, meta-lr 1e-4, 20 000 steps).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Protocol

import torch

from lifelong.core.checks import check_iterations
from lifelong.core.registry import Registry
from lifelong.meta.benchmark import MetaBenchmark
from lifelong.meta.evaluation import Learner
from lifelong.meta.fewshot import fewshot_from_source
from lifelong.meta.networks import MetaContinualNet, anml_mlp, oml_mlp
from lifelong.meta.online import OnlineLearner, check_schedule, meta_train
from lifelong.meta.pretrain import pretrain
from lifelong.meta.prototypes import PrototypeClassifier
from lifelong.meta.sine import sine_benchmark

METHODS: Registry[Callable[..., Method]] = Registry("meta method")
BENCHMARKS: Registry = Registry("meta benchmark")
Callback = Callable[[int, float], None]

BENCHMARKS.register("sine", aliases=("incremental-sine",), kind="regression",
                    paper="Javed & White 2019, incremental sine waves")(sine_benchmark)
for _source in ("digits", "fashion-mnist"):
    BENCHMARKS.register(f"fewshot-{_source}", kind="classification",
                        paper="Javed & White 2019; Beaulieu et al. 2020 (Omniglot protocol)"
                        )(partial(fewshot_from_source, _source))


@dataclass(frozen=True)
class Trained:
    """A method's deployable learner, its baseline, and its (meta-)training loss per step."""

    learner: Learner
    baseline: Learner
    losses: list[float]


class Method(Protocol):
    """A method with its arguments checked and its networks built, ready to train."""

    def train(self, generator: torch.Generator, callback: Callback | None = None) -> Trained:
        """Train on the benchmark, drawing data order from `generator`; `callback(step, loss)`."""
        ...


def deploy(net: MetaContinualNet, bench: MetaBenchmark) -> OnlineLearner:
    """The benchmark's online protocol on `net`: frozen slow part, SGD on the prediction net."""
    return OnlineLearner(net, bench.objective.criterion, bench.online_lr, bench.online_batch,
                         reset_head=bench.reset_head)


def pretrain_on(net: MetaContinualNet, bench: MetaBenchmark, epochs: int,
                generator: torch.Generator, callback: Callback | None = None) -> list[float]:
    """Train `net` jointly (i.i.d.) on the benchmark's meta-training data; loss per epoch."""
    return pretrain(net, bench.pretrain_x, bench.pretrain_y, bench.objective.criterion,
                    epochs=epochs, generator=generator, callback=callback)


class MetaLearning:
    """OML or ANML: meta-train `net` to learn online; pre-train `base` jointly as the baseline."""

    def __init__(self, bench: MetaBenchmark, build: Callable[[], MetaContinualNet], *, steps: int,
                 meta_batch: int, meta_lr: float, pretrain_epochs: int) -> None:
        self.steps, self.meta_batch, self.meta_lr = check_schedule(steps, meta_batch, meta_lr)
        self.pretrain_epochs = check_iterations("pretrain_epochs", pretrain_epochs)
        self.bench = bench
        self.net, self.base = build(), build()

    def train(self, generator: torch.Generator, callback: Callback | None = None) -> Trained:
        """Meta-train (`callback` per meta-step), then pre-train the baseline."""
        bench = self.bench
        losses = meta_train(self.net, bench.sample, bench.objective.criterion, steps=self.steps,
                            lr=bench.online_lr, meta_lr=self.meta_lr, meta_batch=self.meta_batch,
                            generator=generator, callback=callback)
        pretrain_on(self.base, bench, self.pretrain_epochs, generator)
        return Trained(deploy(self.net, bench), deploy(self.base, bench), losses)


class PrototypeLearning:
    """Pre-train `net` jointly, then classify by nearest class mean on its representation."""

    def __init__(self, bench: MetaBenchmark, net: MetaContinualNet, pretrain_epochs: int) -> None:
        self.pretrain_epochs = check_iterations("pretrain_epochs", pretrain_epochs)
        self.bench = bench
        self.net = net

    def train(self, generator: torch.Generator, callback: Callback | None = None) -> Trained:
        """Pre-train (`callback` per epoch); the baseline fine-tunes that same net online."""
        history = pretrain_on(self.net, self.bench, self.pretrain_epochs, generator, callback)
        return Trained(PrototypeClassifier(self.net.features, self.bench.n_outputs),
                       deploy(self.net, self.bench), history)


@METHODS.register("oml", aliases=("mrcl",), kinds=("regression", "classification"),
                  meta_trained=True,
                  paper="Javed & White 2019, Meta-Learning Representations for Continual Learning")
def oml(bench: MetaBenchmark, *, steps: int = 500, meta_batch: int = 4, meta_lr: float = 3e-3,
        hidden: int = 64, rln_layers: int = 2, pln_layers: int = 2, pretrain_epochs: int = 5
        ) -> MetaLearning:
    """OML (Javed & White 2019): meta-learn the RLN so the PLN learns online without forgetting.

    Paper: RLN 6 and PLN 2 layers of 300 units, Adam meta-lr 1e-4, 20 000 meta-steps.
    """
    return MetaLearning(
        bench, lambda: oml_mlp(bench.input_shape, bench.n_outputs, hidden, rln_layers, pln_layers),
        steps=steps, meta_batch=meta_batch, meta_lr=meta_lr, pretrain_epochs=pretrain_epochs,
    )


@METHODS.register("anml", aliases=("neuromodulation",), kinds=("regression", "classification"),
                  meta_trained=True,
                  paper="Beaulieu et al. 2020, Learning to Continually Learn")
def anml(bench: MetaBenchmark, *, steps: int = 600, meta_batch: int = 4, meta_lr: float = 3e-3,
         hidden: int = 64, layers: int = 2, pretrain_epochs: int = 10) -> MetaLearning:
    """ANML (Beaulieu et al. 2020): meta-learn a neuromodulatory gate and the PLN's initial weights.

    Paper: 3 conv layers + FC in both nets, Adam meta-lr 1e-3, inner lr 0.1, 30 000 meta-steps.
    """
    return MetaLearning(
        bench, lambda: anml_mlp(bench.input_shape, bench.n_outputs, hidden, layers),
        steps=steps, meta_batch=meta_batch, meta_lr=meta_lr, pretrain_epochs=pretrain_epochs,
    )


@METHODS.register("prototypes", aliases=("ncm", "protonet"), kinds=("classification",),
                  meta_trained=False,
                  paper="Snell, Swersky & Zemel 2017, Prototypical Networks for Few-shot Learning")
def prototypes(bench: MetaBenchmark, *, hidden: int = 64, rln_layers: int = 2,
               pretrain_epochs: int = 10) -> PrototypeLearning:
    """Nearest-prototype classification on the representation of a jointly pre-trained net.

    The baseline is that same pre-trained net, fine-tuned online like the other methods'.
    """
    return PrototypeLearning(bench, oml_mlp(bench.input_shape, bench.n_outputs, hidden, rln_layers),
                             pretrain_epochs)
