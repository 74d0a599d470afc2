"""Every case of the reference vectors, through the public API, in float64 (rtol = atol = 1e-9, spikes exact).

Layer cases drive ``tssl_lif`` directly; network cases are rebuilt from their
layer list with ``psp`` encoding, torch Linear/Conv2d weights, the reference's
1.1 x sum pooling, and ``kernel_loss`` or ``count_loss``.
"""
import pytest
import torch
import torch.nn.functional as F

from conftest import load_cases
from tssl_plugin import count_loss, kernel_loss, psp, tssl_lif
from tssl_plugin._impl.reference import forward_sequence
from tssl_plugin.functional import lif_constants

TOL = dict(rtol=1e-9, atol=1e-9)
CASES = load_cases()


def _close(actual, expected):
    torch.testing.assert_close(actual, torch.as_tensor(expected, dtype=actual.dtype), **TOL)


def _layer_args(p, threshold=None):
    return dict(tau_m=p["tau_m"], tau_s=p["tau_s"], threshold=p["threshold"] if threshold is None else threshold,
                warmup=p["warmup"])


def _seq_apply(fn, x):
    """Apply a per-time-step function to a time-first sequence."""
    T, N = x.shape[:2]
    y = fn(x.reshape(T * N, *x.shape[2:]))
    return y.reshape(T, N, *y.shape[1:])


def _infer_padding(x_shape, out_shape, w):
    k = w.shape[-1]
    return (out_shape[-1] - x_shape[-1] + k - 1) // 2


def _run_network(case, warmup_override=None):
    p = case["params"]
    T = p["n_steps"]
    img = case["x_image"]
    enc = psp(img.unsqueeze(0).expand(T, *img.shape), p["tau_s"])
    _close(enc, case["x_encoded"])
    enc = enc.clone().requires_grad_()
    weights = {k: v.clone().requires_grad_() for k, v in case["weights"].items()}
    a = enc
    outs = []
    for layer in case["layers"]:
        kind = layer["type"]
        if kind in ("linear", "fc"):
            w = weights[layer["name"]]
            if a.dim() > 3:
                a = a.flatten(2)
            x = a @ w.T
        elif kind == "conv":
            w = weights[layer["name"]]
            pad = _infer_padding(a.shape, layer["x"].shape, w)
            x = _seq_apply(lambda z: F.conv2d(z, w, padding=pad), a)
        elif kind == "pool":
            k = a.shape[-1] // layer["out"].shape[-1]
            a = _seq_apply(lambda z: F.avg_pool2d(z, k) * (k * k) * 1.1, a)
            _close(a, layer["out"])
            a.retain_grad()
            outs.append((layer, a, "pool"))
            continue
        else:
            raise AssertionError(f"unknown layer type {kind!r} in case {case['name']}")
        x.retain_grad()
        a = tssl_lif(x, **_layer_args(p, layer.get("threshold")))
        a.retain_grad()
        outs.append((layer, x, a))
    if p["loss"] == "kernel":
        loss = kernel_loss(a, case["labels"], tau_s=p["tau_s"])
    elif p["loss"] == "count":
        desired, undesired = _count_targets(case)
        loss = count_loss(a, case["labels"], desired_count=desired, undesired_count=undesired)
    else:
        raise AssertionError(f"unknown loss {p['loss']!r}")
    loss.backward()
    return enc, weights, outs, a, loss


def _count_targets(case):
    """(desired_count, undesired_count) of a count-loss case, read off its per-neuron targets."""
    ct = torch.as_tensor(case["count_targets"], dtype=torch.float64)
    labels = case["labels"]
    if ct.dim() == 2:
        onehot = F.one_hot(labels, ct.shape[1]).bool()
        return float(ct[onehot][0]), float(ct[~onehot][0])
    p = case["params"]
    return float(p["desired_count"]), float(p["undesired_count"])


@pytest.mark.parametrize("case", CASES)
def test_case(case):
    p = case["params"]
    if case["kind"] == "layer":
        x = case["x"].clone().requires_grad_()
        a = tssl_lif(x, **_layer_args(p))
        a.backward(case["g"])
        _close(a, case["a"])
        _close(x.grad, case["grad_x"])
        o = tssl_lif(case["x"], **_layer_args(p), output="spike")
        assert torch.equal(o, case["o"])
        tr = forward_sequence(case["x"], lif_constants(case["x"], p["tau_m"], p["tau_s"], p["threshold"]))
        _close(tr.u, case["u"])
        _close(tr.du, case["delta_u"])
        return
    assert case["kind"] in ("net_fc", "net_conv"), case["kind"]
    enc, weights, outs, a, loss = _run_network(case)
    _close(loss, case["loss"])
    _close(a, case["output_psc"])
    for layer, x, out in outs:
        if out == "pool":
            _close(x.grad, layer["grad_out"])
            continue
        _close(x, layer["x"])
        _close(out, layer["a"])
        _close(out.grad, layer["g"])
        _close(x.grad, layer["grad_x"])
        o = tssl_lif(x.detach(), **_layer_args(p, layer.get("threshold")), output="spike")
        assert torch.equal(o, layer["o"])
    last_layer, last_x, _ = outs[-1]
    o_last = tssl_lif(last_x.detach(), **_layer_args(p, last_layer.get("threshold")), output="spike")
    assert torch.equal(o_last, case["output_spikes"])
    _close(a.grad, case["grad_output_psc"])
    if "out_count" in case:
        _close(a.detach().sum(0), case["out_count"])
    _close(enc.grad, case["grad_x_encoded"])
    for name, g in case["weight_grads"].items():
        _close(weights[name].grad, g)
    if "target_psc" in case:
        from tssl_plugin.loss import desired_spikes, kernel_target
        d = torch.as_tensor(case["desired_spikes"], dtype=torch.float64)
        if d.dim() == 1:
            d = desired_spikes(case["labels"], p["n_class"], d)
        _close(kernel_target(d, p["tau_s"]), case["target_psc"])
