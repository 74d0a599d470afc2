r"""TSSL-BP losses on the output layer's post-synaptic current ``a_out: [T, N, C]``.

Kernel loss (MNIST, Fashion-MNIST, CIFAR-10 in the paper)::

    L = 1/2 * sum_{n, c, t} (a_out[t, n, c] - target[t, n, c])^2
    target = psp(psp(d))            # desired spike train d, filtered twice

Count loss (N-MNIST in the paper), with ``count = sum_t a_out[t]`` and
``e = (count - c_target) / T`` clipped to 0 where the label neuron is above
its target or another neuron below its own::

    L = 1/2 * sum_{n, c, t} e^2     (e repeated over T; dL/da_out[t] = e)
"""
from __future__ import annotations

from typing import Optional, Union

import torch
from torch import Tensor

from ._validation import check_sequence
from .functional import Param, psp

__all__ = ["desired_spike_pattern", "desired_spikes", "kernel_target", "kernel_loss", "count_loss"]


def desired_spike_pattern(n_steps: int, *, dtype: torch.dtype = torch.float32, device=None) -> Tensor:
    """The reference's desired train for the label neuron, for any ``n_steps >= 1``.

    ``[0, 1, 1, 1, 1]`` tiled for T < 10 and ``[0, 1]`` tiled for T >= 10,
    truncated to T (the reference itself only handles multiples of 5 or 10).
    """
    if not isinstance(n_steps, int) or n_steps < 1:
        raise ValueError(f"n_steps must be a positive int, got {n_steps!r}")
    unit = [0.0, 1.0, 1.0, 1.0, 1.0] if n_steps < 10 else [0.0, 1.0]
    reps = -(-n_steps // len(unit))
    return torch.tensor(unit * reps, dtype=dtype, device=device)[:n_steps]


def _check_labels(labels: object, n: int, n_class: int) -> Tensor:
    if not isinstance(labels, Tensor):
        raise TypeError(f"labels must be a torch.Tensor of class indices, got {type(labels).__name__}")
    if labels.dtype in (torch.bool,) or labels.is_floating_point() or labels.is_complex():
        raise TypeError(f"labels must be an integer tensor of class indices, got {labels.dtype}")
    if labels.shape != (n,):
        raise ValueError(f"labels has shape {tuple(labels.shape)}; expected ({n},) to match the batch")
    if n and (labels.min() < 0 or labels.max() >= n_class):
        raise ValueError(f"labels must lie in [0, {n_class}); got range [{int(labels.min())}, {int(labels.max())}]")
    return labels


def _check_output(output_psc: Tensor) -> Tensor:
    check_sequence(output_psc, "output_psc")
    if output_psc.dim() != 3:
        raise ValueError(
            f"output_psc has shape {tuple(output_psc.shape)}; expected [T, N, n_class] (time-first)"
        )
    return output_psc


def desired_spikes(labels: Tensor, n_class: int, pattern: Tensor) -> Tensor:
    """Desired trains ``[T, N, n_class]``: ``pattern`` (shape ``[T]``) on each label neuron, 0 elsewhere."""
    onehot = torch.nn.functional.one_hot(labels, n_class).to(pattern.dtype)
    return pattern[:, None, None] * onehot[None]


def kernel_target(desired: Tensor, tau_s: Param = 3.0) -> Tensor:
    """Target PSC of a desired spike train ``[T, ...]``: ``psp(psp(desired))``, as the reference."""
    return psp(psp(desired, tau_s), tau_s)


def kernel_loss(
    output_psc: Tensor,
    labels: Optional[Tensor],
    *,
    tau_s: Param = 3.0,
    desired: Optional[Tensor] = None,
) -> Tensor:
    """Kernel loss ``1/2 sum (a_out - psp(psp(d)))^2`` (summed over batch, class and time).

    Args:
        output_psc: output layer PSC ``[T, N, n_class]``.
        labels: class indices ``[N]`` (int). May be None only when ``desired`` is a full ``[T, N, n_class]`` train.
        tau_s: the PSC time constant of the filter.
        desired: the desired spike train. None: the reference pattern
            (:func:`desired_spike_pattern`) on the label neuron. A ``[T]``
            tensor: that pattern on the label neuron, silence elsewhere. A
            ``[T, N, n_class]`` tensor: every neuron's desired train.
            Either way it is filtered twice, as in the reference.
    """
    _check_output(output_psc)
    T, N, C = output_psc.shape
    if desired is None or desired.dim() == 1:
        if desired is None:
            desired = desired_spike_pattern(T, dtype=output_psc.dtype, device=output_psc.device)
        elif desired.shape[0] != T:
            raise ValueError(f"desired pattern has {desired.shape[0]} steps but output_psc has T={T}")
        labels = _check_labels(labels, N, C)
        d = desired_spikes(labels, C, desired.to(output_psc))
    else:
        if desired.shape != output_psc.shape:
            raise ValueError(
                f"desired has shape {tuple(desired.shape)}; expected [T] or the output shape {tuple(output_psc.shape)}"
            )
        if labels is not None:
            _check_labels(labels, N, C)
        d = desired.to(output_psc)
    check_sequence(d, "desired")
    target = kernel_target(d, tau_s)
    return 0.5 * ((output_psc - target) ** 2).sum()


def count_loss(
    output_psc: Tensor,
    labels: Tensor,
    *,
    desired_count: Union[int, float],
    undesired_count: Union[int, float],
) -> Tensor:
    """Count loss with the reference's one-sided error; ``dL/da_out[t] = e`` for every t.

    ``e = (sum_t a_out[t] - c) / T`` with ``c = desired_count`` on the label
    neuron and ``undesired_count`` elsewhere; ``e = 0`` where the label neuron
    exceeds its target or another neuron stays below its own.
    Returns ``1/2 * T * sum_{n,c} e^2`` (e repeated over the T steps).
    """
    _check_output(output_psc)
    T, N, C = output_psc.shape
    labels = _check_labels(labels, N, C)
    onehot = torch.nn.functional.one_hot(labels, C).to(torch.bool)
    target = torch.where(
        onehot,
        torch.as_tensor(float(desired_count), dtype=output_psc.dtype, device=output_psc.device),
        torch.as_tensor(float(undesired_count), dtype=output_psc.dtype, device=output_psc.device),
    )
    e = (output_psc.sum(0) - target) / T
    keep = torch.where(onehot, e <= 0, e >= 0)
    e = torch.where(keep, e, torch.zeros_like(e))
    return 0.5 * T * (e * e).sum()
