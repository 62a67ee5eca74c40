"""Loggers by registry name: JSONL always; TensorBoard and W&B loaded lazily, or a clear install command."""

from __future__ import annotations

import json
import sys
import types

import pytest

from lifelong.core.errors import MissingExtraError
from lifelong.core.registries import LOGGERS
from lifelong.report.loggers import build_loggers, check_loggers, log_run, scalars

TRAINED = {"event": "trained", "experience": 1, "steps": 20, "loss": {"ce": 0.5, "ewc.penalty": 0.25}}
EVALUATED = {"event": "evaluated", "experience": 1, "accuracy": [0.75, 0.5]}


def test_scalars_flatten_records():
    assert scalars(TRAINED) == (1, {"loss/ce": 0.5, "loss/ewc.penalty": 0.25})
    assert scalars(EVALUATED) == (1, {"accuracy/E1": 0.75, "accuracy/E2": 0.5})
    assert scalars({"event": "finished", "metrics": {"acc": 0.6}, "ok": True}) == (0, {"metrics/acc": 0.6})


def test_registry_names_the_three_loggers():
    assert {"jsonl", "tensorboard", "wandb"} <= set(LOGGERS.names())
    assert LOGGERS.canonical("tb") == "tensorboard"


def test_jsonl_logger_tags_records_with_the_run(tmp_path):
    [logger] = build_loggers([], tmp_path, "naive-s0")
    logger.log(TRAINED)
    logger.log(EVALUATED)
    logger.close()
    lines = [json.loads(x) for x in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert lines == [{"run": "naive-s0", **TRAINED}, {"run": "naive-s0", **EVALUATED}]
    assert len(build_loggers(["jsonl", "jsonl"], tmp_path, "r")) == 1  # each logger once


def test_missing_extra_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails as when not installed
    monkeypatch.setitem(sys.modules, "wandb", None)
    with pytest.raises(MissingExtraError, match=r"pip install 'lifelong\[tensorboard\]'"):
        build_loggers(["tensorboard"], tmp_path, "r")
    with pytest.raises(MissingExtraError, match=r"pip install 'lifelong\[wandb\]'"):
        build_loggers(["wandb"], tmp_path, "r")
    with pytest.raises(MissingExtraError, match="tensorboard"):
        check_loggers(["jsonl", "tb"])
    check_loggers(["jsonl"])


def test_tensorboard_receives_each_scalar_at_its_experience(tmp_path, monkeypatch):
    calls = []

    class SummaryWriter:
        def __init__(self, log_dir):
            calls.append(("dir", log_dir))

        def add_scalar(self, tag, value, step):
            calls.append((tag, value, step))

        def close(self):
            calls.append("closed")

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", types.SimpleNamespace(SummaryWriter=SummaryWriter))
    jsonl, board = build_loggers(["tensorboard", "jsonl"], tmp_path, "ewc-s1")
    board.log(TRAINED)
    board.log(EVALUATED)
    board.close()
    assert calls == [("dir", str(tmp_path / "tensorboard" / "ewc-s1")), ("trained/loss/ce", 0.5, 1),
                     ("trained/loss/ewc.penalty", 0.25, 1), ("evaluated/accuracy/E1", 0.75, 1),
                     ("evaluated/accuracy/E2", 0.5, 1), "closed"]


def test_log_run_replays_a_finished_run_into_wandb(compared, tmp_path, monkeypatch):
    logged = []

    class Run:
        def log(self, values, step):
            logged.append((step, values))

        def finish(self):
            logged.append("finished")

    fake = types.SimpleNamespace(init=lambda **kw: logged.append(kw) or Run())
    monkeypatch.setitem(sys.modules, "wandb", fake)
    folder = compared / "runs" / "naive-s0"
    log_run(folder, ["wandb"], tmp_path, run="naive-s0")
    results = json.loads((folder / "results.json").read_text())
    assert logged[0] == {"project": "lifelong", "name": "naive-s0", "dir": str(tmp_path)}
    evaluated = [values for step, values in logged[1:-2] if "evaluated/accuracy/E1" in values]
    assert [list(v.values()) for v in evaluated] == results["accuracy_matrix"][1:]
    step, final = logged[-2]
    assert step == 5 and final["finished/metrics/acc"] == results["metrics"]["acc"] and logged[-1] == "finished"
    records = [json.loads(x) for x in (tmp_path / "log.jsonl").read_text().splitlines()]  # jsonl, always
    assert records[-1]["event"] == "finished" and {r["run"] for r in records} == {"naive-s0"}
