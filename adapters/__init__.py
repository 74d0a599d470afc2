"""Adapters that switch snnTorch and SpikingJelly neurons to TSSL-BP gradients.

Installed as ``tssl_plugin.adapters``; each submodule knows one library and
imports it only when used: ``tssl_plugin.adapters.snntorch`` and
``tssl_plugin.adapters.spikingjelly``.
"""
