"""``irra train``: train IRRA from a config file, or resume a run."""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

logger = logging.getLogger(__name__)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``irra train``."""
    p = subparsers.add_parser(
        "train",
        help="train IRRA with a config (paper recipe: configs/cuhk_pedes.yaml ...)",
        description=(
            "Train IRRA. The config is a YAML file (or the name of a shipped config: base, "
            "cuhk_pedes, icfg_pedes, rstpreid, synth); KEY=VALUE arguments override it, e.g. "
            "train.epochs=1 data.root=~/datasets. The run folder receives the resolved config, "
            "logs, checkpoints, the selected model, metrics.json and a report."
        ),
    )
    p.add_argument("--config", help="config file or shipped config name (not with --resume)")
    p.add_argument("--out", help="run folder (default: runs/<config>-<date-time>)")
    p.add_argument(
        "--resume",
        metavar="RUN_DIR",
        help="continue the run in RUN_DIR from its last checkpoint (its config.yaml is used; "
        "overrides such as train.epochs=80 still apply)",
    )
    p.add_argument(
        "--nproc",
        type=int,
        default=1,
        metavar="N",
        help="train with N processes on this machine (through torchrun; on CPU each process gets "
        "at most cores / N threads unless train.threads says otherwise). data.batch_size stays "
        "the global batch. For several machines, start 'torchrun ... -m irra train' on each "
        "instead",
    )
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted config overrides")


def run(args: argparse.Namespace) -> int:
    """Run ``irra train``; returns the exit status."""
    from irra.cli.progress import TrainProgressHook, bar, counter
    from irra.config import ConfigError, load_config
    from irra.data import DatasetError
    from irra.engine import run_files
    from irra.engine.run import RunError, train
    from irra.model import WeightsError

    if args.nproc > 1:
        return launch(args)
    rank = int(os.environ.get("RANK", "0"))
    if rank != 0:  # one voice: the other processes only report problems
        logging.getLogger("irra").setLevel(logging.WARNING)
    out: Path | None = None
    try:
        if args.resume:
            if args.config:
                raise ConfigError("--resume uses the run's own config.yaml; drop --config")
            out = Path(args.resume)
            config = load_config(out / run_files.CONFIG, args.overrides) if args.overrides else None
        else:
            if not args.config:
                raise ConfigError("pass --config FILE (or a shipped name such as synth)")
            config = load_config(args.config, args.overrides)
            # Absolute, so that the run's config.yaml works from any directory later.
            config.data.root = str(Path(config.data.root).expanduser().resolve())
            if not args.out and int(os.environ.get("WORLD_SIZE", "1")) > 1:
                raise ConfigError("with several processes, name the run folder with --out")
            out = Path(args.out) if args.out else default_run_dir(args.config)
        result = train(
            config,
            out,
            resume=bool(args.resume),
            hooks=[TrainProgressHook()] if rank == 0 else [],
            progress=bar if rank == 0 else None,
            check_progress=counter("checking images") if rank == 0 else None,
        )
    except (ConfigError, DatasetError, RunError, WeightsError) as err:
        logger.error("%s", err)
        return 2
    except KeyboardInterrupt:
        logger.warning("interrupted; continue with: irra train --resume %s", out)
        return 130
    if rank != 0:
        return 0
    print(f"test metrics: {format_metrics(result.metrics)}")
    print(f"run folder:   {result.run_dir}")
    print(f"model:        {result.model_dir}")
    if result.report is not None:
        print(f"report:       {result.report}")
    return 0


def launch_command(args: argparse.Namespace, out: str | None) -> list[str]:
    """The ``torchrun`` command line that runs this ``irra train`` in ``args.nproc`` processes."""
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={args.nproc}",
        "-m",
        "irra",
    ]
    if getattr(args, "verbose", False):
        command.append("--verbose")
    command.append("train")
    if args.resume:
        command += ["--resume", args.resume]
    else:
        command += ["--config", args.config] if args.config else []
        command += ["--out", out] if out else []
    return [*command, *args.overrides]


def launch(args: argparse.Namespace) -> int:
    """Run ``irra train`` in ``args.nproc`` local processes and wait for them."""
    from irra.engine.cpu_threads import threads_per_process, usable_cores

    out = args.out
    if not args.resume and not out and args.config:
        out = str(default_run_dir(args.config))  # one folder for all processes
    command = launch_command(args, out)
    env = dict(os.environ)
    # Each process also caps its own threads (irra.engine.cpu_threads); train.threads overrides.
    env["OMP_NUM_THREADS"] = str(threads_per_process(usable_cores(), args.nproc))
    logger.info(
        "launching %d processes (%s threads each): %s",
        args.nproc,
        env["OMP_NUM_THREADS"],
        " ".join(command),
    )
    return subprocess.call(command, env=env)


def default_run_dir(config: str) -> Path:
    """``runs/<config name>-<YYYYmmdd-HHMMSS>``."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{Path(config).stem}-{stamp}"


def format_metrics(metrics: dict[str, float]) -> str:
    """``R1 55.12  R5 80.00 ...``."""
    return "  ".join(f"{k} {v:.2f}" for k, v in metrics.items())
