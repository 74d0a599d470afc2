"""The installed distribution exposes one top-level name, tssl_plugin, with adapters and benchmarks inside."""
import subprocess
import sys
from importlib import metadata


def test_only_tssl_plugin_is_a_top_level_name(tmp_path):
    code = (
        "import importlib.util as u, tssl_plugin.adapters, tssl_plugin.benchmarks;"
        "print(u.find_spec('adapters'), u.find_spec('benchmarks'))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["None", "None"]


def test_console_script_points_into_the_package():
    eps = {ep.name: ep.value for ep in metadata.entry_points(group="console_scripts")}
    assert eps.get("tssl-bench") == "tssl_plugin.benchmarks.cli:main"


def test_extras_declared():
    extras = set(metadata.metadata("tssl-plugin").get_all("Provides-Extra"))
    assert {"snntorch", "spikingjelly", "bench", "dev", "all"} <= extras
