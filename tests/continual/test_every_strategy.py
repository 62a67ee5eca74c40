"""Every registered strategy, found through the registry: it learns, and an interrupted run resumes
bit-exactly (ARCHITECTURE.md, test habits). A newly registered strategy is tested without anyone
writing a test for it."""

import shutil

import pytest
import torch

import lifelong.continual.run as run_module
from lifelong.continual.run import run
from lifelong.continual.strategies import build_strategy
from lifelong.core.checkpoint import load_checkpoint, save_checkpoint
from lifelong.core.config import RunConfig
from lifelong.core.registries import STRATEGIES


class Interrupt(Exception):
    pass


def _config(tmp_path, folder, name):
    settings = set.intersection(*(set(p.settings) for p in build_strategy(name)))
    scenario = next(s for s in ("task", "domain", "class") if s in settings)
    return RunConfig(benchmark="split-digits", scenario=scenario, strategy=name, epochs=2, batch_size=32, lr=0.01,
                     head="multi" if scenario == "task" else "single", model_args={"hidden": [64]},
                     out=str(tmp_path / folder), name="r")


@pytest.mark.parametrize("name", STRATEGIES.names())
def test_learns_and_resumes_bit_exactly(tmp_path, monkeypatch, name):
    full = run(_config(tmp_path, "full", name))
    matrix = full["accuracy_matrix"]
    just_learned = sum(matrix[i][i - 1] for i in range(1, len(matrix))) / (len(matrix) - 1)
    assert just_learned > sum(matrix[0]) / len(matrix[0]) + 0.3, matrix  # each experience is learned

    real, saves = run_module.save_checkpoint, []

    def save(*args, **kwargs):
        real(*args, **kwargs)
        saves.append(1)
        if len(saves) == 2:
            raise Interrupt

    monkeypatch.setattr(run_module, "save_checkpoint", save)
    with pytest.raises(Interrupt):
        run(_config(tmp_path, "cut", name))
    monkeypatch.undo()
    mid, saved = load_checkpoint(tmp_path / "cut" / "r" / "checkpoint.pt")
    shutil.copytree(tmp_path / "cut" / "r", tmp_path / "nudged" / "r")
    resumed = run(_config(tmp_path, "cut", name), resume=True)
    a = load_checkpoint(tmp_path / "full" / "r" / "checkpoint.pt")[0]["model"]
    b = load_checkpoint(tmp_path / "cut" / "r" / "checkpoint.pt")[0]["model"]
    assert resumed["accuracy_matrix"] == matrix
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert mid["next_experience"] == 2
    # negative control: resuming really starts from the checkpoint — nudge one weight in it and the
    # final weights differ
    first = next(k for k, v in mid["model"].items() if v.is_floating_point())
    mid["model"][first] = mid["model"][first] + 1e-2
    save_checkpoint(tmp_path / "nudged" / "r" / "checkpoint.pt", mid, saved)
    run(_config(tmp_path, "nudged", name), resume=True)
    c = load_checkpoint(tmp_path / "nudged" / "r" / "checkpoint.pt")[0]["model"]
    assert any(not torch.equal(a[k], c[k]) for k in a)
