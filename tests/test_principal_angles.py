"""vaelib.pca.principal_angles: the angles between two subspaces, checked against scipy."""
import math

import numpy as np
import pytest
import torch
from scipy.linalg import subspace_angles

from vaelib.pca import fit_pca, principal_angles


def _random(shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("d, p, q", [(5, 2, 2), (10, 3, 5), (64, 8, 4), (6, 6, 1), (3, 1, 3)])
def test_agrees_with_scipy_on_random_subspaces(d, p, q):
    a, b = _random((d, p), seed=d + p), _random((d, q), seed=100 + q)
    ours = principal_angles(a, b).numpy()
    theirs = np.sort(np.degrees(subspace_angles(a.numpy(), b.numpy())))
    assert ours.shape == (min(p, q),)
    np.testing.assert_allclose(ours, theirs, atol=1e-9)
    assert np.all(np.diff(ours) >= 0), "angles are returned in ascending order"


def test_tiny_angles_are_resolved_like_scipy():
    """A rotation by 1e-7 degrees is measured as such (the cosine alone would read 0)."""
    theta = math.radians(1e-7)
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]], dtype=torch.float64)
    b = torch.tensor([[1.0, 0.0], [0.0, math.cos(theta)], [0.0, math.sin(theta)]], dtype=torch.float64)
    ours = principal_angles(a, b).numpy()
    theirs = np.sort(np.degrees(subspace_angles(a.numpy(), b.numpy())))
    np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-15)
    assert ours[1] == pytest.approx(1e-7, rel=1e-6)


def test_known_angles_and_invariance_to_the_basis():
    """Two planes in 3-D that share the x axis and differ by 30 degrees about it; any invertible
    mix of a basis (b @ A) spans the same space and gives the same angles."""
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]], dtype=torch.float64)
    c, s = math.cos(math.radians(30)), math.sin(math.radians(30))
    b = torch.tensor([[1.0, 0.0], [0.0, c], [0.0, s]], dtype=torch.float64)
    torch.testing.assert_close(principal_angles(a, b), torch.tensor([0.0, 30.0], dtype=torch.float64))
    mix = torch.tensor([[2.0, 1.0], [-0.5, 3.0]], dtype=torch.float64)
    torch.testing.assert_close(principal_angles(a, b @ mix), principal_angles(a, b))
    assert principal_angles(b, b @ mix).abs().max() < 1e-6


def test_orthogonal_complements_are_at_ninety_degrees_and_order_does_not_matter():
    a = torch.eye(4, dtype=torch.float64)[:, :2]
    b = torch.eye(4, dtype=torch.float64)[:, 2:]
    torch.testing.assert_close(principal_angles(a, b), torch.full((2,), 90.0, dtype=torch.float64))
    x, y = _random((7, 3), seed=1), _random((7, 2), seed=2)
    torch.testing.assert_close(principal_angles(x, y), principal_angles(y, x))


def test_float32_input_and_a_pca_basis():
    """PCA's directions are rows: their transpose spans the principal subspace."""
    x = _random((200, 6), seed=3).float()
    pca = fit_pca(x, k=3)
    angles = principal_angles(pca.components.T, pca.components.T @ _random((3, 3), seed=4).float())
    assert angles.dtype == torch.float64 and angles.max() < 1e-3


@pytest.mark.parametrize("a, b, message", [
    (torch.eye(3)[:, :2], torch.eye(4)[:, :2], "same number of rows"),
    (torch.eye(3)[:, :2], torch.tensor([[1.0, 2.0], [1.0, 2.0], [0.0, 0.0]]), "linearly dependent"),
    (torch.eye(3)[:, :2], torch.ones(2, 3), "1 to d columns"),
    (torch.eye(3)[:, :2], torch.tensor([1.0, 0.0, 0.0]), "shape \\(d, p\\)"),
    (torch.eye(3, dtype=torch.int64), torch.eye(3), "floating-point"),
    (torch.eye(3)[:, :2], torch.tensor([[float("nan")], [0.0], [1.0]]), "NaN"),
])
def test_bad_input_is_refused_with_a_clear_message(a, b, message):
    with pytest.raises(ValueError, match=message):
        principal_angles(a, b)
