"""DER / DER++: logits stored from the training forward, the α-MSE and β-CE terms, learning, resume."""

import pytest
import torch
import torch.nn.functional as F

from lifelong.continual.plugin import Plugin
from lifelong.continual.plugins.der import DER, DERpp
from lifelong.continual.strategies import build_strategy, split_spec
from lifelong.core.errors import IncompatibleError


class Spy(Plugin):
    """Records each step's outputs and batch, and DER's terms recomputed by hand."""

    name = "spy"

    def __init__(self, der):
        self.der, self.outputs, self.terms, self.batches = der, [], [], []

    def loss_terms(self, ctx, batch, outputs):
        self.outputs.append(outputs[batch.current].detach().clone())
        self.batches.append(batch)
        self.terms.append((self.der.loss_terms(ctx, batch, outputs), outputs.detach()))
        return {}


def test_names_and_aliases():
    assert [p.name for p in build_strategy("derpp")] == [p.name for p in build_strategy("der++")] == ["der++"]
    assert [p.name for p in build_strategy("replay+der++")] == ["replay", "der++"]
    # a + after der++ separates: der+++hat is der++ then hat, however it is spaced
    assert split_spec("der+++lwf") == split_spec("der++ + lwf") == ["der++", "lwf"]
    assert split_spec("der++ +ewc+lwf") == ["der++", "ewc", "lwf"]
    assert isinstance(build_strategy("der")[0], DER) and not isinstance(build_strategy("der")[0], DERpp)
    (p,) = build_strategy("derpp", {"alpha": 0.1, "beta": 0.7, "buffer_size": 9})
    assert (p.alpha, p.beta, p.buffer.capacity) == (0.1, 0.7, 9)


def test_stored_logits_are_the_training_forward_outputs(engine_on, digits):
    exp = digits[:1]
    der = DER(buffer_size=exp[0].n_train)  # large enough: every sample is kept, in arrival order
    spy = Spy(der)
    engine_on(exp, [spy, der]).run(exp)
    stored = der.buffer.view()["logits"]
    assert torch.equal(stored, torch.cat(spy.outputs))
    assert torch.equal(der.buffer.view()["x"], torch.cat([b.x[b.current] for b in spy.batches]))


@pytest.mark.parametrize("cls", [DER, DERpp])
def test_terms_match_their_definitions(engine_on, digits, cls):
    der = cls(buffer_size=40, replay_batch_size=12)
    spy = Spy(der)
    engine_on(digits[:2], [der, spy]).run(digits[:2])
    checked = 0
    for batch, (terms, out) in zip(spy.batches, spy.terms, strict=True):
        if "der.mse_rows" not in batch.extra:
            assert terms == {}
            continue
        rows = batch.extra["der.mse_rows"]
        assert len(rows) == 12 and bool((batch.weight[rows] == 0).all())
        expected = der.alpha * ((out[rows] - batch.extra["der.mse_logits"]) ** 2).mean()
        assert torch.allclose(terms["mse"], expected)
        # the engine's weighted CE reduces to the plain mean CE of the current rows
        ce = F.cross_entropy(out, batch.y, reduction="none")
        assert torch.allclose(batch.mean(ce), ce[batch.current].mean())
        if cls is DERpp:
            ce_rows = batch.extra["der.ce_rows"]
            assert len(ce_rows) == 12 and not set(ce_rows.tolist()) & set(rows.tolist())
            assert torch.allclose(terms["ce_buffer"], der.beta * F.cross_entropy(out[ce_rows], batch.y[ce_rows]))
        else:
            assert "ce_buffer" not in terms
        checked += 1
    assert checked > 5


class Alone(DERpp):
    """DER++ that checks each step's terms against its memory batches forwarded on their own."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.checked, self.lengths = 0, []

    def loss_terms(self, ctx, batch, outputs):
        self.lengths.append((len(batch), len(batch.y[batch.current])))
        alone = dict(self._alone)
        terms = super().loss_terms(ctx, batch, outputs)
        if alone:
            mse, ce = alone["mse"], alone["ce"]
            with torch.no_grad():
                expected_mse = self.alpha * F.mse_loss(ctx.forward(mse["x"], mse["t"]), mse["logits"])
                expected_ce = self.beta * F.cross_entropy(ctx.forward(ce["x"], ce["t"]), ce["y"])
            assert torch.allclose(terms["mse"], expected_mse) and torch.allclose(terms["ce_buffer"], expected_ce)
            self.checked += 1
        return terms


def test_with_batchnorm_memory_batches_are_forwarded_on_their_own(engine_on, digits):
    """Buzzega et al., Alg. 1: with BatchNorm a row's output depends on its batch, so the stored
    logits come from the stream batch alone and each memory batch is forwarded alone."""
    stream = digits[:2]
    der = Alone(buffer_size=40, replay_batch_size=12)
    engine = engine_on(stream, [der])
    engine.model.backbone.net.insert(2, torch.nn.BatchNorm1d(32))
    engine.run(stream)
    assert der.checked > 5
    assert all(length == current for length, current in der.lengths)  # nothing joined the batch


@pytest.mark.parametrize("spec", ["der", "der++", "icarl", "replay+der"])
def test_a_growing_head_is_refused_before_training(engine_on, digits, spec):
    engine = engine_on(digits[:2], build_strategy(spec), head="incremental")
    with pytest.raises(IncompatibleError, match="output layer grows with the classes; use head 'single'"):
        engine.run(digits[:2])
    assert engine.step == 0


def test_der_and_derpp_beat_naive_by_a_quarter(replay):
    naive = replay.acc("naive")
    assert replay.acc("der", buffer_size=replay.BUFFER) >= naive + 0.25
    assert replay.acc("der++", buffer_size=replay.BUFFER) >= naive + 0.25


def test_derpp_is_at_least_as_good_as_replay(replay):
    # same buffer, same replay batch size, same budget; no tolerance needed (DER++ ≈ +0.06 here)
    assert replay.acc("der++", buffer_size=replay.BUFFER) >= replay.acc("replay", buffer_size=replay.BUFFER)


def test_derpp_resumes_bit_exactly_through_run(tmp_path, interrupted_run, replay):
    out = replay.resume_through_run(tmp_path, interrupted_run, "der++", {"buffer_size": 200})
    assert out["resumed"]["accuracy_matrix"] == out["full"]["accuracy_matrix"]
    full, resumed = out["full_state"]["plugins"][0]["buffer"], out["resumed_state"]["plugins"][0]["buffer"]
    assert set(full["data"]) == {"x", "y", "t", "logits"}
    assert all(torch.equal(full["data"][k], resumed["data"][k]) for k in full["data"])
    assert out["no_buffer"]["accuracy_matrix"] != out["full"]["accuracy_matrix"]
    assert out["other_generator"]["accuracy_matrix"] != out["full"]["accuracy_matrix"]
