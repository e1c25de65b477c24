"""Shared helpers of the benchmark scripts: compile times, medians, environment.

Not part of the library. Contenders are timed round-robin (one repeat of each
in turn) so that the load of a shared machine falls on all of them alike, every
result is blocked on with ``jax.block_until_ready``, compilation is timed
apart, and what is reported is the median over repeats.
"""

from __future__ import annotations

import importlib
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence

import jax
import numpy as np
import threadpoolctl


def compile_jitted(
    fn: Callable, *args: object, **jit_kwargs: object
) -> tuple[Callable, float]:
    """Compiles ``jax.jit(fn)`` for ``args`` ahead of time.

    Args:
      fn: the function to compile.
      *args: example arguments (their shapes and dtypes are what count).
      **jit_kwargs: passed to ``jax.jit`` (``donate_argnums``, …).

    Returns:
      ``(compiled, seconds)``: the compiled executable, called like ``fn``, and
      the wall time of tracing, lowering and compiling.
    """
    start = time.perf_counter()
    compiled = jax.jit(fn, **jit_kwargs).lower(*args).compile()
    return compiled, time.perf_counter() - start


def time_round_robin(
    calls: Mapping[str, Callable[[], object]],
    *,
    repeats: int,
    min_sample: float = 0.0,
) -> tuple[dict[str, list[float]], dict[str, object]]:
    """Wall times of several calls, run in turn ``repeats`` times.

    A first, untimed round warms every call up and sets how many times a call
    runs per sample: enough for a sample to last ``min_sample`` seconds, so
    that calls of a few milliseconds are not timed one by one. A sample's time
    is per call.

    Args:
      calls: named callables without arguments; each result is blocked on.
      repeats: the number of timed rounds.
      min_sample: the shortest sample, in seconds.

    Returns:
      ``(times, results)``: the seconds per call of every sample by name, and
      each call's result from the warm-up round.
    """
    results, inner = {}, {}
    for name, call in calls.items():
        start = time.perf_counter()
        results[name] = jax.block_until_ready(call())
        elapsed = time.perf_counter() - start
        inner[name] = max(1, math.ceil(min_sample / max(elapsed, 1e-9)))

    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            start = time.perf_counter()
            for _ in range(inner[name]):
                jax.block_until_ready(call())
            times[name].append((time.perf_counter() - start) / inner[name])
    return times, results


def median(values: Sequence[float]) -> float:
    """The median of ``values``."""
    return statistics.median(values)


def seconds(value: float) -> str:
    """``value`` seconds in a readable unit (µs, ms or s)."""
    if value < 1e-3:
        return f"{value * 1e6:.1f} µs"
    if value < 1:
        return f"{value * 1e3:.2f} ms"
    return f"{value:.2f} s"


def spread(values: Sequence[float]) -> str:
    """The median and the range of ``values`` seconds, for a report line."""
    return (
        f"{seconds(median(values))} (min {seconds(min(values))}, "
        f"max {seconds(max(values))}, n={len(values)})"
    )


def limit_blas_threads(threads: int) -> threadpoolctl.threadpool_limits:
    """Limits every loaded BLAS library (NumPy's and SciPy's) to ``threads``.

    JAX's CPU LAPACK kernels (``svd`` and friends) come from SciPy's OpenBLAS,
    NumPy's ``linalg`` from its own; SciPy's is loaded here first so that the
    limit covers both, and so both sides of a comparison run LAPACK alike.

    Args:
      threads: threads per BLAS library.

    Returns:
      The ``threadpoolctl`` limiter (it holds until the process ends or its
      ``restore_original_limits`` is called).
    """
    importlib.import_module("scipy.linalg.cython_lapack")
    return threadpoolctl.threadpool_limits(limits=threads, user_api="blas")


def environment_lines() -> list[str]:
    """Versions, devices, CPU count, load and BLAS threads, one fact per line."""
    versions = [f"python {platform.python_version()}", f"numpy {np.__version__}"]
    for name in ("jax", "jaxlib", "flax", "optax", "scipy"):
        module = sys.modules.get(name)
        if module is not None:
            versions.append(f"{name} {module.__version__}")
    blas = [
        f"{pool['internal_api']} {pool['version']} "
        f"({os.path.basename(pool['filepath']).split('-')[0]}): "
        f"{pool['num_threads']} threads"
        for pool in threadpoolctl.threadpool_info()
        if pool["user_api"] == "blas"
    ]
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return [
        "versions: " + ", ".join(versions),
        f"jax backend: {jax.default_backend()}, devices: {jax.devices()}",
        f"cpu: {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, load average (1/5/15 min) {load}",
        "blas: " + ("; ".join(blas) or "none loaded"),
        f"jax_enable_x64: {jax.config.jax_enable_x64}",
    ]
