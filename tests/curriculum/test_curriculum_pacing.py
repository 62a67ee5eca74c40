"""Pacing functions: closed forms worked by hand at t = 0, T/2, T, and monotone fractions in (0, 1]."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lifelong.core.errors import ConfigError
from lifelong.core.registries import PACINGS
from lifelong.curriculum.pacing import Competence, Linear

C0 = 0.25
T = 100.0
# (name, kwargs, value at T/2) with c0 = 0.25, worked by hand from each closed form.
HALFWAY = [
    ("linear", {}, 0.625),                                   # 0.25 + 0.75·0.5
    ("root", {}, 0.25 + 0.75 * math.sqrt(0.5)),              # 0.7803
    ("root", {"p": 4}, 0.25 + 0.75 * 0.5**0.25),             # 0.8807
    ("competence", {}, math.sqrt(0.53125)),                  # sqrt(0.5·(1 − 1/16) + 1/16) = 0.7289
    ("competence", {"p": 3}, (0.5 * (1 - 1 / 64) + 1 / 64) ** (1 / 3)),  # (0.5078)^(1/3) = 0.7979
    ("step", {"stages": 4}, 0.625),                          # 0.25 + 0.75·⌊2⌋/4
    ("step", {"stages": 5}, 0.55),                           # 0.25 + 0.75·⌊2.5⌋/5
    ("exponential", {}, 0.25 + 0.75 / (math.exp(5) + 1)),    # (e^5 − 1)/(e^10 − 1) = 1/(e^5 + 1)
    ("geometric", {}, 0.5),                                  # 0.25^(1/2)
]


@pytest.mark.parametrize(("name", "kwargs", "half"), HALFWAY)
def test_closed_forms_at_start_half_and_end(name, kwargs, half):
    pacing = PACINGS.build(name, c0=C0, **kwargs)
    assert pacing(0, T) == pytest.approx(C0, abs=1e-12)
    assert pacing(T / 2, T) == pytest.approx(half, abs=1e-12)
    assert pacing(T, T) == pytest.approx(1.0, abs=1e-12)
    assert pacing(3 * T, T) == pytest.approx(1.0, abs=1e-12)   # past T: the whole data
    assert pacing(-5, T) == pytest.approx(C0, abs=1e-12)       # before 0: the start


@given(c0=st.floats(0.001, 1.0), t=st.floats(0.0, 2000.0), total=st.floats(1.0, 1000.0))
def test_competence_matches_platanios_formula(c0, t, total):
    expected = min(1.0, math.sqrt(t * (1 - c0**2) / total + c0**2))
    assert Competence(c0=c0)(t, total) == pytest.approx(expected, rel=1e-12, abs=1e-12)


@given(c0=st.floats(0.001, 1.0), p=st.floats(0.5, 6.0), t=st.floats(0.0, 50.0))
def test_general_root_p_form(c0, p, t):
    expected = min(1.0, (t * (1 - c0**p) / 50.0 + c0**p) ** (1 / p))
    assert Competence(c0=c0, p=p)(t, 50.0) == pytest.approx(expected, rel=1e-9, abs=1e-12)


@settings(max_examples=60)
@given(name=st.sampled_from(PACINGS.names()), c0=st.floats(0.001, 1.0),
       ts=st.lists(st.floats(0.0, 120.0), min_size=2, max_size=20))
def test_fractions_monotone_and_in_unit_interval(name, c0, ts):
    pacing = PACINGS.build(name, c0=c0)
    values = [pacing(t, 100.0) for t in sorted(ts)]
    assert all(0.0 < v <= 1.0 for v in values)
    assert all(a <= b + 1e-12 for a, b in zip(values, values[1:], strict=False))
    assert values[0] >= c0 - 1e-12


def test_c0_of_one_is_plain_random_order():
    assert all(Linear(c0=1.0)(t, 10) == 1.0 for t in range(11))


@pytest.mark.parametrize("bad", [{"c0": 0.0}, {"c0": 1.5}, {"c0": -0.1}])
def test_bad_starting_fraction_is_a_config_error(bad):
    with pytest.raises(ConfigError, match="c0"):
        PACINGS.build("linear", **bad)


def test_bad_parameters_and_length_raise():
    for bad in ({"stages": 0}, {"stages": 2.5}, {"stages": True}):
        with pytest.raises(ConfigError, match="stages"):
            PACINGS.build("step", **bad)
    with pytest.raises(ConfigError, match="p=-1"):
        PACINGS.build("competence", p=-1)
    with pytest.raises(ConfigError, match="rate"):
        PACINGS.build("exponential", rate=0)
    with pytest.raises(ConfigError, match="total"):
        Linear()(1, 0)
    with pytest.raises(ConfigError, match="unknown keys"):
        PACINGS.build("linear", slope=2)


def test_aliases():
    assert PACINGS.canonical("sqrt") == "root"
    assert PACINGS.canonical("platanios") == "competence"


def test_a_starting_fraction_that_is_not_a_number_is_named():
    from lifelong.core.registries import PACINGS

    for name in PACINGS.names():
        with pytest.raises(ConfigError, match=r"c0 must be a number, got 'abc'"):
            PACINGS.build(name, c0="abc")
