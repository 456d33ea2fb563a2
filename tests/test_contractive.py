"""The contractive autoencoder: its Jacobian penalty against torch.autograd, its objective, its training."""
import pytest
import torch

import vaelib
from vaelib.evaluation import jacobian_spectrum
from vaelib.losses import encoder_jacobian, jacobian_penalty, sigmoid_jacobian_penalty
from vaelib.models import ModelOutput


def autograd_penalty(encode, x: torch.Tensor) -> torch.Tensor:
    """||J||_F^2 per row from torch.autograd.functional.jacobian, one row at a time: the reference."""
    rows = [torch.autograd.functional.jacobian(lambda r: encode(r.unsqueeze(0)).squeeze(0), row) for row in x]
    return torch.stack([j.pow(2).sum() for j in rows])


@pytest.mark.parametrize("hidden, activation", [((), "sigmoid"), ((), "tanh"), ((7,), "sigmoid"),
                                                ((9, 5), "ptanh"), ((6,), "elu")])
def test_penalty_matches_autograd_on_random_inputs(hidden, activation):
    torch.manual_seed(0)
    model = vaelib.ContractiveAutoencoder(8, code_dim=4, hidden=hidden, activation=activation).double()
    x = torch.randn(6, 8, dtype=torch.float64)
    expected = autograd_penalty(model.encoder, x)
    assert model.closed_form == (hidden == () and activation == "sigmoid")
    out = model(x)
    assert out.contraction.shape == (6,)
    torch.testing.assert_close(out.contraction, expected, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(jacobian_penalty(model.encoder, x), expected, rtol=1e-10, atol=1e-12)


def test_closed_form_equals_the_general_form_and_its_gradient():
    torch.manual_seed(1)
    layer = torch.nn.Linear(5, 3).double()
    encode = torch.nn.Sequential(layer, torch.nn.Sigmoid())
    x = torch.randn(4, 5, dtype=torch.float64)
    closed = sigmoid_jacobian_penalty(encode(x), layer.weight)
    general = jacobian_penalty(encode, x)
    torch.testing.assert_close(closed, general, rtol=1e-10, atol=1e-12)
    # the penalty is trained: both forms give the same gradient with respect to the weights
    grads = [torch.autograd.grad(p.sum(), [layer.weight, layer.bias])
             for p in (sigmoid_jacobian_penalty(encode(x), layer.weight), jacobian_penalty(encode, x))]
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="z has 3 units but weight has 5 rows"):
        sigmoid_jacobian_penalty(encode(x), torch.zeros(5, 5))


def test_same_seed_same_weights_as_the_sparse_autoencoder():
    vaelib.seed_everything(3)
    contractive = vaelib.ContractiveAutoencoder(64, code_dim=32)
    vaelib.seed_everything(3)
    sparse = vaelib.SparseAutoencoder(64, code_dim=32)
    x = torch.rand(5, 64)
    assert torch.equal(contractive(x).recon, sparse(x).recon)
    assert torch.equal(contractive.encode(x), sparse.encode(x))


def test_objective_terms_and_its_error_for_a_model_without_the_norm():
    x = torch.zeros(2, 3)
    out = ModelOutput(recon=torch.ones(2, 3), z=torch.zeros(2, 1), contraction=torch.tensor([1.0, 3.0]))
    terms = vaelib.ContractiveReconstruction(weight=0.5)(x, out)
    assert terms["recon"].item() == pytest.approx(3.0)
    assert terms["contraction"].item() == pytest.approx(2.0)
    assert terms["loss"].item() == pytest.approx(3.0 + 0.5 * 2.0)
    with pytest.raises(ValueError, match="needs the encoder's Jacobian norm.*use vaelib.ContractiveAutoencoder"):
        vaelib.ContractiveReconstruction()(x, ModelOutput(recon=torch.ones(2, 3), z=torch.zeros(2, 1)))
    with pytest.raises(ValueError, match="weight must be a finite number >= 0"):
        vaelib.ContractiveReconstruction(weight=-1.0)
    assert isinstance(vaelib.make_objective("contractive", weight=0.2), vaelib.ContractiveReconstruction)


def test_training_contracts_the_code():
    g = torch.Generator().manual_seed(3)
    x = (torch.rand(64, 4, generator=g) @ torch.rand(4, 16, generator=g) / 4).clamp(0, 1)
    norms = {}
    for weight in (0.0, 1.0):
        vaelib.seed_everything(0)
        model = vaelib.ContractiveAutoencoder(16, code_dim=24)
        history = vaelib.fit(model, vaelib.ContractiveReconstruction(weight), x, epochs=60, batch_size=32,
                             lr=1e-2, progress=False)
        norms[weight] = model(x).contraction.mean().item()
        assert history["contraction"][-1] == pytest.approx(norms[weight], rel=0.2)
    assert norms[1.0] < 0.5 * norms[0.0], norms


@pytest.mark.parametrize("hidden", [(), (6,)])
def test_fit_batched_trains_each_run_as_fit_does(hidden):
    """Closed form and autograd form alike run inside fit_batched's vmap and give fit's numbers."""
    g = torch.Generator().manual_seed(5)
    x = torch.rand(40, 10, generator=g)
    settings = dict(epochs=3, batch_size=16, lr=1e-2, progress=False)
    seeds = [0, 1]
    batched = []
    for s in seeds:
        vaelib.seed_everything(s)
        batched.append(vaelib.ContractiveAutoencoder(10, code_dim=6, hidden=hidden))
    histories = vaelib.fit_batched(batched, [vaelib.ContractiveReconstruction(0.3) for _ in seeds], x,
                                   seeds=seeds, backend="torch", **settings)
    for s, model, history in zip(seeds, batched, histories):
        vaelib.seed_everything(s)
        alone = vaelib.ContractiveAutoencoder(10, code_dim=6, hidden=hidden)
        reference = vaelib.fit(alone, vaelib.ContractiveReconstruction(0.3), x, seed=s, **settings)
        assert history["contraction"] == pytest.approx(reference["contraction"], rel=1e-4)
        for a, b in zip(model.parameters(), alone.parameters()):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_encoder_jacobian_and_its_spectrum():
    torch.manual_seed(2)
    model = vaelib.ContractiveAutoencoder(6, code_dim=9).double()
    x = torch.rand(4, 6, dtype=torch.float64)
    jacobian = encoder_jacobian(model.encoder, x)
    assert jacobian.shape == (4, 9, 6)
    for row, j in zip(x, jacobian):
        expected = torch.autograd.functional.jacobian(lambda r: model.encoder(r.unsqueeze(0)).squeeze(0), row)
        torch.testing.assert_close(j, expected, rtol=1e-10, atol=1e-12)
    z = model.encode(x)   # one sigmoid layer: J = diag(z (1 - z)) W
    torch.testing.assert_close(jacobian, (z * (1 - z)).unsqueeze(-1) * model.encoder[0].weight)
    spectrum = jacobian_spectrum(model.encoder, x)
    assert spectrum.shape == (4, 6) and not spectrum.requires_grad
    assert torch.all(spectrum[:, :-1] >= spectrum[:, 1:])
    torch.testing.assert_close(spectrum.pow(2).sum(dim=1), model(x).contraction.detach())
