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
    du: Tensor  # increment of the step from the membrane after every reset
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
    ``d mem/d beta``. The values are the same either way.
    """
    with torch.set_grad_enabled(membrane_grad and torch.is_grad_enabled()):
        reset = (mem - threshold > 0).float()  # = spike_grad(mem - threshold).clone().detach()
        b = beta.clamp(0, 1)
        if mode == "subtract":
            v = mem
            u = b * mem + x - reset * threshold
            base = mem - reset * threshold  # the membrane after snnTorch's (delayed) subtraction
        elif mode == "zero":
            v = (1 - reset) * mem
            u = b * v + x
            base = v
        else:
            v = mem
            u = b * mem + x
            base = v
        o = u - threshold > 0
        out = u
        if not reset_delay:
            spk = o.float() * graded_spikes_factor
            do_reset = spk / graded_spikes_factor - reset
            if reset_val == "subtract":
                out = u - do_reset * threshold
            elif reset_val == "zero":
                out = u - do_reset * u
        return StepValues(o, reset, u, u - base, v, out)
