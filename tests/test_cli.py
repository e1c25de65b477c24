import json
import types

import pytest

from jaxconvac import cli

CONFIG = {
    "seed": 0,
    "progress": True,
    "name": "run",
    "rate": 0.5,
    "limit": None,
    "train": {"steps": 10, "widths": [4, 8], "tags": []},
}


def fake_experiment(*, resumable=True):
    """An experiment that records its calls and writes a figure."""
    calls = []

    def get_config(preset="full"):
        config = json.loads(json.dumps(CONFIG))
        if preset == "quick":
            config["train"]["steps"] = 2
        return config

    def run(config, workdir, resume=False):
        calls.append((config, workdir, resume))
        (workdir / "curve.png").write_bytes(b"png")
        (workdir / "model").mkdir(exist_ok=True)
        (workdir / "model" / "metrics.jsonl").write_text("{}\n")
        return {"steps": config["train"]["steps"], "seed": config["seed"]}

    def run_no_resume(config, workdir):
        return run(config, workdir)

    module = types.ModuleType("fake_job", "A fake job.\n\nMore.")
    module.get_config = get_config
    module.run = run if resumable else run_no_resume
    module.calls = calls
    return module


def test_main_runs_and_writes_its_files(tmp_path, capsys):
    job = fake_experiment()
    summary = cli.main(
        [
            "--workdir",
            str(tmp_path),
            "--preset",
            "quick",
            "--seed",
            "3",
            "--set",
            "train.widths=16,32",
            "--set",
            "rate=1e-3",
            "--no-progress",
        ],
        job,
    )
    assert summary == {"steps": 2, "seed": 3}
    config, workdir, resume = job.calls[0]
    assert workdir == tmp_path and resume is False
    assert config["train"] == {"steps": 2, "widths": [16, 32], "tags": []}
    assert config["rate"] == 0.001 and config["progress"] is False
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved == {"experiment": "fake_job", "preset": "quick", "config": config}
    written = json.loads((tmp_path / "summary.json").read_text())
    assert written["result"] == summary and written["experiment"] == "fake_job"
    assert written["seconds"] >= 0 and written["devices"] >= 1
    out = capsys.readouterr().out
    assert f"summary:     {tmp_path / 'summary.json'}" in out
    assert f"figures:     {tmp_path / 'curve.png'}" in out
    assert f"metrics:     {tmp_path / 'model' / 'metrics.jsonl'}" in out

    # --resume with the same config passes resume=True; a different one is
    # refused before anything runs.
    cli.main(
        [
            "--workdir",
            str(tmp_path),
            "--quick",
            "--seed",
            "3",
            "--resume",
            "--set",
            "train.widths=16,32",
            "--set",
            "rate=1e-3",
            "--no-progress",
        ],
        job,
    )
    assert job.calls[1][2] is True
    with pytest.raises(
        ValueError, match=r"(?s)different config.*config\.seed: saved 3"
    ):
        cli.main(["--workdir", str(tmp_path), "--quick", "--resume"], job)
    assert len(job.calls) == 2


def test_default_preset_and_print_config(tmp_path, capsys):
    job = fake_experiment()
    assert cli.main(["--print-config", "--workdir", str(tmp_path)], job) == {}
    assert json.loads(capsys.readouterr().out) == CONFIG
    assert not job.calls and not (tmp_path / "config.json").exists()


@pytest.mark.parametrize(
    ("override", "value"),
    [
        ("progress=no", False),
        ("progress=TRUE", True),
        ("name=other run", "other run"),
        ("rate=2", 2.0),
        ("rate=inf", float("inf")),
        ("limit=3", 3),
        ("limit=null", None),
        ("limit=[1, 2]", [1, 2]),
        ("limit=word", "word"),
        ("train.steps=7", 7),
        ("train.widths=[1,2,3]", [1, 2, 3]),
        ("train.widths=", []),
        ("train.tags=a,1", ["a", 1]),
    ],
)
def test_overrides_are_typed(override, value):
    key = override.split("=")[0]
    config = cli.apply_overrides(CONFIG, [override])
    node = config
    for part in key.split("."):
        node = node[part]
    assert node == value and type(node) is type(value)
    assert CONFIG["train"]["widths"] == [4, 8]  # the input is not changed


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.step=3", r"'train\.step': unknown key\. The config's keys are: seed,"),
        ("nothing.here=3", r"'nothing\.here': unknown key"),
        ("seed.x=3", r"'seed\.x': unknown key"),
        ("train.steps=1.5", r"'train\.steps': expects an int \(preset value 10\), "),
        ("rate=fast", r"'rate': expects a float \(preset value 0\.5\), got 'fast'"),
        ("progress=maybe", r"'progress': expects a bool \(true/false\)"),
        ("train.widths=4,x", r"'train\.widths\[1\]': expects an int"),
        ("train.widths=[1,", r"'train\.widths': expects a JSON list"),
        ("train=3", r"'train': is a section, not a value"),
        ("steps", r"an override must look like KEY=VALUE"),
    ],
)
def test_bad_overrides_name_the_key(override, message):
    with pytest.raises(cli.ConfigError, match=message):
        cli.apply_overrides(CONFIG, [override])


def test_errors_before_running(tmp_path):
    job = fake_experiment(resumable=False)
    with pytest.raises(ValueError, match=r"'fake_job' cannot resume"):
        cli.main(["--workdir", str(tmp_path), "--resume"], job)
    job.get_config = lambda preset="full": {"steps": 1}
    with pytest.raises(cli.ConfigError, match=r"--seed given but the config has no"):
        cli.main(["--workdir", str(tmp_path), "--seed", "1"], job)
    with pytest.raises(ValueError, match=r"experiment file 'nope.py' does not exist"):
        cli.main(["nope.py"])
    (tmp_path / "half.py").write_text("def get_config(preset='x'):\n    return {}\n")
    with pytest.raises(ValueError, match=r"has no run\(\) function"):
        cli.load_experiment(str(tmp_path / "half.py"))
    # A work directory with checkpoints is not touched without --resume.
    (tmp_path / "m" / "checkpoints" / "20").mkdir(parents=True)
    job = fake_experiment()
    with pytest.raises(ValueError, match=r"holds checkpoints .*pass --resume"):
        cli.main(["--workdir", str(tmp_path)], job)
    assert not job.calls and not (tmp_path / "config.json").exists()
