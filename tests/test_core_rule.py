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
    assert f"-DSENSITIVITY_CAP={rule.SENSITIVITY_CAP!r}" in flags
