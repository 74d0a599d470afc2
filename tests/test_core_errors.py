"""Bad input gets a clear error naming the problem."""
import pytest
import torch

from tssl_plugin import TSSLNeuron, count_loss, kernel_loss, psp, tssl_lif

X = torch.rand(5, 2, 3)


@pytest.mark.parametrize(
    "x, exc, words",
    [
        (torch.rand(5), ValueError, "missing time dimension"),
        (torch.rand(0, 2, 3), ValueError, "T == 0"),
        (torch.ones(5, 2, dtype=torch.int64), TypeError, "floating-point"),
        (torch.ones(5, 2, dtype=torch.bool), TypeError, "floating-point"),
        ([[0.1, 0.2]], TypeError, "torch.Tensor"),
    ],
)
def test_bad_input_tensor(x, exc, words):
    with pytest.raises(exc, match=words):
        tssl_lif(x)


@pytest.mark.parametrize("value, word", [(float("nan"), "NaN"), (float("inf"), "inf"), (-float("inf"), "inf")])
def test_non_finite_input_names_which(value, word):
    x = X.clone()
    x[2, 1, 0] = value
    with pytest.raises(ValueError, match=rf"x contains {word} .*index \(2, 1, 0\)"):
        tssl_lif(x)


@pytest.mark.parametrize(
    "kw, words",
    [
        (dict(tau_m=1.0), "tau_m must be > 1"),
        (dict(tau_m=0.5), "tau_m must be > 1"),
        (dict(tau_m=-3.0), "tau_m must be > 1"),
        (dict(tau_s=0.0), "tau_s must be >= 1"),
        (dict(tau_s=-1.0), "tau_s must be >= 1"),
        (dict(threshold=float("nan")), "threshold must be finite"),
        (dict(threshold=-1.0), "threshold must be > 0, got -1"),
        (dict(threshold=0), "threshold must be > 0, got 0"),
        (dict(threshold=torch.tensor([1.0, 0.0, 1.0])), "threshold must be > 0 everywhere"),
        (dict(threshold=True), "threshold must be a number or a tensor, got bool"),
        (dict(tau_m=torch.tensor([5.0, 1.0, 5.0])), "tau_m must be > 1 everywhere"),
        (dict(threshold=torch.ones(4)), r"does not broadcast to the neuron shape \(2, 3\)"),
        (dict(tau_s=torch.ones(5, 2, 3)), "does not broadcast"),
        (dict(threshold=torch.ones(3, requires_grad=True)), "requires grad"),
        (dict(output="psp"), "unknown output 'psp'"),
        (dict(reset="soft"), "unknown reset 'soft'"),
        (dict(impl="cuda-magic"), "unknown impl 'cuda-magic'"),
        (dict(warmup="yes"), "warmup must be True, False or one of 'trace', 'silent', 'auto' .*got str 'yes'"),
        (dict(warmup=1), "warmup must be True, False or one of .*got int 1"),
        (dict(tau_m="5"), "tau_m must be a number or a tensor"),
        (dict(warmup_width=0.0), "warmup_width must be a finite number > 0"),
        (dict(warmup_width=-0.5), r"warmup_width must be a finite number > 0 .*got -0.5"),
        (dict(warmup_width=float("nan")), "warmup_width must be a finite number > 0"),
        (dict(warmup_width=float("inf")), "warmup_width must be a finite number > 0"),
        (dict(warmup_width=True), "warmup_width must be a number .*got bool"),
        (dict(warmup_width="0.5"), "warmup_width must be a number .*got str"),
        (dict(warmup_width=torch.tensor(0.5)), "warmup_width must be a number .*got Tensor"),
    ],
)
def test_bad_parameters(kw, words):
    with pytest.raises((ValueError, TypeError), match=words):
        tssl_lif(X, **kw)


def test_if_neuron_is_tau_m_inf():
    x = torch.full((4, 1, 1), 0.3)
    o = tssl_lif(x, tau_m=float("inf"), output="spike")
    assert o.flatten().tolist() == [0.0, 0.0, 0.0, 1.0]  # 0.3, 0.6, 0.9, 1.2: no leak


def test_module_checks_at_construction():
    with pytest.raises(ValueError, match="unknown reset"):
        TSSLNeuron(reset="hard")
    with pytest.raises(ValueError, match="tau_m must be > 1"):
        TSSLNeuron(tau_m=0.9)
    with pytest.raises(TypeError, match="warmup must be True, False or one of"):
        TSSLNeuron(warmup="no")  # was silently True
    with pytest.raises(ValueError, match="unknown impl 'nonsense'"):
        TSSLNeuron(impl="nonsense")  # was accepted until the first forward
    with pytest.raises(ValueError, match="threshold must be > 0"):
        TSSLNeuron(threshold=-1.0)
    with pytest.raises(ValueError, match="tau_s must be >= 1 everywhere"):
        TSSLNeuron(tau_s=torch.tensor([3.0, 0.5]))
    with pytest.raises(ValueError, match="warmup_width must be a finite number > 0"):
        TSSLNeuron(warmup_width=0)
    from tssl_plugin.rule import lif_constants

    with pytest.raises(ValueError, match="warmup_width must be a finite number > 0"):
        lif_constants(X, warmup_width=-1.0)


def test_parameter_tensor_values_are_checked_again_after_an_in_place_change():
    """Parameter tables are cached per tensor version: an in-place change is packed (and checked) again."""
    th = torch.full((3,), 0.5)
    x = torch.rand(4, 2, 3)
    tssl_lif(x, threshold=th)
    th[1] = -2.0
    with pytest.raises(ValueError, match="threshold must be > 0 everywhere"):
        tssl_lif(x, threshold=th)


@pytest.mark.parametrize("impl", ["reference", "cpu"])
def test_a_parameter_tensor_changed_in_place_before_the_backward_raises(impl):
    """The backward would read the new threshold against the old forward: autograd's in-place check says so."""
    th = torch.full((4,), 0.8)
    x = (torch.rand(5, 3, 4, generator=torch.Generator().manual_seed(0)) * 1.5).requires_grad_()
    y = tssl_lif(x, threshold=th, impl=impl)
    th.fill_(0.9)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()


@pytest.mark.parametrize("impl", ["reference", "cpu"])
def test_non_finite_input_is_found_by_every_cpu_impl(impl):
    if impl == "cpu":
        from tssl_plugin._impl import cpu

        try:
            cpu.load()
        except ImportError:
            pytest.skip("C kernel could not be built here")
    x = X.clone()
    x[4, 0, 2] = float("nan")
    with pytest.raises(ValueError, match=r"x contains NaN .*index \(4, 0, 2\)"):
        tssl_lif(x, impl=impl)


def test_psp_and_losses_check_their_input():
    with pytest.raises(ValueError, match="missing time dimension"):
        psp(torch.rand(4))
    with pytest.raises(ValueError, match=r"expected \[T, N, n_class\]"):
        kernel_loss(torch.rand(5, 2, 3, 4), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"labels has shape \(3,\)"):
        kernel_loss(torch.rand(5, 2, 3), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        count_loss(torch.rand(5, 2, 3), torch.tensor([0, 3]), desired_count=3, undesired_count=1)
    with pytest.raises(TypeError, match="integer tensor"):
        kernel_loss(torch.rand(5, 2, 3), torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="desired pattern has 4 steps"):
        kernel_loss(torch.rand(5, 2, 3), torch.tensor([0, 1]), desired=torch.ones(4))
    with pytest.raises(ValueError, match="output_psc contains NaN"):
        kernel_loss(torch.full((5, 2, 3), float("nan")), torch.tensor([0, 1]))


@pytest.mark.parametrize("name, value, ok", [
    ("tau_m", 1.0, False), ("tau_m", float("inf"), True), ("tau_s", 1.0, True), ("tau_s", float("inf"), False),
    ("threshold", 0.0, False), ("threshold", 1e-9, True),
])
def test_number_and_tensor_parameters_share_their_bounds(name, value, ok):
    """_validation.PARAM_BOUNDS decides for a number and for a tensor alike, at the edge of each range."""
    x = torch.zeros(3, 2)
    for v in (value, torch.full((2,), value)):
        if ok:
            tssl_lif(x, **{name: v})
        else:
            with pytest.raises(ValueError, match=name):
                tssl_lif(x, **{name: v})
