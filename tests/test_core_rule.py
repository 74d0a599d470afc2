"""tssl_plugin.rule is the public home of the rule; the old import paths name the same objects."""
import tssl_plugin
from tssl_plugin import functional, rule
from tssl_plugin._impl import _params, reference


def test_rule_module_states_the_math():
    doc = rule.__doc__
    assert ".. math::" in doc
    for word in ("zero", "subtract", "subtract\\_after\\_leak", "none", "kappa", "warm-up"):
        assert word in doc, word


def test_names_stay_importable_where_they_were():
    for name in ("LIFConstants", "RESETS", "SENSITIVITY_CAP", "WARMUP_WIDTH", "Param"):
        assert getattr(reference, name) is getattr(rule, name), name
    for name in ("LIFConstants", "lif_constants", "RESETS", "OUTPUTS"):
        assert getattr(functional, name) is getattr(rule, name), name
    for name in ("carry_step", "trace_step", "spike_trace", "forward_step"):
        assert callable(getattr(reference, name))
    assert callable(functional.spikes_with_tssl_grad)
    assert tssl_plugin.rule is rule


def test_warmup_level_is_one_over_four_tau_s():
    assert rule.warmup_level(3.0) == 1.0 / 12.0
    import torch

    k = rule.lif_constants(torch.zeros(2, 3), tau_s=torch.tensor([2.0, 3.0, 4.0]))
    torch.testing.assert_close(k.warmup_level, torch.tensor([1 / 8, 1 / 12, 1 / 16]))


def test_parameter_table_has_one_definition():
    """Row numbers come from _params.ROWS for both kernels: the C build flags and the Triton constexprs."""
    flags = _params.c_defines()
    for i, name in enumerate(_params.ROWS):
        assert f"-DROW_{name.upper()}={i}" in flags
    assert f"-DN_ROWS={len(_params.ROWS)}" in flags
    assert not any("-DWARMUP_WIDTH" in f for f in flags)  # the width is a row, read at run time
    assert not any("-DSENSITIVITY_CAP" in f for f in flags)  # and so is the cap


def test_warmup_width_is_a_constant_of_the_layer_and_a_row_of_the_table():
    import torch

    x = torch.zeros(2, 3, dtype=torch.float64)
    k = rule.lif_constants(x)
    assert k.warmup_width == rule.WARMUP_WIDTH == 0.2
    assert rule.LIFConstants(0.2, 1 / 3, 1.0, 1 / 12, "zero").warmup_width == 0.2  # positional, as before
    k = rule.lif_constants(x, threshold=torch.tensor([1.0, 0.5, 2.0]), warmup_width=0.7)
    assert k.warmup_width == 0.7
    table, per_neuron = _params.pack_params(k, x)
    assert per_neuron and table[_params.ROW["warmup_width"]].tolist() == [0.7, 0.7, 0.7]
    table, per_neuron = _params.pack_params(rule.lif_constants(x, warmup_width=3), x)
    assert not per_neuron and table[_params.ROW["warmup_width"]].item() == 3.0
