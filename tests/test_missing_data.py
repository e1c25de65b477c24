import importlib.util
import json
import pathlib
import sys

import numpy as np
import pytest

SCRIPT = pathlib.Path(__file__).parents[1] / "experiments" / "missing_data.py"


def load_script():
    spec = importlib.util.spec_from_file_location("missing_data", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_knn_uses_observed_pixels_only():
    missing_data = load_script()
    x_train = np.array([[0.0, 0.0, 9.0], [1.0, 1.0, 0.0]])
    y_train = np.array([3, 7])
    x_test = np.array([[1.0, 1.0, 9.0]])
    # Complete: the nearest is example 1 (distance 81 vs 2). With the last pixel
    # missing, example 1 is at distance 0.
    everything = np.ones((1, 3), bool)
    assert missing_data.knn_predict(x_train, y_train, x_test, everything, 1) == [3]
    first_two = np.array([[True, True, False]])
    assert missing_data.knn_predict(x_train, y_train, x_test, first_two, 1) == [7]


def test_quick_run_writes_its_outputs(tmp_path, capsys):
    missing_data = load_script()
    config = missing_data.get_config("quick")
    config["train"] = config["train"] | {"steps": 12, "log_every": 6}
    summary = missing_data.run(config, tmp_path, progress=False)

    rows = summary["rows"]
    assert [(r["kind"], r["level"]) for r in rows] == [
        ("iid", 0.0),
        ("iid", 0.9),
        ("rect", 4),
    ]
    assert rows[0]["missing_fraction"] == 0.0
    assert rows[2]["missing_fraction"] == pytest.approx(16 / 64)
    for row in rows:
        accuracies = [v for k, v in row.items() if k not in ("kind", "level")]
        assert all(0.0 <= a <= 1.0 for a in accuracies)
    # Joint training raises the test likelihood of the generative model.
    info = summary["models"]["generative"]
    after = info["test_log_likelihood_per_pixel_after"]
    assert after > info["test_log_likelihood_per_pixel_before"] + 0.1
    assert json.loads((tmp_path / "results.json").read_text()) == summary
    for name in ("missing_accuracy.png", "missing_samples.png"):
        assert (tmp_path / name).stat().st_size > 1000
    assert (tmp_path / "generative" / "metrics.jsonl").exists()
    table = missing_data.format_tables(rows)
    assert "| 0.9 | 90 % |" in table and "TMM, marginalised" in table
