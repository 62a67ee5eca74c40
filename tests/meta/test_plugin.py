import io

import pytest
import torch
from torch import nn

from lifelong.continual.engine import Engine
from lifelong.continual.metrics import average_accuracy
from lifelong.continual.strategies import build_strategy
from lifelong.core.errors import IncompatibleError
from lifelong.core.registries import STRATEGIES
from lifelong.data.scenarios import build_benchmark
from lifelong.meta.plugin import PrototypePlugin
from lifelong.models import build_model


@pytest.fixture(scope="module")
def stream():
    return build_benchmark("split-digits", "class")


def _engine(stream, plugins, epochs=1):
    model = build_model("mlp", stream.input_shape, stream.n_classes, stream.task_classes(),
                        hidden=(64,))
    return Engine(model, plugins, epochs=epochs, batch_size=32,
                  generator=torch.Generator().manual_seed(0))


def _frozen_encoder():
    encoder = nn.Sequential(nn.Flatten(), nn.Linear(64, 32))
    encoder.requires_grad_(False)
    return encoder


def test_registered_with_aliases_and_metadata():
    for name in ("prototypes", "ncm", "nmc", "protonet", "NCM"):
        assert STRATEGIES.canonical(name) == "prototypes"
    meta = STRATEGIES.meta("prototypes")
    assert meta["family"] == "prototype" and "Snell" in meta["paper"]
    (plugin,) = build_strategy("ncm", {"batch_size": 100})
    assert isinstance(plugin, PrototypePlugin) and plugin.batch_size == 100


def test_prototypes_are_the_class_means_of_the_encoder(stream):
    encoder = _frozen_encoder()
    plugin = PrototypePlugin(encoder=encoder, batch_size=50)  # several embedding batches
    engine = _engine(stream, [plugin])
    matrix = engine.run(stream)
    x = torch.cat([e.train_x for e in stream])
    y = torch.cat([e.train_y for e in stream])
    z = encoder(x)
    for c in range(stream.n_classes):
        torch.testing.assert_close(plugin.prototypes.means[c], z[y == c].mean(0))
        assert int(plugin.prototypes.counts[c]) == int((y == c).sum())
    # the engine's last row is nearest-prototype accuracy computed by hand
    for j, exp in enumerate(stream):
        d = torch.cdist(encoder(exp.test_x), plugin.prototypes.means)
        expected = float((d.argmin(1) == exp.test_y).float().mean())
        assert matrix[-1][j] == pytest.approx(expected)
    # before any experience every class scores alike: row 0 is chance-level argmax 0
    assert matrix[0] == pytest.approx([float((e.test_y == 0).float().mean()) for e in stream])


def test_beats_naive_fine_tuning_class_incrementally(stream):
    """On the model's own (frozen) features prototypes keep old classes; naive forgets them.

    Seen: ACC 0.88 vs 0.24; required margin 0.4.
    """
    naive = average_accuracy(_engine(stream, build_strategy("naive"), epochs=3).run(stream))
    protos = average_accuracy(_engine(stream, build_strategy("prototypes"), epochs=3).run(stream))
    assert protos > naive + 0.4, (protos, naive)


def test_freeze_keeps_the_model_unchanged_and_unfrozen_trains_it(stream):
    frozen, trained = _engine(stream[:2], [PrototypePlugin()]), _engine(
        stream[:2], [PrototypePlugin(freeze=False)])
    trained.model.load_state_dict(frozen.model.state_dict())
    before = {k: v.clone() for k, v in frozen.model.state_dict().items()}
    frozen.run(stream[:2])
    trained.run(stream[:2])
    assert all(torch.equal(before[k], v) for k, v in frozen.model.state_dict().items())
    assert not all(torch.equal(before[k], v) for k, v in trained.model.state_dict().items())


def test_state_round_trips_through_a_weights_only_checkpoint(stream):
    encoder = _frozen_encoder()
    plugin = PrototypePlugin(encoder=encoder)
    assert plugin.state_dict() == {}
    engine = _engine(stream[:2], [plugin])
    engine.run(stream[:2])
    buffer = io.BytesIO()
    torch.save(plugin.state_dict(), buffer)
    buffer.seek(0)
    restored = PrototypePlugin(encoder=encoder)
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    ctx = engine.context(stream[:2], 1)
    x = stream[1].test_x
    t = torch.zeros(len(x), dtype=torch.long)
    torch.testing.assert_close(restored.predict(ctx, x, t), plugin.predict(ctx, x, t))
    assert restored.prototypes.seen.sum() == 4


def test_model_without_features_needs_an_encoder(stream):
    engine = Engine(nn.Sequential(nn.Flatten(), nn.Linear(64, 10)), [PrototypePlugin()],
                    generator=torch.Generator().manual_seed(0))
    with pytest.raises(IncompatibleError, match="encoder"):
        engine.run(stream[:1])
