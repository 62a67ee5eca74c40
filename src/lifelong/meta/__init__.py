"""Meta-continual learning: MAML-style fast weights, OML, ANML and class prototypes.

Importing this package registers the "prototypes" continual strategy (aliases "ncm", ...) and the
meta methods and benchmarks of `lifelong meta`.
"""

from lifelong.meta import plugin as _plugin  # noqa: F401  (registers the "prototypes" strategy)
from lifelong.meta.benchmark import Episode, MetaBenchmark, Task
from lifelong.meta.evaluation import StreamResult, run_stream
from lifelong.meta.fast_weights import adapt, adapt_online, functional_loss, params_of, sgd_step
from lifelong.meta.fewshot import fewshot_from_source
from lifelong.meta.maml import maml_loss, meta_step
from lifelong.meta.methods import BENCHMARKS, METHODS
from lifelong.meta.networks import ANMLNet, MetaContinualNet, OMLNet, anml_mlp, oml_mlp
from lifelong.meta.online import OnlineLearner, meta_train, online_meta_loss
from lifelong.meta.plugin import PrototypePlugin
from lifelong.meta.pretrain import pretrain
from lifelong.meta.prototypes import ClassPrototypes, PrototypeClassifier
from lifelong.meta.sine import sine_benchmark

__all__ = [
    "ANMLNet", "BENCHMARKS", "ClassPrototypes", "Episode", "METHODS", "MetaBenchmark",
    "MetaContinualNet", "OMLNet", "OnlineLearner", "PrototypeClassifier", "PrototypePlugin",
    "StreamResult", "Task", "adapt", "adapt_online", "anml_mlp", "fewshot_from_source",
    "functional_loss", "maml_loss", "meta_step", "meta_train", "oml_mlp", "online_meta_loss",
    "params_of", "pretrain", "run_stream", "sgd_step", "sine_benchmark",
]
