"""Data-parallel training over 8 forced host devices against one device.

XLA's host device count is fixed when JAX starts, so the comparison runs in a
subprocess with ``XLA_FLAGS=--xla_force_host_platform_device_count=8``.
"""

import json
import os
import subprocess
import sys
import textwrap

import jax
import pytest

from jaxconvac import training

SCRIPT = textwrap.dedent(
    """
    import json

    import jax
    import numpy as np
    from flax import nnx

    import jaxconvac as jc
    from jaxconvac import nn, training

    assert jax.device_count() == 8, jax.devices()


    def model():
        return nn.Classifier(
            nn.Indicator(2),
            nn.ConvAC(
                jc.ModeTree.balanced(4),
                num_descriptors=2,
                widths=(4, 4),
                num_outputs=2,
                sharing="none",
                rngs=nnx.Rngs(1),
            ),
        )


    rng = np.random.default_rng(0)
    inputs = rng.integers(0, 2, size=(64, 4)).astype(np.int32)
    labels = inputs[:, 0] ^ inputs[:, 3]
    settings = dict(steps=24, batch_size=16, learning_rate=0.05, log_every=1)
    out = {}
    models = {}
    for name, devices in (("sharded", 0), ("single", 1)):
        models[name] = model()
        result = training.train(
            models[name],
            (inputs, labels),
            training.TrainConfig(num_devices=devices, **settings),
            progress=False,
        )
        params = nnx.split(models[name], nnx.Param, ...)[1]
        out[name] = {
            "devices": result.devices,
            "losses": [r["loss"] for r in result.history],
            "params": [np.asarray(x).ravel().tolist() for x in jax.tree.leaves(params)],
            "param_devices": len(jax.tree.leaves(params)[0].sharding.device_set),
        }

    try:
        training.train(
            model(),
            (inputs, labels),
            training.TrainConfig(**{**settings, "batch_size": 12}),
            progress=False,
        )
    except ValueError as err:
        out["error"] = str(err)
    print("RESULT " + json.dumps(out))
    """
)


@pytest.fixture(scope="module")
def eight_devices(tmp_path_factory):
    script = tmp_path_factory.mktemp("sharding") / "run.py"
    script.write_text(SCRIPT)
    dump = script.parent / "hlo"
    env = {
        **os.environ,
        "XLA_FLAGS": "--xla_force_host_platform_device_count=8 "
        f"--xla_dump_to={dump} --xla_dump_hlo_as_text "
        "--xla_dump_hlo_module_re=step_fn",
        "JAX_PLATFORMS": "cpu",
    }
    done = subprocess.run(
        [sys.executable, str(script)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    line = [x for x in done.stdout.splitlines() if x.startswith("RESULT ")][-1]
    result = json.loads(line.removeprefix("RESULT "))
    # XLA's optimised programs of the two compiled train steps (8 devices and
    # 1 device): only the sharded one sums gradients across devices.
    steps = sorted(dump.glob("*jit_step_fn*after_optimizations.txt"))
    result["all_reduce"] = ["all-reduce(" in p.read_text() for p in steps]
    return result


def test_sharded_run_matches_single_device(eight_devices):
    sharded, single = eight_devices["sharded"], eight_devices["single"]
    assert sharded["devices"] == 8 and single["devices"] == 1
    assert sharded["param_devices"] == 8 and single["param_devices"] == 1
    assert sorted(eight_devices["all_reduce"]) == [False, True]
    assert len(sharded["losses"]) == 24
    # The loss falls, and both runs follow the same trajectory: only the order
    # of the batch sums differs, so they agree to float32 rounding.
    assert sharded["losses"][-1] < sharded["losses"][0]
    assert sharded["losses"] == pytest.approx(single["losses"], rel=1e-5, abs=1e-6)
    for a, b in zip(sharded["params"], single["params"], strict=True):
        assert a == pytest.approx(b, rel=1e-4, abs=1e-5)


def test_batch_not_divisible_by_devices(eight_devices):
    assert "batch_size=12 is not a multiple of the 8 devices" in eight_devices["error"]


def test_make_mesh_in_this_process():
    mesh = training.make_mesh(0)
    assert mesh.axis_names == ("data",) and mesh.size == jax.device_count()
    assert training.make_mesh(1).size == 1
    with pytest.raises(ValueError, match=r"between 1 and the \d+ available devices"):
        training.make_mesh(jax.device_count() + 1)
    with pytest.raises(TypeError, match=r"num_devices must be an int"):
        training.make_mesh(1.0)
