"""The README's Python examples run as written."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def test_readme_has_examples():
    assert len(BLOCKS) >= 3


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(index, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # examples may write runs/
    exec(compile(BLOCKS[index], f"README.md block {index}", "exec"), {"__name__": "readme"})


@pytest.mark.parametrize("kind", ["strategy", "weighting", "architecture", "scorer", "pacing", "model", "dataset"])
def test_readme_lists_every_registered_name(kind):
    from lifelong.core.registries import ALL

    text = README.read_text(encoding="utf-8")
    missing = [n for n in ALL[kind].names() if f"`{n}`" not in text]
    assert not missing, f"README.md does not list these {kind} names: {missing}"


def test_readme_lists_every_meta_method():
    from lifelong.meta import METHODS

    text = README.read_text(encoding="utf-8")
    assert all(f"`{n}`" in text for n in METHODS.names())
