"""The core's step-wise node (tssl_plugin.stepwise) reproduces the whole-sequence op's gradients exactly."""
import pytest
import torch

from tssl_plugin._impl.reference import forward_step
from tssl_plugin.stepwise import StepState, initial_state, next_state, tssl_step
from tssl_plugin.functional import RESETS, lif_constants, spikes_with_tssl_grad, tssl_lif


def _step_loop(x, k, warmup, mem_weight=None):
    """Drive tssl_step with the reference forward arithmetic, one call per step."""
    v = torch.zeros_like(x[0])
    o = torch.zeros(x.shape[1:], dtype=torch.bool)
    state = initial_state(x[0])
    spikes, mems = [], []
    for t in range(x.shape[0]):
        with torch.no_grad():
            s_dummy = torch.zeros_like(v)
            o, u, du, v, _ = forward_step(x[t].detach(), v, o, s_dummy, k)
        (spk, mem), state = tssl_step(x[t], state, u, du, o, u, k, warmup=warmup)
        assert isinstance(state, StepState)
        spikes.append(spk)
        mems.append(mem)
    return torch.stack(spikes), torch.stack(mems)


@pytest.mark.parametrize("reset", RESETS)
@pytest.mark.parametrize("warmup, width", [(True, 0.2), (False, 0.2), (True, 0.9)])
def test_step_loop_equals_sequence_op(reset, warmup, width):
    gen = torch.Generator().manual_seed(3)
    x = (torch.rand(12, 5, 7, generator=gen, dtype=torch.float64) * 0.9).requires_grad_()
    gy = torch.randn(12, 5, 7, generator=gen, dtype=torch.float64)
    o_seq = tssl_lif(x, 5.0, 3.0, 1.0, warmup=warmup, output="spike", reset=reset, warmup_width=width)
    (gx_seq,) = torch.autograd.grad(o_seq, x, gy)

    k = lif_constants(x, 5.0, 3.0, 1.0, reset, warmup_width=width)
    o_step, _ = _step_loop(x, k, warmup)
    assert torch.equal(o_step, o_seq)
    (gx_step,) = torch.autograd.grad(o_step, x, gy)
    torch.testing.assert_close(gx_step, gx_seq, rtol=1e-12, atol=1e-12)


def test_membrane_loss_adds_to_delta_before_carry():
    """A membrane loss m[t] enters delta[t]: the same as sending m through a trace-based sequence op."""
    gen = torch.Generator().manual_seed(4)
    x = (torch.rand(10, 3, 4, generator=gen, dtype=torch.float64) * 0.9).requires_grad_()
    gy = torch.randn(10, 3, 4, generator=gen, dtype=torch.float64)
    gm = torch.randn(10, 3, 4, generator=gen, dtype=torch.float64)
    k = lif_constants(x, 5.0, 3.0, 1.0, "zero")
    spk, mem = _step_loop(x, k, warmup=False)
    (gx,) = torch.autograd.grad([spk, mem], x, [gy, gm])
    spk2, _ = _step_loop(x, k, warmup=False)
    (g_only_spk,) = torch.autograd.grad(spk2, x, gy)
    assert not torch.allclose(gx, g_only_spk)
    # by hand: the recursion with m[t] added to delta[t] at every step
    from tssl_plugin._impl.reference import carry_step, forward_sequence
    tr = forward_sequence(x.detach(), k)
    h = None
    expect = torch.empty_like(gm)
    for t in range(9, -1, -1):
        gxt, h = carry_step(gy[t], h, tr.u[t], tr.du[t], tr.o[t], None, k, False, extra=gm[t])
        expect[t] = gxt
    torch.testing.assert_close(gx, expect, rtol=1e-12, atol=1e-12)


def test_spikes_with_tssl_grad_matches_core_op():
    gen = torch.Generator().manual_seed(5)
    x = (torch.rand(8, 4, 6, generator=gen, dtype=torch.float64) * 0.9).requires_grad_()
    gy = torch.randn(8, 4, 6, generator=gen, dtype=torch.float64)
    from tssl_plugin._impl.reference import forward_sequence
    for width in (0.2, 0.9):  # the warm-up width travels in k
        k = lif_constants(x, 5.0, 3.0, 1.0, "zero", warmup_width=width)
        tr = forward_sequence(x.detach(), k)
        o = spikes_with_tssl_grad(x, tr.u, tr.du, tr.o, k, warmup=True, input_scale=0.5)
        (g1,) = torch.autograd.grad(o, x, gy)
        (g2,) = torch.autograd.grad(tssl_lif(x, 5.0, 3.0, 1.0, output="spike", warmup_width=width), x, gy)
        torch.testing.assert_close(g1, 0.5 * g2, rtol=1e-12, atol=1e-12)


def test_whole_sequence_membrane_output_equals_the_step_loop():
    """spikes_with_tssl_grad(..., mem=) carries a membrane loss as the step-wise node does."""
    from tssl_plugin._impl.reference import forward_sequence

    gen = torch.Generator().manual_seed(6)
    x = (torch.rand(11, 3, 5, generator=gen, dtype=torch.float64) * 0.9).requires_grad_()
    gy = torch.randn(11, 3, 5, generator=gen, dtype=torch.float64)
    gm = torch.randn(11, 3, 5, generator=gen, dtype=torch.float64)
    for reset in RESETS:
        k = lif_constants(x, 5.0, 3.0, 1.0, reset)
        tr = forward_sequence(x.detach(), k)
        spk, mem = spikes_with_tssl_grad(x, tr.u, tr.du, tr.o, k, mem=tr.u)
        spk_s, mem_s = _step_loop(x, k, warmup=True)
        assert torch.equal(spk, spk_s) and torch.equal(mem, mem_s)
        for grads in ([gy, gm], [None, gm]):
            outs = [o for o, g in zip((spk, mem), grads) if g is not None]
            outs_s = [o for o, g in zip((spk_s, mem_s), grads) if g is not None]
            gs = [g for g in grads if g is not None]
            (g_seq,) = torch.autograd.grad(outs, x, gs, retain_graph=True)
            (g_step,) = torch.autograd.grad(outs_s, x, gs, retain_graph=True)
            torch.testing.assert_close(g_seq, g_step, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("impl", ["reference", "cpu"])
@pytest.mark.parametrize("reset", RESETS)
@pytest.mark.parametrize("spike_loss", [True, False])
def test_membrane_loss_backward_runs_the_chosen_implementation(impl, reset, spike_loss):
    """The backward of a loss on the membrane goes through the dispatch (the step kernels of ``impl``, which
    take the membrane's term) and equals the reference's recursion with that term."""
    from tssl_plugin import _impl
    from tssl_plugin._impl.reference import backward_sequence, forward_sequence
    from tssl_plugin.functional import last_impl

    gen = torch.Generator().manual_seed(7)
    x = (torch.rand(9, 4, 5, generator=gen, dtype=torch.float64) * 0.9).requires_grad_()
    gy = torch.randn(9, 4, 5, generator=gen, dtype=torch.float64)
    gm = torch.randn(9, 4, 5, generator=gen, dtype=torch.float64)
    k = lif_constants(x, 5.0, 3.0, 1.0, reset)
    tr = forward_sequence(x.detach(), k)
    assert tr.o.dtype == torch.bool and bool(tr.o.any())  # what the fused step kernels take
    spk, mem = spikes_with_tssl_grad(x, tr.u, tr.du, tr.o, k, mem=tr.u, impl=impl, input_scale=0.5)
    if not spike_loss:
        gy = torch.zeros_like(gy)
    _impl._reset_for_tests()  # forget which implementation ran last
    (g,) = torch.autograd.grad([spk, mem] if spike_loss else [mem], x, [gy, gm] if spike_loss else [gm])
    assert last_impl("cpu", torch.float64) == impl
    expect = backward_sequence(gy, tr, k, True, False, extra=gm)
    torch.testing.assert_close(g, 0.5 * expect, rtol=1e-12, atol=1e-12)


def test_state_detach_and_next_state():
    x = torch.rand(4, 3, dtype=torch.float64, requires_grad=True)
    state = initial_state(x[0])
    assert not state.trace.requires_grad and torch.equal(state.trace, torch.zeros(3, dtype=torch.float64))
    o = torch.tensor([True, False, True])
    state2 = next_state(state, o, 1 / 3)
    torch.testing.assert_close(state2.trace, torch.tensor([1 / 3, 0.0, 1 / 3], dtype=torch.float64))
    k = lif_constants(x, 5.0, 3.0, 1.0, "zero")
    (_, _), s3 = tssl_step(x[0], state2, x[0].detach(), x[0].detach(), o, x[0].detach(), k)
    assert s3.trace.requires_grad and not s3.detach().trace.requires_grad
    torch.testing.assert_close(s3.trace, next_state(state2, o, 1 / 3).trace)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_step_node_saves_the_membrane_its_increment_and_one_flag_byte(dtype):
    """What a step keeps for its backward: ``u``, ``du`` and the step's flags (one byte per element: the spike and
    the warm-up's test), not the spikes and the float trace apart."""
    gen = torch.Generator().manual_seed(5)
    x = torch.rand(4, 6, generator=gen, dtype=dtype).requires_grad_()
    k = lif_constants(x.unsqueeze(0), 5.0, 3.0, 1.0, "zero")
    u = (2 * x).detach()
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        tssl_step(x, initial_state(x.detach()), u, u - 0.5, u > 1.0, None, k)
    assert [(t.dtype, tuple(t.shape)) for t in saved] == [(dtype, (4, 6)), (dtype, (4, 6)), (torch.uint8, (4, 6))]
    assert torch.equal(saved[2], (u > 1.0).to(torch.uint8) | ((~(u > 1.0)).to(torch.uint8) << 1))


@pytest.mark.parametrize("delayed", ["subtract", "zero", "none"])
def test_an_increment_from_the_previous_membrane_gives_the_same_gradients_and_saves_less(delayed):
    """du given as Increment(prev, delayed), the membrane the step started from: the backward computes
    du = u - base(prev) (reference.increment) and gives the same gradients bit for bit as du given as a tensor;
    where prev is the previous step's u the node saves nothing new for it."""
    from tssl_plugin._impl.reference import Increment, increment

    gen = torch.Generator().manual_seed(7)
    T, shape = 6, (3, 50)
    x = (1.2 * torch.rand(T, *shape, generator=gen, dtype=torch.float64)).requires_grad_()
    gy = torch.randn(T, *shape, generator=gen, dtype=torch.float64)
    k = lif_constants(x, 5.0, 3.0, 1.0, "subtract_after_leak")
    outs, saved = [], []
    for as_increment in (False, True):
        mem = torch.zeros(shape, dtype=torch.float64)
        state, spikes = initial_state(x[0].detach()), []
        with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append((as_increment, t)) or t, lambda t: t):
            for t in range(T):
                u = 0.8 * mem + x[t].detach()  # a host's membrane, started from mem
                inc = Increment(mem, delayed)
                du = increment(u, inc, k.threshold)
                (spk, _), state = tssl_step(x[t], state, u, inc if as_increment else du, u > 1.0, None, k)
                spikes.append(spk)
                mem = u
        outs.append(torch.autograd.grad(torch.stack(spikes), x, gy)[0])
    assert torch.equal(outs[0], outs[1])
    storages = {flag: {t.untyped_storage().data_ptr() for f, t in saved if f == flag and t.dtype == torch.float64}
                for flag in (False, True)}
    assert len(storages[False]) == 2 * T and len(storages[True]) == T + 1  # u per step (+ the first mem)


def test_an_increment_with_an_unknown_reset_is_refused():
    from tssl_plugin._impl.reference import Increment

    x = torch.rand(2, 3, requires_grad=True)
    k = lif_constants(x.unsqueeze(0))
    with pytest.raises(ValueError, match="Increment.reset must be one of"):
        tssl_step(x, initial_state(x.detach()), x.detach(), Increment(x.detach(), "soft"), x > 0.5, None, k)
