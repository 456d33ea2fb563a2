"""Readers for a user's own files (vaelib.readers: load_table, load_array and friends, importable from
vaelib.data too) and the seeded splits."""
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
    with pytest.raises(ValueError, match=r"unsupported file type; use .npy, .npz, .csv, .tsv"):
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


# ----------------------------------------------------------------------------------------------
# Columns, labels, headers, .npz and .tsv (vaelib.readers.load_table)

def test_columns_drop_and_a_text_label_column_by_name_or_position(tmp_path):
    from vaelib.readers import load_table

    (tmp_path / "iris.csv").write_text("sepal,petal,species,width\n1,2,setosa,3\n4,5,virginica,6\n")
    table = load_table(tmp_path / "iris.csv", label="species")
    assert table.names == ["sepal", "petal", "width"] and table.labels.tolist() == ["setosa", "virginica"]
    assert torch.equal(table.x, torch.tensor([[1.0, 2, 3], [4, 5, 6]]))
    table = load_table(tmp_path / "iris.csv", columns=["width", 0], label=2)
    assert table.names == ["width", "sepal"] and torch.equal(table.x, torch.tensor([[3.0, 1], [6, 4]]))
    assert load_table(tmp_path / "iris.csv", drop=["species", "petal"]).names == ["sepal", "width"]
    (tmp_path / "t.tsv").write_text("a\tb\tlabel\n1\t2\t0\n3\t4\t1\n")
    table = load_table(tmp_path / "t.tsv", label="label")
    assert table.labels.dtype == np.int64 and table.labels.tolist() == [0, 1] and table.x.shape == (2, 2)
    with pytest.raises(ValueError, match=r"line 2, column 3 holds 'setosa', which is not a number; leave a text "
                                         "column out with drop, or make it the label"):
        load_table(tmp_path / "iris.csv")
    for kwargs, message in (({"label": "kind"}, r"names the column 'kind', which the header does not have; its "
                                                 r"columns are 'sepal', 'petal', 'species', 'width'"),
                            ({"columns": [7]}, r"names column 7, but the data have 4 columns"),
                            ({"columns": ["sepal"], "label": "sepal"}, "a label is not a feature")):
        with pytest.raises(ValueError, match=message):
            load_table(tmp_path / "iris.csv", **kwargs)


@pytest.mark.parametrize("text, names, rows", [
    ("0,1,2\n0.5,1.5,2.5\n", ["0", "1", "2"], [[0.5, 1.5, 2.5]]),           # DataFrame.to_csv(index=False)
    (",0,1,2\n0,0.5,1.5,2.5\n1,3,4,5\n", ["0", "1", "2"], [[0.5, 1.5, 2.5], [3, 4, 5]]),   # with its index
    ("Unnamed: 0,a,b\n7,1,2\n", ["a", "b"], [[1, 2]]),                       # an index read and saved again
    ("0,1,2\n3,4,5\n", None, [[0, 1, 2], [3, 4, 5]]),                          # data that count are data
    ("0,1\n1,0\n", None, [[0, 1], [1, 0]]),                                   # two columns: data
])
def test_numeric_headers_and_pandas_index_columns_are_recognised(tmp_path, text, names, rows):
    from vaelib.readers import load_table

    (tmp_path / "p.csv").write_text(text)
    table = load_table(tmp_path / "p.csv")
    assert table.names == names and torch.equal(table.x, torch.tensor(rows, dtype=torch.float32))
    if text.startswith("0,1"):                                                # said outright
        assert load_table(tmp_path / "p.csv", header=False).x.shape[0] == 2
        assert load_table(tmp_path / "p.csv", header=True).names == ["0", "1", "2"][:text.index("\n") // 2 + 1]


def test_npz_data_and_label_arrays(tmp_path):
    from vaelib.readers import load_table

    x, y = np.arange(6.0).reshape(3, 2), np.array([0, 1, 1])
    np.savez(tmp_path / "one.npz", x)
    assert torch.equal(load_table(tmp_path / "one.npz").x, torch.as_tensor(x, dtype=torch.float32))
    np.savez_compressed(tmp_path / "xy.npz", x=x, y=y)
    table = load_table(tmp_path / "xy.npz", label="y")
    assert table.labels.tolist() == [0, 1, 1] and table.x.shape == (3, 2)
    assert load_table(tmp_path / "xy.npz", label=1).labels.tolist() == [1, 3, 5]  # a column of x
    np.savez(tmp_path / "many.npz", a=x, b=x)
    with pytest.raises(ValueError, match=r"holds the arrays \['a', 'b'\]: name the data array x"):
        load_table(tmp_path / "many.npz")
    np.savez(tmp_path / "objects.npz", x=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match="Python objects"):
        load_table(tmp_path / "objects.npz")


# ----------------------------------------------------------------------------------------------
# Bounded: headers checked against the file before anything is allocated


def _idx(shape, body=b"", code=0x08):
    return bytes([0, 0, code, len(shape)]) + struct.pack(f">{len(shape)}I", *shape) + body


def test_headers_that_promise_more_than_the_file_holds_are_refused_before_reading(tmp_path):
    header = np.lib.format.header_data_from_array_1_0(np.zeros((2, 3)))
    header["shape"] = (10**12, 3)                             # 24 TB claimed by a file of about 150 bytes
    with open(tmp_path / "huge.npy", "wb") as f:
        np.lib.format.write_array_header_1_0(f, header)
        f.write(b"\0" * 48)
    with pytest.raises(ValueError, match=r"holds 48 data bytes but its header promises 24000000000000 for shape "
                                         r"\(1000000000000, 3\)"):
        data.load_array(tmp_path / "huge.npy")
    (tmp_path / "long.idx").write_bytes(_idx((2, 2), bytes(1000)))   # a header smaller than the file
    with pytest.raises(ValueError, match="holds 1000 data bytes but its header promises 4"):
        data.load_array(tmp_path / "long.idx")
    (tmp_path / "bomb.idx.gz").write_bytes(gzip.compress(_idx((2, 2), bytes(10**7))))   # inflates past its header
    with pytest.raises(ValueError, match="decompresses to more than the 4 data bytes its header promises"):
        data.load_array(tmp_path / "bomb.idx.gz")
    whole = gzip.compress(_idx((50, 50), bytes(range(250)) * 10))
    (tmp_path / "cut.idx.gz").write_bytes(whole[:len(whole) // 2])
    with pytest.raises(ValueError, match="is not a complete gzip file .* truncated or corrupt"):
        data.load_array(tmp_path / "cut.idx.gz")
    (tmp_path / "short.idx.gz").write_bytes(gzip.compress(_idx((50, 50), bytes(7))))
    with pytest.raises(ValueError, match="holds 7 data bytes but its header promises 2500"):
        data.load_array(tmp_path / "short.idx.gz")


def test_what_a_consistent_header_declares_is_compared_with_the_memory_available(tmp_path, monkeypatch):
    from vaelib import limits

    np.save(tmp_path / "a.npy", np.zeros((100, 10), dtype=np.float32))
    (tmp_path / "a.idx.gz").write_bytes(gzip.compress(_idx((10**6, 10**3))[:12]))  # claims 1 GB, holds nothing
    (tmp_path / "a.csv").write_text("1,2\n" * 100)
    monkeypatch.setattr(limits, "available_memory", lambda: 1000)
    for name, needed in (("a.npy", "4 kB"), ("a.idx.gz", "1 GB"), ("a.csv", "808 bytes")):
        if name == "a.csv":
            monkeypatch.setattr(limits, "available_memory", lambda: 500)
        with pytest.raises(limits.TooLarge, match=rf"needs about {needed} of memory, more than the"):
            data.load_array(tmp_path / name)
    with limits.allow_large():
        assert data.load_array(tmp_path / "a.npy").shape == (100, 10)


def test_a_fifo_or_a_folder_is_refused_before_it_is_read(tmp_path):
    os = pytest.importorskip("os")
    os.mkfifo(tmp_path / "pipe.csv")
    with pytest.raises(ValueError, match=r"pipe.csv is a FIFO \(named pipe\), not a regular file"):
        data.load_array(tmp_path / "pipe.csv")                        # would block for ever if opened
    (tmp_path / "folder.npy").mkdir()
    with pytest.raises(IsADirectoryError, match="folder.npy is a folder"):
        data.load_array(tmp_path / "folder.npy")


def test_a_csv_is_read_in_chunks_with_line_numbers_across_them(tmp_path, monkeypatch):
    from vaelib import readers

    monkeypatch.setattr(readers, "CHUNK_LINES", 7)
    rows = np.random.default_rng(0).normal(size=(50, 3)).astype(np.float32)
    lines = ["a,b,c"] + [",".join(f"{v:.9g}" for v in row) for row in rows]
    (tmp_path / "r.csv").write_text("\n".join(lines) + "\n")
    assert torch.equal(data.load_array(tmp_path / "r.csv"), torch.as_tensor(rows))
    lines[40] = '1,"2",x'
    (tmp_path / "r.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match="line 41, column 3 holds 'x'"):
        data.load_array(tmp_path / "r.csv")
