"""`source_status`: what `lifelong datasets` shows for each registered source."""

from __future__ import annotations

import re

import pytest

from lifelong.core.errors import UnknownNameError
from lifelong.core.registries import SOURCES
from lifelong.data.sources import source_status


def test_present_source_reports_where(isolated, make_mnist):
    make_mnist(isolated.system / "fashion-mnist")
    status = source_status("fmnist")
    assert status["name"] == "fashion-mnist" and status["present"] and not status["bundled"]
    assert status["path"] == str(isolated.system / "fashion-mnist")
    assert status["searched"] == [
        str(isolated.cache / "fashion-mnist"),
        str(isolated.system / "fashion-mnist"),
    ]


def test_absent_source_reports_where_it_would_go(isolated, monkeypatch):
    monkeypatch.setenv("LIFELONG_MIRROR_CIFAR10", "http://127.0.0.1:9/c")
    status = source_status("CIFAR-10", root=isolated.tmp / "r")
    assert not status["present"] and status["path"] is None
    assert status["download_to"] == str(isolated.tmp / "r" / "cifar10")
    assert status["urls"] == ["http://127.0.0.1:9/c/cifar-10-python.tar.gz"]
    assert status["searched"][:2] == [str(isolated.tmp / "r"), str(isolated.tmp / "r" / "cifar10")]


def test_bundled_digits_is_always_present():
    status = source_status("digits")
    assert status["present"] and status["bundled"] and status["path"] is None


def test_unknown_name_lists_known_sources():
    with pytest.raises(UnknownNameError, match="cifar10"):
        source_status("cifar11")


@pytest.mark.parametrize("name", [n for n in SOURCES.names() if "location" in SOURCES.meta(n)])
def test_every_file_source_declares_published_md5s(name):
    location = SOURCES.meta(name)["location"]
    assert location.name == name and location.files
    assert all(re.fullmatch(r"[0-9a-f]{32}", md5) for _, md5 in location.files)
    assert location.mirror.startswith(("http://", "https://"))
    assert location.mirror_env == "LIFELONG_MIRROR_" + name.upper().replace("-", "_")
