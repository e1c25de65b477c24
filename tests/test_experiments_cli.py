"""Every converted experiment script speaks jaxconvac.cli (cheap: nothing runs)."""

import importlib.util
import inspect
import json
import pathlib
import sys

import pytest

from jaxconvac import cli

EXPERIMENTS = pathlib.Path(__file__).resolve().parent.parent / "experiments"
# The scripts converted to the common command line; add new ones here.
SCRIPTS = (
    "train_digits",
    "depth_efficiency",
    "entanglement_min_cut",
    "generalized_depth_efficiency",
    "mixed_ranks",
    "mixed_dilated",
    "missing_data",
    "pooling_geometry",
    "pooling_ranks",
    "pooling_entanglement",
    "layer_widths",
)
# Those that train and therefore resume; the analyses refuse --resume.
RESUMABLE = {
    "train_digits",
    "mixed_dilated",
    "missing_data",
    "pooling_geometry",
    "layer_widths",
}


def load(name):
    """Imports experiments/<name>.py under a name no other test uses."""
    module_name = f"_experiments_cli_{name}"
    spec = importlib.util.spec_from_file_location(
        module_name, EXPERIMENTS / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # main() and dataclasses look it up
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", SCRIPTS)
def test_script_exposes_the_cli_contract(name):
    script = load(name)
    assert callable(script.get_config) and callable(script.run)
    for preset in (None, "quick"):
        config = script.get_config() if preset is None else script.get_config(preset)
        assert isinstance(config, dict) and isinstance(config["seed"], int)
        assert json.loads(json.dumps(config)) == config  # plain JSON values
    with pytest.raises(ValueError, match="preset"):
        script.get_config("no_such_preset")
    parameters = inspect.signature(script.run).parameters
    assert ("resume" in parameters) == (name in RESUMABLE)


@pytest.mark.parametrize("name", SCRIPTS)
def test_print_config_applies_flags_and_runs_nothing(name, tmp_path, capsys):
    script = load(name)
    workdir = tmp_path / "run"
    assert (
        script.main(
            ["--quick", "--seed", "7", "--print-config", "--workdir", str(workdir)]
        )
        == {}
    )
    printed = json.loads(capsys.readouterr().out)
    assert printed == script.get_config("quick") | {"seed": 7}
    assert not workdir.exists()


@pytest.mark.parametrize("name", SCRIPTS)
def test_unknown_override_is_refused_naming_the_key(name, tmp_path):
    script = load(name)
    workdir = tmp_path / "run"
    with pytest.raises(cli.ConfigError, match="'no_such_key': unknown key") as error:
        script.main(["--quick", "--set", "no_such_key=1", "--workdir", str(workdir)])
    assert error.value.key == "no_such_key"
    assert not workdir.exists()


@pytest.mark.parametrize("name", sorted(set(SCRIPTS) - RESUMABLE))
def test_analyses_refuse_resume_before_running(name, tmp_path):
    script = load(name)
    workdir = tmp_path / "run"
    with pytest.raises(ValueError, match="cannot resume"):
        script.main(["--quick", "--resume", "--workdir", str(workdir)])
    assert not workdir.exists()
