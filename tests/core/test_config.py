from pathlib import Path

import pytest
import torch

from lifelong.core.checkpoint import load_checkpoint, save_checkpoint
from lifelong.core.config import RunConfig, load_config, nest, parse_overrides
from lifelong.core.errors import CheckpointError, ConfigError, DataError
from lifelong.core.records import atomic_write_json, prepare_run_folder, read_json, read_jsonl
from lifelong.core.seeding import resolve_device, seed_everything


def test_overrides_nest_and_parse_yaml_scalars():
    assert parse_overrides(["lr=0.01", "strategy_args.lambda=100", "name=x"]) == {
        "lr": 0.01, "strategy_args": {"lambda": 100}, "name": "x"}
    with pytest.raises(ConfigError, match="key=value"):
        parse_overrides(["lr"])


@pytest.mark.parametrize("item", ["model_args.hidden=[1", "x={a: 1", "name='open"])
def test_overrides_that_are_not_yaml_raise_a_config_error_naming_them(item):
    with pytest.raises(ConfigError, match="override") as info:
        parse_overrides(["lr=0.1", item])
    assert repr(item) in str(info.value) and len(str(info.value).splitlines()) == 1


def test_nest_and_folder():
    assert nest("model_args.hidden", [32]) == {"model_args": {"hidden": [32]}} and nest("lr", 1) == {"lr": 1}
    assert RunConfig(out="o", strategy="ewc", seed=2).folder() == Path("o") / "split-digits-class-ewc-s2"
    assert RunConfig(out="o", name="n").folder() == Path("o") / "n"


def test_yaml_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("strategy: ewc\nepochs: 3\nstrategy_args: {lambda: 5}\n")
    cfg = load_config(path, parse_overrides(["epochs=4", "strategy_args.gamma=0.9"]))
    assert (cfg.strategy, cfg.epochs, cfg.strategy_args) == ("ewc", 4, {"lambda": 5, "gamma": 0.9})


def test_every_bad_key_reported_together():
    with pytest.raises(ConfigError) as info:
        RunConfig.from_dict({"epoch": 1, "lr": "fast", "batchsize": 3})
    text = str(info.value)
    assert "'epoch'" in text and "'batchsize'" in text and "lr:" in text


def test_diff_lists_changed_keys():
    assert RunConfig(lr=0.1).diff(RunConfig(lr=0.2, out="elsewhere")) == ["lr"]


def test_checkpoint_roundtrip_and_corruption(tmp_path):
    path = tmp_path / "c.pt"
    save_checkpoint(path, {"w": torch.arange(3.0), "n": 2}, {"seed": 1})
    state, cfg = load_checkpoint(path)
    assert torch.equal(state["w"], torch.arange(3.0)) and cfg == {"seed": 1}
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(CheckpointError, match="unreadable"):
        load_checkpoint(path)
    assert path.exists()  # nothing is deleted


def test_checkpoints_of_another_format_or_origin_are_refused_with_what_to_do(tmp_path):
    """Format 1 multi-task checkpoints lack torch's generator, the monitor's pairs and a run's extras:
    resuming one failed with a bare KeyError('torch_rng')."""
    path = tmp_path / "c.pt"
    torch.save({"format_version": 1, "config": {}, "state": {}}, path)
    with pytest.raises(CheckpointError, match="has format 1, but this version of lifelong reads format 2.*--overwrite"):
        load_checkpoint(path)
    torch.save({"w": torch.zeros(2)}, path)
    with pytest.raises(CheckpointError, match="is not a lifelong checkpoint"):
        load_checkpoint(path)


def test_atomic_write_leaves_no_temporary(tmp_path):
    atomic_write_json(tmp_path / "r.json", {"a": 1})
    assert read_json(tmp_path / "r.json") == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_config_files_that_are_not_yaml_text_raise_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="cannot be read as UTF-8 text"):
        load_config(tmp_path)  # a directory
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("lr: 0.1 # caf\xe9".encode("latin-1"))
    with pytest.raises(ConfigError, match="cannot be read as UTF-8 text"):
        load_config(latin)


@pytest.mark.parametrize("values", [{"model_args": {1: 2}}, {"strategy_args": {"ewc": {3: 1}}}])
def test_argument_names_must_be_strings(values):
    with pytest.raises(ConfigError, match="must be strings, got [13]"):
        RunConfig.from_dict(values)


@pytest.mark.parametrize("seed", [-1, 2**63, 99999999999999999999, 1.5, "abc"])
def test_seeds_torch_cannot_take_are_refused(seed):
    with pytest.raises(ConfigError, match="seed"):
        seed_everything(seed)


def test_devices_are_checked_before_they_are_used(monkeypatch):
    with pytest.raises(ConfigError, match="'gpu7' is not a device torch knows"):
        resolve_device("gpu7")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="asks for a GPU"):
        resolve_device("cuda:0")
    assert resolve_device("auto") == torch.device("cpu") and resolve_device("cpu") == torch.device("cpu")


def test_devices_this_build_lacks_and_the_meta_device_are_refused():
    """mps or xpu on this CPU build used to fail deep in Module.to or torch.xpu; meta trained on
    shapes and failed at the first .item() of the evaluation."""
    absent = {"mps": not torch.backends.mps.is_available(), "xpu": not torch.xpu.is_available()}
    for name in (n for n, missing in absent.items() if missing):  # both, on the CPU build CI runs
        with pytest.raises(ConfigError, match=f"'{name}' is not available in this torch build"):
            resolve_device(name)
    with pytest.raises(ConfigError, match="holds shapes, not values"):
        resolve_device("meta")


def test_a_json_lines_file_cut_short_by_a_crash_loses_only_its_last_line(tmp_path):
    """A crash during append_jsonl leaves half a line, which made --resume fail with a JSONDecodeError;
    damage elsewhere is a DataError naming the line."""
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"a": 1}\n{"b": 2}\n{"c": ')
    assert read_jsonl(path) == [{"a": 1}, {"b": 2}]
    path.write_text('{"a": 1}\n{"b": \n{"c": 3}\n')
    with pytest.raises(DataError, match="line 2 is not JSON"):
        read_jsonl(path)


def test_overwrite_never_removes_the_working_folder(tmp_path, monkeypatch):
    (tmp_path / "results.json").write_text("{}")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="would delete the working folder"):
        prepare_run_folder(".", overwrite=True)
    assert (tmp_path / "results.json").exists()
