import copy

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from lifelong.core.errors import ConfigError, NonFiniteLossError, ShapeMismatchError
from lifelong.meta.benchmark import Episode
from lifelong.meta.fast_weights import adapt_online, functional_loss, params_of
from lifelong.meta.networks import ANMLNet, OMLNet, anml_mlp, oml_mlp
from lifelong.meta.online import OnlineLearner, meta_train, online_meta_loss, reset_rows
from lifelong.meta.pretrain import pretrain


def _episode(n_episodes=3, steps=4, batch=1, n_in=5, n_out=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return Episode(
        torch.randn(n_episodes, steps, batch, n_in, generator=g),
        torch.randint(n_out, (n_episodes, steps, batch), generator=g),
        torch.randn(n_episodes, 6, n_in, generator=g),
        torch.randint(n_out, (n_episodes, 6), generator=g),
        torch.tensor([[0.0, 1.0, 1.0], [1.0, 0.0, 1.0], [1.0, 1.0, 1.0]])[:n_episodes],
    )


@pytest.mark.parametrize("build", [lambda: oml_mlp((5,), 3, hidden=8, rln_layers=2),
                                   lambda: anml_mlp((5,), 3, hidden=8)])
def test_online_meta_loss_equals_a_loop_over_episodes(build):
    net = build()
    ep = _episode()
    batched = online_meta_loss(net, ep, F.cross_entropy, lr=0.1)
    loss_fn = functional_loss(net.fast, F.cross_entropy)
    losses = []
    for e in range(3):
        fast = reset_rows(params_of(net.fast), net.head_keys, ep.keep[e])
        fast = adapt_online(loss_fn, fast, tuple(c.unsqueeze(1) for c in net.context(
            ep.traj_x[e].flatten(0, 1))), ep.traj_y[e], lr=0.1)
        x = torch.cat([ep.traj_x[e].flatten(0, 1), ep.remember_x[e]])
        y = torch.cat([ep.traj_y[e].flatten(0, 1), ep.remember_y[e]])
        losses.append(loss_fn(fast, net.context(x), y))
    torch.testing.assert_close(batched, torch.stack(losses).mean())
    # the meta-gradient reaches the slow part and the fast part's initial weights
    slow = net.rln if isinstance(net, OMLNet) else net.nm
    grads = torch.autograd.grad(batched, [*slow.parameters(), *net.fast.parameters()])
    assert all(torch.count_nonzero(g) > 0 for g in grads)


def test_reset_rows_zeroes_the_chosen_output_rows():
    net = oml_mlp((5,), 3, hidden=8, rln_layers=1)
    fast = reset_rows(params_of(net.fast), net.head_keys, torch.tensor([1.0, 0.0, 1.0]))
    w, b = (fast[k] for k in net.head_keys)
    assert torch.count_nonzero(w[1]) == 0 and b[1] == 0
    assert torch.equal(w[0], net.fast[1].weight[0]) and torch.equal(w[2], net.fast[1].weight[2])


def test_deployment_keeps_the_slow_part_bit_identical():
    net = oml_mlp((5,), 3, hidden=8, rln_layers=2)
    before = copy.deepcopy(net.state_dict())
    learner = OnlineLearner(net, F.cross_entropy, lr=0.5, reset_head=True)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(30, 5, generator=g), torch.randint(3, (30,), generator=g)
    ctx_before = net.context(x)[0].detach().clone()
    learner.observe(x, y)
    for k, v in net.state_dict().items():  # RLN (and the module's PLN) are untouched
        assert torch.equal(v, before[k]), k
    assert torch.equal(net.context(x)[0], ctx_before)
    assert not torch.equal(learner.fast["1.weight"], net.fast[1].weight)  # only fast weights learn


def test_deployment_is_plain_sgd_on_the_prediction_network():
    net = anml_mlp((5,), 3, hidden=8)
    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(6, 5, generator=g), torch.randint(3, (6,), generator=g)
    learner = OnlineLearner(net, F.cross_entropy, lr=0.2, batch_size=2)
    learner.observe(x, y)
    ref = copy.deepcopy(net)
    opt = torch.optim.SGD(ref.fast.parameters(), lr=0.2)
    for k in range(3):
        opt.zero_grad()
        F.cross_entropy(ref(x[2 * k:2 * k + 2]), y[2 * k:2 * k + 2]).backward()
        opt.step()
    for name, p in ref.fast.named_parameters():
        torch.testing.assert_close(learner.fast[name], p)
    torch.testing.assert_close(learner.predict(x), functional_call(ref.fast, dict(
        ref.fast.named_parameters()), ref.context(x)).detach())
    with pytest.raises(ShapeMismatchError, match="6 inputs but 5 targets"):
        learner.observe(x, y[:5])


def test_diverging_deployment_is_reported_not_scored():
    """An online learning rate that diverges left NaN fast weights, and their NaN outputs were scored
    (argmax of NaN is class 0: a first task at accuracy 1.0, exit code 0)."""
    net = oml_mlp((5,), 3, hidden=8, rln_layers=2)
    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(20, 5, generator=g) * 10, torch.randint(3, (20,), generator=g)
    with pytest.raises(NonFiniteLossError, match="lower the online learning rate"):
        OnlineLearner(net, F.cross_entropy, lr=1e30).observe(x, y)
    OnlineLearner(net, F.cross_entropy, lr=0.1).observe(x, y)  # a sane rate learns on


def test_anml_gate_multiplies_the_prediction_networks_representation():
    net = anml_mlp((5,), 3, hidden=8)
    assert isinstance(net, ANMLNet)
    x = torch.randn(4, 5)
    _, gate = net.context(x)
    assert bool(((gate > 0) & (gate < 1)).all())
    torch.testing.assert_close(net(x), net.fast.head(net.fast.features(x) * gate))
    torch.testing.assert_close(net.features(x), net.fast.features(x) * gate)


def test_meta_train_moves_the_slow_part_and_reduces_the_meta_loss():
    net = oml_mlp((5,), 3, hidden=16, rln_layers=2)
    rln_before = copy.deepcopy(net.rln.state_dict())
    fixed = _episode(n_episodes=3, steps=6, seed=5)
    start = float(online_meta_loss(net, fixed, F.cross_entropy, lr=0.1).detach())
    losses = meta_train(net, lambda g, n: fixed, F.cross_entropy, steps=60, lr=0.1,
                        meta_lr=1e-2, meta_batch=3)
    end = float(online_meta_loss(net, fixed, F.cross_entropy, lr=0.1).detach())
    assert len(losses) == 60 and end < 0.5 * start
    assert any(not torch.equal(v, rln_before[k]) for k, v in net.rln.state_dict().items())


def test_episode_shape_mismatch_is_reported():
    ep = _episode()
    bad = Episode(ep.traj_x, ep.traj_y[:, :3], ep.remember_x, ep.remember_y, ep.keep)
    with pytest.raises(ShapeMismatchError, match="trajectory"):
        online_meta_loss(oml_mlp((5,), 3, hidden=8, rln_layers=1), bad, F.cross_entropy, lr=0.1)


def test_bad_network_and_training_arguments_raise_config_errors_naming_them():
    with pytest.raises(ConfigError, match="oml: hidden must be a positive integer, got -1"):
        oml_mlp((5,), 3, hidden=-1)
    with pytest.raises(ConfigError, match="anml: hidden must be a positive integer, got -1"):
        anml_mlp((5,), 3, hidden=-1)
    net = oml_mlp((5,), 3, hidden=8, rln_layers=1)
    ep = _episode()
    for kwargs, message in (({"steps": "abc"}, "steps"), ({"meta_lr": -1.0}, "meta_lr"),
                            ({"meta_batch": 0}, "meta_batch")):
        with pytest.raises(ConfigError, match=f"meta_train: {message}"):
            meta_train(net, lambda g, n: ep, F.cross_entropy, lr=0.1, **{"steps": 1, **kwargs})
    x, y = torch.randn(4, 5), torch.randint(3, (4,))
    for kwargs, message in (({"batch_size": 0}, "batch_size"), ({"lr": -1e-3}, "lr"),
                            ({"epochs": -1}, "epochs")):
        with pytest.raises(ConfigError, match=f"pretrain: {message}"):
            pretrain(net, x, y, F.cross_entropy, **kwargs)
    with pytest.raises(ConfigError, match="online learner: batch_size"):
        OnlineLearner(net, F.cross_entropy, lr=0.1, batch_size=0)


def test_pretrain_reports_each_epoch_to_the_callback():
    net = oml_mlp((5,), 3, hidden=8, rln_layers=1)
    x, y = torch.randn(10, 5), torch.randint(3, (10,))
    seen = []
    history = pretrain(net, x, y, F.cross_entropy, epochs=3, batch_size=4,
                       callback=lambda epoch, loss: seen.append((epoch, loss)))
    assert seen == list(enumerate(history)) and len(history) == 3
