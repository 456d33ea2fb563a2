"""fit_batched's generic path on every model the book batches: each run is vaelib.fit's on its seed.

The engine stacks the runs' layers (vaelib/engine/_stacked.py) and runs each model's own forward
code once for all runs; a probe falls back to torch.func's vmap for a model whose code the stacked
form does not compute as the model itself does. Tolerance as in tests/test_engine.py: the only
differences from fit are the order of additions in matrix products and sums (about 1e-7 relative
after these steps); a wrong draw, order or gradient differs at 1e-2 or more.
"""
import logging

import pytest
import torch
from torch import nn

import vaelib
from vaelib.data import cosine_surface
from vaelib.engine import _generic, fit_batched
from vaelib.engine._optimizer import FlatOptimizer
from vaelib.engine._stacked import Layout, StackedSequential, check_stackable, layouts, stacked_twin
from vaelib.models import ModelOutput
from vaelib.models.base import register_model
from test_engine import _assert_same_run  # the same tolerance and comparison as the engine's other tests

SETTINGS = {"epochs": 2, "batch_size": 32, "lr": 5e-3}
SEEDS = [0, 1, 2]


def _cosine():
    return cosine_surface(n=100, seed=1)


def _unit(x):
    return (x - x.min(0).values) / (x.max(0).values - x.min(0).values)


def _images():
    g = torch.Generator().manual_seed(3)
    return (torch.rand(100, 4, generator=g) @ torch.rand(4, 64, generator=g) / 4).clamp(0, 1)


# name: (model builder, objective builder, data builder): Part I's autoencoders, the contractive
# objective, Part II's Bernoulli VAE and the CVAE, with the layers each uses
BOOK_MODELS = {
    "plain": (lambda: vaelib.Autoencoder(3, 2, hidden=(16,)), vaelib.Reconstruction, _cosine),
    "deep": (lambda: vaelib.Autoencoder(64, 4, hidden=(16, 8), activation="elu"), vaelib.Reconstruction, _images),
    "tied": (lambda: vaelib.TiedAutoencoder(64, 4, hidden=(16, 8), activation="elu"), vaelib.Reconstruction,
             _images),
    "tied-ptanh": (lambda: vaelib.TiedAutoencoder(3, 2, hidden=(16,)), vaelib.Reconstruction, _cosine),
    "denoising-gaussian": (lambda: vaelib.DenoisingAutoencoder(64, 4, hidden=(16,), activation="elu",
                                                                noise_std=0.3), vaelib.Reconstruction, _images),
    "denoising-masked": (lambda: vaelib.DenoisingAutoencoder(64, 4, hidden=(16,), noise_std=0.1, mask_prob=0.3),
                         vaelib.Reconstruction, _images),
    "sparse-kl": (lambda: vaelib.SparseAutoencoder(64, code_dim=24),
                  lambda: vaelib.SparseReconstruction("kl", weight=2.0, rho=0.1), _images),
    "sparse-l1": (lambda: vaelib.SparseAutoencoder(64, code_dim=24, activation="relu"),
                  lambda: vaelib.SparseReconstruction("l1", weight=0.05), _images),
    "contractive": (lambda: vaelib.ContractiveAutoencoder(64, code_dim=12),
                    lambda: vaelib.ContractiveReconstruction(0.3), _images),
    "contractive-deep": (lambda: vaelib.ContractiveAutoencoder(64, code_dim=6, hidden=(10,), activation="tanh"),
                         lambda: vaelib.ContractiveReconstruction(0.3), _images),
    "convolutional-unpool": (lambda: vaelib.ConvAutoencoder((8, 8), (3, 4), latent_dim=4), vaelib.Reconstruction,
                             _images),
    "convolutional-transposed": (lambda: vaelib.ConvAutoencoder((8, 8), (3, 4), decoder="transposed"),
                                 vaelib.Reconstruction, _images),
    "vae-gaussian": (lambda: vaelib.VAE(3, 2, hidden=(16,)), lambda: vaelib.KoLagrangian(kl_reduction="sum"),
                     _cosine),
    "vae-bernoulli": (lambda: vaelib.VAE(64, 2, hidden=(16,), activation="tanh", decoder="bernoulli"),
                      vaelib.ELBO, _images),
    "cvae": (lambda: vaelib.CVAE(66, 2, latent_dim=2, hidden=(16,), decoder="bernoulli"), vaelib.ELBO,
             lambda: vaelib.append_labels(_images(), torch.arange(100) % 2, 2)),
}


def _build(name, seed):
    make_model, make_objective, _ = BOOK_MODELS[name]
    vaelib.seed_everything(seed)
    return make_model(), make_objective()


def _which_form(monkeypatch):
    """The forms (stacked or vmap) the generic trainer chose, recorded as it is built."""
    chosen = []
    build = _generic.GenericTrainer.__init__

    def recording(self, *args, **kwargs):
        build(self, *args, **kwargs)
        chosen.extend("stacked" if group.stacked else f"vmap: {group.stacked_reason}" for group in self.groups)

    monkeypatch.setattr(_generic.GenericTrainer, "__init__", recording)
    return chosen


@pytest.mark.parametrize("name", list(BOOK_MODELS))
def test_every_book_model_trains_stacked_with_each_run_as_fit_trains_it(name, monkeypatch):
    x = BOOK_MODELS[name][2]()
    loop = []
    for seed in SEEDS:
        model, objective = _build(name, seed)
        loop.append((model, objective, vaelib.fit(model, objective, x, seed=seed, progress=False, **SETTINGS)))
    chosen = _which_form(monkeypatch)
    built = [_build(name, seed) for seed in SEEDS]
    histories = fit_batched([m for m, _ in built], [o for _, o in built], x, seeds=SEEDS, progress=False,
                            backend="torch", **SETTINGS)
    assert chosen == ["stacked"]
    for expected, (model, objective), history in zip(loop, built, histories):
        _assert_same_run(expected, (model, objective, history))
    assert all(p.is_leaf and p.requires_grad for p in built[0][0].parameters())  # ordinary modules again


def test_a_denoising_run_draws_its_own_corruption_as_fit_draws_it():
    """The corruption is each run's own: two runs of one seed agree, another seed differs."""
    x = _images()
    built = [_build("denoising-masked", seed) for seed in (4, 4, 5)]
    histories = fit_batched([m for m, _ in built], [o for _, o in built], x, seeds=[4, 4, 5], progress=False,
                            backend="torch", **SETTINGS)
    assert histories[0]["loss"] == histories[1]["loss"] != histories[2]["loss"]


def test_mixed_objectives_form_groups_in_one_optimiser_step():
    x = _cosine()
    runs = [(vaelib.ELBO, 0), (lambda: vaelib.KoLagrangian(alpha_rule="ascent"), 1), (vaelib.ELBO, 2),
            (lambda: vaelib.GECO(kappa=0.3, rate=0.1), 3)]

    def build(make, seed):
        vaelib.seed_everything(seed)
        return vaelib.VAE(3, 2, hidden=(8,), decoder="gaussian"), make()

    loop = []
    for make, seed in runs:
        model, objective = build(make, seed)
        loop.append((model, objective, vaelib.fit(model, objective, x, seed=seed, progress=False, **SETTINGS)))
    built = [build(make, seed) for make, seed in runs]
    histories = fit_batched([m for m, _ in built], [o for _, o in built], x, seeds=[s for _, s in runs],
                            progress=False, backend="torch", **SETTINGS)
    for expected, (model, objective), history in zip(loop, built, histories):
        _assert_same_run(expected, (model, objective, history))


@register_model
class _BatchCentred(nn.Module):
    """Subtracts the batch mean: its code mixes the rows of different points, and so, stacked, runs."""

    def __init__(self, in_dim: int = 3):
        super().__init__()
        self.in_dim = in_dim
        self.layer = nn.Linear(in_dim, in_dim)

    def forward(self, x):
        h = self.layer(x - x.mean(dim=0))
        return ModelOutput(recon=h, z=h)


class _Dropping(nn.Module):
    """Draws random numbers in forward without declaring them."""

    def __init__(self):
        super().__init__()
        self.in_dim = 3
        self.layer = nn.Linear(3, 3)
        self.drop = nn.Dropout(0.5)

    def forward(self, x):
        h = self.drop(self.layer(x))
        return ModelOutput(recon=h, z=h)


def test_a_model_that_mixes_points_falls_back_to_vmap_and_still_trains_as_fit(monkeypatch, caplog):
    x = _cosine()
    loop = []
    for seed in SEEDS:
        vaelib.seed_everything(seed)
        model = _BatchCentred()
        loop.append((model, vaelib.Reconstruction(), vaelib.fit(model, vaelib.Reconstruction(), x, seed=seed,
                                                               progress=False, **SETTINGS)))
    chosen = _which_form(monkeypatch)
    built = []
    for seed in SEEDS:
        vaelib.seed_everything(seed)
        built.append((_BatchCentred(), vaelib.Reconstruction()))
    with caplog.at_level(logging.DEBUG, logger="vaelib.engine"):
        histories = fit_batched([m for m, _ in built], [o for _, o in built], x, seeds=SEEDS, progress=False,
                                backend="torch", **SETTINGS)
    assert chosen == ["vmap: its term 'loss' differs from a run's own"]
    assert "by vmap, not stacked: its term 'loss' differs" in caplog.text
    for expected, (model, objective), history in zip(loop, built, histories):
        _assert_same_run(expected, (model, objective, history))


def test_a_model_that_draws_undeclared_random_numbers_is_refused_clearly(monkeypatch):
    chosen = _which_form(monkeypatch)
    with pytest.raises(RuntimeError, match="random"):
        fit_batched([_Dropping(), _Dropping()], [vaelib.Reconstruction(), vaelib.Reconstruction()], _cosine(),
                    seeds=[0, 1], progress=False, backend="torch", epochs=1)
    assert chosen == ["vmap: its forward pass draws random numbers that it does not declare (see "
                      "vaelib.models.base)"]


def test_a_layer_without_a_stacked_form_takes_vmap():
    model = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3))
    assert "keeps buffers" in check_stackable(model).reason
    assert "no stacked form of the layer Bilinear" in check_stackable(nn.Bilinear(2, 2, 2)).reason
    assert check_stackable(vaelib.TiedAutoencoder(3)) is None


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_the_flat_optimiser_does_torch_optims_arithmetic(optimizer):
    """Element for element the update of torch.optim's foreach implementation, over many steps,
    and its state in torch.optim's format (so that older training states still load)."""
    g = torch.Generator().manual_seed(0)
    shapes = [(4, 3, 5), (4, 1, 5), (4, 1, 1)]
    tensors = [torch.randn(*shape, generator=g) for shape in shapes]
    reference = [nn.Parameter(t.clone()) for t in tensors]
    torch_optimizer = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD}[optimizer](reference, lr=0.01, foreach=True)
    theta = torch.cat([t.reshape(-1) for t in tensors])
    grad = torch.zeros_like(theta)
    flat = FlatOptimizer(optimizer, 0.01, theta, grad, [Layout.plain(shape) for shape in shapes])
    for _ in range(30):
        grads = [torch.randn(*shape, generator=g) for shape in shapes]
        for p, gradient in zip(reference, grads):
            p.grad = gradient.clone()
        grad.copy_(torch.cat([gradient.reshape(-1) for gradient in grads]))
        torch_optimizer.step()
        flat.step()
    torch.testing.assert_close(theta, torch.cat([p.detach().reshape(-1) for p in reference]), rtol=2e-7, atol=1e-8)
    ours, theirs = flat.state_dict(), torch_optimizer.state_dict()
    assert ours["param_groups"] == theirs["param_groups"]
    assert set(ours["state"]) == set(theirs["state"])
    for i, entry in theirs["state"].items():
        for key, value in entry.items():
            torch.testing.assert_close(ours["state"][i][key], value, rtol=2e-7, atol=1e-9)
    again = FlatOptimizer(optimizer, 0.01, theta.clone(), grad.clone(), [Layout.plain(shape) for shape in shapes])
    again.load_state_dict(theirs)
    assert again.steps == flat.steps


def test_a_transposed_layout_keeps_the_parameters_own_shape_for_state_and_write_back():
    layout = Layout((2, 5, 3), (2, 3, 5), transposed=True)
    flat = torch.arange(30.0)
    assert layout.compute(flat).shape == (2, 5, 3)
    assert torch.equal(layout.canonical(flat), layout.compute(flat).transpose(1, 2))
    layout.canonical(flat)[1, 2, 4] = -1.0
    assert flat[15 + 4 * 3 + 2] == -1.0  # the same memory


@pytest.mark.parametrize("activation", [nn.ELU, nn.ReLU])
def test_an_activation_acts_in_place_only_on_a_stacked_layers_fresh_output(activation):
    """An ELU or ReLU right after a linear layer overwrites that layer's output (PyTorch's in-place
    form: the same values, a backward that reads the output); one that comes first must not touch
    the network's input. Values and gradients are each run's own, up to rounding."""
    runs = 3
    nets = []
    for seed in range(runs):
        torch.manual_seed(seed)
        nets.append(nn.Sequential(nn.Sequential(activation(), nn.Linear(5, 4), activation(), nn.Linear(4, 3))))
    held = layouts(nets[0], runs)
    tensors = {}
    for name in held:
        value = torch.stack([dict(net.named_parameters())[name].detach() for net in nets])
        own = held[name].transposed
        tensors[name] = (value.transpose(1, 2) if own else value).reshape(held[name].shape).clone().requires_grad_()
    twin = stacked_twin(nets[0], tensors, held, runs)
    assert isinstance(twin[0], StackedSequential) and twin[0].in_place == [False, False, True, False]
    x = torch.randn(runs * 6, 5, generator=torch.Generator().manual_seed(0))
    given = x.clone()
    out = twin(x)
    assert torch.equal(x, given)  # the first activation left the input alone
    out.pow(2).sum().backward()
    for r, net in enumerate(nets):
        own = net(x[6 * r:6 * (r + 1)])
        torch.testing.assert_close(out[6 * r:6 * (r + 1)], own, rtol=1e-6, atol=1e-7)
        own.pow(2).sum().backward()
        grad = tensors["0.1.weight"].grad[r].T  # held as Wᵀ
        torch.testing.assert_close(grad, net[0][1].weight.grad, rtol=1e-5, atol=1e-7)
