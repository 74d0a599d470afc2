r"""TSSL-BP losses on the output layer's post-synaptic current ``a_out: [T, N, C]``.

Kernel loss (MNIST, Fashion-MNIST, CIFAR-10 in the paper)::

    L = 1/2 * sum_{n, c, t} (a_out[t, n, c] - target[t, n, c])^2
    target = psp(psp(d))            # desired spike train d, filtered twice

Count loss (N-MNIST in the paper), with ``count = sum_t a_out[t]`` and
``e = (count - c_target) / T`` clipped to 0 where the label neuron is above
its target or another neuron below its own::

    L = 1/2 * sum_{n, c, t} e^2     (e repeated over T; dL/da_out[t] = e)

For host code (an snnTorch step loop, a SpikingJelly multi-step model), the
loss objects :class:`KernelLoss` and :class:`CountLoss` take the output spike
record ``[T, N, C]`` and the class indices, as ``snntorch.functional``'s loss
objects do, and filter the spikes into the PSC themselves::

    loss_fn = KernelLoss()                 # tau_s=3.0, the reference's desired train
    loss = loss_fn(spk_rec, targets)       # spk_rec: [T, N, C] spikes, targets: [N] class indices
"""
from __future__ import annotations

import functools
from typing import Optional, Sequence, Union

import torch
from torch import Tensor, nn

from ._validation import check_sequence, values_readable
from .functional import Param, psp

__all__ = ["desired_spike_pattern", "desired_spikes", "kernel_target", "kernel_loss", "count_loss",
           "KernelLoss", "CountLoss"]


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
    if n and values_readable() and (labels.min() < 0 or labels.max() >= n_class):
        raise ValueError(f"labels must lie in [0, {n_class}); got range [{int(labels.min())}, {int(labels.max())}]")
    return labels


def _check_output(output_psc: Tensor) -> Tensor:
    check_sequence(output_psc, "output_psc")
    if output_psc.dim() != 3:
        raise ValueError(
            f"output_psc has shape {tuple(output_psc.shape)}; expected [T, N, n_class] (time-first)"
        )
    return output_psc


def _as_desired(desired: object, like: Tensor) -> Optional[Tensor]:
    """``desired`` as a tensor in ``like``'s dtype and device (a list or tuple of numbers is accepted)."""
    if desired is None or isinstance(desired, Tensor):
        return desired
    if isinstance(desired, (list, tuple)):
        try:
            return torch.tensor(desired, dtype=like.dtype, device=like.device)
        except (TypeError, ValueError) as err:
            raise TypeError(f"desired must be a tensor or a list of numbers ([T] pattern); {err}") from None
    raise TypeError(f"desired must be None, a tensor or a list of numbers, got {type(desired).__name__}")


def desired_spikes(labels: Tensor, n_class: int, pattern: Tensor) -> Tensor:
    """Desired trains ``[T, N, n_class]``: ``pattern`` (shape ``[T]``) on each label neuron, 0 elsewhere."""
    onehot = torch.nn.functional.one_hot(labels, n_class).to(pattern.dtype)
    return pattern[:, None, None] * onehot[None]


def _compute_reference_target(n_steps: int, tau_s: float, dtype: torch.dtype, device: torch.device) -> Tensor:
    pattern = desired_spike_pattern(n_steps, dtype=dtype, device=device)
    return kernel_target(pattern[:, None], tau_s)[:, 0]


_cached_reference_target = functools.lru_cache(maxsize=64)(_compute_reference_target)


def _reference_target(n_steps: int, tau_s: float, dtype: torch.dtype, device: torch.device) -> Tensor:
    """``psp(psp(d))`` of the reference pattern ``d`` (:func:`desired_spike_pattern`), shape ``[T]``.

    Cached in eager mode; computed in place while ``torch.compile`` traces (Dynamo cannot honour a
    cache and warns about tracing through one; the compiled graph holds the few ops once anyway).
    """
    if torch.compiler.is_compiling():
        return _compute_reference_target(n_steps, tau_s, dtype, device)
    return _cached_reference_target(n_steps, tau_s, dtype, device)


def kernel_target(desired: Tensor, tau_s: Param = 3.0) -> Tensor:
    """Target PSC of a desired spike train ``[T, ...]``: ``psp(psp(desired))``, as the reference."""
    return psp(psp(desired, tau_s), tau_s)


def kernel_loss(
    output_psc: Tensor,
    labels: Optional[Tensor],
    *,
    tau_s: Param = 3.0,
    desired: Union[None, Tensor, Sequence[float]] = None,
) -> Tensor:
    """Kernel loss ``1/2 sum (a_out - psp(psp(d)))^2`` (summed over batch, class and time).

    Args:
        output_psc: output layer PSC ``[T, N, n_class]``.
        labels: class indices ``[N]`` (int). May be None only when ``desired`` is a full ``[T, N, n_class]`` train.
        tau_s: the PSC time constant of the filter.
        desired: the desired spike train. None: the reference pattern
            (:func:`desired_spike_pattern`) on the label neuron. A ``[T]``
            tensor or list: that pattern on the label neuron, silence elsewhere. A
            ``[T, N, n_class]`` tensor: every neuron's desired train.
            Either way it is filtered twice, as in the reference.
    """
    _check_output(output_psc)
    T, N, C = output_psc.shape
    desired = _as_desired(desired, output_psc)
    if desired is None or desired.dim() == 1:
        if desired is not None and desired.shape[0] != T:
            raise ValueError(f"desired pattern has {desired.shape[0]} steps but output_psc has T={T}")
        labels = _check_labels(labels, N, C)
        if not isinstance(tau_s, Tensor):
            # psp is linear and acts on each neuron alone: the target is the filtered [T] pattern on the
            # label neurons (bit-identical to filtering the whole [T, N, C] train); the reference pattern's
            # target depends only on T, tau_s, dtype and device and is computed once.
            if desired is None:
                filtered = _reference_target(T, float(tau_s), output_psc.dtype, output_psc.device)
            else:
                pattern = desired.to(output_psc)
                check_sequence(pattern[:, None], "desired")
                filtered = kernel_target(pattern[:, None], tau_s)[:, 0]
            target = desired_spikes(labels, C, filtered)
            return 0.5 * ((output_psc - target) ** 2).sum()
        if desired is None:
            desired = desired_spike_pattern(T, dtype=output_psc.dtype, device=output_psc.device)
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


def _spikes_to_psc(spk_rec: object, tau_s: Param, name: str) -> Tensor:
    """The PSC ``psp(spk_rec)`` of an output spike record ``[T, N, C]`` (checked)."""
    from .functional import psp

    if isinstance(spk_rec, (list, tuple)):
        raise TypeError(f"{name} expects the spike record as one tensor [T, N, C]; stack the list first "
                        f"(torch.stack(spk_rec))")
    check_sequence(spk_rec, "spk_rec")
    if spk_rec.dim() != 3:
        raise ValueError(f"spk_rec has shape {tuple(spk_rec.shape)}; expected [T, N, C] (time-first, as an "
                         f"snnTorch loop's torch.stack(spk_rec) or a SpikingJelly multi-step output)")
    return psp(spk_rec, tau_s)


class KernelLoss(nn.Module):
    r"""The kernel loss as a loss object: ``loss_fn(spk_rec, targets)`` on output spikes ``[T, N, C]``.

    .. math::

        L = \frac{1}{2} \sum_{n, c, t} \big(\mathrm{psp}(o)[t, n, c] - \mathrm{psp}(\mathrm{psp}(d))[t, n, c]\big)^2

    where ``o`` is the spike record, ``psp`` the PSC filter with ``tau_s`` and
    ``d`` the desired train (:func:`kernel_loss`). With ``reduction="mean"``
    the sum is divided by the batch size ``N``.

    Args:
        tau_s: PSC time constant of the filter (the neurons' ``tau_s``, 3 by default).
        desired: the desired train, as in :func:`kernel_loss` (``None``: the reference pattern).
        reduction: ``"sum"`` (the paper) or ``"mean"`` (over the batch).

    Example::

        loss_fn = KernelLoss()
        spk_rec = torch.stack(spikes)            # [T, N, C] from an snnTorch step loop
        loss = loss_fn(spk_rec, targets)         # targets: [N] class indices
    """

    def __init__(self, tau_s: Param = 3.0, desired: Union[None, Tensor, Sequence[float]] = None,
                 reduction: str = "sum") -> None:
        super().__init__()
        self.tau_s, self.desired, self.reduction = tau_s, desired, _check_reduction(reduction)

    def forward(self, spk_rec: Tensor, targets: Tensor) -> Tensor:
        a = _spikes_to_psc(spk_rec, self.tau_s, "KernelLoss")
        loss = kernel_loss(a, targets, tau_s=self.tau_s, desired=self.desired)
        return loss / a.shape[1] if self.reduction == "mean" else loss


class CountLoss(nn.Module):
    r"""The count loss as a loss object: ``loss_fn(spk_rec, targets)`` on output spikes ``[T, N, C]``.

    :func:`count_loss` on ``psp(spk_rec)``: the label neuron is asked for at
    least ``desired_count``, every other neuron for at most
    ``undesired_count`` (sums of the PSC over ``T``, about the spike counts).
    Unset counts default to ``T/2`` and ``T/10`` of the record's ``T`` (the
    reference's 15 and 3 at ``T = 30``).

    Example::

        loss_fn = CountLoss()
        loss = loss_fn(net(x_seq), targets)      # a SpikingJelly multi-step model's [T, N, C] output
    """

    def __init__(self, desired_count: Optional[float] = None, undesired_count: Optional[float] = None,
                 tau_s: Param = 3.0, reduction: str = "sum") -> None:
        super().__init__()
        self.desired_count, self.undesired_count = desired_count, undesired_count
        self.tau_s, self.reduction = tau_s, _check_reduction(reduction)

    def forward(self, spk_rec: Tensor, targets: Tensor) -> Tensor:
        a = _spikes_to_psc(spk_rec, self.tau_s, "CountLoss")
        T = a.shape[0]
        hi = T / 2 if self.desired_count is None else self.desired_count
        lo = T / 10 if self.undesired_count is None else self.undesired_count
        loss = count_loss(a, targets, desired_count=hi, undesired_count=lo)
        return loss / a.shape[1] if self.reduction == "mean" else loss


def _check_reduction(reduction: object) -> str:
    if reduction not in ("sum", "mean"):
        raise ValueError(f"unknown reduction {reduction!r}; expected 'sum' (the paper) or 'mean' (over the batch)")
    return reduction  # type: ignore[return-value]
