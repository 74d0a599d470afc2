"""What every adapter's ``convert`` shares: argument checks and the ``exclude=`` rule.

``exclude`` names the parts of a model that keep the host library's own
surrogate gradient: module objects, or their qualified names as
``model.named_modules()`` spells them (``"lif2"``, ``"features.3"``). An
excluded module keeps everything below it unconverted too, so a whole block can
be excluded by its name. A name or module that is not in the model is an error
(a typo must not silently convert the layer the user meant to keep).

The usual use is the hidden-layers recipe: TSSL-BP in every hidden layer, the
output layer on the host's surrogate, for losses such as ``ce_rate_loss`` that
never saturate (see the adapters' docs).
"""
from __future__ import annotations

import sys
import warnings
from typing import Any, Dict, Iterable, Optional, Set, Tuple, Union

from torch import Tensor, nn

from tssl_plugin.firing_watch import FiringWatch
from tssl_plugin._types import Warmup
from tssl_plugin._validation import (check_bool, check_choice, check_optional_sensitivity_cap, check_tau_s,
                                     check_warmup_width)
from tssl_plugin.rule import CROSSINGS, SENSITIVITY_CAP, check_ablation, check_warmup

__all__ = ["ADAPTER_WARMUP", "ADAPTER_WARMUP_FLOOR", "LAYER_OPTIONS", "SUBTRACTION_SENSITIVITY_CAP",
           "check_convert_args", "check_crossing", "checked_convert_options", "checked_options", "crossing_for",
           "Exclude", "excluded_ids", "nothing_to_convert", "observe_firing", "original_class", "remove_options",
           "sensitivity_cap_for", "set_options", "subclass_refusal", "tssl_class_for", "warmup_width_for",
           "watch_firing"]

#: the adapters' warm-up gate (``warmup=``, :data:`tssl_plugin.rule.WARMUP_GATES`): ``"auto"``, the surrogate at
#: every step without a spike for a leaky neuron (``"silent"``) and the reference's gate for one without leak.
#: The reference's ``"trace"`` leaves a neuron that has fired without gradient at the silent steps that follow
#: while its trace stays high, and the converted SpikingJelly Fashion-MNIST CNN's fully connected layer drifted
#: from it (its second convolution's full-budget drift had another cause: :data:`ADAPTER_WARMUP_FLOOR`); a recurrent
#: integrate-and-fire network trained worse with ``"silent"`` (docs/algorithm.md, "The warm-up gate", has the
#: measurements). ``warmup=True`` gives the reference's everywhere.
ADAPTER_WARMUP = "auto"

#: the adapters' cap on the spike-time sensitivity ``c = min(1/du, cap / threshold)``, in units of
#: ``1/threshold``, for the resets by subtraction and for integrate-and-fire neurons (no leak); a leaky
#: neuron's reset to zero keeps the reference's 8. Measured in host setups (docs/algorithm.md, "The
#: sensitivity cap"): with 8 a subtraction network does not train, and an IF network trails its surrogate.
SUBTRACTION_SENSITIVITY_CAP = 1.0

#: the adapters' ``warmup_floor`` (:func:`tssl_plugin.functional.tssl_lif`): False, no floor under the warm-up
#: surrogate. The reference clamps its sigmoid's argument at 8 widths, so every silent neuron, however far below the
#: threshold, passes at least ``sigma'(8)/w`` (0.0017 at w = 0.2) of its error to its input: summed over a layer's
#: silent neurons that acts as a straight-through gradient, and in the converted SpikingJelly Fashion-MNIST CNN it
#: drove the second convolution's firing rate up (docs/algorithm.md, "The warm-up floor", has the measurements).
ADAPTER_WARMUP_FLOOR = False


def warmup_width_for(width: float, threshold: Any) -> Any:
    """The warm-up surrogate's width for a layer: the option ``width`` in units of the layer's threshold (measured
    from its reset value), as the sensitivity cap is in units of ``1/threshold``.

    The rule is then unchanged by a scale of the membrane (input, threshold and membrane times ``k``: every
    gradient divided by ``k``), and with a threshold of 1 (both hosts' defaults, the reference's) it is the
    reference's width. Measured on snnTorch's ``tutorial_BSNN`` (thresholds 2.4, 8.0 and 3.9; docs/algorithm.md,
    "The warm-up width"): the absolute width 0.2 trained to 0.642 ± 0.057 against 0.728 ± 0.004 unconverted."""
    return width * threshold


#: the TSSL-BP options a converted layer keeps as plain attributes (not buffers: ``state_dict`` keys stay the host's),
#: in ``convert``'s keyword order. ``convert`` sets every one (:func:`checked_convert_options`), the TSSL-BP classes'
#: constructors the first five (:func:`checked_options`; the others keep their class defaults), and ``revert``
#: removes them (:func:`remove_options`).
LAYER_OPTIONS = ("tau_s", "warmup", "warmup_width", "sensitivity_cap", "ablation", "warmup_floor", "crossing")


def checked_options(tau_s: float, warmup: Warmup, warmup_width: float, sensitivity_cap: Optional[float],
                    ablation: str) -> Dict[str, Any]:
    """The TSSL-BP options a layer's constructor takes, each checked (a one-line error naming it), by name."""
    warmup = check_warmup(warmup)
    return {"tau_s": check_tau_s(tau_s), "warmup": warmup, "warmup_width": check_warmup_width(warmup_width),
            "sensitivity_cap": check_optional_sensitivity_cap(sensitivity_cap),
            "ablation": check_ablation(ablation, None, warmup)}


def checked_convert_options(tau_s: float, warmup: Warmup, warmup_width: float, sensitivity_cap: Optional[float],
                            ablation: str, warmup_floor: bool, crossing: Optional[str]) -> Dict[str, Any]:
    """Every option of :data:`LAYER_OPTIONS` as ``convert`` takes them, each checked, by name."""
    return {**checked_options(tau_s, warmup, warmup_width, sensitivity_cap, ablation),
            "warmup_floor": check_bool(warmup_floor, "warmup_floor"), "crossing": check_crossing(crossing)}


def set_options(layer: nn.Module, options: Dict[str, Any]) -> None:
    """Set checked options (:func:`checked_options`, :func:`checked_convert_options`) on ``layer``."""
    for name, value in options.items():
        setattr(layer, name, value)


def remove_options(layer: nn.Module, private: Iterable[str] = ()) -> None:
    """Take :data:`LAYER_OPTIONS` and the adapter's ``private`` attributes off a reverted layer's instance dict."""
    for name in (*LAYER_OPTIONS, *private):
        layer.__dict__.pop(name, None)


def crossing_for(reset: str, crossing: Optional[str], leaky: bool = True) -> str:
    """What a layer's spike-time sensitivity measures (:data:`tssl_plugin.rule.CROSSINGS`): ``crossing`` when given,
    else ``"interpolated"`` for a leaky neuron's reset to zero and the reference's ``"step"`` for the other resets and
    for a neuron without leak (``leaky=False``: SpikingJelly's IF nodes, which keep their cap ``1/threshold``).

    Why (docs/algorithm.md, "The interpolated crossing"): after a reset to zero, the reference's ``c = 1/du`` treats a
    spike far above the threshold as if it had barely crossed; on noisy leaky neurons (cap 8) it overstates the
    finite-difference slope of the spike count 1.9 to 3.3 times at firing rates 0.3-0.9, the interpolated one
    stays within 30 % of it (``tools/count_sensitivity.py``), and in the converted SpikingJelly Fashion-MNIST CNN
    the reference's ``c`` in the fully connected layer drove the second convolution's slow drift. After a
    subtraction the reference's ``c`` with the cap ``1/threshold`` is already close to that slope, and the
    interpolated one halves it; for an IF neuron with its cap ``1/threshold`` the interpolated one undershoots it
    and its tutorials trained no better."""
    if crossing is not None:
        return crossing
    return "interpolated" if reset == "zero" and leaky else "step"


def check_crossing(crossing: object) -> Optional[str]:
    """``convert(crossing=...)``: None (by reset, :func:`crossing_for`) or one of :data:`tssl_plugin.rule.CROSSINGS`;
    otherwise one-line ``ValueError``."""
    if crossing is None:
        return None
    return check_choice(crossing, "crossing", CROSSINGS)


def sensitivity_cap_for(reset: str, cap: Optional[float], leaky: bool = True) -> float:
    """The cap on ``c``, in units of ``1/threshold``, for a layer with core reset ``reset``: ``cap`` when
    given, else :data:`SUBTRACTION_SENSITIVITY_CAP` for the resets by subtraction and for a neuron without
    leak (``leaky=False``: ``1/tau_m = 0``, SpikingJelly's IF nodes), and the reference's
    :data:`tssl_plugin.rule.SENSITIVITY_CAP` (8) for a leaky neuron's other resets.

    Why the IF neuron: its carried error is not damped between spikes, so every step since the last reset
    receives the spike's ``c G``; for a neuron charging ``x < threshold`` per step the count's true slope is
    ``G / threshold`` per step, which the cap ``1/threshold`` gives exactly and the cap 8 overstates by
    ``threshold / x`` (``tools/count_sensitivity.py --betas 1.0``)."""
    if cap is not None:
        return cap
    if reset in ("subtract", "subtract_after_leak") or not leaky:
        return SUBTRACTION_SENSITIVITY_CAP
    return SENSITIVITY_CAP

#: host library (top-level module name) -> the adapter that converts its neurons.
ADAPTERS = {"snntorch": "tssl_plugin.adapters.snntorch", "spikingjelly": "tssl_plugin.adapters.spikingjelly"}

#: what ``exclude=`` accepts: one module or name, or an iterable of them.
Exclude = Union[None, str, nn.Module, Iterable[Union[str, nn.Module]]]


def check_convert_args(model: object, strict: object, what: str = "convert") -> None:
    """``model`` must be an ``nn.Module`` and ``strict`` a bool (clear ``TypeError`` otherwise)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"{what} expects a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(strict, bool):
        raise TypeError(f"strict must be a bool, got {type(strict).__name__}")


def excluded_ids(model: nn.Module, exclude: Exclude) -> Set[int]:
    """``id()`` of every module of ``model`` that ``exclude`` keeps unconverted (listed ones and their children)."""
    if exclude is None:
        return set()
    items = [exclude] if isinstance(exclude, (str, nn.Module)) else exclude
    try:
        items = list(items)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(
            f"exclude must be a module, a module name, or a list of them; got {type(exclude).__name__}"
        ) from None
    by_name = dict(model.named_modules(remove_duplicate=False))
    present = {id(m) for m in by_name.values()}
    roots = []
    for item in items:
        if isinstance(item, str):
            if item not in by_name:
                near = [n for n in by_name if n and (item in n or n in item)][:5]
                hint = f" (names like: {', '.join(near)})" if near else ""
                raise ValueError(f"exclude: the model has no module named {item!r}{hint}; "
                                 f"names are those of model.named_modules()")
            roots.append(by_name[item])
        elif isinstance(item, nn.Module):
            if id(item) not in present:
                raise ValueError(f"exclude: the {type(item).__name__} given is not a module of this model")
            roots.append(item)
        else:
            raise TypeError(f"exclude items must be modules or module names (str), got {type(item).__name__}")
    return {id(m) for root in roots for m in root.modules()}


def nothing_to_convert(model: nn.Module, wanted: str, library: str, strict: bool) -> None:
    """Warn (``strict``: raise ``ValueError``) that ``model`` holds no ``wanted`` neuron of ``library``.

    A model with nothing to convert still trains, with whatever gradients it had: a plain network, or a
    model of another host library given to the wrong adapter. The message names the adapter for the
    host library whose modules the model holds, if any.
    """
    found = {}
    for m in model.modules():
        top = type(m).__module__.split(".")[0]
        if top in ADAPTERS and top != library:
            found.setdefault(top, []).append(type(m).__name__)
    msg = f"convert: the model has no {wanted}, so nothing was converted (it keeps the gradients it had)"
    if found:
        top, names = next(iter(found.items()))
        msg += (f"; it holds {top} modules ({', '.join(sorted(set(names))[:4])}): "
                f"use {ADAPTERS[top]}.convert instead")
    if strict:
        raise ValueError(msg)
    warnings.warn(msg, UserWarning, stacklevel=3)


def subclass_refusal(cls: type, base: type, methods: Tuple[str, ...]) -> Optional[str]:
    """Why a subclass ``cls`` of the supported host class ``base`` cannot take TSSL-BP: the first of
    ``methods`` (the host forward's parts) that a class between ``cls`` and ``base`` defines; None if none."""
    mro = cls.__mro__
    for klass in mro[:mro.index(base)]:
        for name in methods:
            if name in vars(klass):
                return (f"a subclass of {base.__name__} that overrides {name}() ({klass.__name__}.{name}): "
                        f"TSSL-BP replays {base.__name__}'s own forward, which would drop the override")
    return None


_SUBCLASSES: Dict[Tuple[type, type], type] = {}


def tssl_class_for(cls: type, to_tssl: Dict[type, type],
                   methods: Tuple[str, ...]) -> Tuple[Optional[type], Optional[str]]:
    """``(TSSL-BP class, None)`` for host class ``cls``, or ``(None, reason)``, or ``(None, None)``.

    A supported class maps through ``to_tssl``. A subclass of one that overrides
    none of ``methods`` gets a class deriving from both (``TSSLLeaky`` then the
    user's ``MyLeaky``: the TSSL-BP forward, the user's other methods), made once
    per class and registered on the TSSL-BP class's module so that whole-model
    pickling finds it (in a new process, after ``convert`` has met the class);
    it carries ``_tssl_original`` for ``revert``. A subclass that overrides one
    gets the reason (:func:`subclass_refusal`); any other class ``(None, None)``.
    """
    if cls in to_tssl:
        return to_tssl[cls], None
    base = next((b for b in cls.__mro__[1:] if b in to_tssl), None)
    if base is None:
        return None, None
    why = subclass_refusal(cls, base, methods)
    if why is not None:
        return None, why
    tssl = to_tssl[base]
    key = (tssl, cls)
    if key not in _SUBCLASSES:
        name = "TSSL_" + "".join(c if c.isalnum() else "_" for c in f"{cls.__module__}.{cls.__qualname__}")
        made = type(name, (tssl, cls), {"__module__": tssl.__module__, "__qualname__": name,
                                       "_tssl_original": cls,
                                       "__doc__": f"{cls.__qualname__} with {tssl.__name__}'s TSSL-BP gradients."})
        setattr(sys.modules[tssl.__module__], name, made)
        _SUBCLASSES[key] = made
    return _SUBCLASSES[key], None


def original_class(cls: type, from_tssl: Dict[type, type]) -> Optional[type]:
    """The host class a TSSL-BP class (or a subclass made by :func:`tssl_class_for`) came from; None otherwise."""
    return from_tssl.get(cls) or vars(cls).get("_tssl_original")


def watch_firing(module: nn.Module, name: str) -> None:
    """Give a converted layer a fresh :class:`tssl_plugin.firing_watch.FiringWatch` named ``name`` (its
    name in the model), which warns once if the layer trains silent or saturated."""
    module.__dict__["_tssl_watch"] = FiringWatch(name)


def observe_firing(module: nn.Module, spikes: Tensor, steps: int = 1) -> None:
    """Count a learning call's ``spikes`` (``steps`` time steps) on the layer's watch (one made on first use
    for a layer built directly rather than by ``convert``)."""
    watch = module.__dict__.get("_tssl_watch")
    if watch is None:
        watch = module.__dict__["_tssl_watch"] = FiringWatch(type(module).__name__)
    watch.observe(spikes, steps)
