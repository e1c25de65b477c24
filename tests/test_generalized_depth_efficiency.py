import importlib.util
import json
import pathlib
import sys

import jax
import pytest

SCRIPT = (
    pathlib.Path(__file__).resolve().parent.parent
    / "experiments"
    / "generalized_depth_efficiency.py"
)


def load_experiment():
    spec = importlib.util.spec_from_file_location(
        "generalized_depth_efficiency", SCRIPT
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def restore_x64():
    # The experiment turns float64 on for itself; leave the suite as it was.
    before = jax.config.jax_enable_x64
    yield
    jax.config.update("jax_enable_x64", before)


def test_quick_run_writes_results_and_every_claim_holds(tmp_path, capsys, restore_x64):
    experiment = load_experiment()
    before = jax.config.jax_enable_x64
    results = experiment.main(["--quick", "--workdir", str(tmp_path)])
    assert jax.config.jax_enable_x64 == before  # run() restores the setting

    for name in (
        "config.json",
        "metrics.jsonl",
        "results.json",
        "ranks.png",
        "universality.png",
        "incomplete.png",
    ):
        assert (tmp_path / name).stat().st_size > 0, name
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["summary"] == results["summary"]
    assert saved["settings"]["targets"] == 2  # the QUICK sizes
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["preset"] == "quick"
    assert config["config"] == {"seed": 0, "draws": 16, "sizes": "quick"}
    written = json.loads((tmp_path / "summary.json").read_text())
    assert written["result"]["summary"] == results["summary"]
    assert set(saved["tables"]) == {
        "A_ranks",
        "B_universality",
        "C_incomplete_depth_efficiency",
    }
    checked = [c for c in saved["claims"] if c["holds"] is not None]
    assert len(checked) == 5
    assert all(c["holds"] for c in checked), [c for c in checked if not c["holds"]]

    records = [
        json.loads(line)
        for line in (tmp_path / "metrics.jsonl").read_text().splitlines()
    ]
    convac = [r for r in records if r.get("g") == "product"]
    assert convac and all(
        rank == r["convac_rank"] for r in convac for rank in r["exact_ranks"]
    )
    average = [r for r in records if r.get("kind") == "shallow-average-ranks"]
    assert average and max(r["max_rank"] for r in average) <= 2

    printed = capsys.readouterr().out
    assert "CLAIM:" in printed and "MEASURED:" in printed
    assert "SUMMARY: 5/5 claims hold" in printed


@pytest.mark.parametrize(("key", "value"), [("draws", 0), ("sizes", "paper")])
def test_bad_settings_are_refused_naming_the_key(key, value, tmp_path):
    experiment = load_experiment()
    config = experiment.get_config("quick") | {key: value}
    with pytest.raises(ValueError, match=f"config key '{key}'"):
        experiment.run(config, tmp_path)
    assert not (tmp_path / "metrics.jsonl").exists()
