"""Run folders: results, report, checkpoints loadable with weights_only, bit-identical resume,
the diagnose report and the `lifelong mtl` command."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
import typer
from typer.testing import CliRunner

from lifelong.core.errors import CheckpointError, ConfigError, RunExistsError
from lifelong.multitask.architectures import build_architecture
from lifelong.multitask.cli import register
from lifelong.multitask.config import TrainConfig
from lifelong.multitask.diagnose import diagnose
from lifelong.multitask.diagnostics import grouping_score
from lifelong.multitask.engine import MultiTaskTrainer
from lifelong.multitask.run import MTLConfig, build_trainer, run_mtl, weighting_generator
from lifelong.multitask.weighting import build_weighting


def config(tmp_path, **kw):
    train = TrainConfig(epochs=3, batch_size=64, lr=3e-3, conflict_every=4)
    return replace(MTLConfig(benchmark="multi-digits", weighting="pcgrad", width=32,
                             out=str(tmp_path), name="run", train=train), **kw)


class Stop(Exception):
    pass


def test_run_folder_contents(tmp_path):
    results = run_mtl(config(tmp_path))
    folder = tmp_path / "run"
    names = {p.name for p in folder.iterdir()}
    assert {"config.yaml", "metrics.jsonl", "checkpoint.pt", "results.json", "report.md",
            "tasks.png", "weights.png", "conflicts.png"} <= names
    saved = json.loads((folder / "results.json").read_text())
    assert saved["final"] == results["final"] and len(saved["history"]) == 3
    assert set(saved["final"]) == {"digit", "parity", "large"}
    assert len(saved["weights_trajectory"]) == results["history"][-1]["step"]
    assert saved["conflicts"]["records"] > 0 and len(saved["conflicts"]["mean_cosine"]) == 3
    assert len((folder / "metrics.jsonl").read_text().splitlines()) == 3
    payload = torch.load(folder / "checkpoint.pt", weights_only=True)
    assert payload["state"]["epoch"] == 3
    report = (folder / "report.md").read_text()
    assert "![per-task curves](tasks.png)" in report and "conflict ratio" in report
    with pytest.raises(RunExistsError):
        run_mtl(config(tmp_path))


def test_resume_after_interruption_is_bit_identical(tmp_path):
    straight = run_mtl(config(tmp_path, name="straight"))

    def interrupt(tr):
        if tr.epoch == 1:
            raise Stop

    with pytest.raises(Stop):
        run_mtl(config(tmp_path, name="cut"), on_epoch=interrupt)
    first = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)["state"]
    with pytest.raises(RunExistsError, match="--resume"):
        run_mtl(config(tmp_path, name="cut"))
    with pytest.raises(CheckpointError, match="train"):
        run_mtl(config(tmp_path, name="cut", train=TrainConfig(epochs=3, lr=0.5)), resume=True)
    resumed = run_mtl(config(tmp_path, name="cut"), resume=True)
    a = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=True)["state"]
    b = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)["state"]
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert resumed["history"] == [
        {**h, "train_seconds": r["train_seconds"], "eval_seconds": r["eval_seconds"]}
        for h, r in zip(straight["history"], resumed["history"], strict=True)
    ]
    assert resumed["weights_trajectory"] == straight["weights_trajectory"]
    assert resumed["conflicts"] == straight["conflicts"]
    # negative control: the checkpoint after epoch 1 differs from the final one
    assert not all(torch.equal(first["model"][k], b["model"][k]) for k in b["model"])
    assert len((tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()) == 3


def test_diagnose_reports_affinity_groups_and_transfer(tmp_path):
    results = diagnose(config(tmp_path, name="diag", train=TrainConfig(epochs=2, batch_size=64,
                                                                       lr=3e-3)),
                       affinity_every=4)
    diag = results["diagnostics"]
    assert diag["affinity_records"] > 0 and len(diag["affinity"]) == 3
    assert set(diag["groupings"]) == {"1", "2", "3"}
    z = torch.tensor(diag["affinity"])
    scores = []
    for n, found in sorted(diag["groupings"].items()):
        groups = found["groups"]
        assert len(groups) <= int(n) and all(len(g) >= 2 for g in groups)
        assert set().union(*groups) == {0, 1, 2}
        assert found["score"] == pytest.approx(grouping_score(z, groups))
        scores.append(found["score"])
    assert scores == sorted(scores)  # a larger budget never selects a worse grouping
    transfer = diag["transfer"]
    for t, row in transfer["tasks"].items():
        sign = (row["multi_task"] - row["single_task"]) / row["single_task"] * 100
        assert row["change_percent"] == pytest.approx(sign), t
    assert transfer["delta_m"] == pytest.approx(
        sum(r["change_percent"] for r in transfer["tasks"].values()) / 3)
    assert results["conflicts"]["records"] > 0
    report = (tmp_path / "diag" / "report.md").read_text()
    assert "Δm" in report and "affinity.png" in report


def test_diagnose_resumes_with_the_affinities_recorded_before_the_interruption(tmp_path):
    """The affinity tracker lives in the checkpoint: an interrupted and resumed diagnosis averages the
    same lookahead affinities as an uninterrupted one (it kept only the resumed epochs' 5 of 10)."""
    def cfg(name):
        return config(tmp_path, name=name, train=TrainConfig(epochs=2, batch_size=256, lr=1e-2))

    straight = diagnose(cfg("straight"), affinity_every=1, baselines=False)["diagnostics"]

    def interrupt(tr):
        if tr.epoch == 1:
            raise Stop

    with pytest.raises(Stop):
        diagnose(cfg("cut"), affinity_every=1, baselines=False, on_epoch=interrupt)
    resumed = diagnose(cfg("cut"), affinity_every=1, baselines=False, resume=True)["diagnostics"]
    assert resumed["affinity_records"] == straight["affinity_records"] > 0
    assert resumed["affinity"] == straight["affinity"]


def test_cli_mtl_command(tmp_path):
    app = typer.Typer()
    register(app)
    app.command("noop")(lambda: None)  # a second command so `mtl` stays a subcommand
    result = CliRunner().invoke(app, ["mtl", "--benchmark", "multi-digits", "--arch", "mmoe",
                                      "--weighting", "mgda", "--epochs", "1", "--width", "16",
                                      "--out", str(tmp_path), "--name", "cli", "--quiet",
                                      "arch_args.n_experts=3"])
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "cli" / "results.json").read_text())
    assert saved["config"]["arch_args"] == {"n_experts": 3}
    assert saved["config"]["weighting"] == "mgda"
    bad = CliRunner().invoke(app, ["mtl", "--arch", "mmeo", "--out", str(tmp_path), "--quiet"])
    assert bad.exit_code != 0 and "mmoe" in str(bad.exception)


@pytest.mark.parametrize(("sampler", "weighting"), [("temperature", "uncertainty"), (None, "mgda")])
def test_resume_with_per_task_data_is_bit_identical(tmp_path, mtl, sampler, weighting):
    """Per-task datasets (drawn by a task sampler, or every task each step) resume exactly too."""
    data = mtl.toy_per_task()
    train = TrainConfig(epochs=3, batch_size={"p": 16, "q": 8}, lr=3e-3, sampler=sampler)

    def cfg(name):
        return MTLConfig(benchmark="toy-per-task", weighting=weighting, width=16, out=str(tmp_path), name=name,
                         train=train)

    straight = run_mtl(cfg("straight"), data=data)

    def interrupt(tr):
        if tr.epoch == 1:
            raise Stop

    with pytest.raises(Stop):
        run_mtl(cfg("cut"), data=data, on_epoch=interrupt)
    first = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)["state"]
    resumed = run_mtl(cfg("cut"), data=data, resume=True)
    a = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=True)["state"]
    b = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)["state"]
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert resumed["final"] == straight["final"]
    assert resumed["weights_trajectory"] == straight["weights_trajectory"]
    assert not all(torch.equal(first["model"][k], b["model"][k]) for k in b["model"])


@pytest.mark.parametrize("weighting", ["imtl", "famo", "modo", "moco", "stch", "db_mtl", "sdmgrad", "excess_mtl",
                                       "cr_mogm"])
def test_stateful_weightings_resume_bit_identically(tmp_path, weighting):
    """Learned loss scales (IMTL, in the optimiser), after-step logits (FAMO), sampled weights (MoDo),
    a tracked Jacobian (MoCo) and a nadir from a warm-up epoch (STCH) all survive an interruption."""
    args = {"warmup_epochs": 0} if weighting == "stch" else {}

    def cfg(name):
        return config(tmp_path, name=name, weighting=weighting, weighting_args=args,
                      train=TrainConfig(epochs=3, batch_size=64, lr=3e-3))

    straight = run_mtl(cfg("straight"))

    def interrupt(tr):
        if tr.epoch == 1:
            raise Stop

    with pytest.raises(Stop):
        run_mtl(cfg("cut"), on_epoch=interrupt)
    resumed = run_mtl(cfg("cut"), resume=True)
    a = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=True)["state"]
    b = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)["state"]
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert all(torch.equal(a["weighting"][k], b["weighting"][k]) for k in a["weighting"])
    assert resumed["weights_trajectory"] == straight["weights_trajectory"]
    assert len(set(map(tuple, straight["weights_trajectory"]))) > 1  # the weights did move


@pytest.mark.parametrize(("values", "why"), [
    ({"train": {"micro_batch": "abc"}}, r"train\.micro_batch: invalid literal"),
    ({"train": {"steps_per_epoch": 1.5}}, r"train\.steps_per_epoch: expected an integer, got 1\.5"),
    ({"width": "wide", "train": {"bogus": 1}}, r"width: invalid literal .*; unknown key 'train\.bogus'"),
    ({"train": 3}, "train must be a mapping"),
    ({"train": {"batch_size": 0}}, r"train\.batch_size .* must be a positive integer, got 0"),
    ({"train": {"batch_size": {"a": 4, "b": -1}}}, r"train\.batch_size .* must be a positive integer, got -1"),
    ({"train": {"lr": -1}}, r"train\.lr must be a finite number ≥ 0"),
    ({"train": {"epochs": 0}}, r"train\.epochs must be a positive integer, got 0"),
    ({"train": {"conflict_threshold": 2}}, r"train\.conflict_threshold is a cosine in \[-1, 1\]"),
])
def test_config_values_of_the_wrong_type_or_range_fail_together_before_any_run(values, why):
    with pytest.raises(ConfigError, match=why):
        MTLConfig.from_dict(values)


def test_config_values_are_cast_to_their_fields():
    config = MTLConfig.from_dict({"width": "32", "train": {"eval_batch_size": "12", "batch_size": {"a": 4}}})
    assert config.width == 32 and config.train.eval_batch_size == 12 and config.train.batch_size == {"a": 4}


@pytest.mark.parametrize("weighting", ["rlw", "rgw"])
def test_random_weightings_draw_from_the_runs_seed(mtl, weighting):
    """Two seeds give two random weight trajectories and one seed the same one (the weighting's
    generator used to have a fixed seed whatever the run's)."""
    data = mtl.toy_shared()

    def trajectory(seed):
        tr = build_trainer(MTLConfig(weighting=weighting, width=8, seed=seed,
                                     train=TrainConfig(batch_size=16)), data)
        for start in range(0, 48, 16):
            tr.train_step(torch.arange(start, start + 16))
        return tr.weights_trajectory

    first = trajectory(0)
    assert first == trajectory(0)
    assert first != trajectory(1)
    assert all(a != b for a, b in zip(first, trajectory(1), strict=True))
    if weighting == "rlw":  # softmax(z), z ~ N(0, I) from the generator the run's seed gives
        expected = torch.softmax(torch.randn(3, generator=weighting_generator(0), dtype=torch.float64), 0)
        assert first[0] == pytest.approx(expected.tolist())


def test_cli_refuses_zero_epochs_with_a_config_error(tmp_path):
    """`lifelong mtl --epochs 0` used to train nothing and die on history[-1] with an IndexError."""
    app = typer.Typer()
    register(app)
    app.command("noop")(lambda: None)
    result = CliRunner().invoke(app, ["mtl", "--epochs", "0", "--out", str(tmp_path), "--quiet"])
    assert isinstance(result.exception, ConfigError)
    assert "train.epochs must be a positive integer, got 0" in str(result.exception)
    assert not (tmp_path / "mtl-multi-digits-hps-uniform-s0").exists()


def test_resume_with_dropout_is_bit_identical(mtl):
    """Dropout draws from torch's global generator, which the checkpoint now holds: one epoch, a state_dict
    round trip into a fresh trainer, then another, equals two epochs straight (it was 0.12 off)."""
    data = mtl.toy_shared()

    def fresh():
        torch.manual_seed(0)
        model = build_architecture("hps", data, lambda: torch.nn.Sequential(
            torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Dropout(0.5)))
        return MultiTaskTrainer(model, build_weighting("uniform", 3), data,
                                TrainConfig(epochs=2, batch_size=16, lr=0.1, optimizer="sgd"), torch.Generator())

    straight = fresh()
    straight.fit()
    cut = fresh()
    cut.config = replace(cut.config, epochs=1)
    cut.fit()
    state = cut.state_dict()
    torch.manual_seed(123)  # whatever happens to the global generator in between
    resumed = fresh()
    resumed.load_state_dict(state)
    resumed.fit()
    assert torch.equal(mtl.flat(resumed.model.parameters()), mtl.flat(straight.model.parameters()))


def test_mtl_run_names_stay_inside_out_and_resume_with_overwrite_replaces_another_configuration(tmp_path):
    with pytest.raises(ConfigError, match="must name one folder inside --out"):
        run_mtl(config(tmp_path, name=".."), overwrite=True)
    run_mtl(config(tmp_path, name="r", train=TrainConfig(epochs=1, batch_size=64)))
    again = run_mtl(config(tmp_path, name="r", train=TrainConfig(epochs=1, batch_size=64, lr=0.5)),
                    resume=True, overwrite=True)  # it wiped the folder first and ignored --resume
    assert again["config"]["train"]["lr"] == 0.5 and len(again["history"]) == 1
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ConfigError, match="is a file"):
        run_mtl(config(tmp_path / "afile", name="r"))
