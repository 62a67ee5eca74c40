import pytest

from lifelong.core.errors import ConfigError, LifelongError, UnknownNameError
from lifelong.core.registry import Registry


@pytest.fixture()
def reg():
    r = Registry("widget")

    @r.register("der++", aliases=("derpp",), family="replay")
    def derpp(alpha: float = 0.3, beta: float = 0.5):
        return ("der++", alpha, beta)

    @r.register("ewc", aliases=("EWC",))
    def ewc(lam: float):
        return ("ewc", lam)

    return r


def test_get_by_name_alias_and_case(reg):
    assert reg.get("derpp") is reg.get("der++")
    assert reg.canonical("Der++") == "der++"
    assert reg.canonical("EWC") == "ewc"
    assert reg.meta("derpp")["family"] == "replay"


def test_unknown_name_lists_known_and_closest(reg):
    with pytest.raises(UnknownNameError) as info:
        reg.get("dr++")
    message = str(info.value)
    assert "'der++'" in message and "Known: der++, ewc" in message
    assert isinstance(info.value, KeyError)


def test_duplicate_registration_raises(reg):
    with pytest.raises(LifelongError, match="twice"):
        reg.register("derpp")(lambda: None)


def test_wildcards(reg):
    assert reg.names("d*") == ["der++"]
    assert reg.names() == ["der++", "ewc"]


def test_build_reports_every_problem_at_once(reg):
    with pytest.raises(ConfigError) as info:
        reg.build("der++", alpha=1.0, gamma=2, delta=3)
    assert "['delta', 'gamma']" in str(info.value)
    with pytest.raises(ConfigError, match=r"missing keys \['lam'\]"):
        reg.build("ewc")
    assert reg.build("der++", beta=0.1) == ("der++", 0.3, 0.1)
