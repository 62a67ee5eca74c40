"""Meta-continual methods and benchmarks by name: each method returns a deployable learner and
the baseline it is compared against (the same network pre-trained jointly, fine-tuned online).

The methods' defaults are scaled to run on a CPU in about a minute; the papers' values are
given in each docstring (OML's sine net: 6+2 layers of 300, meta-lr 1e-4, 20 000 steps).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch

from lifelong.core.registry import Registry
from lifelong.meta.benchmark import MetaBenchmark
from lifelong.meta.evaluation import Learner
from lifelong.meta.fewshot import fewshot_from_source
from lifelong.meta.networks import MetaContinualNet, anml_mlp, oml_mlp
from lifelong.meta.online import OnlineLearner, meta_train
from lifelong.meta.pretrain import pretrain
from lifelong.meta.prototypes import PrototypeClassifier
from lifelong.meta.sine import sine_benchmark

METHODS: Registry = Registry("meta method")
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


def deploy(net: MetaContinualNet, bench: MetaBenchmark) -> OnlineLearner:
    """The benchmark's online protocol on `net`: frozen slow part, SGD on the prediction net."""
    return OnlineLearner(net, bench.objective.criterion, bench.online_lr, bench.online_batch,
                         reset_head=bench.reset_head)


def pretrain_on(net: MetaContinualNet, bench: MetaBenchmark, epochs: int,
                generator: torch.Generator) -> list[float]:
    """Train `net` jointly (i.i.d.) on the benchmark's meta-training data; loss per epoch."""
    return pretrain(net, bench.pretrain_x, bench.pretrain_y, bench.objective.criterion,
                    epochs=epochs, generator=generator)


def _meta_learned(build: Callable[[], MetaContinualNet], bench: MetaBenchmark, *, steps: int,
                  meta_batch: int, meta_lr: float, pretrain_epochs: int,
                  generator: torch.Generator | None, callback: Callback | None) -> Trained:
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    net = build()
    losses = meta_train(net, bench.sample, bench.objective.criterion, steps=steps,
                        lr=bench.online_lr, meta_lr=meta_lr, meta_batch=meta_batch,
                        generator=gen, callback=callback)
    base = build()
    pretrain_on(base, bench, pretrain_epochs, gen)
    return Trained(deploy(net, bench), deploy(base, bench), losses)


@METHODS.register("oml", aliases=("mrcl",), kinds=("regression", "classification"),
                  meta_trained=True,
                  paper="Javed & White 2019, Meta-Learning Representations for Continual Learning")
def oml(bench: MetaBenchmark, *, generator: torch.Generator | None = None,
        callback: Callback | None = None, steps: int = 500, meta_batch: int = 4,
        meta_lr: float = 3e-3, hidden: int = 64, rln_layers: int = 2, pln_layers: int = 2,
        pretrain_epochs: int = 5) -> Trained:
    """OML (Javed & White 2019): meta-learn the RLN so the PLN learns online without forgetting.

    Paper: RLN 6 and PLN 2 layers of 300 units, Adam meta-lr 1e-4, 20 000 meta-steps.
    """
    return _meta_learned(
        lambda: oml_mlp(bench.input_shape, bench.n_outputs, hidden, rln_layers, pln_layers),
        bench, steps=steps, meta_batch=meta_batch, meta_lr=meta_lr,
        pretrain_epochs=pretrain_epochs, generator=generator, callback=callback,
    )


@METHODS.register("anml", aliases=("neuromodulation",), kinds=("regression", "classification"),
                  meta_trained=True,
                  paper="Beaulieu et al. 2020, Learning to Continually Learn")
def anml(bench: MetaBenchmark, *, generator: torch.Generator | None = None,
         callback: Callback | None = None, steps: int = 600, meta_batch: int = 4,
         meta_lr: float = 3e-3, hidden: int = 64, layers: int = 2,
         pretrain_epochs: int = 10) -> Trained:
    """ANML (Beaulieu et al. 2020): meta-learn a neuromodulatory gate and the PLN's initial weights.

    Paper: 3 conv layers + FC in both nets, Adam meta-lr 1e-3, inner lr 0.1, 30 000 meta-steps.
    """
    return _meta_learned(
        lambda: anml_mlp(bench.input_shape, bench.n_outputs, hidden, layers), bench,
        steps=steps, meta_batch=meta_batch, meta_lr=meta_lr, pretrain_epochs=pretrain_epochs,
        generator=generator, callback=callback,
    )


@METHODS.register("prototypes", aliases=("ncm", "protonet"), kinds=("classification",),
                  meta_trained=False,
                  paper="Snell, Swersky & Zemel 2017, Prototypical Networks for Few-shot Learning")
def prototypes(bench: MetaBenchmark, *, generator: torch.Generator | None = None,
               callback: Callback | None = None, hidden: int = 64, rln_layers: int = 2,
               pretrain_epochs: int = 10) -> Trained:
    """Nearest-prototype classification on the representation of a jointly pre-trained net.

    The baseline is that same pre-trained net, fine-tuned online like the other methods'.
    """
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    net = oml_mlp(bench.input_shape, bench.n_outputs, hidden, rln_layers)
    history = pretrain_on(net, bench, pretrain_epochs, gen)
    for epoch, loss in enumerate(history):
        if callback is not None:
            callback(epoch, loss)
    return Trained(PrototypeClassifier(net.features, bench.n_outputs), deploy(net, bench), history)
