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


# ----------------------------------------------------------------- loss objects for host code
def _record(T=6, N=4, C=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(T, N, C, generator=g) > 0.6).double().requires_grad_()


def test_kernel_loss_object_filters_the_spike_record():
    from tssl_plugin import psp
    from tssl_plugin.loss import KernelLoss

    spk, y = _record(), torch.tensor([0, 2, 1, 2])
    loss = KernelLoss()(spk, y)
    torch.testing.assert_close(loss, kernel_loss(psp(spk), y), rtol=0, atol=0)
    torch.testing.assert_close(KernelLoss(reduction="mean")(spk, y), loss / 4)
    torch.testing.assert_close(KernelLoss(tau_s=5.0, desired=[0, 1, 0, 1, 0, 1])(spk, y),
                               kernel_loss(psp(spk, 5.0), y, tau_s=5.0, desired=torch.tensor([0., 1, 0, 1, 0, 1])))
    (g,) = torch.autograd.grad(loss, spk)
    assert g.abs().sum() > 0


def test_count_loss_object_defaults_to_half_and_a_tenth_of_T():
    from tssl_plugin import psp
    from tssl_plugin.loss import CountLoss

    spk, y = _record(T=10), torch.tensor([1, 0, 2, 2])
    torch.testing.assert_close(CountLoss()(spk, y), count_loss(psp(spk), y, desired_count=5, undesired_count=1))
    torch.testing.assert_close(CountLoss(8, 2)(spk, y), count_loss(psp(spk), y, desired_count=8, undesired_count=2))
    torch.testing.assert_close(CountLoss(reduction="mean")(spk, y), CountLoss()(spk, y) / 4)


def test_loss_objects_refuse_bad_records_clearly():
    from tssl_plugin.loss import CountLoss, KernelLoss

    y = torch.tensor([0, 1])
    with pytest.raises(TypeError, match="torch.stack"):
        KernelLoss()([torch.zeros(2, 3)] * 4, y)
    with pytest.raises(ValueError, match=r"expected \[T, N, C\]"):
        CountLoss()(torch.zeros(5, 3), y)
    with pytest.raises(ValueError, match="reduction"):
        KernelLoss(reduction="avg")
    with pytest.raises(TypeError, match="desired"):
        kernel_loss(torch.rand(5, 2, 3), y, desired="01111")


def test_kernel_loss_accepts_a_list_pattern():
    a, y = torch.rand(5, 2, 3, dtype=torch.float64), torch.tensor([2, 0])
    torch.testing.assert_close(kernel_loss(a, y, desired=[0, 1, 1, 1, 1]), kernel_loss(a, y))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("T", [1, 5, 12])
def test_kernel_loss_target_on_label_neurons_equals_filtering_the_whole_train(dtype, T):
    """The loss filters the [T] pattern once (cached for the reference pattern) and places it on the label
    neurons; psp is linear and per neuron, so this equals filtering the full [T, N, C] train bit for bit."""
    g = torch.Generator().manual_seed(T)
    a = torch.rand(T, 6, 4, generator=g, dtype=dtype)
    y = torch.tensor([0, 3, 1, 1, 2, 3])
    for pattern in (desired_spike_pattern(T, dtype=dtype), torch.rand(T, generator=g, dtype=dtype)):
        d = torch.zeros(T, 6, 4, dtype=dtype)
        d[:, torch.arange(6), y] = pattern[:, None]
        full = 0.5 * ((a - kernel_target(d)) ** 2).sum()
        given = None if pattern is not None and torch.equal(pattern, desired_spike_pattern(T, dtype=dtype)) else pattern
        assert torch.equal(kernel_loss(a, y, desired=given), full)
        assert torch.equal(kernel_loss(a, y, desired=given), full)  # the second call uses the cached target
