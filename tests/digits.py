"""Test helper (not a test module): scikit-learn's bundled digits, split the way the training tests use it."""
import torch


def digits_split():
    """``(X, y, train, test)``: the 1797 8x8 digits as float32 in [0, 1] (``[N, 64]``), labels, and a seeded
    permutation split into 1400 training and 397 test indices."""
    from sklearn.datasets import load_digits

    d = load_digits()
    X = torch.tensor(d.data, dtype=torch.float32) / 16
    y = torch.tensor(d.target)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    return X, y, perm[:1400], perm[1400:]
