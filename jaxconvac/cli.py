"""One command line for every experiment: work directory, seed, overrides, resume.

An *experiment* is a Python module (or ``.py`` file) with two functions:

- ``get_config(preset="...")`` returns the experiment's settings as a nested
  ``dict`` (or anything with ``to_dict()``, e.g. an ``ml_collections``
  ``ConfigDict``) of JSON values: bool, int, float, str, ``None``, lists and
  sub-dicts. Presets name whole configurations (``"quick"`` for smoke tests,
  ``"full"`` or ``"paper"`` for the real run); give ``preset`` a default.
  A top-level ``"seed"`` key receives ``--seed``.
- ``run(config, workdir)`` runs it with the resolved config (a plain
  ``dict``), writes its metrics and figures into ``workdir`` (a
  ``pathlib.Path`` that exists) and returns a JSON-serialisable summary
  ``dict``. To support ``--resume`` it takes a keyword argument
  ``resume: bool`` and passes it on to :func:`jaxconvac.training.train`.
  Give ``train`` a sub-directory (``workdir / "<model>"``) as its work
  directory: the CLI owns ``workdir/config.json`` and ``workdir/summary.json``.

A script becomes runnable with these flags by ending in::

    def main(argv=None):
        return jaxconvac.cli.main(argv, sys.modules[__name__])

    if __name__ == "__main__":
        main(sys.argv[1:])

Usage, from the repository root::

    python -m jaxconvac.cli EXPERIMENT [--preset NAME | --quick] [--workdir DIR]
        [--seed N] [--set KEY=VALUE ...] [--no-progress] [--resume]
        [--distributed] [--print-config]

    # an experiment script whose main() calls jaxconvac.cli.main(argv, module):
    python experiments/train_digits.py --preset quick --set train.steps=50

``EXPERIMENT`` is a path to a ``.py`` file or an importable module name.

- ``--workdir`` (default ``runs/<experiment>``): where everything goes.
- ``--preset NAME`` (default: ``get_config``'s default); ``--quick`` is
  ``--preset quick``.
- ``--seed N``: sets the config's ``seed``.
- ``--set KEY=VALUE`` (repeatable): changes one setting; nested keys are
  dotted (``train.learning_rate=0.01``). The value is parsed as the type of the
  preset's value: ``true``/``false`` for bools, ints, floats (``1e-3``,
  ``inf``), strings as given; lists as JSON (``[64,128]``) or comma-separated
  (``64,128``), each element typed like the preset's first one; a key whose
  preset value is ``null`` takes any JSON value (a bare word is a string). An
  unknown key, a section (sub-dict) or a value of the wrong type is an error
  naming the key.
- ``--no-progress``: ``--set progress=false``.
- ``--resume``: continue the run in ``--workdir`` from its newest checkpoint
  (or start it if there is none). The resolved config must equal the saved
  ``config.json``. So one command both starts a job and restarts it after it
  was killed. Without ``--resume``, a work directory holding checkpoints is
  refused, so nothing saved is overwritten.
- ``--distributed``: call ``jax.distributed.initialize()`` first (multi-host;
  start the same command on every host; see below).
- ``--print-config``: print the resolved config as JSON and exit.

Each run writes ``<workdir>/config.json`` (experiment, preset and resolved
config), whatever the experiment writes (``metrics.jsonl`` per trained model,
figures, checkpoints) and ``<workdir>/summary.json`` (the experiment's summary
with the run time, device count and command), and prints where they are.
Only process 0 writes these files.

**Several devices and hosts.** The training loop uses every device JAX sees
(``train.num_devices=0``; set ``train.num_devices=1`` for one). On a GPU or
TPU host, install the matching ``jax[cuda12]``/``jax[tpu]`` and run the same
command. On several hosts, run the same command with ``--distributed`` on each
(``jax.distributed.initialize()`` finds the coordinator on Cloud TPU and SLURM,
or set ``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES`` and
``JAX_PROCESS_ID``), with ``--workdir`` on a file system all hosts share.
"""

from __future__ import annotations

import argparse
import copy
import importlib
import importlib.util
import inspect
import json
import math
import pathlib
import re
import sys
import time
import types
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["ConfigError", "apply_overrides", "load_experiment", "main", "parse_value"]


class ConfigError(ValueError):
    """A config override names an unknown key or gives a value of the wrong type.

    Attributes:
      key: the dotted key at fault.
    """

    def __init__(self, key: str, message: str):
        self.key = key
        super().__init__(f"config key {key!r}: {message}")


def load_experiment(name: str) -> types.ModuleType:
    """Imports an experiment from a ``.py`` path or a module name.

    Args:
      name: ``path/to/script.py`` or ``package.module``.

    Returns:
      The module; it must define ``get_config`` and ``run``.

    Raises:
      ValueError: if the file does not exist or lacks ``get_config``/``run``.
    """
    if name.endswith(".py"):
        path = pathlib.Path(name)
        if not path.is_file():
            raise ValueError(f"experiment file {name!r} does not exist.")
        module_name = path.stem
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module  # dataclasses look their module up
        spec.loader.exec_module(module)
    else:
        module = importlib.import_module(name)
    for function in ("get_config", "run"):
        if not callable(getattr(module, function, None)):
            raise ValueError(
                f"experiment {name!r} has no {function}() function; an experiment "
                "defines get_config(preset) and run(config, workdir)."
            )
    return module


def _as_dict(config: Any) -> dict:
    if hasattr(config, "to_dict"):
        config = config.to_dict()
    if not isinstance(config, Mapping):
        raise TypeError(
            f"get_config must return a dict or a ConfigDict, got {type(config)}."
        )
    return json.loads(json.dumps(config, default=_json_default))


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):  # NumPy and JAX scalars and arrays
        return value.tolist()
    if isinstance(value, pathlib.PurePath):
        return str(value)
    if isinstance(value, tuple | set | frozenset):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable: {value!r}")


_TRUE = {"true", "yes", "1", "on"}
_FALSE = {"false", "no", "0", "off"}


def parse_value(key: str, text: str, default: Any) -> Any:
    """Parses an override's text as the type of the preset's value.

    Args:
      key: the dotted key (for error messages).
      text: the text after ``=``.
      default: the preset's value of the key.

    Returns:
      The typed value.

    Raises:
      ConfigError: if ``text`` is not a value of that type.
    """

    def wrong(expected: str) -> ConfigError:
        return ConfigError(
            key, f"expects {expected} (preset value {default!r}), got {text!r}."
        )

    if isinstance(default, Mapping):
        raise ConfigError(
            key, f"is a section, not a value; set one of its keys: {sorted(default)}."
        )
    if isinstance(default, bool):
        lowered = text.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise wrong("a bool (true/false)")
    if isinstance(default, int):
        try:
            return int(text)
        except ValueError:
            raise wrong("an int") from None
    if isinstance(default, float):
        try:
            return float(text)
        except ValueError:
            raise wrong("a float") from None
    if isinstance(default, str):
        return text
    if isinstance(default, list | tuple):
        stripped = text.strip()
        if stripped.startswith("["):
            try:
                items = json.loads(stripped)
            except json.JSONDecodeError:
                raise wrong("a JSON list") from None
            if not isinstance(items, list):
                raise wrong("a list")
            items = [json.dumps(x) if not isinstance(x, str) else x for x in items]
        else:
            items = [x.strip() for x in stripped.split(",")] if stripped else []
        element = default[0] if len(default) else None
        parsed = []
        for index, item in enumerate(items):
            if element is None:
                parsed.append(_parse_json_or_text(item))
            else:
                parsed.append(parse_value(f"{key}[{index}]", item, element))
        return type(default)(parsed)
    if default is None:
        return _parse_json_or_text(text)
    raise ConfigError(key, f"has a value of unsupported type {type(default)}.")


def _parse_json_or_text(text: str) -> Any:
    lowered = text.strip().lower()
    if lowered in ("none", "null"):
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _keys(config: Mapping, prefix: str = "") -> list[str]:
    keys = []
    for name, value in config.items():
        key = f"{prefix}{name}"
        if isinstance(value, Mapping):
            keys.extend(_keys(value, key + "."))
        else:
            keys.append(key)
    return keys


def apply_overrides(config: Mapping, overrides: Sequence[str]) -> dict:
    """A copy of ``config`` with ``KEY=VALUE`` overrides applied.

    Args:
      config: the preset's nested dict.
      overrides: strings ``"a.b=value"``.

    Returns:
      The new dict (``config`` is not changed).

    Raises:
      ConfigError: for a malformed override, an unknown key (the message lists
        the known ones) or a value of the wrong type.
    """
    result = copy.deepcopy(dict(config))
    for override in overrides:
        key, sep, text = override.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(override, "an override must look like KEY=VALUE.")
        node = result
        parts = key.split(".")
        for depth, part in enumerate(parts):
            if not isinstance(node, dict) or part not in node:
                known = ", ".join(_keys(result))
                raise ConfigError(key, f"unknown key. The config's keys are: {known}.")
            if depth == len(parts) - 1:
                node[part] = parse_value(key, text, node[part])
            else:
                node = node[part]
    return result


def _parser(experiment: types.ModuleType | None) -> argparse.ArgumentParser:
    description = None
    if experiment is not None and experiment.__doc__:
        description = experiment.__doc__.strip().splitlines()[0]
    parser = argparse.ArgumentParser(
        description=description or "Run a jaxconvac experiment.",
        epilog="See jaxconvac/cli.py's docstring for the override syntax.",
    )
    if experiment is None:
        parser.add_argument("experiment", help="a .py file or a module name")
    parser.add_argument("--preset", default=None, help="the config preset")
    parser.add_argument(
        "--quick",
        dest="preset",
        action="store_const",
        const="quick",
        help="same as --preset quick (a smoke-test run)",
    )
    parser.add_argument(
        "--workdir", type=pathlib.Path, default=None, help="default runs/<experiment>"
    )
    parser.add_argument("--seed", type=int, default=None, help="sets config 'seed'")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value (repeatable; dotted keys)",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue from the work directory's newest checkpoint (or start)",
    )
    parser.add_argument(
        "--distributed",
        action="store_true",
        help="call jax.distributed.initialize() first (multi-host)",
    )
    parser.add_argument(
        "--no-progress",
        dest="overrides",
        action="append_const",
        const="progress=false",
        help="same as --set progress=false",
    )
    parser.add_argument(
        "--print-config", action="store_true", help="print the config and exit"
    )
    return parser


def _experiment_name(experiment: types.ModuleType) -> str:
    name = getattr(experiment, "__name__", "experiment").rsplit(".", 1)[-1]
    if name == "__main__" and getattr(experiment, "__file__", None):
        name = pathlib.Path(experiment.__file__).stem
    return name


def _saved_checkpoints(workdir: pathlib.Path) -> list[pathlib.Path]:
    return sorted(
        step
        for directory in workdir.rglob("checkpoints")
        if directory.is_dir()
        for step in directory.iterdir()
        if step.is_dir() and re.fullmatch(r"\d+", step.name)
    )


def _diff(saved: Any, current: Any, key: str = "") -> list[str]:
    if isinstance(saved, Mapping) and isinstance(current, Mapping):
        lines = []
        for name in sorted(set(saved) | set(current)):
            sub = f"{key}.{name}" if key else name
            lines += _diff(
                saved.get(name, "<missing>"), current.get(name, "<missing>"), sub
            )
        return lines
    same = saved == current or (
        isinstance(saved, float)
        and isinstance(current, float)
        and math.isnan(saved)
        and math.isnan(current)
    )
    return [] if same else [f"{key}: saved {saved!r}, now {current!r}"]


def _write_json(path: pathlib.Path, value: Any) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(value, indent=2, default=_json_default) + "\n")
    temporary.replace(path)


def main(
    argv: Sequence[str] | None = None, experiment: types.ModuleType | None = None
) -> dict:
    """Parses the command line, runs the experiment, writes and prints its files.

    Args:
      argv: the arguments (default ``sys.argv[1:]``).
      experiment: the experiment module; if ``None`` the first positional
        argument names it.

    Returns:
      The summary ``dict`` the experiment's ``run`` returned.

    Raises:
      ConfigError: for a bad override.
      ValueError: for a bad experiment, ``--resume`` with a different config
        or an experiment that cannot resume, or checkpoints in the work
        directory without ``--resume``.
    """
    parser = _parser(experiment)
    args = parser.parse_args(sys.argv[1:] if argv is None else list(argv))
    if args.distributed:
        import jax

        jax.distributed.initialize()
    if experiment is None:
        experiment = load_experiment(args.experiment)
    name = _experiment_name(experiment)

    preset_config = (
        experiment.get_config()
        if args.preset is None
        else experiment.get_config(args.preset)
    )
    preset = args.preset
    if preset is None:
        default = inspect.signature(experiment.get_config).parameters
        first = next(iter(default.values()), None)
        preset = None if first is None else first.default
    config = apply_overrides(_as_dict(preset_config), args.overrides)
    if args.seed is not None:
        if "seed" not in config:
            raise ConfigError("seed", "--seed given but the config has no 'seed'.")
        config["seed"] = args.seed
    if args.print_config:
        print(json.dumps(config, indent=2))
        return {}

    run_parameters = inspect.signature(experiment.run).parameters
    if args.resume and "resume" not in run_parameters:
        raise ValueError(
            f"experiment {name!r} cannot resume: its run() takes no 'resume' argument."
        )
    workdir = args.workdir or pathlib.Path("runs") / name
    record = {"experiment": name, "preset": preset, "config": config}
    config_path = workdir / "config.json"
    if args.resume:
        if config_path.exists():
            saved = json.loads(config_path.read_text())
            lines = _diff(
                {k: saved.get(k) for k in ("experiment", "config")},
                {k: record[k] for k in ("experiment", "config")},
            )
            if lines:
                raise ValueError(
                    f"{config_path}: --resume with a different config than the "
                    "saved run's:\n  " + "\n  ".join(lines) + "\nRun the same "
                    "command, or use another --workdir. Nothing was written."
                )
    else:
        existing = _saved_checkpoints(workdir) if workdir.exists() else []
        if existing:
            raise ValueError(
                f"{workdir} holds checkpoints ({existing[-1]}, …) of an earlier "
                "run: pass --resume to continue it, or use another --workdir. "
                "Nothing was written."
            )

    import jax  # after jax.distributed.initialize, if asked

    primary = jax.process_index() == 0
    workdir.mkdir(parents=True, exist_ok=True)
    if primary:
        _write_json(config_path, record)
    start = time.perf_counter()
    kwargs = {"resume": True} if args.resume else {}
    summary = experiment.run(config, workdir, **kwargs)
    if not isinstance(summary, Mapping):
        raise TypeError(f"{name}.run must return a dict, got {type(summary)}.")
    seconds = time.perf_counter() - start
    summary_path = workdir / "summary.json"
    if primary:
        _write_json(
            summary_path,
            {
                "experiment": name,
                "preset": preset,
                "command": [sys.argv[0], *(sys.argv[1:] if argv is None else argv)],
                "seconds": seconds,
                "resumed": bool(args.resume),
                "devices": jax.device_count(),
                "processes": jax.process_count(),
                "result": summary,
            },
        )
        _report(workdir, config_path, summary_path, seconds)
    return dict(summary)


def _report(
    workdir: pathlib.Path,
    config_path: pathlib.Path,
    summary_path: pathlib.Path,
    seconds: float,
) -> None:
    def listed(pattern_files: list[pathlib.Path]) -> str:
        return ", ".join(str(p) for p in pattern_files) or "none"

    files = [p for p in sorted(workdir.rglob("*")) if "checkpoints" not in p.parts]
    metrics = [p for p in files if p.name == "metrics.jsonl"]
    figures = [p for p in files if p.suffix in (".png", ".pdf", ".svg")]
    checkpoints = sorted({p.parent for p in _saved_checkpoints(workdir)})
    print(f"finished in {seconds:.1f} s; outputs in {workdir}:")
    print(f"  config:      {config_path}")
    print(f"  summary:     {summary_path}")
    print(f"  metrics:     {listed(metrics)}")
    print(f"  figures:     {listed(figures)}")
    if checkpoints:
        print(f"  checkpoints: {listed(checkpoints)}")


if __name__ == "__main__":
    main()
