"""`keep_freed_memory`: after it, steps that allocate and free the same 24 MiB of tensors reuse their
pages instead of page-faulting fresh ones each step (glibc), each case in a fresh process."""

from __future__ import annotations

import subprocess
import sys

import pytest

from lifelong.core.allocator import keep_freed_memory

STEPS = """
import resource, sys, torch
from lifelong.core.allocator import keep_freed_memory
kept = keep_freed_memory() if sys.argv[1] == "keep" else None
def step():
    xs = [torch.ones(1 << 20) for _ in range(6)]  # 4 MiB each, 24 MiB live at once, as a step's activations
    return sum(x.sum() for x in xs)
step()
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    step()
print(kept, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults)
"""


def faults(mode: str) -> tuple[str, int]:
    out = subprocess.run([sys.executable, "-c", STEPS, mode], capture_output=True, text=True, check=True).stdout
    kept, count = out.split()
    return kept, int(count)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="page-fault counts and mallopt: glibc on Linux")
def test_freed_memory_is_reused_instead_of_page_faulted_afresh():
    _, default = faults("default")
    kept, after = faults("keep")
    assert kept == "True"
    assert default >= 20 * 1000  # thousands of fresh pages a step: glibc returns the freed heap top to the OS
    assert after < default / 10  # the first step's pages, reused


def test_a_c_library_without_mallopt_is_left_alone(monkeypatch):
    """musl or macOS: no `mallopt`, so nothing is changed and it says so."""
    import ctypes

    monkeypatch.setattr(ctypes, "CDLL", lambda name: object())
    assert keep_freed_memory() is False
