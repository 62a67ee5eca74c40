"""Speed of continual strategies through the engine beside the hand-written naive loop.

Run: `.venv/bin/python benchmarks/continual.py [--repeats 3] [--strategies naive,ewc,...]`.
Prints a markdown table: seconds per strategy, ratio to the engine's naive and to the
hand-written loop, final ACC, and peak resident memory during its runs above the level before them.
"""

from __future__ import annotations

import argparse

from common import PeakRSS, best_of, hand_written_naive, markdown_table, standard_stream, time_engine

from lifelong.continual.metrics import average_accuracy
from lifelong.core.registries import STRATEGIES

# Strategies timed by default, with the arguments they need in this protocol.
DEFAULT: dict[str, dict] = {"naive": {}}


def main(strategies: dict[str, dict] | None = None, repeats: int = 3) -> list[dict]:
    """Time each strategy and the hand-written loop on the standard stream; print the table."""
    strategies = strategies or DEFAULT
    stream = standard_stream()
    hand_s, hand_m = best_of(lambda: hand_written_naive(stream), repeats)
    rows = [{"method": "hand-written naive loop", "seconds": hand_s, "vs naive": "",
             "vs hand-written": 1.0, "ACC": average_accuracy(hand_m)}]
    naive_s = None
    for name, args in strategies.items():
        with PeakRSS() as memory:
            seconds, matrix = best_of(lambda n=name, a=args: time_engine(stream, n, a), repeats)
        naive_s = seconds if name == "naive" else naive_s
        rows.append({"method": name, "seconds": seconds,
                     "vs naive": seconds / naive_s if naive_s else "",
                     "vs hand-written": seconds / hand_s, "ACC": average_accuracy(matrix),
                     "peak MiB": memory.above_start})
    print(markdown_table(rows, ["method", "seconds", "vs naive", "vs hand-written", "ACC", "peak MiB"]))
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--strategies", default=",".join(DEFAULT))
    ns = parser.parse_args()
    chosen = {n: DEFAULT.get(n, {}) for n in ns.strategies.split(",") if n in STRATEGIES or n in DEFAULT}
    main(chosen, ns.repeats)
