import json

import pytest
import torch

from lifelong.continual.run import run
from lifelong.core.checkpoint import load_checkpoint
from lifelong.core.config import RunConfig
from lifelong.core.errors import CheckpointError, RunExistsError


def _cfg(tmp_path, **kw):
    base = dict(benchmark="split-digits", scenario="class", strategy="naive", epochs=2,
                batch_size=64, out=str(tmp_path), name="r", model_args={"hidden": [64]})
    return RunConfig(**{**base, **kw})


def test_results_schema(tmp_path):
    results = run(_cfg(tmp_path))
    on_disk = json.loads((tmp_path / "r" / "results.json").read_text())
    assert on_disk == json.loads(json.dumps(results))
    for key in ("acc", "bwt", "fwt", "forgetting", "learning_accuracy"):
        assert isinstance(on_disk["metrics"][key], float)
    assert len(on_disk["accuracy_matrix"]) == 6 and len(on_disk["timings"]["train_seconds"]) == 5
    assert on_disk["config"]["strategy"] == "naive" and on_disk["schema_version"] == 1
    assert (tmp_path / "r" / "config.yaml").exists()
    lines = (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()
    assert sum(json.loads(x)["event"] == "evaluated" for x in lines) == 5


@pytest.mark.parametrize("strategy,head", [("naive", "single"), ("cumulative", "incremental")])
def test_resume_is_bit_exact(tmp_path, interrupted_run, strategy, head):
    full = run(_cfg(tmp_path / "a", strategy=strategy, head=head))
    full_state, _ = load_checkpoint(tmp_path / "a" / "r" / "checkpoint.pt")

    interrupted_run(_cfg(tmp_path / "b", strategy=strategy, head=head))
    mid_state, _ = load_checkpoint(tmp_path / "b" / "r" / "checkpoint.pt")
    assert mid_state["next_experience"] == 2
    resumed = run(_cfg(tmp_path / "b", strategy=strategy, head=head), resume=True)
    resumed_state, _ = load_checkpoint(tmp_path / "b" / "r" / "checkpoint.pt")

    assert resumed["accuracy_matrix"] == full["accuracy_matrix"]
    for key, value in full_state["model"].items():
        assert torch.equal(value, resumed_state["model"][key]), key
    # negative controls: the mid-run checkpoint differs from the final one, and another seed
    # gives other numbers, so the equalities above could have failed
    assert any(not torch.equal(v, mid_state["model"][k]) for k, v in full_state["model"].items()
               if mid_state["model"][k].shape == v.shape)
    other = run(_cfg(tmp_path / "c", strategy=strategy, head=head, seed=1))
    assert other["accuracy_matrix"] != full["accuracy_matrix"]


def test_existing_run_is_never_overwritten_silently(tmp_path):
    run(_cfg(tmp_path))
    before = (tmp_path / "r" / "results.json").read_bytes()
    with pytest.raises(RunExistsError, match="--resume"):
        run(_cfg(tmp_path))
    assert (tmp_path / "r" / "results.json").read_bytes() == before


def test_resume_refuses_another_config_and_corrupt_checkpoint(tmp_path):
    run(_cfg(tmp_path))
    with pytest.raises(CheckpointError, match=r"\['lr'\]"):
        run(_cfg(tmp_path, lr=0.5), resume=True)
    ckpt = tmp_path / "r" / "checkpoint.pt"
    ckpt.write_bytes(b"not a checkpoint")
    files = sorted(p.name for p in (tmp_path / "r").iterdir())
    with pytest.raises(CheckpointError, match="unreadable"):
        run(_cfg(tmp_path), resume=True)
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == files


def test_results_record_how_the_strategy_grew_the_model(tmp_path):
    naive = run(_cfg(tmp_path, epochs=1, name="naive"))
    grown = run(_cfg(tmp_path, scenario="task", strategy="progressive", epochs=1, name="pnn"))
    assert naive["parameter_growth"] == {}
    report = grown["parameter_growth"]["progressive"]
    assert len(report["added"]) == 5 and report["added"][1] > report["added"][0] > 0  # laterals from task 2 on
    assert report["parameters"] == sum(report["added"]) == grown["parameters"]
