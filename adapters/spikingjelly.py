"""Switch SpikingJelly models to TSSL-BP gradients: ``convert(model)``.

Supported (exact types): ``neuron.LIFNode`` -> :class:`TSSLLIFNode`,
``neuron.IFNode`` -> :class:`TSSLIFNode`, ``neuron.ParametricLIFNode`` ->
:class:`TSSLParametricLIFNode`, in step modes ``'s'`` and ``'m'``, for
SpikingJelly 2.x and 0.0.0.0.14 (chosen at import). The forward pass is
SpikingJelly's bit for bit; only gradients change. See
:mod:`tssl_plugin.adapters._spikingjelly_common` for the mapping to the core op:

* ``decay_input=True``: input scaled by ``1/tau`` (``tau_m = tau``);
  ``decay_input=False``: ``tau_m = tau``, unscaled input;
* ``IFNode``: no leak (``1/tau_m = 0``);
* ``ParametricLIFNode``: ``1/tau_m = sigmoid(w)``; the learnable leak gets the
  gradient of the leak current (extension, as the snnTorch adapter's ``learn_beta``);
* hard reset to a float ``v_reset``: the paper's rule on the membrane shifted
  by ``v_reset`` (threshold ``v_threshold - v_reset``);
* ``v_reset=None`` (soft reset): the "subtract" extension (not in the paper);
* ``neuron.CUBALIFNode`` -> :class:`TSSLCUBALIFNode` (SpikingJelly 2.x only;
  0.0.0.0.14 has no current-based LIF): the synaptic current ``c`` is a linear
  filter differentiated by autograd, the membrane the core's neuron with input
  ``c``, ``1/tau_m = 1 - v_decay`` and the warm-up trace's ``tau_s = 1/(1 - c_decay)``.
  With ``c_decay = 1 - 1/tau_s`` and weights ``W / tau_s`` it is the paper's network
  (docs/spikingjelly.md).

* ``neuron.SimpleLIFNode`` / ``neuron.SimpleIFNode`` -> :class:`TSSLSimpleLIFNode` /
  :class:`TSSLSimpleIFNode` (SpikingJelly 2.x only; 0.0.0.0.14 has no Simple* nodes): the
  same charge, fire and reset equations as ``LIFNode`` / ``IFNode`` in pure PyTorch; the node's
  own methods run the forward, the mapping is LIFNode's / IFNode's.

A subclass of a supported node converts (to a class deriving from the TSSL-BP
node and the subclass) unless it overrides a part of the forward
(:data:`FORWARD_METHODS`). Every other neuron type is left alone with one
warning giving each one's reason (:data:`NOT_SUPPORTED`: QIF, EIF, Izhikevich,
KLIF, ... refused; the rest "no TSSL-BP version yet"); ``strict=True`` raises.
"""
from __future__ import annotations

import warnings
from typing import Dict, List, Optional, Tuple

from torch import nn

from tssl_plugin._optional import require

require("spikingjelly.activation_based", "spikingjelly")

from spikingjelly.activation_based import functional as _sjf  # noqa: E402
from spikingjelly.activation_based import neuron as _sjn  # noqa: E402

from ._convert import (ADAPTER_WARMUP, ADAPTER_WARMUP_FLOOR, Exclude, check_convert_args,  # noqa: E402
                       checked_convert_options, excluded_ids, nothing_to_convert, original_class, remove_options,
                       set_options, tssl_class_for, watch_firing)
from tssl_plugin.rule import WARMUP_WIDTH, Warmup, check_ablation  # noqa: E402

from ._spikingjelly_common import node_mapping  # noqa: E402

if hasattr(_sjf, "lif_multi_step"):  # SpikingJelly 2.x
    from . import _spikingjelly_v2 as _version
    SPIKINGJELLY_API = "2"
elif hasattr(_sjn.LIFNode, "neuronal_charge_decay_input_reset0"):  # SpikingJelly 0.0.0.0.14
    from . import _spikingjelly_v014 as _version  # type: ignore[no-redef]
    SPIKINGJELLY_API = "0.0.0.0.14"
else:  # pragma: no cover - depends on the installed library
    raise ImportError(
        "this SpikingJelly version is not supported by tssl_plugin.adapters.spikingjelly "
        "(supported: 2.x and 0.0.0.0.14)"
    )

if hasattr(_version, "TSSLSimpleLIFNode"):  # SpikingJelly 2.x (0.0.0.0.14 has no Simple* nodes)
    TSSLSimpleLIFNode = _version.TSSLSimpleLIFNode
    TSSLSimpleIFNode = _version.TSSLSimpleIFNode
TSSLLIFNode = _version.TSSLLIFNode
TSSLIFNode = _version.TSSLIFNode
TSSLParametricLIFNode = _version.TSSLParametricLIFNode
if hasattr(_version, "TSSLCUBALIFNode"):
    TSSLCUBALIFNode = _version.TSSLCUBALIFNode

#: why there is no TSSLCUBALIFNode under SpikingJelly 0.0.0.0.14.
NO_CUBA = ("TSSLCUBALIFNode needs SpikingJelly 2.x: SpikingJelly 0.0.0.0.14 has no current-based LIF node "
           "(CLIFNode/CUBALIFNode arrived in 0.0.0.1.0); upgrade SpikingJelly, or use TSSLLIFNode")


def __getattr__(name: str):
    if name == "TSSLCUBALIFNode":  # only reached when the installed SpikingJelly has none
        raise ImportError(NO_CUBA)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

#: original class -> TSSL-BP class, and back.
_TO_TSSL: Dict[type, type] = dict(_version.ORIGINALS)
_FROM_TSSL: Dict[type, type] = {v: k for k, v in _TO_TSSL.items()}

__all__ = ["TSSLLIFNode", "TSSLIFNode", "TSSLParametricLIFNode", "convert", "revert", "SPIKINGJELLY_API"]
if SPIKINGJELLY_API == "2":
    __all__ += ["TSSLCUBALIFNode", "TSSLSimpleLIFNode", "TSSLSimpleIFNode"]


#: the methods that make up a supported node's forward: a subclass overriding one is refused (the TSSL-BP
#: forward replays the base class's own arithmetic, which would drop the override).
FORWARD_METHODS = ("forward", "single_step_forward", "multi_step_forward", "single_step_functional_forward",
                   "multi_step_functional_forward", "neuronal_charge", "neuronal_fire", "neuronal_reset",
                   "materialize_states")

NOT_YET = "no TSSL-BP version yet"
_LINEAR = "TSSL-BP's rule needs a linear (leaky) charge"

#: why other SpikingJelly neurons have no TSSL-BP version (class name -> one line; 2.x and 0.0.0.0.14 names).
NOT_SUPPORTED = {
    "QIFNode": f"refused: quadratic charge h = v + (x + a0 (v - v_rest)(v - v_c)) / tau; {_LINEAR}",
    "EIFNode": f"refused: exponential charge term delta_T exp((v - theta_rh) / delta_T); {_LINEAR}",
    "IzhikevichNode": f"refused: quadratic charge with a second state (the adaptation current w); {_LINEAR}",
    "AdaptBaseNode": "refused: a second state (the adaptation current w) in the charge",
    "KLIFNode": "refused: it fires on ReLU(k h) with a learnable k, not on the membrane crossing the threshold",
    "TernaryIFNode": "refused: ternary spikes (-1, 0, +1); TSSL-BP needs binary spikes",
    "TernaryLIFNode": "refused: ternary spikes (-1, 0, +1); TSSL-BP needs binary spikes",
    "PSN": "refused: parallel spiking neuron, no membrane recursion or reset (spikes from a learnable map over time)",
    "MaskedPSN": "refused: parallel spiking neuron, no membrane recursion or reset",
    "SlidingPSN": "refused: parallel spiking neuron, no membrane recursion or reset",
    "RAFNode": "refused: resonate-and-fire, an oscillating two-variable membrane; " + _LINEAR,
}
#: SpikingJelly's spiking recurrent cells (``activation_based.rnn``), refused with one reason.
SPIKING_RNNS = ("SpikingLSTM", "SpikingLSTMCell", "SpikingVanillaRNN", "SpikingVanillaRNNCell", "SpikingGRU",
                "SpikingGRUCell")
NOT_SUPPORTED.update(dict.fromkeys(SPIKING_RNNS, (
    "refused: a spiking recurrent cell (activation_based.rnn) whose spikes are its gates, each a surrogate spike "
    "function of a weighted sum, with no membrane or reset; TSSL-BP's rule is for LIF neurons")))


def _is_spiking_rnn(module: nn.Module) -> bool:
    cls = type(module)
    return cls.__module__.startswith("spikingjelly.activation_based.rnn") and cls.__name__ in SPIKING_RNNS


def _is_spiking_neuron(module: nn.Module) -> bool:
    cls = type(module)
    if "NonSpiking" in cls.__name__:
        return False  # readouts without spikes: nothing to convert
    if _is_spiking_rnn(module):
        return True  # listed once, with the cells inside it skipped (convert)
    bases = tuple(b for b in (getattr(_sjn, "BaseNode", None), getattr(_sjn, "SimpleBaseNode", None)) if b)
    if bases and isinstance(module, bases):
        return True
    return cls.__module__.startswith("spikingjelly.activation_based.neuron")


def _invalidate_reset_cache(model: nn.Module) -> None:
    invalidate = getattr(_sjf, "invalidate_reset_cache", None)  # SpikingJelly 2.x caches reset_net's list
    if invalidate is not None:
        invalidate(model)


def convert(model: nn.Module, *, tau_s: float = 3.0, warmup: Warmup = ADAPTER_WARMUP, warmup_width: float = WARMUP_WIDTH,
            sensitivity_cap: Optional[float] = None, strict: bool = False, exclude: Exclude = None,
            ablation: str = "none", warmup_floor: bool = ADAPTER_WARMUP_FLOOR,
            crossing: Optional[str] = None) -> nn.Module:
    """Switch every ``LIFNode``/``IFNode``/``ParametricLIFNode`` (and, on SpikingJelly 2.x,
    ``CUBALIFNode``) in ``model`` to TSSL-BP gradients, in place.

    The same module objects change class (``__class__`` swap), so parameters,
    ``state_dict`` keys, hooks and references stay valid; ``reset_net``,
    ``set_step_mode`` and ``layer.*`` containers keep working. Nodes already
    converted get the new ``tau_s``/``warmup``/``warmup_width`` (the width of
    the warm-up surrogate in units of the threshold relative to ``v_reset``, default 0.2, the reference's at
    SpikingJelly's defaults)/``sensitivity_cap`` (the
    cap on the spike-time sensitivity ``c = min(1/du, sensitivity_cap / threshold)``,
    threshold relative to ``v_reset``; default None: 1 for the soft reset and for nodes without leak (IF),
    the reference's 8 for a leaky node's hard reset, docs/algorithm.md). Other neuron types are left
    alone with one warning listing them; ``strict=True`` raises ``TypeError``
    instead. A model with none of these nodes at all (a plain network, or an
    snnTorch model) gets a warning that nothing was converted; ``strict=True``
    raises ``ValueError`` instead. Options that cannot be honoured raise ``ValueError`` naming the
    option before anything is changed.

    ``exclude``: modules (or their names in ``model.named_modules()``) that
    keep SpikingJelly's surrogate gradient, with everything inside them; e.g.
    ``convert(net, exclude=[net[-1]])`` trains the hidden layers with TSSL-BP
    and the output layer with its ``surrogate_function``. A name or module not
    in the model is an error. A ``CUBALIFNode``'s warm-up trace keeps its own synapse's
    ``tau_s = 1/(1 - c_decay)`` instead of ``tau_s``. ``ablation`` switches a part of the rule off
    in every converted node, to measure what it contributes (:func:`tssl_plugin.functional.tssl_lif`;
    docs/algorithm.md, "Ablations"). ``warmup_floor`` (default False,
    :data:`._convert.ADAPTER_WARMUP_FLOOR`): True keeps the reference's floor under the warm-up surrogate
    (:func:`tssl_plugin.functional.tssl_lif`). ``crossing`` (default None: ``"interpolated"`` for a leaky node's hard
    reset, the reference's ``"step"`` for the soft reset and for IF nodes, :func:`._convert.crossing_for`) says what a
    spike's sensitivity ``c`` measures. Returns ``model``.
    """
    check_convert_args(model, strict)
    options = checked_convert_options(tau_s, warmup, warmup_width, sensitivity_cap, ablation, warmup_floor, crossing)
    skip = excluded_ids(model, exclude)
    found: List[Tuple[str, nn.Module, type]] = []
    unsupported: List[str] = []
    cells: List[str] = []
    for name, module in model.named_modules():
        if id(module) in skip:
            continue
        cls = type(module)
        label = name or "<model>"
        if original_class(cls, _FROM_TSSL) is not None:
            found.append((label, module, cls))
            continue
        new_cls, reason = tssl_class_for(cls, _TO_TSSL, FORWARD_METHODS)
        if new_cls is not None:
            found.append((label, module, new_cls))
        elif any(label.startswith(p + ".") for p in cells):
            continue  # a cell inside a spiking RNN already listed
        elif reason is not None or _is_spiking_neuron(module):
            unsupported.append(f"{label} ({cls.__name__}: {reason or NOT_SUPPORTED.get(cls.__name__, NOT_YET)})")
            if _is_spiking_rnn(module):
                cells.append(label)
    if not unsupported and not any(isinstance(m, tuple(_TO_TSSL)) for m in model.modules()):
        nothing_to_convert(model, "LIFNode, IFNode, ParametricLIFNode or another supported node", "spikingjelly",
                           strict)
    if unsupported and strict:
        raise TypeError(
            "convert(strict=True): these neuron types have no TSSL-BP version: " + "; ".join(unsupported)
        )
    for label, module, new_cls in found:  # validate everything before changing anything
        _version.lib_check(module, label)
        try:
            check_ablation(ablation, node_mapping(module, new_cls._TSSL_KIND)[3], warmup)
        except ValueError as err:
            raise ValueError(f"{label}: {err}") from None
    detach_reset = []
    for label, module, new_cls in found:
        module.__class__ = new_cls
        set_options(module, options)
        module._tssl_state = None
        watch_firing(module, label)
        if getattr(module, "detach_reset", False):
            detach_reset.append(label)
    if unsupported:
        warnings.warn(
            "convert: left unchanged (no TSSL-BP version; they keep their surrogate gradients): "
            + "; ".join(unsupported),
            UserWarning,
            stacklevel=2,
        )
    if detach_reset:
        warnings.warn(f"{_version.DETACH_RESET_NOTE} (in modules: {', '.join(detach_reset)})", UserWarning, stacklevel=2)
    _invalidate_reset_cache(model)
    return model


def revert(model: nn.Module) -> nn.Module:
    """Undo :func:`convert` in place: TSSL-BP nodes become the original SpikingJelly classes again."""
    check_convert_args(model, False, "revert")
    for module in model.modules():
        original = original_class(type(module), _FROM_TSSL)
        if original is None:
            continue
        module.__class__ = original
        remove_options(module, ("_tssl_state", "_tssl_watch"))
    _invalidate_reset_cache(model)
    return model
