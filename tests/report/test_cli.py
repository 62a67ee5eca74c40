"""`lifelong advise | compare | report` from the command line."""

from __future__ import annotations

import csv
import io
import json
import sys
import types

import pytest

from lifelong.core.errors import ConfigError
from lifelong.guide import Answers
from lifelong.report.cli import QUESTIONS, parse_seeds, resolve_answers, split_overrides

from .conftest import SMALL


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def _advise_json(cli_main, capsys, *flags):
    assert cli_main(["advise", "--json", "--no-interactive", *flags]) == 0
    return json.loads(capsys.readouterr().out)


def test_advise_privacy_many_tasks(cli_main, capsys):
    out = _advise_json(cli_main, capsys, "--tasks", "50", "--no-storage")
    ranking = out["ranking"]
    n_reg = sum(r["family"] == "regularisation" for r in ranking)
    assert n_reg and all(r["family"] == "regularisation" for r in ranking[:n_reg])
    assert any(r["name"] == "lwf" for r in ranking[:n_reg])
    stored = [r for r in ranking if r["family"] == "replay" and "buffer" in " ".join(r["reasons"])]
    assert all(r["excluded"] and "may not be stored" in r["reasons"][0] for r in stored)
    strategies = out["command"].split("--strategies ")[1].split()[0].split(",")
    assert strategies[:-1] == [r["name"] for r in ranking[: len(strategies) - 1]] and strategies[-1] == "naive"


def test_advise_zero_forgetting_with_task_labels(cli_main, capsys):
    out = _advise_json(cli_main, capsys, "--zero-forgetting", "--task-labels")
    assert out["ranking"][0]["family"] == "architecture" and "--scenario task" in out["command"]


def test_advise_without_flags_nor_terminal_takes_the_default_answers(cli_main, capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO())  # not a terminal: nothing is asked
    assert cli_main(["advise", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["answers"] == vars(Answers())


def test_advise_prints_a_table_and_the_compare_command(cli_main, capsys):
    assert cli_main(["advise", "--tasks", "3", "--no-interactive", "--top", "2"]) == 0
    out = capsys.readouterr().out
    assert "Measure the top candidates on your data:" in out
    command = out.strip().splitlines()[-1]
    assert command.startswith("lifelong compare --benchmark split-digits --scenario class --strategies ")
    strategies = command.split("--strategies ")[1].split()[0].split(",")
    ranking = _advise_json(cli_main, capsys, "--tasks", "3")["ranking"]
    candidates = [r["name"] for r in ranking if not r["excluded"] and r["family"] != "baseline"]
    assert strategies == [*candidates[:2], "naive"]  # the top two, beside fine-tuning
    assert cli_main(["advise", "--no-interactive", "--top", "0"]) == 2
    assert "--top 0: compare at least one candidate" in _error_line(capsys)


def test_interactive_answers_ask_only_what_the_flags_left_out():
    asked = []

    def prompt(text, default, type):
        asked.append(text)
        return {int: 40, str: "low"}[type]

    def confirm(text, default):
        asked.append(text)
        return True

    answers = resolve_answers({"storage": False, "compute": "high"}, True, prompt, confirm)
    assert answers == Answers(tasks=40, storage=False, zero_forgetting=True, task_labels=True,
                              pretrained=True, memory="low", compute="high", fixed_architecture=True,
                              tasks_known=True)
    assert asked == [QUESTIONS[k] for k in ("tasks", "zero_forgetting", "task_labels", "pretrained", "memory",
                                            "fixed_architecture", "tasks_known")]


def test_advise_rejects_bad_answers(cli_main, capsys):
    assert cli_main(["advise", "--memory", "huge", "--no-interactive"]) == 2
    assert "--memory 'huge' is not one of low, medium, high" in _error_line(capsys)
    assert cli_main(["advise", "--tasks", "0", "--no-interactive"]) == 2
    assert "at least 1" in _error_line(capsys)


def test_seeds_and_overrides_parsing():
    assert parse_seeds("3") == [0, 1, 2] and parse_seeds("0,5,7") == [0, 5, 7]
    with pytest.raises(ConfigError, match="a count"):
        parse_seeds("many")
    assert split_overrides(["epochs=2", "hat.infer_task=true", "ewc.ewc_lambda=100"]) == (
        {"epochs": 2}, {"hat": {"infer_task": True}, "ewc": {"ewc_lambda": 100}})
    with pytest.raises(ConfigError, match="neither a run setting"):
        split_overrides(["lambda=3"])


def _compare_args(out):
    return ["compare", "--strategies", "naive,er", "--seeds", "1", "--jobs", "1", "--out", str(out),
            "--benchmark", SMALL["benchmark"], "--limit-train", str(SMALL["limit_train"]),
            "--limit-test", str(SMALL["limit_test"]), "--epochs", "1", "model_args.hidden=[32]",
            "replay.buffer_size=30"]


def test_compare_writes_the_report_and_resumes(cli_main, capsys, tmp_path):
    assert cli_main(_compare_args(tmp_path)) == 0
    out = capsys.readouterr().out
    assert "runs/naive-s0: done" in out and "runs/replay-s0: done" in out
    assert {"report.md", "report.html", "summary.csv", "runs.csv", "compare.json", "log.jsonl"} <= {
        p.name for p in tmp_path.iterdir()}
    results = json.loads((tmp_path / "runs" / "replay-s0" / "results.json").read_text())
    assert results["config"]["strategy_args"] == {"replay": {"buffer_size": 30}}
    assert results["config"]["model_args"] == {"hidden": [32]}
    finished = [json.loads(x) for x in (tmp_path / "log.jsonl").read_text().splitlines() if '"finished"' in x]
    assert sorted(r["run"] for r in finished) == ["naive-s0", "replay-s0"]
    assert cli_main(_compare_args(tmp_path)) == 0
    assert "runs/naive-s0: finished before" in capsys.readouterr().out


def test_compare_errors_are_one_line(cli_main, capsys, tmp_path, monkeypatch):
    assert cli_main(["compare", "--strategies", "naive,hat", "--out", str(tmp_path)]) == 2
    assert "needs task labels" in _error_line(capsys)
    assert cli_main(["compare", "--strategies", "naive", "--out", str(tmp_path), "lambda=3"]) == 2
    assert "neither a run setting" in _error_line(capsys)
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    assert cli_main(["compare", "--strategies", "naive", "--out", str(tmp_path), "--logger", "tensorboard"]) == 2
    assert "needs the optional package tensorboard: pip install" in _error_line(capsys)
    assert not any(tmp_path.iterdir())  # refused before running anything


def test_report_rebuilds_single_several_and_compare_folders(cli_main, capsys, compared, tmp_path):
    (compared / "report.md").unlink()
    assert cli_main(["report", str(compared)]) == 0
    assert "Small comparison" not in (compared / "report.md").read_text()  # the default title now
    single = compared / "runs" / "naive-s1"
    assert cli_main(["report", str(single)]) == 0
    assert {"report.md", "report.html", "runs.csv"} <= {p.name for p in single.iterdir()}
    with open(single / "runs.csv", newline="") as fh:
        [row] = list(csv.DictReader(fh))
    results = json.loads((single / "results.json").read_text())
    assert (row["method"], float(row["acc"])) == ("naive", results["metrics"]["acc"])
    runs = [str(compared / "runs" / f) for f in ("naive-s0", "naive-s1", "replay-s0")]
    assert cli_main(["report", *runs, "--out", str(tmp_path / "cmp"), "--title", "Three runs"]) == 0
    assert (tmp_path / "cmp" / "report.md").read_text().startswith("# Three runs")
    assert (tmp_path / "cmp" / "runs.csv").read_text().count("\n") == 4  # header and three runs
    capsys.readouterr()
    assert cli_main(["report", str(tmp_path)]) == 2
    assert "neither results.json" in _error_line(capsys)


def test_report_can_log_runs_to_an_extra_logger(cli_main, capsys, compared, tmp_path, monkeypatch):
    tags = []

    class SummaryWriter:
        def __init__(self, log_dir):
            tags.append(log_dir)

        def add_scalar(self, tag, value, step):
            tags.append(tag)

        def close(self):
            pass

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", types.SimpleNamespace(SummaryWriter=SummaryWriter))
    run = compared / "runs" / "cumulative-s0"
    assert cli_main(["report", str(run), "--logger", "tb", "--out", str(tmp_path)]) == 0
    assert tags[0] == str(tmp_path / "tensorboard" / "cumulative-s0") and "finished/metrics/acc" in tags
    assert (tmp_path / "log.jsonl").exists()


def test_report_logs_the_runs_of_a_compare_folder(cli_main, compared, tmp_path, monkeypatch):
    dirs = []

    class SummaryWriter:
        def __init__(self, log_dir):
            dirs.append(log_dir)

        def add_scalar(self, tag, value, step):
            pass

        def close(self):
            pass

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", types.SimpleNamespace(SummaryWriter=SummaryWriter))
    args = ["report", str(compared), "--logger", "tb", "--out", str(tmp_path), "--title", "Small comparison"]
    assert cli_main(args) == 0
    runs = json.loads((compared / "compare.json").read_text())["runs"]
    assert sorted(dirs) == sorted(str(tmp_path / "tensorboard" / f.split("/")[-1]) for fs in runs.values() for f in fs)
    finished = [json.loads(x) for x in (tmp_path / "log.jsonl").read_text().splitlines() if '"finished"' in x]
    assert len(finished) == len(dirs) == 6


@pytest.mark.parametrize(("flags", "message"), [
    (["--grid", "lr=[0.1"], "grid entry 'lr=[0.1': '[[0.1]' is not a valid YAML value"),
    (["--grid", "lr=0.1", "--grid", "lr=0.01"], "grid key 'lr' is given twice"),
    (["--grid", "seed=0,1"], "compare sets seed itself for every run; use --seeds instead"),
    (["--grid", "lambda=1,2"], "'lambda' names neither a run setting"),
    (["--jobs", "0"], "jobs 0: give at least one worker process"),
    (["--seeds", "0,0"], "seeds [0, 0]: give at least one, each once"),
    (["seed=3"], "compare sets seed itself for every run; use --seeds instead"),
    (["model_args.hidden=[32"], "override 'model_args.hidden=[32'"),
])
def test_compare_refuses_bad_requests_on_one_line(cli_main, capsys, tmp_path, flags, message):
    assert cli_main(["compare", "--strategies", "naive", "--out", str(tmp_path), *flags]) == 2
    assert message in _error_line(capsys)
    assert not any(tmp_path.iterdir())


def test_report_refuses_a_folder_given_twice_or_runs_of_other_benchmarks(cli_main, capsys, compared, tmp_path):
    naive, replay = (str(compared / "runs" / f) for f in ("naive-s0", "replay-s0"))
    assert cli_main(["report", naive, naive, replay, "--out", str(tmp_path / "cmp")]) == 2
    assert f"{naive} is given twice (also as {naive}); give each run folder once" in _error_line(capsys)
    other = tmp_path / "permuted"
    assert cli_main(["run", "--out", str(tmp_path), "--name", other.name, "--quiet", "benchmark=permuted-digits",
                     "scenario=domain", "limit_train=100", "limit_test=50", "model_args.hidden=[32]"]) == 0
    assert cli_main(["report", naive, str(other), "--out", str(tmp_path / "cmp")]) == 2
    assert "the runs differ in benchmark, scenario, limit_train, limit_test" in _error_line(capsys)
    assert not (tmp_path / "cmp").exists()


@pytest.mark.parametrize(("name", "text", "message"), [
    ("results.json", json.dumps({"schema_version": 1, "name": "mt", "tasks": []}),
     "is not the results of a continual run: it lacks"),
    ("results.json", '{"metrics": ', "is not valid JSON"),
    ("compare.json", json.dumps({"experiments": []}), "is not the compare.json of `lifelong compare`"),
])
def test_report_refuses_foreign_or_corrupt_files_on_one_line(cli_main, capsys, tmp_path, name, text, message):
    (tmp_path / name).write_text(text)
    assert cli_main(["report", str(tmp_path)]) == 2
    assert message in _error_line(capsys)


def test_run_logs_live_to_an_extra_logger_while_it_trains(cli_main, tmp_path, monkeypatch):
    """`lifelong run --logger tb` hands every record to the logger as the engine writes it (each
    experience's record is there before the next experience's checkpoint), then the final one."""
    seen = []

    class SummaryWriter:
        def __init__(self, log_dir):
            seen.append(("dir", log_dir))

        def add_scalar(self, tag, value, step):
            checkpoints = list(tmp_path.glob("*/checkpoint.pt"))
            seen.append((tag, step, bool(checkpoints)))

        def close(self):
            seen.append(("closed",))

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", types.SimpleNamespace(SummaryWriter=SummaryWriter))
    args = ["run", "--benchmark", "split-digits", "--out", str(tmp_path), "--name", "live", "--logger", "tb", "-q"]
    assert cli_main(args) == 0
    assert seen[0] == ("dir", str(tmp_path / "tensorboard" / "live")) and seen[-1] == ("closed",)
    evaluated = [s for s in seen if s[0] == "evaluated/accuracy/E1"]
    assert [s[1] for s in evaluated] == [0, 1, 2, 3, 4]
    assert not evaluated[0][2]  # logged during the first experience, before any checkpoint existed
    assert any(s[0] == "finished/metrics/acc" and s[1] == 5 for s in seen)
    records = [json.loads(x) for x in (tmp_path / "log.jsonl").read_text().splitlines()]
    metrics = [json.loads(x) for x in (tmp_path / "live" / "metrics.jsonl").read_text().splitlines()]
    assert [r["event"] for r in records] == [m["event"] for m in metrics] + ["finished"]


def test_run_refuses_a_logger_whose_package_is_missing_before_training(cli_main, capsys, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    assert cli_main(["run", "--benchmark", "split-digits", "--out", str(tmp_path), "--logger", "tensorboard"]) == 2
    assert "needs the optional package tensorboard: pip install" in _error_line(capsys)
    assert not any(tmp_path.iterdir())


def test_a_run_refused_before_training_opens_no_logger(cli_main, capsys, tmp_path, monkeypatch):
    """An existing run folder is refused before any logger starts (no empty W&B run is created)."""
    opened = []

    class SummaryWriter:
        def __init__(self, log_dir):
            opened.append(log_dir)

        def add_scalar(self, tag, value, step): ...

        def close(self): ...

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", types.SimpleNamespace(SummaryWriter=SummaryWriter))
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "results.json").write_text("{}")
    args = ["run", "--benchmark", "split-digits", "--out", str(tmp_path), "--name", "taken", "--logger", "tb", "-q"]
    assert cli_main(args) == 2
    assert "--resume" in _error_line(capsys) and opened == []
