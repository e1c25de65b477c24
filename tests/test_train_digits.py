import importlib.util
import json
import pathlib
import sys

import pytest

from jaxconvac import cli

SCRIPT = pathlib.Path(__file__).parents[1] / "experiments" / "train_digits.py"


def load_script():
    spec = importlib.util.spec_from_file_location("train_digits", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_quick_run_writes_its_outputs(tmp_path, capsys):
    train_digits = load_script()
    summary = train_digits.main(
        ["--quick", "--no-progress", "--workdir", str(tmp_path)]
    )
    rows = summary["models"]

    assert [row["model"] for row in rows] == ["deep", "shallow"]
    for row in rows:
        assert 0.0 <= row["train_accuracy"] <= 1.0
        assert 0.0 <= row["test_accuracy"] <= 1.0
        assert row["params"] > 0 and row["seconds"] > 0
        run = tmp_path / row["model"]
        records = [
            json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()
        ]
        assert records[-1]["step"] == 20 and "test_accuracy" in records[-1]
        assert records[-1]["skipped"] == 0
        config = json.loads((run / "config.json").read_text())
        assert config["split"] == {"test_size": 0.25, "random_state": 0}
        assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["10", "20"]
    assert json.loads((tmp_path / "results.json").read_text()) == rows
    assert json.loads((tmp_path / "summary.json").read_text())["result"] == summary
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["preset"] == "quick" and saved["config"]["train"]["steps"] == 20
    assert (tmp_path / "learning_curves.png").stat().st_size > 1000
    out = capsys.readouterr().out
    assert "| deep | image |" in out and "| shallow | shallow |" in out
    assert f"figures:     {tmp_path / 'learning_curves.png'}" in out


def test_config_presets_and_overrides():
    train_digits = load_script()
    full = train_digits.get_config()
    assert full["train"]["steps"] == 3000 and full["data"]["max_train"] is None
    assert train_digits.get_config("quick")["data"] == {
        "max_train": 256,
        "max_test": 64,
    }
    config = cli.apply_overrides(
        full, ["models.deep.widths=8,16,32", "train.compute_dtype=bfloat16"]
    )
    specs = train_digits.model_specs(config)
    assert [s.name for s in specs] == ["deep", "shallow"]
    assert specs[0].widths == (8, 16, 32)
    assert specs[0].train.compute_dtype == "bfloat16" and specs[0].train.seed == 0
    with pytest.raises(ValueError, match=r"preset must be 'full' or 'quick'"):
        train_digits.get_config("paper")
    bad = cli.apply_overrides(full, ["models.deep.tree=ring"])
    with pytest.raises(ValueError, match=r"models\.deep\.tree must be 'image'"):
        train_digits.model_specs(bad)
