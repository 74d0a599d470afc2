"""snnTorch ``Leaky``'s forward arithmetic, op for op, and the TSSL-BP quantities it implies.

snnTorch 1.0 (``snntorch/_neurons/leaky.py``) computes one step from the
carried membrane ``mem`` and the input current ``x`` as::

    r   = float(mem - theta > 0)                       # delayed reset signal (detached)
    sub:  u = beta.clamp(0,1) * mem + x - r * theta    # reset_mechanism="subtract"
    zero: v = (1 - r) * mem;  u = beta.clamp(0,1) * v + x
    none: u = beta.clamp(0,1) * mem + x
    o   = (u - theta > 0)                              # spike, float32
    reset_delay=True:  mem' = u
    reset_delay=False: mem' = u - (o - r) * theta      (sub)
                       mem' = u - (o - r) * u          (zero)

:func:`leaky_step` repeats exactly these operations (so spikes and membranes
are bit-identical) and also returns what the TSSL-BP backward needs: ``u``
(the membrane the spike fired on; snnTorch resets to 0, so it is already
relative to the reset value), ``du`` (the increment over the step from the
membrane after every reset, as the core measures it: ``u - v`` for ``zero`` and
``none``, ``u - (mem - r theta)`` for ``subtract``, so ``du = x - (1 - beta) mem``
there) and ``o`` (bool). Measured from ``mem`` itself, the increment of the
step right after a spike would include the subtraction ``-theta`` and be
negative at many spikes, which zeroes their spike-time sensitivity ``1/du``.

In TSSL-BP terms (core ``reset=`` names, ``1/tau_m = 1 - beta``):

* ``zero``  -> ``"zero"`` (the paper's rule), either ``reset_delay``;
* ``subtract``, ``reset_delay=True`` -> ``"subtract_after_leak"``
  (``u[t+1] = beta u[t] + x[t+1] - theta o[t]``);
* ``subtract``, ``reset_delay=False`` -> ``"subtract"``
  (``u[t+1] = beta (u[t] - theta o[t]) + x[t+1]``);
* ``none`` -> ``"none"``.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import torch
from torch import Tensor

from tssl_plugin.stepwise import delayed_base


#: snnTorch's ``state_function`` method names -> our mode names.
STATE_FUNCTIONS = {"_base_sub": "subtract", "_base_zero": "zero", "_base_int": "none"}
#: snnTorch's ``reset_mechanism_val`` codes.
RESET_VALS = {0: "subtract", 1: "zero", 2: "none"}


def core_reset(mode: str, reset_delay: bool, reset_val: Optional[str] = None) -> str:
    """The core op's ``reset=`` name for an snnTorch Leaky.

    ``mode`` is the state function snnTorch fixed at construction, ``reset_val``
    the current ``reset_mechanism`` (which a user may change after construction;
    snnTorch then keeps the state function and applies the new mechanism only in
    the ``reset_delay=False`` correction). With ``reset_delay=True`` the state
    function alone resets. With ``reset_delay=False`` the correction resets
    immediately: ``"zero"`` and ``"subtract"`` by ``reset_val``; with
    ``reset_val="none"`` there is no correction and the state function's delayed
    reset acts as with ``reset_delay=True``.
    """
    if not reset_delay and reset_val in ("zero", "subtract"):
        return reset_val
    if mode == "subtract":
        return "subtract_after_leak"
    return mode


class StepValues(NamedTuple):
    """One step's forward values; only ``mem`` (and ``u``, ``v``) may carry autograd history."""

    o: Tensor  # spikes, bool
    reset: Tensor  # snnTorch's delayed reset signal r = [mem - theta > 0] (float32), kept as ``layer.reset``
    u: Tensor  # membrane the spike fired on (snnTorch's mem after the state function)
    du: Optional[Tensor]  # increment of the step from the membrane after every reset (None: not asked for)
    v: Tensor  # membrane the leak acted on (after the delayed zero-reset)
    mem: Tensor  # membrane snnTorch returns and keeps


def leaky_step(
    x: Tensor,
    mem: Tensor,
    beta: Tensor,
    threshold: Tensor,
    graded_spikes_factor: Tensor,
    mode: str,
    reset_delay: bool,
    reset_val: Optional[str],
    membrane_grad: bool = False,
    need_du: bool = True,
) -> StepValues:
    """One step of snnTorch ``Leaky.forward`` (without inhibition or state quantisation).

    ``mode`` selects the state function (snnTorch fixes it at construction),
    ``reset_val`` the branch of the ``reset_delay=False`` correction (snnTorch
    reads it from the ``reset_mechanism_val`` buffer; only used when
    ``reset_delay`` is False). With ``membrane_grad`` the arithmetic runs under
    autograd, so the returned ``mem`` carries snnTorch's own membrane gradient:
    the reset signals and spikes are comparisons (no gradient, as snnTorch
    detaches its reset), so ``d mem/dx = 1``, ``d mem/d mem_prev = beta``
    (``(1 - r) beta`` for ``zero``), and a learnable ``beta`` gets
    ``d mem/d beta``. The values are the same either way. ``du`` is measured from ``delayed_base`` of ``mem``
    (``tssl_plugin.stepwise.delayed_base``, the core's, which the step node's backward reruns on an
    ``Increment``); ``need_du=False``: ``du`` is not computed (None; the caller gives the node ``Increment(mem,
    mode)`` instead).
    """
    with torch.set_grad_enabled(membrane_grad and torch.is_grad_enabled()):
        reset = (mem - threshold > 0).float()  # = spike_grad(mem - threshold).clone().detach()
        b = beta.clamp(0, 1)
        if mode == "subtract":
            v = mem
            u = b * mem + x - reset * threshold
        elif mode == "zero":
            v = delayed_base(mem, reset, threshold, mode)
            u = b * v + x
        else:
            v = mem
            u = b * mem + x
        base = None  # what du is measured from: v itself, but for the subtraction
        if need_du:
            base = delayed_base(mem, reset, threshold, mode) if mode == "subtract" else v
        return _fire(u, base, v, reset, threshold, graded_spikes_factor, reset_delay, reset_val)


def _fire(u: Tensor, base: Tensor, v: Tensor, reset: Tensor, threshold: Tensor, graded_spikes_factor: Tensor,
          reset_delay: bool, reset_val: Optional[str]) -> StepValues:
    """The end of a step, shared by Leaky and Synaptic: fire on ``u``, then the ``reset_delay=False`` correction.

    Runs in the caller's grad mode (the spikes are comparisons: no gradient). ``base`` None: ``du`` is None."""
    o = u - threshold > 0
    out = u
    if not reset_delay:
        spk = o.float() * graded_spikes_factor
        do_reset = spk / graded_spikes_factor - reset
        if reset_val == "subtract":
            out = u - do_reset * threshold
        elif reset_val == "zero":
            out = u - do_reset * u
    return StepValues(o, reset, u, None if base is None else u - base, v, out)


def synaptic_step(
    syn: Tensor,
    mem: Tensor,
    beta: Tensor,
    threshold: Tensor,
    graded_spikes_factor: Tensor,
    mode: str,
    reset_delay: bool,
    reset_val: Optional[str],
    membrane_grad: bool = False,
    need_du: bool = True,
) -> StepValues:
    """The membrane part of one step of snnTorch ``Synaptic.forward``, given the step's synaptic current.

    snnTorch 1.0 (``snntorch/_neurons/synaptic.py``) first updates the synaptic
    current ``syn = alpha.clamp(0,1) * syn_prev + x`` (the caller does that, with
    autograd) and then the membrane with ``syn`` as its input current::

        sub:  u = beta.clamp(0,1) * mem + syn - r * theta     (Leaky's, with x = syn)
        none: u = beta.clamp(0,1) * mem + syn                 (Leaky's, with x = syn)
        zero: m = beta.clamp(0,1) * mem + syn;  u = m - m * r

    followed by Leaky's firing and ``reset_delay=False`` correction. Only the
    zero reset differs from Leaky's: a delayed reset (``r = 1``) zeroes the whole
    new membrane, this step's input included (Leaky zeroes the old membrane and
    then adds the input). ``r`` can be 1 only with ``reset_delay=True`` (refused
    by the adapter: not the paper's reset) or at a sequence start from a membrane
    above threshold passed in by the caller. ``membrane_grad``, ``need_du``: as for :func:`leaky_step`.
    """
    if mode != "zero":
        return leaky_step(syn, mem, beta, threshold, graded_spikes_factor, mode, reset_delay, reset_val,
                          membrane_grad, need_du)
    with torch.set_grad_enabled(membrane_grad and torch.is_grad_enabled()):  # as leaky_step
        reset = (mem - threshold > 0).float()  # = spike_grad(mem - threshold).clone().detach()
        m = beta.clamp(0, 1) * mem + syn
        u = m - m * reset
        # the membrane the leak acted on (u = beta v + syn where r = 0)
        v = delayed_base(mem, reset, threshold, mode)
        return _fire(u, v if need_du else None, v, reset, threshold, graded_spikes_factor, reset_delay, reset_val)


def recurrent_step(
    x: Tensor,
    rec: Tensor,
    mem: Tensor,
    beta: Tensor,
    threshold: Tensor,
    graded_spikes_factor: Tensor,
    mode: str,
    reset_delay: bool,
    reset_val: Optional[str],
    membrane_grad: bool = False,
    need_du: bool = True,
) -> StepValues:
    """One step of snnTorch ``RLeaky.forward`` given the recurrent current ``rec = V(spk[t-1])``.

    snnTorch 1.0 (``snntorch/_neurons/rleaky.py``) adds the recurrent current after the input::

        base = beta.clamp(0,1) * mem + x + rec
        sub:  u = base - r * theta
        zero: u = base - r * base          (the whole new membrane, as Synaptic's zero reset)
        none: u = base

    then Leaky's firing and ``reset_delay=False`` correction. The TSSL-BP input
    current is ``x + rec``; ``du`` is measured as in :func:`leaky_step`.
    ``membrane_grad``, ``need_du``: as for :func:`leaky_step`.
    """
    with torch.set_grad_enabled(membrane_grad and torch.is_grad_enabled()):
        reset = (mem - threshold > 0).float()  # = spike_grad(mem - threshold).clone().detach()
        base = beta.clamp(0, 1) * mem + x + rec
        if mode == "subtract":
            return _fire(base - reset * threshold, delayed_base(mem, reset, threshold, mode) if need_du else None,
                         mem, reset, threshold,
                         graded_spikes_factor, reset_delay, reset_val)
        if mode == "zero":
            v = delayed_base(mem, reset, threshold, mode)
            return _fire(base - reset * base, v if need_du else None, v, reset, threshold, graded_spikes_factor,
                         reset_delay, reset_val)
        return _fire(base, mem if need_du else None, mem, reset, threshold, graded_spikes_factor, reset_delay,
                     reset_val)


def lapicque_current(x: Tensor, R: Tensor, C: Tensor, time_step: Tensor) -> Tensor:
    """snnTorch ``Lapicque``'s input term ``x R / (R C) dt``, op for op (the TSSL-BP input current)."""
    return x * R * (1 / (R * C)) * time_step


def lapicque_step(
    current: Tensor,
    mem: Tensor,
    R: Tensor,
    C: Tensor,
    time_step: Tensor,
    threshold: Tensor,
    graded_spikes_factor: Tensor,
    mode: str,
    membrane_grad: bool = False,
    need_du: bool = True,
) -> StepValues:
    """One step of snnTorch ``Lapicque.forward`` (RC form of Leaky) given ``current = lapicque_current(x, ...)``.

    snnTorch 1.0 (``snntorch/_neurons/lapicque.py``) resets one step late only::

        base = x R / (R C) dt + (1 - dt / (R C)) * mem
        sub:  u = base - r * theta
        none: u = base

    i.e. Leaky with ``beta = 1 - dt/(RC)`` (so ``1/tau_m = dt/(RC)``) and input
    current ``x dt / C``. (Its zero reset, ``base - r * base``, is refused by the
    adapter: a delayed reset that discards a step's input.) ``du`` and ``need_du`` as in :func:`leaky_step`.
    """
    with torch.set_grad_enabled(membrane_grad and torch.is_grad_enabled()):
        reset = (mem - threshold > 0).float()
        base = current + (1 - (time_step / (R * C))) * mem
        if mode == "subtract":
            return _fire(base - reset * threshold, delayed_base(mem, reset, threshold, mode) if need_du else None,
                         mem, reset, threshold, graded_spikes_factor, True, None)
        return _fire(base, mem if need_du else None, mem, reset, threshold, graded_spikes_factor, True, None)
