import importlib.util
import json
import pathlib
import sys

import pytest

_PATH = pathlib.Path(__file__).parents[1] / "experiments" / "entanglement_min_cut.py"
_SPEC = importlib.util.spec_from_file_location("entanglement_min_cut", _PATH)
experiment = importlib.util.module_from_spec(_SPEC)
sys.modules[_SPEC.name] = experiment  # main() passes itself to jaxconvac.cli
_SPEC.loader.exec_module(experiment)


def test_smoke(tmp_path):
    summary = experiment.main(["--quick", "--workdir", str(tmp_path)])
    rows = summary["rows"]
    assert len(rows) == 5
    for row in rows:
        assert len(row["ranks"]) == 2
        assert all(r <= row["bound"] for r in row["ranks"])
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == rows
    assert json.loads(lines[0])["config"] == "bin8-M2-w333"
    assert (tmp_path / "bound_vs_rank.png").stat().st_size > 0
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["config"] == {
        "seed": 0,
        "draws": 2,
        "random_partitions": 1,
        "configs": ["bin8-M2-w333"],
    }
    written = json.loads((tmp_path / "summary.json").read_text())
    assert written["result"]["shortfall"] == summary["shortfall"]


@pytest.mark.parametrize(
    ("key", "value"),
    [("draws", 0), ("random_partitions", -1), ("configs", ["bin9"]), ("configs", [])],
)
def test_bad_settings_are_refused_naming_the_key(key, value, tmp_path):
    config = experiment.get_config("quick") | {key: value}
    with pytest.raises(ValueError, match=f"config key '{key}'"):
        experiment.run(config, tmp_path)
    assert not (tmp_path / "metrics.jsonl").exists()
