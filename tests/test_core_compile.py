"""tssl_lif as a registered operator: opcheck, torch.compile without graph breaks, torch.export, eager parity."""
from __future__ import annotations

import pytest
import torch
import torch._dynamo
from torch import nn
from torch.library import opcheck

from tssl_plugin import TSSLNeuron, tssl_lif
from tssl_plugin._impl import cpu
from tssl_plugin._impl._op import decode, encode
from tssl_plugin.rule import LIFConstants, LIFParameters

try:
    cpu.load()
    IMPLS = ("reference", "cpu", "auto")
except ImportError:  # no C compiler here
    IMPLS = ("reference", "auto")

LIF = torch.ops.tssl_plugin.lif.default
LIF_BACKWARD = torch.ops.tssl_plugin.lif_backward.default


def _x(T=5, shape=(3, 4), dtype=torch.float64, seed=0, scale=1.2):
    gen = torch.Generator().manual_seed(seed)
    return (torch.rand(T, *shape, generator=gen, dtype=torch.float64) * scale).to(dtype)


def compiled_and_eager(net, x, **compile_kw):
    """Outputs and parameter gradients (of the output's sum) of ``torch.compile(net)`` and of ``net`` eagerly."""
    y = torch.compile(net, fullgraph=True, **compile_kw)(x)
    y.sum().backward()
    grads = [p.grad.clone() for p in net.parameters()]
    net.zero_grad(set_to_none=True)
    y_eager = net(x)
    y_eager.sum().backward()
    return y, y_eager, grads, [p.grad for p in net.parameters()]


def _one_graph_with_eager_results(net, x):
    """``net`` compiles to one graph without breaks, whose outputs and gradients equal the eager ones; returns these."""
    torch._dynamo.reset()
    explained = torch._dynamo.explain(net)(x)
    assert (explained.graph_count, explained.graph_break_count) == (1, 0), explained.break_reasons
    y, y_eager, grads, grads_eager = compiled_and_eager(net, x, backend="aot_eager")
    assert torch.equal(y, y_eager)
    for a, b in zip(grads, grads_eager):
        assert torch.equal(a, b)
    return grads_eager


def _net():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(8, 16), TSSLNeuron(),
        nn.Linear(16, 4), TSSLNeuron(tau_m=torch.tensor([3.0, 5.0, float("inf"), 7.0]),
                                     threshold=torch.full((4,), 0.7), reset="subtract", output="spike"),
    ).double()


@pytest.mark.parametrize("impl", IMPLS)
def test_opcheck(impl):
    th = torch.tensor([0.5, 1.0, 1.5, 0.8])
    cases = [
        (_x(), LIFParameters(), True, True),
        (_x(dtype=torch.float32), LIFParameters(threshold=th, reset="subtract"), False, False),
        (_x(dtype=torch.float16), LIFParameters(tau_m=th.double() + 2.0, reset="none"), True, True),
        (_x(T=1), LIFParameters(float("inf"), 1.0, 0.5, "subtract_after_leak"), True, False),
        (_x(seed=5), LIFParameters(threshold=th.double(), reset="subtract", warmup_width=0.6), True, False),
        (_x(seed=6), LIFParameters(warmup_gate="silent", warmup_floor=False, crossing="interpolated",
                                   sensitivity_cap=2.0), True, True),
    ]
    for x, p, warmup, psc in cases:
        opcheck(LIF, (x.requires_grad_(), *encode(p), warmup, psc, impl))
    g = torch.randn(5, 3, 4, dtype=torch.float64)
    opcheck(LIF_BACKWARD, (g, _x(), *encode(LIFParameters(threshold=th.double())), True, True, impl))
    opcheck(LIF_BACKWARD, (g, _x(), *encode(LIFParameters(warmup_width=1.5)), True, True, impl))


@pytest.mark.parametrize("p", [
    LIFParameters(),
    LIFParameters(torch.tensor([3.0, 4.0]), 2.0, torch.ones(2), "subtract", 0.6, 1.5, "no_intra", "silent", False,
                  "interpolated"),
    LIFConstants(torch.tensor([0.5, 0.25]), 0.5, 1.0, 0.125, "none", torch.tensor([0.2, 0.4]), 3.0,
                 warmup_floor=False, crossing="interpolated"),
], ids=["defaults", "every-field-set", "constants"])
def test_parameter_objects_cross_the_schema_unchanged(p):
    """What the operators' ``(tensors, numbers, choices)`` arguments carry decodes to the object encoded: the same
    tensors (not copies), numbers as floats, bools as bools, every choice."""
    tensors, numbers, choices = encode(p)
    assert all(isinstance(n, float) for n in numbers) and isinstance(choices, str)
    q = decode(type(p), tensors, numbers, choices)
    assert type(q) is type(p)
    for a, b in zip(p, q):
        assert a is b if isinstance(a, torch.Tensor) else (a == b and type(a) is type(b))


@pytest.mark.parametrize("impl", IMPLS)
def test_trace_backward_op(impl):
    """The adapters' backward as an operator: opcheck, and the eager path's numbers (per-neuron constants too)."""
    from tssl_plugin._impl import _op
    from tssl_plugin._impl.reference import forward_sequence
    from tssl_plugin.rule import lif_constants

    x = _x(T=6, seed=4, scale=1.6)
    g = torch.randn_like(x)
    per_neuron = lif_constants(x, torch.tensor([3.0, 5.0, 4.0, 7.0]), 2.0, torch.tensor([0.5, 1.0, 1.5, 0.8]),
                               "subtract", warmup_width=0.6)
    for k in (lif_constants(x, 5.0, 3.0, 1.0, "zero"), per_neuron,
              per_neuron._replace(sensitivity_cap=1.0 / per_neuron.threshold),
              per_neuron._replace(warmup_width=0.2 * per_neuron.threshold)):  # the adapters' width: w theta
        tr = forward_sequence(x, k)
        args = (g, tr.u, tr.du, tr.o, *encode(k), True, impl)
        opcheck(torch.ops.tssl_plugin.trace_backward.default, args)
        eager = _op.trace_backward(g, tr.u, tr.du, tr.o, k, True, impl)
        assert torch.equal(torch.ops.tssl_plugin.trace_backward(*args), eager) and eager.abs().sum() > 0


@pytest.mark.parametrize("spikes", [torch.bool, torch.float32])
def test_step_forward_op(spikes):
    """The step-wise node's forward bookkeeping as an operator (what it runs under torch.compile): opcheck, and
    the bytes of ``step_flags`` with the trace step of the eager step kernels, from bool or 0/1 spikes."""
    from tssl_plugin._impl import call
    from tssl_plugin._impl.reference import step_flags, trace_step
    from tssl_plugin.rule import lif_constants

    gen = torch.Generator().manual_seed(3)
    s = torch.rand(4, 6, generator=gen)
    o = torch.rand(4, 6, generator=gen) > 0.6
    per_neuron = lif_constants(s, 4.0, torch.tensor([2.0, 3.0, 4.0, 5.0, 6.0, 7.0]), 1.0, "subtract")
    for k in (lif_constants(s, 5.0, 3.0, 1.0, "zero"), per_neuron):
        args = (o.to(spikes), s, *encode(k), torch.float32)
        opcheck(torch.ops.tssl_plugin.step_forward.default, args)
        spike, s_next, flags = torch.ops.tssl_plugin.step_forward(*args)
        eager = call("auto", s, lambda i: i.step_forward(o, s, k.inv_tau_s, k.warmup_level, torch.float32))
        assert torch.equal(spike, o.float()) and torch.equal(s_next, eager[1])
        assert torch.equal(s_next, trace_step(s, o, k.inv_tau_s))
        assert flags.dtype == torch.uint8 and torch.equal(flags, step_flags(o, s_next, k.warmup_level))
        assert 1 in flags and 0 in flags


@pytest.mark.parametrize("delayed", [None, "subtract", "zero"])
def test_step_backward_op(delayed):
    """One step of the step-wise node's backward as an operator (what it runs under torch.compile): opcheck, and
    the eager step kernel's numbers, with and without the carried error, a membrane loss and a tensor scale."""
    from tssl_plugin._impl import _op, call
    from tssl_plugin._impl.reference import Increment, step_flags
    from tssl_plugin.rule import lif_constants

    gen = torch.Generator().manual_seed(4)
    u = torch.rand(4, 6, generator=gen, dtype=torch.float64) * 1.5
    du = torch.rand(4, 6, generator=gen, dtype=torch.float64) if delayed is None else u.flip(0)
    o = u > 1.0
    flags = step_flags(o, torch.rand(4, 6, generator=gen, dtype=torch.float64), 0.3)
    G, h, extra = (torch.randn(4, 6, generator=gen, dtype=torch.float64) for _ in range(3))
    per_neuron = lif_constants(u, torch.tensor([3.0, 5.0, 4.0, 7.0, 2.0, 6.0]), 2.0, 1.0, "subtract")
    for k in (lif_constants(u, 5.0, 3.0, 1.0, "zero"), per_neuron):
        for g, carried, mem_loss, scale in ((G, h, None, 1.0), (None, None, extra, 0.5),
                                            (G, h, extra, torch.tensor(0.25, dtype=torch.float64))):
            args = (g, carried, u, du, flags, *encode(k), True, mem_loss,
                    scale if isinstance(scale, torch.Tensor) else None,
                    0.0 if isinstance(scale, torch.Tensor) else scale, delayed or "")
            opcheck(torch.ops.tssl_plugin.step_backward.default, args)
            got = torch.ops.tssl_plugin.step_backward(*args)
            inc = du if delayed is None else Increment(du, delayed)
            want = call("auto", u, lambda i: i.step_backward(g, carried, u, inc, flags, k, True, mem_loss, scale))
            assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1]) and got[0].abs().sum() > 0
            assert all(torch.equal(a, b) for a, b in zip(got, _op.step_backward(g, carried, u, du, flags, k, True,
                                                                                 mem_loss, scale, delayed)))


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("output", ["psc", "spike"])
def test_registered_op_equals_eager_path(impl, output):
    """tssl_lif's eager path (no dispatcher) and the registered operator run the same code: identical results."""
    x = _x(seed=1)
    g = torch.randn_like(x)
    th = torch.tensor([0.5, 1.0, 1.5, 0.8], dtype=torch.float64)
    xa = x.clone().requires_grad_()
    ya = tssl_lif(xa, threshold=th, output=output, reset="subtract", impl=impl)
    ya.backward(g)
    xb = x.clone().requires_grad_()
    yb = torch.ops.tssl_plugin.lif(xb, *encode(LIFParameters(threshold=th, reset="subtract")), True, output == "psc",
                                   impl)
    yb.backward(g)
    assert torch.equal(ya, yb) and torch.equal(xa.grad, xb.grad)


def test_network_of_neurons_compiles_to_one_graph():
    _one_graph_with_eager_results(_net(), _x(shape=(3, 8)))


def test_functional_with_per_neuron_parameters_compiles_to_one_graph():
    def f(x, tau_m, threshold):
        a = tssl_lif(x, tau_m=tau_m, threshold=threshold, reset="subtract_after_leak")
        return tssl_lif(a * 3.0, tau_s=torch.full((4,), 2.0, dtype=x.dtype), output="spike").sum()

    tau_m = torch.tensor([3.0, 5.0, float("inf"), 7.0], dtype=torch.float64)
    threshold = torch.tensor([0.5, 1.0, 1.5, 0.8], dtype=torch.float64)
    x = _x(T=6, shape=(2, 4), seed=2).requires_grad_()
    torch._dynamo.reset()
    explained = torch._dynamo.explain(f)(x, tau_m, threshold)
    assert (explained.graph_count, explained.graph_break_count) == (1, 0), explained.break_reasons
    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    (g_compiled,) = torch.autograd.grad(compiled(x, tau_m, threshold), x)
    (g_eager,) = torch.autograd.grad(f(x, tau_m, threshold), x)
    assert torch.equal(g_compiled, g_eager) and g_eager.abs().sum() > 0


def test_non_default_warmup_width_compiles_to_one_graph():
    """A warm-up width other than 0.2 (a module attribute, and a constant in a function) goes through the
    compiled graph to the backward: one graph, the eager gradients, which differ from the default width's."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 16), TSSLNeuron(warmup_width=0.6),
                        nn.Linear(16, 4), TSSLNeuron(output="spike", reset="subtract", warmup_width=1.5)).double()
    x = _x(shape=(3, 8), seed=6)
    grads_eager = _one_graph_with_eager_results(net, x)
    net[1].warmup_width = net[3].warmup_width = 0.2
    net.zero_grad(set_to_none=True)
    net(x).sum().backward()
    assert not torch.equal(net[0].weight.grad, grads_eager[0])

    def f(x):
        return tssl_lif(x, output="spike", warmup_width=0.7).sum()

    xg = _x(seed=7).requires_grad_()
    (g_compiled,) = torch.autograd.grad(torch.compile(f, fullgraph=True, backend="aot_eager")(xg), xg)
    (g_eager,) = torch.autograd.grad(f(xg), xg)
    (g_default,) = torch.autograd.grad(tssl_lif(xg, output="spike").sum(), xg)
    assert torch.equal(g_compiled, g_eager) and not torch.equal(g_eager, g_default)


def test_inductor_fullgraph_matches_eager():
    """The default backend: the op runs as it is inside inductor's code, the Linear layers are compiled."""
    pytest.importorskip("torch._inductor")
    net = _net()
    x = _x(shape=(3, 8), seed=3)
    torch._dynamo.reset()
    y, y_eager, grads, grads_eager = compiled_and_eager(net, x)
    assert torch.equal(y, y_eager)  # the spikes themselves
    for a, b in zip(grads, grads_eager):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)  # inductor may reorder the Linear reductions


def test_export_keeps_the_op():
    net = _net()
    x = _x(shape=(3, 8), seed=4)
    ep = torch.export.export(net, (x,))
    targets = [n.target for n in ep.graph.nodes if n.op == "call_function"]
    assert targets.count(LIF) == 2
    assert torch.equal(ep.module()(x), net(x))


def test_bad_input_errors_stay_clear_when_compiled():
    """Value errors come from inside the op (the same ValueError compiled or not). A static error (here a
    shape) is raised while Dynamo traces: without fullgraph it is the same ValueError; with fullgraph=True
    Dynamo reports it as Unsupported, quoting the message."""
    def f(x, threshold):
        return tssl_lif(x, threshold=threshold)

    torch._dynamo.reset()
    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    x = _x()
    ok = torch.full((4,), 0.8, dtype=torch.float64)
    torch.testing.assert_close(compiled(x, ok), f(x, ok))
    bad_x = x.clone()
    bad_x[1, 2, 3] = float("inf")
    with pytest.raises(ValueError, match=r"x contains inf .*index \(1, 2, 3\)"):
        compiled(bad_x, ok)
    with pytest.raises(ValueError, match="threshold must be > 0 everywhere"):
        compiled(x, torch.tensor([0.8, -1.0, 0.8, 0.8], dtype=torch.float64))
    with pytest.raises(Exception, match="does not broadcast"):
        compiled(x, torch.ones(5, dtype=torch.float64))
    torch._dynamo.reset()
    with pytest.raises(ValueError, match="does not broadcast"):
        torch.compile(f, backend="aot_eager")(x, torch.ones(5, dtype=torch.float64))


@pytest.mark.parametrize("loss_name", ["kernel_loss", "count_loss", "KernelLoss", "CountLoss"])
def test_training_step_with_the_losses_compiles_to_one_graph(loss_name):
    """A user who compiles the whole step (input encoding, network, loss) gets one graph and the eager gradients:
    the losses and psp skip their value checks while torch.compile traces (the op checks its input itself)."""
    from tssl_plugin import CountLoss, KernelLoss, count_loss, kernel_loss, psp

    net = _net()  # its last layer emits spikes [T, N, 4]
    labels = torch.tensor([0, 3, 1])
    loss_fn = {"kernel_loss": lambda out: kernel_loss(psp(out), labels),
               "count_loss": lambda out: count_loss(psp(out), labels, desired_count=3, undesired_count=0.5),
               "KernelLoss": lambda out: KernelLoss()(out, labels),
               "CountLoss": lambda out: CountLoss()(out, labels)}[loss_name]

    def step(x):
        return loss_fn(net(psp(x)))

    x = _x(T=6, shape=(3, 8), scale=2.0)
    explanation = torch._dynamo.explain(step)(x)
    assert explanation.graph_count == 1 and explanation.graph_break_count == 0, explanation.break_reasons
    torch._dynamo.reset()
    loss = torch.compile(step, fullgraph=True)(x)
    loss.backward()
    grads = [p.grad.clone() for p in net.parameters()]
    net.zero_grad(set_to_none=True)
    loss_eager = step(x)
    loss_eager.backward()
    torch.testing.assert_close(loss, loss_eager, rtol=1e-12, atol=1e-12)
    for g, ge in zip(grads, (p.grad for p in net.parameters())):
        torch.testing.assert_close(g, ge, rtol=1e-10, atol=1e-12)
    assert any(g.abs().sum() > 0 for g in grads)


def test_kernel_loss_compiles_without_the_lru_cache_warning():
    """kernel_loss under torch.compile: one graph, the eager value and gradient, and no Dynamo warning about
    tracing through a cached function (its cache of the reference target is skipped while compiling)."""
    import warnings

    from tssl_plugin.loss import kernel_loss

    cache = getattr(torch._dynamo.utils, "warn_once_cache", None)
    if cache is not None:
        cache.clear()  # Dynamo warns once per process; this test must see it if it comes
    torch._dynamo.reset()
    psc = torch.rand(6, 4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1), requires_grad=True)
    labels = torch.tensor([0, 2, 1, 2])
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        value = torch.compile(kernel_loss, fullgraph=True, backend="aot_eager")(psc, labels)
        (g,) = torch.autograd.grad(value, psc)
    assert not [w for w in rec if "lru_cache" in str(w.message)], [str(w.message)[:200] for w in rec]
    eager = kernel_loss(psc, labels)
    (g_eager,) = torch.autograd.grad(eager, psc)
    assert torch.equal(value, eager) and torch.equal(g, g_eager)
