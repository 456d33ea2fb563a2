"""Readers for a user's own files (vaelib.data.load_array and friends) and the seeded splits."""
import gzip
import struct

import numpy as np
import pytest
import torch

from vaelib import data


def test_npy_csv_and_idx_give_the_same_matrix(tmp_path):
    values = np.arange(12, dtype=np.uint8).reshape(4, 3)
    np.save(tmp_path / "a.npy", values)
    (tmp_path / "a.csv").write_text("\n".join(",".join(str(v) for v in row) for row in values) + "\n")
    header = struct.pack(">BBBB", 0, 0, 0x08, 2) + struct.pack(">II", 4, 3)
    (tmp_path / "a-idx2-ubyte.gz").write_bytes(gzip.compress(header + values.tobytes()))
    expected = torch.as_tensor(values, dtype=torch.float32)
    for name in ("a.npy", "a.csv", "a-idx2-ubyte.gz"):
        x = data.load_array(tmp_path / name)
        assert x.dtype == torch.float32 and torch.equal(x, expected), name


def test_images_are_flattened_to_one_row_per_item(tmp_path):
    np.save(tmp_path / "images.npy", np.zeros((5, 2, 3), dtype=np.float64))
    assert data.load_array(tmp_path / "images.npy").shape == (5, 6)


@pytest.mark.parametrize("first_line, has_header", [
    ("x,y", True), ("height, weight", True), ("x,2", True), ("1,2", False), ("1e3,-2.5", False),
])
def test_a_csv_header_is_a_first_line_with_text_that_is_not_a_number(tmp_path, first_line, has_header):
    (tmp_path / "h.csv").write_text(f"{first_line}\n5,6\n\n7,8\n")
    x = data.load_array(tmp_path / "h.csv")
    assert x.shape == ((2, 2) if has_header else (3, 2))
    assert torch.equal(x[-2:], torch.tensor([[5.0, 6.0], [7.0, 8.0]]))


@pytest.mark.parametrize("text, message", [
    ("1,2\n3\n", r"line 2: 1 field\(s\), but the first row of numbers has 2"),
    ("a,b\n1,2\n3,x\n", r"line 3, column 2 holds 'x', which is not a number"),
    ("1,,3\n", "line 1, column 2 is empty"),
    ("1;2\n3;4\n", "separate fields with commas"),
    ("x,y\n", "holds no rows of numbers"),
    ("a,b\n1,2\n3,nan\n", r"row 2, column 2 \(counting rows of data from 1\) is nan; 1 of 2 rows"),
    ("1,1e39\n", "is inf"),
])
def test_bad_csv_files_are_named_with_line_and_column(tmp_path, text, message):
    (tmp_path / "bad.csv").write_text(text)
    with pytest.raises(ValueError, match=message):
        data.load_array(tmp_path / "bad.csv")


def test_bad_npy_files_and_types_are_refused(tmp_path):
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="Python objects"):
        data.load_array(tmp_path / "objects.npy")
    np.save(tmp_path / "strings.npy", np.array([["a", "b"]]))
    with pytest.raises(ValueError, match="not numbers"):
        data.load_array(tmp_path / "strings.npy")
    np.save(tmp_path / "flat.npy", np.arange(3.0))
    with pytest.raises(ValueError, match=r"shape \(3,\); vaelib needs one row per point"):
        data.load_array(tmp_path / "flat.npy")
    np.save(tmp_path / "empty.npy", np.zeros((0, 3)))
    with pytest.raises(ValueError, match="empty array"):
        data.load_array(tmp_path / "empty.npy")
    (tmp_path / "text.npy").write_text("1,2\n")
    with pytest.raises(ValueError, match="not a .npy file"):
        data.load_array(tmp_path / "text.npy")
    (tmp_path / "data.txt").write_text("1,2\n")
    with pytest.raises(ValueError, match="unsupported file type; use .npy, .csv"):
        data.load_array(tmp_path / "data.txt")
    with pytest.raises(FileNotFoundError, match="no file at"):
        data.load_array(tmp_path / "missing.csv")


def test_split_indices_is_a_seeded_partition():
    train, test = data.split_indices(10, 0.25, seed=3)
    assert len(test) == 3 and len(train) == 7                   # ceil(0.25 * 10) test points
    assert sorted(torch.cat([train, test]).tolist()) == list(range(10))
    again = data.split_indices(10, 0.25, seed=3)
    assert torch.equal(train, again[0]) and torch.equal(test, again[1])
    assert any(not torch.equal(test, data.split_indices(10, 0.25, seed=s)[1]) for s in range(4, 8))


def test_split_indices_with_labels_is_stratified():
    labels = torch.tensor([0] * 80 + [1] * 20)
    _, test = data.split_indices(100, 0.25, seed=0, labels=labels)
    assert torch.bincount(labels[test]).tolist() == [20, 5]


@pytest.mark.parametrize("n, fraction, seed, message", [
    (10, 0.0, 0, "test_fraction must be > 0"), (10, 1.0, 0, "strictly between 0 and 1"),
    (1, 0.5, 0, "leaves none to train on"), (10, 0.5, 2**40, r"seed must be an integer in \[0, 2\*\*32\)"),
])
def test_split_indices_rejects_bad_arguments(n, fraction, seed, message):
    with pytest.raises(ValueError, match=message):
        data.split_indices(n, fraction, seed=seed)


def test_load_digits_split_is_the_chapters_stratified_split():
    from sklearn.model_selection import train_test_split

    split = data.load_digits_split(seed=0)
    x, y = data.load_digits()
    assert len(split.x_test) == 450 and len(split.x_train) == 1347
    share = torch.bincount(split.y_test) / torch.bincount(y)       # every digit: a quarter in the test set
    assert (share - 0.25).abs().max() < 0.01, share
    # The split the chapters made with scikit-learn before this function existed: the same images.
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.25, stratify=y, random_state=0)
    assert torch.equal(split.x_train, x_train) and torch.equal(split.x_test, x_test)
    assert torch.equal(split.y_train, y_train) and torch.equal(split.y_test, y_test)
