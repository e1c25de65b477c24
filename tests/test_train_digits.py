import importlib.util
import json
import pathlib
import sys

SCRIPT = pathlib.Path(__file__).parents[1] / "experiments" / "train_digits.py"


def load_script():
    spec = importlib.util.spec_from_file_location("train_digits", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_quick_run_writes_its_outputs(tmp_path, capsys):
    train_digits = load_script()
    rows = train_digits.main(["--quick", "--no-progress", "--workdir", str(tmp_path)])

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
        config = json.loads((run / "config.json").read_text())
        assert config["split"] == {"test_size": 0.25, "random_state": 0}
    assert json.loads((tmp_path / "results.json").read_text()) == rows
    assert (tmp_path / "learning_curves.png").stat().st_size > 1000
    table = capsys.readouterr().out
    assert "| deep | image |" in table and "| shallow | shallow |" in table
