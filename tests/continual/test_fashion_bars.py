"""The issue's bars on real data: Split Fashion-MNIST, MLP 784-400-400, Adam 1e-3, batch 128, 1 epoch."""

import pytest

from lifelong.continual.run import run
from lifelong.core.config import RunConfig
from lifelong.data.scenarios import split


@pytest.fixture(scope="module")
def results(fashion, tmp_path_factory):
    out = tmp_path_factory.mktemp("bars")
    streams = {s: split(fashion, s) for s in ("class", "task")}
    done = {}
    for setting, strategy in (("class", "naive"), ("class", "joint"), ("task", "naive")):
        cfg = RunConfig(benchmark="split-fashion-mnist", scenario=setting, strategy=strategy,
                        out=str(out))
        done[setting, strategy] = run(cfg, stream=streams[setting])["metrics"]
    return done


def test_class_incremental_naive_forgets_catastrophically(results):
    m = results["class", "naive"]
    assert 0.15 <= m["acc"] <= 0.25  # only the last two classes survive: ≈ 1/5
    assert m["bwt"] < -0.8


def test_joint_is_the_upper_bound(results):
    assert results["class", "joint"]["acc"] >= 0.80


def test_task_incremental_far_above_class_incremental(results):
    assert results["task", "naive"]["acc"] > results["class", "naive"]["acc"] + 0.5
