"""tssl-plugin: TSSL-BP (Zhang & Li, NeurIPS 2020) spike-timing gradients for PyTorch,
snnTorch and SpikingJelly.

Public names: :func:`tssl_lif`, :func:`psp` (in :mod:`tssl_plugin.functional`),
:func:`kernel_loss`, :func:`count_loss` and the loss objects :class:`KernelLoss`,
:class:`CountLoss` (in :mod:`tssl_plugin.loss`), the module :class:`TSSLNeuron`, and
:mod:`tssl_plugin.rule` (the rule's math, constants and types), and
:class:`FiringWarning` (a converted layer trained silent or saturated; :mod:`tssl_plugin.firing_watch`). Library adapters
live in ``tssl_plugin.adapters``, the benchmark harness in ``tssl_plugin.benchmarks``.
"""
from . import functional, loss, rule
from .firing_watch import FiringWarning
from .functional import psp, tssl_lif
from .loss import CountLoss, KernelLoss, count_loss, kernel_loss
from .neuron import TSSLNeuron

__version__ = "0.1.0"

__all__ = ["functional", "loss", "rule", "tssl_lif", "psp", "kernel_loss", "count_loss", "KernelLoss", "CountLoss",
           "TSSLNeuron", "FiringWarning", "__version__"]
