import importlib.util
import json
import pathlib

_PATH = pathlib.Path(__file__).parents[1] / "experiments" / "entanglement_min_cut.py"
_SPEC = importlib.util.spec_from_file_location("entanglement_min_cut", _PATH)
experiment = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(experiment)


def test_smoke(tmp_path):
    rows = experiment.main(
        [
            "--draws",
            "2",
            "--random-partitions",
            "1",
            "--configs",
            "bin8-M2-w333",
            "--workdir",
            str(tmp_path),
        ]
    )
    assert len(rows) == 5
    for row in rows:
        assert all(r <= row["bound"] for r in row["ranks"])
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert json.loads(lines[0])["config"] == "bin8-M2-w333"
    assert (tmp_path / "bound_vs_rank.png").stat().st_size > 0
