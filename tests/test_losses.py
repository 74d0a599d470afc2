"""Kernel and count losses: reference semantics for any T, and user-supplied targets."""
import pytest
import torch

from tssl_plugin import count_loss, kernel_loss
from tssl_plugin.loss import desired_spike_pattern, kernel_target


def test_doubly_filtered_default_target_t5():
    target = kernel_target(desired_spike_pattern(5, dtype=torch.float64)[:, None], 3.0)[:, 0]
    torch.testing.assert_close(target, torch.tensor([0, 1 / 9, 7 / 27, 11 / 27, 131 / 243], dtype=torch.float64))
    assert [round(v, 3) for v in target.tolist()] == [0.0, 0.111, 0.259, 0.407, 0.539]


@pytest.mark.parametrize("T, head", [(5, [0, 1, 1, 1, 1]), (7, [0, 1, 1, 1, 1, 0, 1]), (10, [0, 1] * 5),
                                     (13, [0, 1] * 6 + [0]), (1, [0])])
def test_desired_pattern_any_T(T, head):
    assert desired_spike_pattern(T).tolist() == head


@pytest.mark.parametrize("T", [3, 7, 12, 31])
def test_kernel_loss_any_T_and_gradient(T):
    a = torch.rand(T, 4, 3, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 2, 1, 2])
    loss = kernel_loss(a, labels)
    loss.backward()
    d = torch.zeros(T, 4, 3, dtype=torch.float64)
    d[:, torch.arange(4), labels] = desired_spike_pattern(T, dtype=torch.float64)[:, None]
    target = kernel_target(d)
    torch.testing.assert_close(loss, 0.5 * ((a - target) ** 2).sum())
    torch.testing.assert_close(a.grad, (a - target).detach())


def test_kernel_loss_user_desired_pattern_and_full_train():
    T = 6
    a = torch.rand(T, 2, 3, dtype=torch.float64)
    labels = torch.tensor([1, 0])
    pat = torch.tensor([1.0, 0, 1, 0, 1, 0], dtype=torch.float64)
    full = torch.zeros(T, 2, 3, dtype=torch.float64)
    full[:, 0, 1] = pat
    full[:, 1, 0] = pat
    l1 = kernel_loss(a, labels, desired=pat)
    l2 = kernel_loss(a, None, desired=full)
    torch.testing.assert_close(l1, l2)
    assert not torch.allclose(l1, kernel_loss(a, labels))


def test_count_loss_semantics_and_gradient():
    T = 10
    a = torch.zeros(T, 2, 3, dtype=torch.float64)
    a[:, 0, 0] = 0.5  # label neuron, count 5 < desired 8 -> e = -0.3
    a[:, 0, 1] = 0.1  # count 1 < undesired 2 -> clipped to 0
    a[:, 0, 2] = 0.4  # count 4 > undesired 2 -> e = 0.2
    a[:, 1, 1] = 0.9  # label neuron above desired -> clipped
    a.requires_grad_()
    labels = torch.tensor([0, 1])
    loss = count_loss(a, labels, desired_count=8, undesired_count=2)
    loss.backward()
    e = torch.tensor([[-0.3, 0.0, 0.2], [0.0, 0.0, 0.0]], dtype=torch.float64)
    # sample 1: neurons 0 and 2 sit below the undesired count, the label neuron above its target: all clipped
    torch.testing.assert_close(loss, 0.5 * T * (e ** 2).sum())
    torch.testing.assert_close(a.grad, e.expand(T, 2, 3))
