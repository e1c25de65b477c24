"""Training throughput of the digits job's deep ConvAC on 1, 2 and 8 host devices.

The step is :func:`jaxconvac.training.make_train_step` exactly as
:func:`jaxconvac.training.train` builds it: parameters, optimizer state and
the training set replicated over a one-axis ``"data"`` mesh, each batch split
along it (``NamedSharding(mesh, P("data"))``), XLA's SPMD partitioner adding
the gradient all-reduce. The model is ``experiments/train_digits.py``'s deep
ConvAC (widths 64, 128, 256, ``per_tap`` sharing, 16 Gaussians, marginalisation
dropout 0.25) on its 1 347 training images, batch 64, Adam.

XLA fixes the number of host (CPU) devices when JAX starts, so every device
count runs in its own subprocess with
``XLA_FLAGS=--xla_force_host_platform_device_count=N``. Each worker compiles
the step (timed apart), runs one untimed warm-up call, then ``--repeats``
samples of ``--steps`` steps each, and reports the median. Every step is
waited for before the next is dispatched, as :func:`jaxconvac.training.train`
does on a CPU mesh of several devices: with several sharded steps queued,
XLA's CPU all-reduce rendezvous timed out and aborted the process (2 forced
devices on 2 busy cores). Forced host devices share the machine's cores, so on a
CPU this measures the overhead of the sharded program, not a speed-up; on a
GPU/TPU host the same script (without the forced count) shards over real
devices.

Command::

    python benchmarks/bench_sharding.py [--devices 1 2 8] [--steps 50]
        [--repeats 5] [--batch 64]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).parent
ROOT = HERE.parent


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, nargs="+", default=[1, 2, 8])
    parser.add_argument("--steps", type=int, default=50, help="steps per sample")
    parser.add_argument("--repeats", type=int, default=5, help="timed samples")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def worker(args: argparse.Namespace) -> dict:
    """Times the sharded step on every device this process has."""
    import _timing
    import jax
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    sys.path.insert(0, str(ROOT / "experiments"))
    import train_digits
    from flax import nnx

    from jaxconvac import training

    config = train_digits.get_config("full")
    config["train"]["batch_size"] = args.batch
    spec = train_digits.model_specs(config)[0]
    data = train_digits.load_data()
    model = train_digits.build_model(spec, seed=0)
    optimizer = training.make_optimizer(spec.train, spec.train.steps)
    mesh = training.make_mesh(0)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    step_fn = training.make_train_step(
        graphdef,
        optimizer,
        batch_size=args.batch,
        augment=train_digits.drop_pixels(spec.drop_rate),
        batch_sharding=NamedSharding(mesh, P(training.DATA_AXIS)),
    )
    params, rest, opt_state, key = training.replicate(
        (params, rest, optimizer.init(params), jax.random.key(0)), mesh
    )
    inputs, labels = training.replicate(data["train"], mesh)

    start = time.perf_counter()
    compiled = step_fn.lower(params, rest, opt_state, key, 0, inputs, labels).compile()
    compile_seconds = time.perf_counter() - start

    step = 0

    def sample():
        nonlocal params, opt_state, step
        for _ in range(args.steps):
            params, opt_state, metrics = compiled(
                params, rest, opt_state, key, step, inputs, labels
            )
            jax.block_until_ready(metrics)  # as train() does on CPU meshes
            step += 1
        return metrics["loss"]

    times, _ = _timing.time_round_robin({"sample": sample}, repeats=args.repeats)
    per_step = [t / args.steps for t in times["sample"]]
    return {
        "devices": mesh.size,
        "compile_seconds": compile_seconds,
        "step_seconds": per_step,
        "environment": _timing.environment_lines(),
    }


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.worker:
        print("RESULT " + json.dumps(worker(args)))
        return
    import _timing

    results = {}
    for count in args.devices:
        if args.batch % count:
            raise ValueError(f"--batch {args.batch} is not divisible by {count}.")
        env = {
            **os.environ,
            "XLA_FLAGS": f"--xla_force_host_platform_device_count={count}",
            "JAX_PLATFORMS": "cpu",
        }
        command = [sys.executable, __file__, "--worker"]
        command += ["--steps", str(args.steps), "--repeats", str(args.repeats)]
        command += ["--batch", str(args.batch)]
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"worker with {count} devices failed:\n{done.stderr}")
        line = [x for x in done.stdout.splitlines() if x.startswith("RESULT ")][-1]
        results[count] = json.loads(line.removeprefix("RESULT "))
        assert results[count]["devices"] == count

    for line in results[args.devices[0]]["environment"]:
        print(line)
    print(
        f"digits deep ConvAC, batch {args.batch}, {args.steps} steps per sample, "
        f"{args.repeats} samples; forced host devices share the CPU cores"
    )
    print()
    print(
        "| devices | compile | step: median (range) | examples/s | "
        f"throughput vs {args.devices[0]} device(s) |"
    )
    print("|---:|---:|---|---:|---:|")
    base = _timing.median(results[args.devices[0]]["step_seconds"])
    for count, result in results.items():
        times = result["step_seconds"]
        median = _timing.median(times)
        print(
            f"| {count} | {result['compile_seconds']:.1f} s | "
            f"{_timing.seconds(median)} ({_timing.seconds(min(times))}–"
            f"{_timing.seconds(max(times))}) | {args.batch / median:,.0f} | "
            f"{base / median:.2f}× |"
        )


if __name__ == "__main__":
    main()
