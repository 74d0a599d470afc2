"""Test helper (not a test module): a small instance of the paper's network on the core op, the reference
against which the converted synaptic host networks (snnTorch ``Synaptic``, SpikingJelly ``CUBALIFNode``) are
checked. The hosts' cap for a reset to zero is the core's (``sensitivity_cap_for("zero", None)``)."""
import torch

from tssl_plugin import psp
from tssl_plugin.adapters._convert import ADAPTER_WARMUP, ADAPTER_WARMUP_FLOOR, crossing_for
from tssl_plugin.adapters._convert import sensitivity_cap_for
from tssl_plugin.functional import tssl_lif
from tssl_plugin.loss import kernel_loss

TAU_M, TAU_S, THETA, T = 5.0, 3.0, 1.0, 16


def paper_pair(seed=0):
    """Inputs, weights and labels for a small 2-layer network (float64), lively in both layers."""
    g = torch.Generator().manual_seed(seed)
    img = torch.rand(6, 10, generator=g, dtype=torch.float64)
    w1 = torch.randn(14, 10, generator=g, dtype=torch.float64) * 0.9
    w2 = torch.randn(4, 14, generator=g, dtype=torch.float64) * 1.2
    labels = torch.randint(0, 4, (6,), generator=g)
    return img, w1, w2, labels


def native(img, w1, w2, labels):
    """TSSL-BP's network on the core op: PSC between layers, reset to zero, input psp(image), kernel loss.
    Returns the two layers' PSCs and the weight gradients."""
    w1, w2 = w1.clone().requires_grad_(), w2.clone().requires_grad_()
    cap = sensitivity_cap_for("zero", None) / THETA
    p = psp(img.expand(T, *img.shape).contiguous(), TAU_S)
    kw = dict(output="psc", reset="zero", sensitivity_cap=cap, warmup=ADAPTER_WARMUP,  # the adapters' warm-up
              warmup_floor=ADAPTER_WARMUP_FLOOR, crossing=crossing_for("zero", None))
    a1 = tssl_lif(p @ w1.T, TAU_M, TAU_S, THETA, **kw)
    a2 = tssl_lif(a1 @ w2.T, TAU_M, TAU_S, THETA, **kw)
    kernel_loss(a2, labels, tau_s=TAU_S).backward()
    return a1.detach(), a2.detach(), w1.grad, w2.grad
