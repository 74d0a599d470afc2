"""One helper of the SpikingJelly adapter tests: run a node or network over ``x`` ``[T, ...]`` from a reset state,
in multi-step mode (``"m"``: one call) or single-step mode (``"s"``: one call per step, stacked)."""
import torch


def run(net, x, mode):
    from spikingjelly.activation_based import functional

    functional.reset_net(net)
    if mode == "m":
        return net(x)
    return torch.stack([net(x[t]) for t in range(x.shape[0])])
