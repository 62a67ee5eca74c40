import json

import pytest
import torch

from lifelong.continual.run import run
from lifelong.core.checkpoint import load_checkpoint
from lifelong.core.config import RunConfig
from lifelong.core.errors import CheckpointError, ConfigError, RunExistsError


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
    assert sum(on_disk["forgetting_per_task"]) / 4 == pytest.approx(on_disk["metrics"]["forgetting"])
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


def _events(folder):
    records = map(json.loads, (folder / "metrics.jsonl").read_text().splitlines())
    return [(r["event"], r.get("experience")) for r in records]


def test_a_resumed_log_equals_an_uninterrupted_one(tmp_path, interrupted_run):
    """A crash between an experience's records and its checkpoint (during its evaluation) leaves
    records the resumed run writes again; they are dropped when it resumes."""
    run(_cfg(tmp_path / "a"))
    interrupted_run(_cfg(tmp_path / "b"))
    log = tmp_path / "b" / "r" / "metrics.jsonl"
    with log.open("a") as fh:
        fh.write(json.dumps({"event": "trained", "experience": 2, "steps": 0}) + "\n")
    run(_cfg(tmp_path / "b"), resume=True)
    assert _events(tmp_path / "b" / "r") == _events(tmp_path / "a" / "r")


def test_resuming_a_folder_without_checkpoint(tmp_path):
    """Another configuration's run is refused and left as it was; the same configuration starts
    afresh, with no record of the earlier attempt mixed into its log."""
    run(_cfg(tmp_path, epochs=1))
    (tmp_path / "r" / "checkpoint.pt").unlink()
    files = {p.name: p.read_bytes() for p in (tmp_path / "r").iterdir()}
    with pytest.raises(RunExistsError, match=r"another configuration \(differing keys: \['strategy'\]\)"):
        run(_cfg(tmp_path, epochs=1, strategy="ewc"), resume=True)
    assert {p.name: p.read_bytes() for p in (tmp_path / "r").iterdir()} == files
    again = run(_cfg(tmp_path, epochs=1), resume=True)
    assert [e for e in _events(tmp_path / "r") if e[0] == "evaluated"] == [("evaluated", i) for i in range(5)]
    assert again["accuracy_matrix"] == json.loads(files["results.json"])["accuracy_matrix"]


def test_a_zero_limit_is_refused_not_ignored(tmp_path):
    with pytest.raises(ConfigError, match="positive integer"):
        run(_cfg(tmp_path, limit_train=0))


@pytest.mark.parametrize("name", ["..", ".", "a/b", ""])
def test_a_run_name_must_be_one_folder_inside_out(tmp_path, name):
    """`--name .. --overwrite` deleted the folder above --out (and `--name .` every sibling run)."""
    (tmp_path / "proj" / "runs" / "keep").mkdir(parents=True)
    (tmp_path / "proj" / "runs" / "keep" / "results.json").write_text("{}")
    (tmp_path / "proj" / "notes.txt").write_text("mine")
    cfg = _cfg(tmp_path / "proj" / "runs", name=name)
    if name == "":  # no name: the default one
        assert cfg.run_name() == f"{cfg.benchmark}-{cfg.scenario}-{cfg.strategy}-s{cfg.seed}"
        return
    with pytest.raises(ConfigError, match="must name one folder inside --out"):
        run(cfg, overwrite=True)
    assert (tmp_path / "proj" / "notes.txt").read_text() == "mine"
    assert (tmp_path / "proj" / "runs" / "keep" / "results.json").exists()


def test_overwrite_replaces_only_a_run_folder_and_out_must_be_a_folder(tmp_path):
    """--overwrite deletes a previous run's folder, never one that holds no run; an --out that is a file
    is refused with the reason (it failed with NotADirectoryError)."""
    folder = tmp_path / "r"
    folder.mkdir()
    (folder / "thesis.tex").write_text("mine")
    with pytest.raises(RunExistsError, match="holds files but no lifelong run"):
        run(_cfg(tmp_path), overwrite=True)
    assert (folder / "thesis.tex").read_text() == "mine"
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ConfigError, match="afile is a file, so .* cannot hold a run; choose another --out"):
        run(_cfg(tmp_path / "afile"))


def test_resume_with_overwrite_starts_afresh_over_another_configurations_checkpoint(tmp_path):
    """With both flags a matching checkpoint is resumed, and another configuration's replaced (it was
    refused, --overwrite ignored)."""
    run(_cfg(tmp_path, epochs=1))
    fresh = run(_cfg(tmp_path, epochs=1, lr=0.5), resume=True, overwrite=True)
    assert RunConfig.from_dict(fresh["config"]).lr == 0.5
    assert [e for e in _events(tmp_path / "r") if e[0] == "evaluated"] == [("evaluated", i) for i in range(5)]
