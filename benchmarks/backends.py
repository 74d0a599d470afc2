"""Backends, named ``LIBRARY:GRADIENT``: how to build the benchmark network for each.

* ``native:tssl``: the paper's network on the core op (:func:`models.build_native`).
* ``snntorch:<surrogate>``: ``snn.Leaky`` with ``snntorch.surrogate.<surrogate>()``.
* ``spikingjelly:<surrogate>``: ``LIFNode`` with ``spikingjelly...surrogate.<Class>()``.
* ``snntorch:tssl`` / ``spikingjelly:tssl``: the same library network, then the
  adapter's ``convert(model, tau_s=..., warmup=..., warmup_width=...)`` (public API of
  ``tssl_plugin.adapters.snntorch`` / ``.spikingjelly``).
* ``snntorch-synaptic:<gradient>`` / ``spikingjelly-cuba:<gradient>``: the paper's network built
  from the hosts' current-based neurons (``snn.Synaptic``, ``CUBALIFNode``), whose synaptic
  filter is the paper's PSC (:class:`models.SynapticHostNet`); ``tssl`` converts it with the
  adapter (the native network's forward and gradients), a surrogate name trains it with that surrogate.
* ``snntorch:tssl+atan`` / ``spikingjelly:tssl+sigmoid``: the hidden-layers recipe,
  ``convert(model, ..., exclude=[output neuron])``: TSSL-BP in every hidden layer,
  the output layer keeps the host's surrogate (``atan()`` / ``Sigmoid()``).

Each backend names its natural loss: TSSL-BP the kernel loss (the count loss on
event data), snnTorch surrogates ``ce_rate`` (as ``snntorch.functional.ce_rate_loss``),
SpikingJelly surrogates ``mse_rate`` (MSE of firing rate vs one-hot, as in its tutorials);
the hidden-layers recipe its host's loss (it exists for losses like ``ce_rate``).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from tssl_plugin.rule import WARMUP_WIDTH, Warmup

from . import models

__all__ = ["Backend", "BACKENDS", "BackendUnavailable", "resolve", "backend_names", "DEFAULT_BACKENDS", "warmup_kwargs"]


class BackendUnavailable(RuntimeError):
    """The backend's library or adapter is not installed / not importable."""


@dataclass(frozen=True)
class Backend:
    """One ``LIBRARY:GRADIENT`` combination."""

    name: str
    library: str  # native | snntorch | spikingjelly
    gradient: str  # tssl | a surrogate name
    description: str
    natural_loss: str  # kernel | ce_rate | mse_rate
    neuron: str = "lif"  # lif (Leaky / LIFNode) | synaptic (Synaptic / CUBALIFNode: models.SynapticHostNet)

    @property
    def is_tssl(self) -> bool:
        """Every layer trains with TSSL-BP."""
        return self.gradient == "tssl"

    @property
    def uses_adapter(self) -> bool:
        """A library network converted by the adapter (fully, or all but the output layer)."""
        return self.library != "native" and self.gradient.startswith("tssl")

    @property
    def output_surrogate(self) -> Optional[str]:
        """The surrogate the output layer keeps under the hidden-layers recipe (``tssl+atan`` -> ``atan``)."""
        return self.gradient.split("+", 1)[1] if "+" in self.gradient else None

    def requirements(self) -> List[Tuple[str, str]]:
        """``(module, extra)`` pairs this backend imports: the host library (none for native)."""
        return {"native": [], "snntorch": [("snntorch", "snntorch")],
                "spikingjelly": [("spikingjelly.activation_based", "spikingjelly")]}[self.library]

    def check_available(self) -> None:
        """Raise :class:`BackendUnavailable` saying what to install if the backend cannot run."""
        mods = [m for m, _ in self.requirements()]
        if self.uses_adapter:
            mods = mods + [f"tssl_plugin.adapters.{self.library}"]
        for mod in mods:
            try:
                importlib.import_module(mod)
            except ImportError as err:
                extra = self.library
                raise BackendUnavailable(
                    f"backend {self.name} needs {mod} ({err}); install with: pip install 'tssl-plugin[{extra}]'"
                ) from err
        if self.neuron == "synaptic" and self.library == "spikingjelly":
            from spikingjelly.activation_based import neuron

            if not hasattr(neuron, "CUBALIFNode"):
                raise BackendUnavailable(f"backend {self.name} needs SpikingJelly 2.x (CUBALIFNode; the installed "
                                         f"0.0.0.0.14 has none); install with: pip install 'spikingjelly>=2'")

    def build(self, arch: models.Arch, in_shape, weights, cfg: models.NeuronCfg, *, warmup: bool = True,
              warmup_width: float = WARMUP_WIDTH, native_between: str = "psc", ablation: str = "none",
              warmup_gate: Optional[str] = None, warmup_floor: Optional[bool] = None):
        """The network for this backend, starting from ``weights``.

        ``warmup`` and ``warmup_width`` (TSSL-BP's warm-up surrogate and its width) and ``ablation``
        (a part of the rule switched off, ``tssl_plugin.rule.ABLATIONS``) apply to every
        TSSL-BP layer: the native network's and the adapter-converted ones. ``warmup_gate`` (where the warm-up
        applies, ``tssl_plugin.rule.WARMUP_GATES``) too; None leaves each its default (the core op's is the
        reference's ``"trace"``, the adapters' their own), and ``warmup_floor`` (None: the core op's True, the
        adapters' False). ``native_between``
        (:data:`models.NATIVE_BETWEEN`): what the native network passes between layers.
        """
        self.check_available()
        if self.library == "native":
            return models.build_native(arch, in_shape, weights, cfg, warmup_width=warmup_width,
                                       between=native_between, ablation=ablation,
                                       **warmup_kwargs(warmup, warmup_gate, warmup_floor))
        if self.library == "snntorch":
            from snntorch import surrogate

            grad = None if self.is_tssl else getattr(surrogate, self.output_surrogate or self.gradient)()
            build = models.build_snntorch_synaptic if self.neuron == "synaptic" else models.build_snntorch
            net = build(arch, in_shape, weights, cfg, grad)
        else:
            from spikingjelly.activation_based import surrogate

            grad = None if self.is_tssl else getattr(surrogate, _SJ[self.output_surrogate or self.gradient])()
            build = models.build_spikingjelly_cuba if self.neuron == "synaptic" else models.build_spikingjelly
            net = build(arch, in_shape, weights, cfg, grad)
        if self.uses_adapter:
            adapter = importlib.import_module(f"tssl_plugin.adapters.{self.library}")
            exclude = [net.neurons()[-1]] if self.output_surrogate else None
            adapter.convert(net, tau_s=cfg.tau_s, warmup_width=warmup_width, exclude=exclude,
                            **warmup_kwargs(warmup, warmup_gate, warmup_floor),
                            ablation=ablation, **cfg.convert_options())
        return net


def warmup_kwargs(warmup: bool, gate: Optional[str], floor: Optional[bool] = None) -> Dict[str, Warmup]:
    """The warm-up keywords for a TSSL-BP layer or ``convert`` from the harness's on/off ``warmup``, ``gate`` and
    ``floor``: ``warmup=`` none when the warm-up is on with no gate named (each keeps its default: the core op's
    reference gate, the adapters' own), else ``warmup=False`` or ``warmup=gate``; ``warmup_floor=`` only when
    ``floor`` is not None (None: the core op's floor, the adapters' none)."""
    kwargs: Dict[str, Warmup] = {} if floor is None else {"warmup_floor": floor}
    if warmup and gate is None:
        return kwargs
    return {"warmup": gate if warmup else False, **kwargs}


#: snnTorch surrogate factories (``snntorch.surrogate.<name>()``), deterministic ones with defaults.
_SNN = ["atan", "fast_sigmoid", "sigmoid", "triangular", "straight_through_estimator", "spike_rate_escape"]
#: SpikingJelly surrogate classes (``spikingjelly.activation_based.surrogate.<Class>()``).
_SJ = {
    "sigmoid": "Sigmoid", "atan": "ATan", "piecewise_quadratic": "PiecewiseQuadratic", "erf": "Erf",
    "piecewise_exp": "PiecewiseExp", "soft_sign": "SoftSign", "super_spike": "SuperSpike",
    "piecewise_leaky_relu": "PiecewiseLeakyReLU", "q_pseudo_spike": "QPseudoSpike", "rect": "Rect",
}


def _all() -> Dict[str, Backend]:
    out = [Backend("native:tssl", "native", "tssl", "paper network on tssl_lif, PSC between layers", "kernel"),
           Backend("snntorch:tssl", "snntorch", "tssl", "snn.Leaky network + adapters.snntorch.convert", "kernel"),
           Backend("spikingjelly:tssl", "spikingjelly", "tssl",
                   "LIFNode network + adapters.spikingjelly.convert", "kernel"),
           Backend("snntorch:tssl+atan", "snntorch", "tssl+atan",
                   "snn.Leaky network + convert(exclude=[output]): TSSL-BP hidden layers, atan output", "ce_rate"),
           Backend("spikingjelly:tssl+sigmoid", "spikingjelly", "tssl+sigmoid",
                   "LIFNode network + convert(exclude=[output]): TSSL-BP hidden layers, Sigmoid output",
                   "mse_rate")]
    out += [Backend(f"snntorch:{g}", "snntorch", g, f"snn.Leaky, spike_grad=snntorch.surrogate.{g}()", "ce_rate")
            for g in _SNN]
    out += [Backend(f"spikingjelly:{g}", "spikingjelly", g,
                    f"LIFNode, surrogate_function=surrogate.{c}()", "mse_rate") for g, c in _SJ.items()]
    out += [Backend("snntorch-synaptic:tssl", "snntorch", "tssl",
                    "snn.Synaptic network (the paper's network on host layers) + adapters.snntorch.convert",
                    "kernel", neuron="synaptic"),
            Backend("snntorch-synaptic:atan", "snntorch", "atan",
                    "snn.Synaptic network, spike_grad=snntorch.surrogate.atan()", "ce_rate", neuron="synaptic"),
            Backend("spikingjelly-cuba:tssl", "spikingjelly", "tssl",
                    "CUBALIFNode network (the paper's network on host layers) + adapters.spikingjelly.convert",
                    "kernel", neuron="synaptic"),
            Backend("spikingjelly-cuba:sigmoid", "spikingjelly", "sigmoid",
                    "CUBALIFNode network, surrogate_function=surrogate.Sigmoid()", "mse_rate", neuron="synaptic")]
    return {b.name: b for b in out}


BACKENDS: Dict[str, Backend] = _all()
#: what ``tssl-bench`` runs with no ``--backends``.
DEFAULT_BACKENDS = ("native:tssl", "snntorch:tssl", "spikingjelly:tssl", "snntorch:atan", "spikingjelly:sigmoid")


def backend_names() -> List[str]:
    """All backend names, in listing order."""
    return list(BACKENDS)


def resolve(names: Sequence[str]) -> List[Backend]:
    """Backends for ``names``; an unknown name raises ValueError listing the valid ones."""
    out = []
    for raw in names:
        name = raw.strip()
        if not name:
            continue
        if name not in BACKENDS:
            raise ValueError(f"unknown backend {name!r}; valid backends: {', '.join(BACKENDS)}")
        if BACKENDS[name] not in out:
            out.append(BACKENDS[name])
    if not out:
        raise ValueError(f"no backend given; valid backends: {', '.join(BACKENDS)}")
    return out
