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

import warnings
from typing import Iterable, Optional, Set, Union

from torch import Tensor, nn

from tssl_plugin.firing_watch import FiringWatch
from tssl_plugin.rule import SENSITIVITY_CAP

__all__ = ["Exclude", "SUBTRACTION_SENSITIVITY_CAP", "check_convert_args", "excluded_ids", "nothing_to_convert",
           "observe_firing", "sensitivity_cap_for", "watch_firing"]

#: the adapters' cap on the spike-time sensitivity ``c = min(1/du, cap / threshold)`` for resets by
#: subtraction, in units of ``1/threshold``; the reset to zero keeps the reference's 8. Measured in host
#: setups (docs/algorithm.md, "The sensitivity cap"): with 8 a subtraction network does not train.
SUBTRACTION_SENSITIVITY_CAP = 1.0


def sensitivity_cap_for(reset: str, cap: Optional[float]) -> float:
    """The cap on ``c``, in units of ``1/threshold``, for a layer with core reset ``reset``: ``cap`` when
    given, else :data:`SUBTRACTION_SENSITIVITY_CAP` for the resets by subtraction and the reference's
    :data:`tssl_plugin.rule.SENSITIVITY_CAP` (8) for the others."""
    if cap is not None:
        return cap
    return SUBTRACTION_SENSITIVITY_CAP if reset in ("subtract", "subtract_after_leak") else SENSITIVITY_CAP

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
