"""adapters/_convert.py: the options a converted layer keeps, shared by both adapters' convert and revert."""
import inspect

import pytest
import torch

from tssl_plugin.adapters._convert import LAYER_OPTIONS, checked_convert_options, checked_options

ADAPTERS = [pytest.param("snntorch", id="snntorch"), pytest.param("spikingjelly", id="spikingjelly")]


def _adapter(name):
    pytest.importorskip(name)
    import importlib

    return importlib.import_module(f"tssl_plugin.adapters.{name}")


def _model(name):
    if name == "snntorch":
        import snntorch as snn

        return torch.nn.Sequential(torch.nn.Linear(3, 4), snn.Leaky(beta=0.9))
    from spikingjelly.activation_based import neuron

    return torch.nn.Sequential(torch.nn.Linear(3, 4), neuron.LIFNode())


@pytest.mark.parametrize("name", ADAPTERS)
def test_convert_takes_the_layer_options_and_revert_removes_them(name):
    """``convert``'s rule keywords are LAYER_OPTIONS, in order, with the defaults ``checked_convert_options``
    accepts; a converted layer holds each as an instance attribute and ``revert`` removes every one."""
    adapter = _adapter(name)
    params = inspect.signature(adapter.convert).parameters
    rule = [p for p in params if p not in ("model", "strict", "exclude")]
    assert rule == list(LAYER_OPTIONS)
    defaults = {p: params[p].default for p in rule}
    assert checked_convert_options(**defaults) == defaults
    model = adapter.convert(_model(name), tau_s=2.0, warmup_width=0.5, warmup_floor=True, crossing="step")
    layer = model[1]
    assert {k: layer.__dict__[k] for k in LAYER_OPTIONS} == {**defaults, "tau_s": 2.0, "warmup_width": 0.5,
                                                            "warmup_floor": True, "crossing": "step"}
    adapter.revert(model)
    assert not set(LAYER_OPTIONS) & set(layer.__dict__)


@pytest.mark.parametrize("bad, match", [({"tau_s": 0.5}, "tau_s"), ({"warmup": "no"}, "warmup"),
                                        ({"warmup_width": 0.0}, "warmup_width"),
                                        ({"sensitivity_cap": -1.0}, "sensitivity_cap"),
                                        ({"ablation": "none_of_it"}, "ablation")])
def test_checked_options_name_the_bad_one(bad, match):
    good = dict(tau_s=3.0, warmup="auto", warmup_width=0.2, sensitivity_cap=None, ablation="none")
    with pytest.raises((TypeError, ValueError), match=match):
        checked_options(**{**good, **bad})
    with pytest.raises((TypeError, ValueError), match="warmup_floor"):
        checked_convert_options(**good, warmup_floor="yes", crossing=None)
