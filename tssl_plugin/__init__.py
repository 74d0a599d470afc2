"""tssl-plugin: TSSL-BP (Zhang & Li, NeurIPS 2020) spike-timing gradients for PyTorch,
snnTorch and SpikingJelly.

Public names: :func:`tssl_lif`, :func:`psp` (in :mod:`tssl_plugin.functional`),
:func:`kernel_loss`, :func:`count_loss` and the loss objects :class:`KernelLoss`,
:class:`CountLoss` (in :mod:`tssl_plugin.loss`), the module :class:`TSSLNeuron`, and
:mod:`tssl_plugin.rule` (the rule's math, constants and types). Library adapters
live in ``tssl_plugin.adapters``, the benchmark harness in ``tssl_plugin.benchmarks``.
"""
from . import functional, loss, rule
from .functional import psp, tssl_lif
from .loss import CountLoss, KernelLoss, count_loss, kernel_loss
from .neuron import TSSLNeuron

__version__ = "0.1.0"

__all__ = ["functional", "loss", "rule", "tssl_lif", "psp", "kernel_loss", "count_loss", "KernelLoss", "CountLoss",
           "TSSLNeuron", "__version__"]
