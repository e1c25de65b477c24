"""Training checkpoints with Orbax: atomic, validated, refused when foreign.

A checkpoint of :func:`jaxconvac.training.train` is one directory per step
under ``<workdir>/checkpoints/``, written by an
``orbax.checkpoint.CheckpointManager`` with two items:

- ``state``: the arrays (parameters, optimizer state, the PRNG key's data),
  saved with ``ocp.args.StandardSave`` and restored onto the run's mesh;
- ``meta``: a JSON document (``ocp.args.JsonSave``) with the format tag, the
  step, the training settings that decide the trajectory, the data order, the
  run's own description and the shapes and dtypes of every parameter.

Orbax writes each step into a temporary directory and renames it when complete,
so a process killed while saving leaves the previous checkpoints intact (the
unfinished directory is removed the next time the directory is opened).
Before any array is read, the ``meta`` item is checked: a directory without it
(a foreign checkpoint) or with unreadable contents is refused with a
:class:`CheckpointError` naming the file, and a checkpoint written for other
parameter shapes or settings is refused naming the keys that differ.
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Mapping
from typing import Any

import jax
import orbax.checkpoint as ocp

FORMAT = "jaxconvac.training.checkpoint"
VERSION = 1
META_FILE = pathlib.Path("meta") / "metadata"

__all__ = [
    "FORMAT",
    "CheckpointError",
    "Checkpoints",
    "differences",
    "parameter_spec",
]


class CheckpointError(ValueError):
    """A checkpoint is unreadable, foreign or belongs to another configuration.

    Attributes:
      path: the file or directory at fault.
    """

    def __init__(self, path: str | pathlib.Path, message: str):
        self.path = pathlib.Path(path)
        super().__init__(f"{self.path}: {message}")


def parameter_spec(tree: Any) -> dict[str, list]:
    """``{path: [shape, dtype]}`` of every array of a pytree, JSON-ready.

    Args:
      tree: a pytree of arrays (e.g. an ``nnx.State`` of parameters).

    Returns:
      A dict from ``jax.tree_util.keystr`` paths to ``[list(shape), dtype]``.
    """
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {
        jax.tree_util.keystr(path): [list(leaf.shape), str(leaf.dtype)]
        for path, leaf in leaves
    }


def differences(
    saved: Any, current: Any, prefix: str = "", limit: int = 8
) -> list[str]:
    """Readable differences between two JSON-like values, key by key.

    Args:
      saved: the value in the checkpoint.
      current: the value of this run.
      prefix: the key path of both values.
      limit: report at most this many differences.

    Returns:
      Lines ``"<key>: checkpoint <a>, this run <b>"``; empty if they agree.
    """
    found: list[str] = []

    def walk(a, b, key):
        if len(found) >= limit:
            return
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            for name in sorted(set(a) | set(b), key=str):
                name_text = str(name)
                joiner = "" if not key or name_text.startswith("[") else "."
                sub = f"{key}{joiner}{name_text}"
                if name not in a:
                    found.append(f"{sub}: not in the checkpoint, this run {b[name]!r}")
                elif name not in b:
                    found.append(f"{sub}: checkpoint {a[name]!r}, not in this run")
                else:
                    walk(a[name], b[name], sub)
                if len(found) >= limit:
                    return
        elif a != b and not (a != a and b != b):  # NaN equals NaN here
            found.append(f"{key or '(value)'}: checkpoint {a!r}, this run {b!r}")

    walk(_jsonable(saved), _jsonable(current), prefix)
    return found


def _jsonable(value: Any) -> Any:
    """``value`` as it reads back from JSON (tuples become lists, …)."""
    return json.loads(json.dumps(value))


class Checkpoints:
    """The checkpoints of one training run in one directory.

    Args:
      directory: where the step directories live (created on the first save).
      keep: how many of the newest checkpoints to keep.
    """

    def __init__(self, directory: str | pathlib.Path, *, keep: int = 2):
        self.directory = pathlib.Path(directory).absolute()
        if self.directory.exists() and not self.directory.is_dir():
            raise CheckpointError(self.directory, "is not a directory.")
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep,
            create=False,
            enable_async_checkpointing=False,
            cleanup_tmp_directories=True,
        )
        self._options = options
        self._manager: ocp.CheckpointManager | None = None
        if self.directory.is_dir():
            self._manager = self._open()

    def _open(self) -> ocp.CheckpointManager:
        return ocp.CheckpointManager(
            self.directory, options=self._options, item_names=("state", "meta")
        )

    def steps(self) -> list[int]:
        """The steps of the complete checkpoints, oldest first."""
        if self._manager is None:
            return []
        return sorted(self._manager.all_steps())

    def latest_step(self) -> int | None:
        """The newest complete checkpoint's step, or ``None``."""
        steps = self.steps()
        return steps[-1] if steps else None

    def step_dir(self, step: int) -> pathlib.Path:
        """The directory of one step's checkpoint."""
        return self.directory / str(step)

    def read_meta(self, step: int) -> dict[str, Any]:
        """The ``meta`` item of a step, checked to be one of ours.

        Raises:
          CheckpointError: naming the missing or unreadable file, or the
            checkpoint's format if it is not this module's.
        """
        path = self.step_dir(step) / META_FILE
        if not path.is_file():
            raise CheckpointError(
                path,
                "missing: this is not a jaxconvac training checkpoint (written "
                "by another program, or damaged). Move it away or choose "
                "another work directory.",
            )
        try:
            restored = self._manager.restore(
                step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())
            )
            meta = restored["meta"]
        except Exception as err:  # orbax raises many kinds; name the file
            raise CheckpointError(
                path, f"cannot be read as a checkpoint's metadata ({err})."
            ) from err
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            found = meta.get("format") if isinstance(meta, dict) else type(meta)
            raise CheckpointError(
                path, f"not a jaxconvac training checkpoint (format {found!r})."
            )
        if meta.get("version") != VERSION:
            raise CheckpointError(
                path,
                f"checkpoint format version {meta.get('version')!r}, this "
                f"library reads version {VERSION}.",
            )
        return meta

    def restore_state(self, step: int, abstract_state: Any) -> Any:
        """The ``state`` item of a step, with the shapes/shardings given.

        Args:
          step: the step to restore.
          abstract_state: a pytree of ``jax.ShapeDtypeStruct`` (with
            shardings) of the structure that was saved.

        Raises:
          CheckpointError: naming the step's ``state`` directory if the arrays
            cannot be read (truncated or altered files).
        """
        path = self.step_dir(step) / "state"
        try:
            restored = self._manager.restore(
                step,
                args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state)),
            )
        except Exception as err:  # orbax/tensorstore raise many kinds
            raise CheckpointError(
                path, f"the saved arrays cannot be restored ({err})."
            ) from err
        return restored["state"]

    def save(self, step: int, state: Any, meta: Mapping[str, Any]) -> None:
        """Writes one step atomically (the call returns when it is complete).

        Args:
          step: the step number (the directory's name).
          state: a pytree of arrays.
          meta: JSON-serialisable metadata; ``format`` and ``version`` are
            added.
        """
        if self._manager is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._manager = self._open()
        document = {"format": FORMAT, "version": VERSION, **meta}
        self._manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state),
                meta=ocp.args.JsonSave(_jsonable(document)),
            ),
            force=True,
        )
        self._manager.wait_until_finished()

    def close(self) -> None:
        """Waits for pending writes and releases the manager."""
        if self._manager is not None:
            self._manager.close()
            self._manager = None
