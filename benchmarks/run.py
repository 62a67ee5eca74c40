"""Run every speed benchmark, each in its own process, and collect their tables in one page.

Run: `make bench` (or `.venv/bin/python benchmarks/run.py [names...]`). Writes
`benchmarks/results.md` and puts the same text in README.md between the benchmark markers, so the
README always shows the last measured table and the command that made it.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

from lifelong.core.records import atomic_write_text

HERE = Path(__file__).resolve().parent
README = HERE.parent / "README.md"
START, END = "<!-- benchmarks:start -->", "<!-- benchmarks:end -->"
# Benchmark script → (title, arguments), in the order the page shows them.
SUITE: dict[str, tuple[str, list[str]]] = {
    "continual": ("Continual engine vs the hand-written loop", ["--repeats", "3"]),
    "regularisation": ("Regularisation strategies (EWC, online EWC, SI, MAS, LwF)", ["--repeats", "5"]),
    "replay": ("Replay strategies and buffers", ["--repeats", "3"]),
    "architecture": ("Architecture strategies (parameters and peak memory per task)", []),
    "weighting": ("Multi-task weightings and the batched Jacobian", []),
    "multitask": ("Multi-task training step", []),
    "curriculum": ("Curriculum ordering and training loop", []),
    "meta": ("Meta-continual inner loops", []),
    "compare": ("`lifelong compare` in worker processes", []),
}


def run_one(name: str, args: list[str]) -> tuple[str, float]:
    """The markdown a benchmark script prints, and its wall time; its error output on failure."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, str(HERE / f"{name}.py"), *args], capture_output=True, text=True,
                          cwd=HERE, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    seconds = time.perf_counter() - start
    if done.returncode:
        return f"**failed** (exit {done.returncode}):\n\n```\n{done.stderr.strip()[-2000:]}\n```", seconds
    return done.stdout.strip(), seconds


def page(names: list[str]) -> str:
    """All the benchmarks' tables under one heading each, with the command and the machine."""
    header = (f"Measured with `make bench` on {time.strftime('%Y-%m-%d')}: {os.cpu_count()} CPU cores "
              f"({platform.machine()}), torch {torch.__version__}, Python {platform.python_version()}. "
              "Ratios compare the library with a minimal hand-written PyTorch loop doing the same work "
              "in the same run (1.00 = as fast).")
    sections = [header]
    for name in names:
        title, args = SUITE[name]
        text, seconds = run_one(name, args)
        command = " ".join(["python", f"benchmarks/{name}.py", *args])
        sections.append(f"#### {title}\n\n`{command}` ({seconds:.0f} s)\n\n{text}")
        print(f"{name}: {seconds:.0f} s", file=sys.stderr)
    return "\n\n".join(sections) + "\n"


def update_readme(text: str) -> None:
    """Replace the README's text between the benchmark markers."""
    readme = README.read_text(encoding="utf-8")
    if START not in readme or END not in readme:
        raise SystemExit(f"README.md lacks the markers {START} ... {END}; add them where the table goes")
    before, rest = readme.split(START, 1)
    after = rest.split(END, 1)[1]
    atomic_write_text(README, f"{before}{START}\n{text}{END}{after}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"benchmarks to run (default: all): {', '.join(SUITE)}")
    names = parser.parse_args().names or list(SUITE)
    unknown = sorted(set(names) - set(SUITE))
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(SUITE)}")
    text = page(names)
    atomic_write_text(HERE / "results.md", text)
    if names == list(SUITE):
        update_readme(text)


if __name__ == "__main__":
    main()
