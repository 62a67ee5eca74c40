"""Every registered strategy, found through the registry: it learns, and an interrupted run resumes
bit-exactly (ARCHITECTURE.md, test habits). A newly registered strategy is tested without anyone
writing a test for it."""

import shutil

import pytest
import torch

from lifelong.continual.run import run
from lifelong.continual.strategies import build_strategy
from lifelong.core.checkpoint import load_checkpoint, save_checkpoint
from lifelong.core.config import RunConfig
from lifelong.core.registries import STRATEGIES


def _config(tmp_path, folder, name, args):
    settings = set.intersection(*(set(p.settings) for p in build_strategy(name, args)))
    scenario = next(s for s in ("task", "domain", "class") if s in settings)
    return RunConfig(benchmark="split-digits", scenario=scenario, strategy=name, strategy_args=args, epochs=2,
                     batch_size=32, lr=0.01, head="multi" if scenario == "task" else "single",
                     model_args={"hidden": [64]}, out=str(tmp_path / folder), name="r")


# every registered name with its defaults, and the options that switch to another implementation
CASES = [*((n, {}) for n in STRATEGIES.names()), ("lora", {"backend": "peft"})]


@pytest.mark.parametrize(("name", "args"), CASES, ids=["-".join([n, *map(str, a.values())]) for n, a in CASES])
def test_learns_and_resumes_bit_exactly(tmp_path, interrupted_run, name, args):
    full = run(_config(tmp_path, "full", name, args))
    matrix = full["accuracy_matrix"]
    just_learned = sum(matrix[i][i - 1] for i in range(1, len(matrix))) / (len(matrix) - 1)
    assert just_learned > sum(matrix[0]) / len(matrix[0]) + 0.3, matrix  # each experience is learned

    interrupted_run(_config(tmp_path, "cut", name, args))
    mid, saved = load_checkpoint(tmp_path / "cut" / "r" / "checkpoint.pt")
    shutil.copytree(tmp_path / "cut" / "r", tmp_path / "nudged" / "r")
    resumed = run(_config(tmp_path, "cut", name, args), resume=True)
    a = load_checkpoint(tmp_path / "full" / "r" / "checkpoint.pt")[0]["model"]
    b = load_checkpoint(tmp_path / "cut" / "r" / "checkpoint.pt")[0]["model"]
    assert resumed["accuracy_matrix"] == matrix and resumed["parameters"] == full["parameters"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert mid["next_experience"] == 2
    # negative control: resuming really starts from the checkpoint — nudge one weight in it and the
    # final weights differ
    first = next(k for k, v in mid["model"].items() if v.is_floating_point())
    mid["model"][first] = mid["model"][first] + 1e-2
    save_checkpoint(tmp_path / "nudged" / "r" / "checkpoint.pt", mid, saved)
    run(_config(tmp_path, "nudged", name, args), resume=True)
    c = load_checkpoint(tmp_path / "nudged" / "r" / "checkpoint.pt")[0]["model"]
    assert any(not torch.equal(a[k], c[k]) for k in a)
