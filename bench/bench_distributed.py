"""Benchmark: training throughput of one process with all cores vs one process per core.

Generates a SynthPedes dataset once, then trains the ``synth`` config (the demo's model and batch)
for one epoch in each mode, alternating the modes ``--repeats`` times so that load from other
programs falls on both alike:

- ``1x{cores}``: ``irra train`` in one process with ``train.threads={cores}``;
- ``{cores}x1``: ``irra train --nproc {cores}`` (torchrun, Gloo, one thread per process, the
  global batch split over the processes and the losses computed on the gathered global batch).

Steps/s and samples/s are taken from the epoch's training time in ``log.jsonl`` (evaluation and
start-up are not counted); the medians and their ratio are printed.

Usage::

    .venv/bin/python bench/bench_distributed.py                 # 200 ids: 40 steps of 32 a run
    .venv/bin/python bench/bench_distributed.py --repeats 5 --ids 400
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from irra.engine import run_files


def run_mode(data: Path, out: Path, nproc: int, threads: int, extra: list[str]) -> dict[str, float]:
    """Train one epoch of the synth config; returns steps/s and samples/s of the epoch."""
    command = [sys.executable, "-m", "irra", "train", "--config", "synth", "--out", str(out)]
    if nproc > 1:
        command += ["--nproc", str(nproc)]
    command += [
        f"data.root={data}",
        "train.epochs=1",
        "train.report=false",
        "train.tensorboard=false",
        f"train.threads={threads}",
        *extra,
    ]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    subprocess.run(command, env=env, check=True, capture_output=True)
    epoch = json.loads((out / run_files.EPOCH_LOG).read_text().splitlines()[-1])
    return {
        "steps_s": epoch["step"] / epoch["epoch_time"],
        "samples_s": epoch["samples"] / epoch["epoch_time"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cores", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--ids", type=int, default=200, help="SynthPedes identities (80%% train)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("overrides", nargs="*", help="extra config overrides (KEY=VALUE)")
    args = parser.parse_args()

    from irra.data.synth import generate_synthpedes

    cores = args.cores
    modes = {f"1x{cores}": (1, cores), f"{cores}x1": (cores, 1)}
    results: dict[str, list[dict[str, float]]] = {name: [] for name in modes}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        generate_synthpedes(data / "CUHK-PEDES", num_ids=args.ids, images_per_id=4)
        for repeat in range(args.repeats):
            for name, (nproc, threads) in modes.items():
                out = Path(tmp) / f"{name}-{repeat}"
                result = run_mode(data, out, nproc, threads, args.overrides)
                results[name].append(result)
                print(
                    f"{name} run {repeat + 1}: {result['steps_s']:.3f} steps/s, "
                    f"{result['samples_s']:.1f} samples/s",
                    flush=True,
                )
    medians = {
        name: {k: statistics.median(r[k] for r in runs) for k in ("steps_s", "samples_s")}
        for name, runs in results.items()
    }
    print(f"\nmedians of {args.repeats} runs (synth config, global batch of the config):")
    for name, m in medians.items():
        print(f"  {name:>5}: {m['steps_s']:.3f} steps/s  {m['samples_s']:.1f} samples/s")
    one, many = medians[f"1x{cores}"], medians[f"{cores}x1"]
    print(f"  {cores}x1 / 1x{cores}: {many['samples_s'] / one['samples_s']:.2f}x samples/s")


if __name__ == "__main__":
    main()
