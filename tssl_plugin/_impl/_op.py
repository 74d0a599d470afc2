"""``tssl_lif`` as a registered PyTorch operator, and the eager path that runs the same code with less overhead.

Two operators in the ``tssl_plugin`` namespace (``torch.library.custom_op``):

``torch.ops.tssl_plugin.lif(x, tau_m, tau_s, threshold, scalars, reset, warmup, psc_output, impl,
warmup_width=0.2, sensitivity_cap=8, ablation="none", warmup_gate="trace", warmup_floor=True,
crossing="step") -> Tensor``
    the layer's output (PSC or spikes) in ``x``'s dtype, contiguous;
``torch.ops.tssl_plugin.lif_backward(grad, x, tau_m, tau_s, threshold, scalars, reset, warmup, psc_output,
impl, warmup_width=0.2, sensitivity_cap=8, ablation="none", warmup_gate="trace", warmup_floor=True,
crossing="step")``
    its input gradient, the TSSL-BP rule (the forward saves only ``x``);
``torch.ops.tssl_plugin.trace_backward(grad, u, du, o, inv_tau_m, inv_tau_s, threshold, warmup_level, scalars,
reset, warmup, impl, warmup_width, sensitivity_cap=None, ablation="none", warmup_gate="trace",
warmup_floor=True, crossing="step")``
    the same rule on a forward trace computed elsewhere (the adapters' backward,
    ``tssl_plugin.functional.spikes_with_tssl_grad``), in ``grad``'s dtype;
    the four constants, ``warmup_width`` and ``sensitivity_cap`` are tensors or None (then ``scalars[i]``,
    in the order ``inv_tau_m, inv_tau_s, threshold, warmup_level, sensitivity_cap, warmup_width``: the
    adapters' width is in units of a threshold that may be a tensor).

``tau_m``, ``tau_s``, ``threshold`` are per-neuron tensors or None; where
None, the value in ``scalars`` (``[tau_m, tau_s, threshold]``) is used.
``warmup_width``, ``sensitivity_cap``, ``ablation``, ``warmup_gate``, ``warmup_floor`` and ``crossing`` (the warm-up
surrogate's width, the cap of ``c``, a part of the rule switched off, ``tssl_plugin.rule.ABLATIONS``, where the
warm-up applies, ``tssl_plugin.rule.WARMUP_GATES``, whether its sigmoid keeps the reference's floor, and what the
spike-time sensitivity measures, ``tssl_plugin.rule.CROSSINGS``) come last, with the
reference's rule as their defaults, so calls written before they existed keep their meaning. Both
have fake (meta) kernels, so ``torch.compile`` traces them into one graph
without a break and ``torch.export`` keeps them as nodes; ``lif`` has an
autograd formula that calls ``lif_backward``. To the compiler the ops are
opaque: it calls them as they are, the Triton kernels included (a whole
sequence per launch leaves nothing for the compiler to fuse), so the same
checks and fallbacks run compiled and eager.

What is checked where:

* Static checks (types, shapes, dtypes, names, number parameters in range,
  ``requires_grad`` of parameter tensors) run in ``tssl_lif`` itself on every
  call, cost no device work and are traced by ``torch.compile``.
* Values of parameter tensors are checked when a table is packed (once per
  tensor, device and dtype, see ``_params.param_table``; one host sync on a GPU
  then, none on later calls), or on every call by the reference.
* NaN/inf in ``x``: the CPU kernel detects it while reading ``x`` and raises
  at the call; the Triton kernel sets a device flag that the next call on that
  device reads without a host sync and raises (a delayed error); the reference
  checks with one reduction (a host sync on a GPU) at the call.

Eager calls on plain tensors skip the dispatcher: :func:`lif` runs the same
two functions through a ``torch.autograd.Function`` (the registered op's
Python autograd wrapper costs more per call), and takes the registered
operator whenever anything traces (``torch.compile``, ``torch.export``, a
dispatch or function mode, functorch transforms, tensor subclasses).
"""
from __future__ import annotations

from typing import Any, List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from . import call
from .._types import Param
from ..rule import SENSITIVITY_CAP, WARMUP_WIDTH, LIFConstants


def _split(values: Sequence[Param]) -> Tuple[List[Optional[Tensor]], List[float]]:
    """Tensor-or-number parameters as the operators take them: the tensors (None where a number is given)
    and the numbers (0.0 where a tensor is given)."""
    tensors = [v if isinstance(v, Tensor) else None for v in values]
    scalars = [0.0 if isinstance(v, Tensor) else float(v) for v in values]
    return tensors, scalars


def _join(tensors: Sequence[Optional[Tensor]], scalars: Sequence[float]) -> Tuple[Param, ...]:
    """The inverse of :func:`_split`: each tensor, or its number where the tensor is None."""
    return tuple(t if t is not None else float(v) for t, v in zip(tensors, scalars))


def _params(tau_m: Optional[Tensor], tau_s: Optional[Tensor], threshold: Optional[Tensor],
            scalars: List[float], reset: str, warmup_width: float,
            sensitivity_cap: float, ablation: str, warmup_gate: str,
            warmup_floor: bool, crossing: str) -> Tuple[Any, Any, Any, str, float, float, str, str, bool, str]:
    """``(tau_m, tau_s, threshold, reset, warmup_width, sensitivity_cap, ablation, warmup_gate, warmup_floor,
    crossing)``,
    what the implementations' op entry points take."""
    return (*_join((tau_m, tau_s, threshold), scalars), reset, float(warmup_width), float(sensitivity_cap),
            ablation, warmup_gate, bool(warmup_floor), crossing)


def _forward(x: Tensor, tau_m: Optional[Tensor], tau_s: Optional[Tensor], threshold: Optional[Tensor],
             scalars: List[float], reset: str, psc_output: bool, impl: str, warmup_width: float,
             sensitivity_cap: float, ablation: str, warmup_gate: str, warmup_floor: bool,
             crossing: str) -> Tensor:
    params = _params(tau_m, tau_s, threshold, scalars, reset, warmup_width, sensitivity_cap, ablation, warmup_gate,
                     warmup_floor, crossing)
    return call(impl, x, lambda i: i.forward_op(x, params, psc_output))


def _backward(grad: Tensor, x: Tensor, tau_m: Optional[Tensor], tau_s: Optional[Tensor],
              threshold: Optional[Tensor], scalars: List[float], reset: str, warmup: bool, psc_output: bool,
              impl: str, warmup_width: float, sensitivity_cap: float, ablation: str, warmup_gate: str,
              warmup_floor: bool, crossing: str) -> Tensor:
    params = _params(tau_m, tau_s, threshold, scalars, reset, warmup_width, sensitivity_cap, ablation, warmup_gate,
                     warmup_floor, crossing)
    return call(impl, x, lambda i: i.backward_op(grad, x, params, warmup, psc_output))


@torch.library.custom_op("tssl_plugin::lif", mutates_args=())
def lif_op(x: Tensor, tau_m: Optional[Tensor], tau_s: Optional[Tensor], threshold: Optional[Tensor],
           scalars: List[float], reset: str, warmup: bool, psc_output: bool, impl: str,
           warmup_width: float = WARMUP_WIDTH, sensitivity_cap: float = SENSITIVITY_CAP,
           ablation: str = "none", warmup_gate: str = "trace", warmup_floor: bool = True,
           crossing: str = "step") -> Tensor:
    """TSSL-BP LIF layer over a whole sequence (see ``tssl_plugin.functional.tssl_lif``)."""
    return _forward(x, tau_m, tau_s, threshold, scalars, reset, psc_output, impl, warmup_width, sensitivity_cap,
                    ablation, warmup_gate, warmup_floor, crossing)


@lif_op.register_fake
def _lif_fake(x, tau_m, tau_s, threshold, scalars, reset, warmup, psc_output, impl, warmup_width=WARMUP_WIDTH,
              sensitivity_cap=SENSITIVITY_CAP, ablation="none", warmup_gate="trace", warmup_floor=True,
              crossing="step"):
    return x.new_empty(x.shape)


@torch.library.custom_op("tssl_plugin::lif_backward", mutates_args=())
def lif_backward_op(grad: Tensor, x: Tensor, tau_m: Optional[Tensor], tau_s: Optional[Tensor],
                    threshold: Optional[Tensor], scalars: List[float], reset: str, warmup: bool,
                    psc_output: bool, impl: str, warmup_width: float = WARMUP_WIDTH,
                    sensitivity_cap: float = SENSITIVITY_CAP, ablation: str = "none",
                    warmup_gate: str = "trace", warmup_floor: bool = True, crossing: str = "step") -> Tensor:
    """dL/dx of ``tssl_plugin::lif`` by the TSSL-BP rule, from ``x`` and the upstream gradient."""
    return _backward(grad, x, tau_m, tau_s, threshold, scalars, reset, warmup, psc_output, impl, warmup_width,
                     sensitivity_cap, ablation, warmup_gate, warmup_floor, crossing)


@lif_backward_op.register_fake
def _lif_backward_fake(grad, x, tau_m, tau_s, threshold, scalars, reset, warmup, psc_output, impl,
                       warmup_width=WARMUP_WIDTH, sensitivity_cap=SENSITIVITY_CAP, ablation="none",
                       warmup_gate="trace", warmup_floor=True, crossing="step"):
    return x.new_empty(x.shape)


def _setup_context(ctx: Any, inputs: Tuple[Any, ...], output: Tensor) -> None:
    x, tau_m, tau_s, threshold, *config = inputs
    ctx.save_for_backward(x, tau_m, tau_s, threshold)
    ctx.config = tuple(config)  # (scalars, reset, warmup, psc_output, impl, warmup_width, sensitivity_cap, ablation,
    # warmup_gate, warmup_floor, crossing)


def _grad_formula(ctx: Any, grad: Tensor) -> Tuple[Any, ...]:
    x, tau_m, tau_s, threshold = ctx.saved_tensors
    grad_x = lif_backward_op(grad, x, tau_m, tau_s, threshold, *ctx.config)
    return (grad_x,) + (None,) * (3 + len(ctx.config))


lif_op.register_autograd(_grad_formula, setup_context=_setup_context)


@torch.library.custom_op("tssl_plugin::trace_backward", mutates_args=())
def trace_backward_op(grad: Tensor, u: Tensor, du: Tensor, o: Tensor, inv_tau_m: Optional[Tensor],
                      inv_tau_s: Optional[Tensor], threshold: Optional[Tensor], warmup_level: Optional[Tensor],
                      scalars: List[float], reset: str, warmup: bool, impl: str, warmup_width: Optional[Tensor],
                      sensitivity_cap: Optional[Tensor] = None, ablation: str = "none",
                      warmup_gate: str = "trace", warmup_floor: bool = True, crossing: str = "step") -> Tensor:
    """dL/dx by the TSSL-BP rule from a forward trace ``(u, du, o)`` computed elsewhere."""
    inv_tau_m, inv_tau_s, threshold, warmup_level, cap, width = _join(
        (inv_tau_m, inv_tau_s, threshold, warmup_level, sensitivity_cap, warmup_width), scalars)
    k = LIFConstants(inv_tau_m=inv_tau_m, inv_tau_s=inv_tau_s, threshold=threshold, warmup_level=warmup_level,
                     reset=reset, warmup_width=width, sensitivity_cap=cap, ablation=ablation,
                     warmup_gate=warmup_gate, warmup_floor=warmup_floor, crossing=crossing)
    return call(impl, u, lambda i: i.backward_from_trace(grad, u, du, o, k, warmup)).to(grad.dtype).contiguous()


@trace_backward_op.register_fake
def _trace_backward_fake(grad, u, du, o, inv_tau_m, inv_tau_s, threshold, warmup_level, scalars, reset, warmup,
                         impl, warmup_width, sensitivity_cap=None, ablation="none", warmup_gate="trace",
                         warmup_floor=True, crossing="step"):
    return u.new_empty(u.shape, dtype=grad.dtype)


def trace_backward(grad: Tensor, u: Tensor, du: Tensor, o: Tensor, k: LIFConstants, warmup: bool,
                   impl: str) -> Tensor:
    """``backward_from_trace`` of the implementation ``impl`` selects; through the registered operator
    whenever anything traces (so a compiled backward holds one opaque node, not a graph break)."""
    if _plain_eager(u):
        return call(impl, u, lambda i: i.backward_from_trace(grad, u, du, o, k, warmup))
    tensors, scalars = _split((k.inv_tau_m, k.inv_tau_s, k.threshold, k.warmup_level, k.sensitivity_cap,
                               k.warmup_width))
    return trace_backward_op(grad, u, du, o, *tensors[:4], scalars, k.reset, warmup, impl, tensors[5],
                             tensors[4], k.ablation, k.warmup_gate, k.warmup_floor, k.crossing)


class _EagerLif(torch.autograd.Function):
    """The same forward and backward as the registered op, without the dispatcher (eager mode only)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, tau_m: Optional[Tensor], tau_s: Optional[Tensor],
                threshold: Optional[Tensor], scalars: List[float], reset: str, warmup: bool, psc_output: bool,
                impl: str, warmup_width: float, sensitivity_cap: float, ablation: str, warmup_gate: str,
                warmup_floor: bool, crossing: str) -> Tensor:
        out = _forward(x, tau_m, tau_s, threshold, scalars, reset, psc_output, impl, warmup_width, sensitivity_cap,
                       ablation, warmup_gate, warmup_floor, crossing)
        ctx.save_for_backward(x, tau_m, tau_s, threshold)
        ctx.config = (scalars, reset, warmup, psc_output, impl, warmup_width, sensitivity_cap, ablation, warmup_gate,
                      warmup_floor, crossing)
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tuple[Any, ...]:
        x, tau_m, tau_s, threshold = ctx.saved_tensors
        grad_x = _backward(grad, x, tau_m, tau_s, threshold, *ctx.config)
        return (grad_x,) + (None,) * (3 + len(ctx.config))


def _plain_eager(x: Tensor) -> bool:
    """True when nothing traces this call: a plain tensor, no compiler, no mode, no functorch transform."""
    return (
        type(x) is Tensor
        and not torch.compiler.is_compiling()
        and torch._C._len_torch_dispatch_stack() == 0
        and not torch._C._is_torch_function_mode_enabled()
        and not torch._C._functorch.is_functorch_wrapped_tensor(x)
    )


def lif(x: Tensor, tau_m: Param, tau_s: Param, threshold: Param, reset: str, warmup: bool, psc_output: bool,
        impl: str, warmup_width: float = WARMUP_WIDTH, sensitivity_cap: float = SENSITIVITY_CAP,
        ablation: str = "none", warmup_gate: str = "trace", warmup_floor: bool = True,
        crossing: str = "step") -> Tensor:
    """Run the op on statically checked arguments (numbers or tensors for the parameters)."""
    tensors, scalars = _split((tau_m, tau_s, threshold))
    if _plain_eager(x):
        if torch.is_grad_enabled() and x.requires_grad:
            return _EagerLif.apply(x, *tensors, scalars, reset, warmup, psc_output, impl, warmup_width,
                                   sensitivity_cap, ablation, warmup_gate, warmup_floor, crossing)
        return _forward(x, *tensors, scalars, reset, psc_output, impl, warmup_width, sensitivity_cap, ablation,
                        warmup_gate, warmup_floor, crossing)
    return lif_op(x, *tensors, scalars, reset, warmup, psc_output, impl, warmup_width, sensitivity_cap, ablation,
                  warmup_gate, warmup_floor, crossing)
