"""``tssl_lif`` as a registered PyTorch operator, and the eager path that runs the same code with less overhead.

Five operators in the ``tssl_plugin`` namespace (``torch.library.custom_op``). Their schemas do not name the
rule's parameters: a parameter object travels as three arguments, its fields in declaration order by their type
(:func:`encode`, :func:`decode`): ``tensors`` (``Tensor?[]``, one per tensor-or-number field, None where a number
is given), ``numbers`` (``float[]``, one per number, bool or tensor-or-number field: 0.0 where a tensor is given,
1.0/0.0 for True/False) and ``choices`` (``str``: the string fields joined by commas; custom operators take no
``str[]``). A new field of
:class:`~tssl_plugin.rule.LIFParameters` or :class:`~tssl_plugin.rule.LIFConstants` therefore changes no schema here.

``torch.ops.tssl_plugin.lif(x, tensors, numbers, choices, warmup, psc_output, impl) -> Tensor``
    the layer's output (PSC or spikes) in ``x``'s dtype, contiguous, for the
    :class:`~tssl_plugin.rule.LIFParameters` the three arguments encode;
``torch.ops.tssl_plugin.lif_backward(grad, x, tensors, numbers, choices, warmup, psc_output, impl)``
    its input gradient, the TSSL-BP rule (the forward saves only ``x``);
``torch.ops.tssl_plugin.trace_backward(grad, u, du, o, tensors, numbers, choices, warmup, impl)``
    the same rule on a forward trace computed elsewhere (the adapters' backward,
    ``tssl_plugin.functional.spikes_with_tssl_grad``), in ``grad``'s dtype, for the
    :class:`~tssl_plugin.rule.LIFConstants` the three arguments encode (the adapters' constants may be tensors: a
    warm-up width in units of a per-neuron threshold);
``torch.ops.tssl_plugin.step_forward(o, s, tensors, numbers, choices, spike_dtype) -> (spike, s_next, flags)``
    one step's forward bookkeeping of the step-wise node (:mod:`tssl_plugin.stepwise`), what it runs under
    ``torch.compile``: the fused step kernel, the flags as bytes, for the encoded constants;
``torch.ops.tssl_plugin.step_backward(G, h, u, du, flags, tensors, numbers, choices, warmup, extra, scale_tensor,
scale, delayed) -> (grad_x, delta)``
    one step of its backward under ``torch.compile``, the fused step kernel.

All have fake (meta) kernels, so ``torch.compile`` traces them into one graph
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

from typing import Any, List, NamedTuple, Optional, Tuple, Type, TypeVar, get_args, get_type_hints

import torch
from torch import Tensor

from . import call, plain_eager
from . import reference as _ref
from ..rule import LIFConstants, LIFParameters

P = TypeVar("P", bound=NamedTuple)
#: a parameter object as the operators take it: ``(tensors, numbers, choices)``.
Encoded = Tuple[List[Optional[Tensor]], List[float], str]


def _field_kinds(cls: type) -> Tuple[Tuple[str, str], ...]:
    """``(field, kind)`` for each field of the NamedTuple ``cls``, in order; kind ``"param"`` (a number or a
    tensor), ``"flag"`` (bool), ``"number"`` (float) or ``"choice"`` (str), from the field's type annotation."""
    kinds = []
    for name, hint in get_type_hints(cls).items():
        if Tensor in get_args(hint):
            kinds.append((name, "param"))
        elif hint in (str, bool, float):
            kinds.append((name, {str: "choice", bool: "flag", float: "number"}[hint]))
        else:
            raise TypeError(f"{cls.__name__}.{name}: the operators take no {hint} field")
    return tuple(kinds)


#: the parameter objects the operators take, and their fields' kinds (read while ``torch.compile`` traces).
_KINDS = {cls: _field_kinds(cls) for cls in (LIFParameters, LIFConstants)}


def encode(p: NamedTuple) -> Encoded:
    """A parameter object (:class:`~tssl_plugin.rule.LIFParameters`, :class:`~tssl_plugin.rule.LIFConstants`) as the
    operators' three arguments ``(tensors, numbers, choices)`` (module docstring)."""
    tensors: List[Optional[Tensor]] = []
    numbers: List[float] = []
    choices: List[str] = []
    for name, kind in _KINDS[type(p)]:
        value = getattr(p, name)
        if kind == "choice":
            choices.append(value)
            continue
        if kind == "param":
            tensors.append(value if isinstance(value, Tensor) else None)
        numbers.append(0.0 if isinstance(value, Tensor) else float(value))
    return tensors, numbers, ",".join(choices)


def decode(cls: Type[P], tensors: List[Optional[Tensor]], numbers: List[float], choices: str) -> P:
    """The inverse of :func:`encode`: the ``cls`` object the operators' three arguments hold."""
    it_t, it_n, it_c = iter(tensors), iter(numbers), iter(choices.split(",") if choices else ())
    values = {}
    for name, kind in _KINDS[cls]:
        if kind == "choice":
            values[name] = next(it_c)
            continue
        tensor = next(it_t) if kind == "param" else None
        number = next(it_n)
        values[name] = tensor if tensor is not None else (bool(number) if kind == "flag" else number)
    return cls(**values)


def _forward(x: Tensor, p: LIFParameters, psc_output: bool, impl: str) -> Tensor:
    return call(impl, x, lambda i: i.forward_op(x, p, psc_output))


def _backward(grad: Tensor, x: Tensor, p: LIFParameters, warmup: bool, psc_output: bool, impl: str) -> Tensor:
    return call(impl, x, lambda i: i.backward_op(grad, x, p, warmup, psc_output))


@torch.library.custom_op("tssl_plugin::lif", mutates_args=())
def lif_op(x: Tensor, tensors: List[Optional[Tensor]], numbers: List[float], choices: str, warmup: bool,
           psc_output: bool, impl: str) -> Tensor:
    """TSSL-BP LIF layer over a whole sequence (see ``tssl_plugin.functional.tssl_lif``)."""
    return _forward(x, decode(LIFParameters, tensors, numbers, choices), psc_output, impl)


@lif_op.register_fake
def _lif_fake(x, tensors, numbers, choices, warmup, psc_output, impl):
    return x.new_empty(x.shape)


@torch.library.custom_op("tssl_plugin::lif_backward", mutates_args=())
def lif_backward_op(grad: Tensor, x: Tensor, tensors: List[Optional[Tensor]], numbers: List[float],
                    choices: str, warmup: bool, psc_output: bool, impl: str) -> Tensor:
    """dL/dx of ``tssl_plugin::lif`` by the TSSL-BP rule, from ``x`` and the upstream gradient."""
    return _backward(grad, x, decode(LIFParameters, tensors, numbers, choices), warmup, psc_output, impl)


@lif_backward_op.register_fake
def _lif_backward_fake(grad, x, tensors, numbers, choices, warmup, psc_output, impl):
    return x.new_empty(x.shape)


def _setup_context(ctx: Any, inputs: Tuple[Any, ...], output: Tensor) -> None:
    x, tensors, *config = inputs
    ctx.save_for_backward(x, *tensors)
    ctx.config = tuple(config)  # (numbers, choices, warmup, psc_output, impl)


def _grad_formula(ctx: Any, grad: Tensor) -> Tuple[Any, ...]:
    x, *tensors = ctx.saved_tensors
    return (lif_backward_op(grad, x, tensors, *ctx.config),) + (None,) * (1 + len(ctx.config))


lif_op.register_autograd(_grad_formula, setup_context=_setup_context)


@torch.library.custom_op("tssl_plugin::trace_backward", mutates_args=())
def trace_backward_op(grad: Tensor, u: Tensor, du: Tensor, o: Tensor, tensors: List[Optional[Tensor]],
                      numbers: List[float], choices: str, warmup: bool, impl: str) -> Tensor:
    """dL/dx by the TSSL-BP rule from a forward trace ``(u, du, o)`` computed elsewhere."""
    k = decode(LIFConstants, tensors, numbers, choices)
    return call(impl, u, lambda i: i.backward_from_trace(grad, u, du, o, k, warmup)).to(grad.dtype).contiguous()


@trace_backward_op.register_fake
def _trace_backward_fake(grad, u, du, o, tensors, numbers, choices, warmup, impl):
    return u.new_empty(u.shape, dtype=grad.dtype)


def trace_backward(grad: Tensor, u: Tensor, du: Tensor, o: Tensor, k: LIFConstants, warmup: bool,
                   impl: str) -> Tensor:
    """``backward_from_trace`` of the implementation ``impl`` selects; through the registered operator
    whenever anything traces (so a compiled backward holds one opaque node, not a graph break)."""
    if plain_eager(u):
        return call(impl, u, lambda i: i.backward_from_trace(grad, u, du, o, k, warmup))
    return trace_backward_op(grad, u, du, o, *encode(k), warmup, impl)


@torch.library.custom_op("tssl_plugin::step_forward", mutates_args=())
def step_forward_op(o: Tensor, s: Tensor, tensors: List[Optional[Tensor]], numbers: List[float], choices: str,
                    spike_dtype: torch.dtype) -> Tuple[Tensor, Tensor, Tensor]:
    """One step's forward bookkeeping of the step-wise node, ``step_forward`` of the ``auto`` implementation:
    ``(spike, s_next, flags)``, the flags always :func:`~tssl_plugin._impl.reference.step_flags`' bytes. The
    spikes ``o`` may be bool or 0/1 in ``s``'s dtype (the fused kernels read either)."""
    k = decode(LIFConstants, tensors, numbers, choices)
    spike, s_next, flags = call("auto", s, lambda i: i.step_forward(o, s, k.inv_tau_s, k.warmup_level, spike_dtype))
    if spike is o:  # the reference's o.to(spike_dtype) of spikes already in that dtype: an operator returns no alias
        spike = spike.clone()
    if flags.dtype != torch.uint8:  # the reference's float flags
        flags = _ref.step_flags(o, s_next, k.warmup_level)
    return spike.contiguous(), s_next.contiguous(), flags.contiguous()


@step_forward_op.register_fake
def _step_forward_fake(o, s, tensors, numbers, choices, spike_dtype):
    return s.new_empty(s.shape, dtype=spike_dtype), s.new_empty(s.shape), s.new_empty(s.shape, dtype=torch.uint8)


def step_forward(o: Tensor, s: Tensor, k: LIFConstants, spike_dtype: torch.dtype) -> Tuple[Tensor, Tensor, Tensor]:
    """The step-wise node's forward bookkeeping under ``torch.compile``: one opaque node running the fused kernel,
    where the reference's operations compile to slow CPU code (inductor stores the boolean masks the backward
    needs element by element; measured in docs/performance.md). The spikes reach it as numbers in ``s``'s dtype:
    a compiled graph writes a bool tensor many times slower than a float one."""
    return step_forward_op(o.to(s.dtype), s, *encode(k), spike_dtype)


@torch.library.custom_op("tssl_plugin::step_backward", mutates_args=())
def step_backward_op(G: Optional[Tensor], h: Optional[Tensor], u: Tensor, du: Tensor, flags: Tensor,
                     tensors: List[Optional[Tensor]], numbers: List[float], choices: str, warmup: bool,
                     extra: Optional[Tensor], scale_tensor: Optional[Tensor], scale: float,
                     delayed: str) -> Tuple[Tensor, Tensor]:
    """One step of the step-wise node's backward, ``step_backward`` of the ``auto`` implementation:
    ``(grad_x, delta)``; ``du`` is the membrane the step started from when ``delayed`` names a delayed reset
    (an :class:`~tssl_plugin._impl.reference.Increment`), the scale ``scale_tensor`` if given, else ``scale``."""
    k = decode(LIFConstants, tensors, numbers, choices)
    inc = _ref.Increment(du, delayed) if delayed else du
    factor = scale if scale_tensor is None else scale_tensor
    grad_x, delta, _ = call("auto", u, lambda i: i.step_backward(G, h, u, inc, flags, k, warmup, extra, factor))
    return grad_x.contiguous(), delta.contiguous()


@step_backward_op.register_fake
def _step_backward_fake(G, h, u, du, flags, tensors, numbers, choices, warmup, extra, scale_tensor, scale, delayed):
    return u.new_empty(u.shape), u.new_empty(u.shape)


def step_backward(G: Optional[Tensor], h: Optional[Tensor], u: Tensor, du: Tensor, flags: Tensor, k: LIFConstants,
                  warmup: bool, extra: Optional[Tensor], scale: Any, delayed: Optional[str]) -> Tuple[Tensor, Tensor]:
    """The step-wise node's backward under ``torch.compile``: one opaque node running the fused kernel (on a
    ``[128, 1000]`` float32 step 192 us, where inductor's code for the reference's operations took 667 us;
    docs/performance.md)."""
    tensor = scale if isinstance(scale, Tensor) else None
    return step_backward_op(G, h, u, du, flags, *encode(k), warmup, extra, tensor,
                            0.0 if tensor is not None else float(scale), delayed or "")


class _EagerLif(torch.autograd.Function):
    """The same forward and backward as the registered op, without the dispatcher (eager mode only)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, p: LIFParameters, warmup: bool, psc_output: bool, impl: str) -> Tensor:
        tensors, numbers, choices = encode(p)
        ctx.save_for_backward(x, *tensors)  # saved: a parameter tensor changed in place before the backward raises
        ctx.config = (numbers, choices, warmup, psc_output, impl)
        return _forward(x, p, psc_output, impl)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tuple[Any, ...]:
        x, *tensors = ctx.saved_tensors
        numbers, choices, warmup, psc_output, impl = ctx.config
        p = decode(LIFParameters, tensors, numbers, choices)
        return (_backward(grad, x, p, warmup, psc_output, impl),) + (None,) * 4


def lif(x: Tensor, p: LIFParameters, warmup: bool, psc_output: bool, impl: str) -> Tensor:
    """Run the op on statically checked parameters (:func:`tssl_plugin.rule.check_parameters`)."""
    if plain_eager(x):
        if torch.is_grad_enabled() and x.requires_grad:
            return _EagerLif.apply(x, p, warmup, psc_output, impl)
        return _forward(x, p, psc_output, impl)
    return lif_op(x, *encode(p), warmup, psc_output, impl)
