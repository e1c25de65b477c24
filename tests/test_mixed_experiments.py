"""Smoke tests of experiments/mixed_ranks.py and experiments/mixed_dilated.py."""

import importlib.util
import json
import pathlib
import sys

import pytest

EXPERIMENTS = pathlib.Path(__file__).resolve().parent.parent / "experiments"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, EXPERIMENTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_mixed_ranks_quick_matches_the_theorem(tmp_path):
    script = _load("mixed_ranks")
    summary = script.main(["--preset", "quick", "--workdir", str(tmp_path)])
    rows = {(r["kind"], r["width"]): r for r in summary["rows"]}
    # Theorem 1 on the paper's set: T of width 2 has rank exactly 2^6; the mixed
    # decomposition of width 2 reaches the full 2^8 on every draw here.
    assert rows["T", 2]["exact"] == [64, 64] and rows["T", 2]["lower"] == 64
    assert rows["mixed", 2]["exact"] == [256, 256]
    saved = json.loads((tmp_path / "results.json").read_text())
    assert len(saved["rows"]) == 2
    assert "| paper | T | 2 | 64 | 64 |" in (tmp_path / "table.md").read_text()


def test_mixed_dilated_quick_runs(tmp_path, monkeypatch):
    script = _load("mixed_dilated")
    quick = script.get_config

    def smaller(preset):
        # Even less than "quick": the run is compilation-bound, but equal-sized
        # train and test sets share the evaluation's compilations.
        config = quick(preset)
        config["data"] = {"max_train": 16, "max_test": 16}
        config["train"] |= {
            "steps": 2,
            "log_every": 1,
            "batch_size": 16,
            "eval_batch_size": 16,
        }
        return config

    monkeypatch.setattr(script, "get_config", smaller)
    summary = script.main(["--preset", "quick", "--workdir", str(tmp_path)])
    assert [r["model"] for r in summary["summary"]] == ["standard", "mixed 1"]
    # Equal width: a mixed network has both stacks' parameters.
    assert summary["summary"][1]["params"] == 2 * summary["summary"][0]["params"]
    for row in summary["runs"]:
        assert 0.0 <= row["test_accuracy"] <= 1.0
    assert (tmp_path / "accuracy.png").stat().st_size > 0
    assert (tmp_path / "standard" / "seed0" / "metrics.jsonl").exists()


def test_presets_are_checked():
    for name in ("mixed_ranks", "mixed_dilated"):
        with pytest.raises(ValueError, match="preset"):
            _load(name).get_config("paper")
