"""Checkpoints: exact resume after SIGKILL, refusal of foreign or other runs'."""

import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from jaxconvac import checkpoint, cli

ROOT = pathlib.Path(__file__).parents[1]

# A complete experiment for jaxconvac.cli: an XOR ConvAC with checkpoints.
EXPERIMENT = '''
"""A tiny XOR ConvAC job with checkpoints (tests/test_checkpoint.py)."""

import itertools

import jax
import numpy as np
from flax import nnx

import jaxconvac as jc
from jaxconvac import nn, training


def get_config(preset="default"):
    return {
        "seed": 0,
        "width": 4,
        "train": {
            "steps": 400,
            "batch_size": 16,
            "learning_rate": 0.05,
            "log_every": 25,
            "checkpoint_every": 50,
        },
    }


def run(config, workdir, *, resume=False):
    patterns = np.array(list(itertools.product([0, 1], repeat=4)), np.int32)
    inputs = np.tile(patterns, (4, 1))
    labels = inputs[:, 0] ^ inputs[:, 3]
    width = config["width"]
    model = nn.Classifier(
        nn.Indicator(2),
        nn.ConvAC(
            jc.ModeTree.balanced(4),
            num_descriptors=2,
            widths=(width, width),
            num_outputs=2,
            sharing="none",
            rngs=nnx.Rngs(config["seed"]),
        ),
    )
    result = training.train(
        model,
        (inputs, labels),
        training.TrainConfig(**config["train"], seed=config["seed"]),
        workdir=workdir / "model",
        run_config={"width": width},
        progress=False,
        resume=resume,
    )
    params = jax.tree_util.tree_flatten_with_path(nnx.state(model, nnx.Param))[0]
    np.savez(
        workdir / "params.npz",
        **{jax.tree_util.keystr(k): np.asarray(v) for k, v in params},
    )
    return {"resumed_from": result.resumed_from, "loss": result.history[-1]["loss"]}
'''


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    path = tmp_path_factory.mktemp("experiment") / "tiny_job.py"
    path.write_text(EXPERIMENT)
    return path


@pytest.fixture(scope="module")
def environment(tmp_path_factory):
    """Subprocesses share a persistent compilation cache (saves recompiling)."""
    return {
        **os.environ,
        "JAX_PLATFORMS": "cpu",
        "JAX_COMPILATION_CACHE_DIR": str(tmp_path_factory.mktemp("jax_cache")),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
    }


def command(experiment, workdir, *flags):
    return [
        sys.executable,
        "-m",
        "jaxconvac.cli",
        str(experiment),
        "--workdir",
        str(workdir),
        *flags,
    ]


def run_command(experiment, workdir, environment, *flags):
    done = subprocess.run(
        command(experiment, workdir, *flags),
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.fixture(scope="module")
def finished(experiment, environment, tmp_path_factory):
    """An uninterrupted run."""
    workdir = tmp_path_factory.mktemp("finished")
    run_command(experiment, workdir, environment)
    return workdir


def records(workdir):
    lines = (workdir / "model" / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(x).items() if k != "seconds"} for x in lines]


def steps_saved(workdir):
    directory = workdir / "model" / "checkpoints"
    if not directory.exists():
        return []
    return sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit())


def test_killed_run_resumes_bit_identical(experiment, environment, finished, tmp_path):
    process = subprocess.Popen(
        command(experiment, tmp_path, "--resume"),
        cwd=ROOT,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 300
    while not any(s >= 100 for s in steps_saved(tmp_path)):
        assert process.poll() is None, process.stdout.read().decode()[-3000:]
        assert time.monotonic() < deadline
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL
    assert not (tmp_path / "summary.json").exists()
    killed_at = steps_saved(tmp_path)[-1]
    assert 100 <= killed_at < 400

    # The same command again.
    again = run_command(experiment, tmp_path, environment, "--resume")
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["resumed"] and summary["result"]["resumed_from"] >= killed_at
    assert f"summary:     {tmp_path / 'summary.json'}" in again.stdout

    resumed = np.load(tmp_path / "params.npz")
    reference = np.load(finished / "params.npz")
    assert sorted(resumed) == sorted(reference) and len(reference) == 3
    for name in reference:
        np.testing.assert_array_equal(resumed[name], reference[name])
    assert records(tmp_path) == records(finished)
    assert [r["step"] for r in records(finished)] == list(range(25, 401, 25))


def copy_run(finished, tmp_path):
    workdir = tmp_path / "run"
    shutil.copytree(finished, workdir)
    return workdir


def snapshot(workdir):
    return {
        p.relative_to(workdir): p.read_bytes()
        for p in sorted(workdir.rglob("*"))
        if p.is_file()
    }


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "width=5",
            r"different model configuration.*\n  params\['convac'\]\['weights'\]\[0\]"
            r"\.value: checkpoint \[\[4, 4, 2\], 'float32'\], this run \[\[4, 5, 2\]",
        ),
        ("train.learning_rate=0.1", r"other settings.*train\.learning_rate: "),
    ],
)
def test_mismatching_checkpoint_is_refused(
    experiment, finished, tmp_path, override, message
):
    workdir = copy_run(finished, tmp_path)
    # Only the checkpoint is compared (the saved config.json is left aside).
    (workdir / "config.json").unlink()
    before = snapshot(workdir)
    with pytest.raises(checkpoint.CheckpointError, match=re.compile(message, re.S)):
        cli.main(
            [str(experiment), "--workdir", str(workdir), "--resume", "--set", override]
        )
    assert snapshot(workdir) == before | {
        pathlib.Path("config.json"): (workdir / "config.json").read_bytes()
    }


def test_cli_refuses_a_different_config_and_existing_checkpoints(
    experiment, finished, tmp_path
):
    workdir = copy_run(finished, tmp_path)
    before = snapshot(workdir)
    with pytest.raises(
        ValueError,
        match=r"(?s)config.json: --resume with a different.*"
        r"config\.width: saved 4, now 6",
    ):
        cli.main(
            [str(experiment), "--workdir", str(workdir), "--resume", "--set", "width=6"]
        )
    with pytest.raises(ValueError, match=r"holds checkpoints.*pass --resume"):
        cli.main([str(experiment), "--workdir", str(workdir)])
    assert snapshot(workdir) == before


@pytest.mark.parametrize("damage", ["foreign", "meta", "arrays", "format"])
def test_damaged_or_foreign_checkpoint_is_refused(
    experiment, finished, tmp_path, damage
):
    workdir = copy_run(finished, tmp_path)
    step = workdir / "model" / "checkpoints" / "400"
    if damage == "foreign":
        shutil.rmtree(step / "meta")
        where = step / "meta" / "metadata"
        message = "not a jaxconvac training checkpoint"
    elif damage == "meta":
        (step / "meta" / "metadata").write_text('{"format": ')
        where = step / "meta" / "metadata"
        message = "cannot be read"
    elif damage == "format":
        (step / "meta" / "metadata").write_text('{"format": "something else"}')
        where = step / "meta" / "metadata"
        message = "format 'something else'"
    else:
        for path in (step / "state").rglob("*"):
            if path.is_file() and path.parent.name == "d":
                path.write_bytes(path.read_bytes()[:7])
        where = step / "state"
        message = "saved arrays cannot be restored"
    before = snapshot(workdir)
    with pytest.raises(checkpoint.CheckpointError) as info:
        cli.main([str(experiment), "--workdir", str(workdir), "--resume"])
    assert str(info.value).startswith(f"{where}: ") and message in str(info.value)
    assert info.value.path == where
    assert snapshot(workdir) == before


def test_differences():
    assert checkpoint.differences({"a": 1, "b": [1, 2]}, {"a": 1, "b": (1, 2)}) == []
    assert checkpoint.differences(
        {"a": {"x": 1}, "c": 0}, {"a": {"x": 2}, "d": 0}, "cfg"
    ) == [
        "cfg.a.x: checkpoint 1, this run 2",
        "cfg.c: checkpoint 0, not in this run",
        "cfg.d: not in the checkpoint, this run 0",
    ]
    assert checkpoint.differences(float("nan"), float("nan")) == []
