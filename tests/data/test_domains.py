"""Per-sample domains on SourceData, `subsample` keeping them aligned, and the `domains` scenario."""

import re

import pytest
import torch

from lifelong.core.errors import ConfigError, DataError, ShapeMismatchError
from lifelong.data.scenarios import build_benchmark, domains
from lifelong.data.sources import SourceData, load_source
from lifelong.data.sources.base import subsample


def _source(train_domain, test_domain, names=("a", "b", "c"), n_classes=2):
    """Inputs hold each sample's own index, labels alternate, domains as given."""
    train_domain, test_domain = torch.tensor(train_domain), torch.tensor(test_domain)
    n, m = len(train_domain), len(test_domain)
    return SourceData(
        "toy", torch.arange(n, dtype=torch.float32).reshape(n, 1, 1, 1), torch.arange(n) % n_classes,
        torch.arange(m, dtype=torch.float32).reshape(m, 1, 1, 1) + 100, torch.arange(m) % n_classes,
        tuple(f"class{k}" for k in range(n_classes)), train_domain, test_domain, names,
    )


def test_domains_are_optional_and_checked():
    plain = SourceData("p", torch.zeros(2, 1), torch.zeros(2, dtype=torch.int64), torch.zeros(1, 1),
                       torch.zeros(1, dtype=torch.int64), ("x",))
    assert not plain.has_domains and plain.train_domain is None and plain.domain_names == ()
    assert _source([0, 1], [2]).has_domains
    with pytest.raises(DataError, match="give train_domain, test_domain and domain_names together"):
        SourceData("p", plain.train_x, plain.train_y, plain.test_x, plain.test_y, ("x",),
                   torch.zeros(2, dtype=torch.int64))
    with pytest.raises(ShapeMismatchError, match=r"train_domain must be an int64 tensor of shape \(4,\)"):
        SourceData("p", torch.zeros(4, 1), torch.zeros(4, dtype=torch.int64), plain.test_x, plain.test_y,
                   ("x",), torch.zeros(3, dtype=torch.int64), torch.zeros(1, dtype=torch.int64), ("d",))
    with pytest.raises(ShapeMismatchError, match="test_domain must be an int64"):
        _source([0, 1], [0.5])
    with pytest.raises(DataError, match=r"test_domain spans \[0, 3\], outside the 3 domain names"):
        _source([0, 1], [0, 3])


def test_subsample_draws_the_same_subset_with_or_without_domains():
    source = _source([k % 3 for k in range(30)], [k % 3 for k in range(12)])
    plain = SourceData("toy", source.train_x, source.train_y, source.test_x, source.test_y, source.class_names)
    with_domains, without = subsample(source, 10, 5, seed=4), subsample(plain, 10, 5, seed=4)
    assert torch.equal(with_domains.train_x, without.train_x) and torch.equal(with_domains.test_y, without.test_y)
    assert without.train_domain is None and not without.has_domains
    index = with_domains.train_x.flatten().long()
    assert torch.equal(with_domains.train_domain, index % 3) and torch.equal(with_domains.train_y, index % 2)
    test_index = with_domains.test_x.flatten().long() - 100
    assert torch.equal(with_domains.test_domain, test_index % 3)
    assert with_domains.domain_names == ("a", "b", "c")
    assert subsample(source) is not source and torch.equal(subsample(source).train_domain, source.train_domain)


def test_one_experience_per_training_domain_tested_on_its_own_domain():
    source = _source([2, 0, 2, 0, 2, 1], [1, 0, 2, 2])
    stream = domains(source)
    assert len(stream) == 3 and stream.setting == "domain" and stream.n_classes == 2
    assert stream.name == "domains-toy" and stream.class_names == ("class0", "class1")
    assert [e.train_x.flatten().tolist() for e in stream] == [[1, 3], [5], [0, 2, 4]]
    assert [(e.test_x.flatten() - 100).tolist() for e in stream] == [[1], [0], [2, 3]]
    assert [e.classes for e in stream] == [(0, 1)] * 3 and [e.task for e in stream] == [0, 1, 2]


def test_test_domains_disjoint_from_training_domains_form_one_fixed_test_set():
    """CORe50's NI protocol: train on sessions, test every experience on the held-out sessions —
    one shared tensor (no copy per experience), evaluated once per row of the accuracy matrix."""
    source = _source([0, 1, 0, 1], [2, 2, 2], names=("s1", "s2", "s3"))
    for setting in ("domain", "task"):
        stream = domains(source, setting)
        assert len(stream) == 2
        for e in stream:
            assert (e.test_x.flatten() - 100).tolist() == [0, 1, 2] and e.test_y.tolist() == [0, 1, 0]
            assert e.test_x is source.test_x and e.test_y is source.test_y
    with pytest.raises(ConfigError, match="same fixed test set .* use --scenario domain"):
        domains(source, "class")


def test_a_shared_test_set_is_evaluated_once_per_row():
    from lifelong.continual.engine import Engine

    source = _source([0, 1, 0, 1], [2, 2, 2], names=("s1", "s2", "s3"))
    for setting, passes in (("domain", [3]), ("task", [3, 3])):  # task labels may change the scores
        stream = domains(source, setting)
        calls = []
        model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(1, 2))
        model.register_forward_hook(lambda m, i, o, calls=calls: calls.append(len(i[0])))
        engine = Engine(model, generator=torch.Generator().manual_seed(0))
        row = engine.evaluate(stream, engine.context(stream, 0))
        assert len(row) == 2 and row[0] == row[1] and calls == passes


def test_task_and_class_settings():
    source = _source([0, 0, 1, 1], [0, 1])
    task = domains(source, "task")
    assert task.n_tasks == 2 and task[1].test_t().tolist() == [1]
    cls = domains(source, "class")
    assert cls.n_classes == 4 and cls[1].classes == (2, 3) and cls[1].train_y.tolist() == [2, 3]
    assert cls.class_names == ("class0@a", "class1@a", "class0@b", "class1@b")
    with pytest.raises(ConfigError, match="scenario setting 'both'"):
        domains(source, "both")


@pytest.mark.parametrize(("train", "test", "odd"), [([0, 1], [0, 2], "['b', 'c']"), ([0, 1, 2], [0, 1], "['c']"),
                                                   ([0, 1], [0, 1, 2], "['c']")])
def test_domains_with_training_but_no_test_samples_or_the_reverse_are_refused(train, test, odd):
    """A `limit` can remove a whole domain's samples from one side: say so, rather than drop data."""
    with pytest.raises(DataError, match=rf"domain\(s\) {re.escape(odd)} of 'toy' have training samples but no test"):
        domains(_source(train, test))


def test_sources_without_domains_are_refused():
    with pytest.raises(ConfigError, match="domains: source 'digits' has no per-sample domains"):
        build_benchmark("domains-digits", setting="domain")
    with pytest.raises(ConfigError, match="no per-sample domains"):
        domains(load_source("digits"))


def test_source_args_reach_the_source():
    with pytest.raises(ConfigError, match=r"unknown keys \['image_size'\]"):
        build_benchmark("split-digits", source_args={"image_size": 8})
    assert len(build_benchmark("split-digits", source_args={"test_fraction": 0.5})[0].test_y) > 150
    for bad in ({"root": "/tmp"}, {"download": False}, ["test_fraction", 0.5]):
        with pytest.raises(ConfigError, match="source_args must map the source's own arguments"):
            build_benchmark("split-digits", source_args=bad)


@pytest.mark.parametrize(("fraction", "why"), [
    ("half", "digits: test_fraction must be a number"),
    (1.0, r"digits: test_fraction is the share of images held out, in \(0, 1\)"),
    (0.001, "digits: test_fraction=0.001 cannot split the 10 classes"),
])
def test_digits_test_fraction_is_checked(fraction, why):
    with pytest.raises(ConfigError, match=why):
        build_benchmark("split-digits", source_args={"test_fraction": fraction})
