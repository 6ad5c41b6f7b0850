"""``irra demo``: generate SynthPedes, train a small IRRA on CPU, test it, write the report."""

from __future__ import annotations

import argparse
import importlib.util
import logging
import shutil
import time
from pathlib import Path

logger = logging.getLogger(__name__)

DEMO_IDS = 3000
DEMO_HELD_OUT = 100  # identities in each of the val and test splits; the rest train


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``irra demo``."""
    p = subparsers.add_parser(
        "demo",
        help="the whole pipeline in minutes on CPU: SynthPedes -> train -> test -> report",
        description=(
            f"Generate SynthPedes ({DEMO_IDS} drawn identities in CUHK-PEDES format: "
            f"{DEMO_IDS - 2 * DEMO_HELD_OUT} to train, {DEMO_HELD_OUT} to validate, "
            f"{DEMO_HELD_OUT} held out for the test), train a small IRRA from random "
            "initialisation with SDM + MLM + ID on it, test on the held-out identities and write "
            "the report. Runs again resume or reuse what is already there."
        ),
    )
    p.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="train again even if OUT already holds a finished demo run (the data is reused)",
    )
    p.add_argument("--workers", type=int, default=None, help="SynthPedes drawing processes")
    p.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="overrides of the synth config"
    )


def run(args: argparse.Namespace) -> int:
    """Run ``irra demo``; returns the exit status."""
    import os

    from irra.cli.progress import TrainProgressHook, bar, counter
    from irra.config import ConfigError, load_config
    from irra.data import DatasetError
    from irra.engine import run_files
    from irra.engine.run import RunError, train

    start = time.perf_counter()
    out = Path(args.out).expanduser().resolve()
    data_root = out / "data"
    run_dir = out  # the run's files sit beside data/, so OUT/metrics.json is the result
    try:
        config = load_config("synth", [f"data.root={data_root}", *args.overrides])
        ensure_synthpedes(data_root / "CUHK-PEDES", workers=args.workers or os.cpu_count() or 1)
        finished = run_files.is_finished(run_dir)
        if finished and args.overwrite:
            clear_run(run_dir, keep=data_root)
            finished = False
        if finished:
            logger.info("%s already holds a finished demo run (--overwrite trains again)", run_dir)
        else:
            resume = (run_dir / run_files.LAST).is_file()
            train(
                None if resume and not args.overrides else config,
                run_dir,
                resume=resume,
                hooks=[TrainProgressHook()],
                progress=bar,
                check_progress=counter("checking images"),
            )
    except (ConfigError, DatasetError, RunError, FileExistsError, ValueError) as err:
        logger.error("%s", err)
        return 2
    except KeyboardInterrupt:
        logger.warning("interrupted; run the same command again to resume")
        return 130
    print_summary(run_dir, time.perf_counter() - start)
    return 0


def ensure_synthpedes(folder: Path, *, workers: int) -> None:
    """Generate the demo's SynthPedes into ``folder`` unless a complete copy is already there."""
    from irra.cli.progress import counter
    from irra.data.synth import generate_synthpedes

    if (folder / "reid_raw.json").is_file():
        logger.info("using the SynthPedes already in %s", folder)
        return
    logger.info("generating SynthPedes (%d identities) in %s", DEMO_IDS, folder)
    progress = counter("synthpedes", unit="img")
    try:
        held_out = DEMO_HELD_OUT / DEMO_IDS
        generate_synthpedes(
            folder,
            num_ids=DEMO_IDS,
            split_fractions=(1 - 2 * held_out, held_out, held_out),
            workers=workers,
            progress=progress,
        )
    finally:
        progress.close()


def clear_run(run_dir: Path, *, keep: Path) -> None:
    """Delete a finished run's files from ``run_dir``, keeping the generated data in ``keep``."""
    for entry in run_dir.iterdir():
        if entry == keep:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def print_summary(run_dir: Path, seconds: float) -> None:
    """The demo's result and what to run next."""
    import json

    from irra.engine import run_files
    from irra.metrics import METRIC_KEYS

    metrics = json.loads((run_dir / run_files.METRICS).read_text(encoding="utf-8"))
    print()
    print(f"irra demo finished in {seconds / 60:.1f} min")
    print("test (held-out identities): " + "  ".join(f"{k} {metrics[k]:.2f}" for k in METRIC_KEYS))
    print(f"report:  {run_dir / run_files.REPORT / 'report.html'}")
    print(f"model:   {run_dir / run_files.MODEL}")
    print()
    print("next:")
    print(f"  irra evaluate --checkpoint {run_dir}")
    print(f"  tensorboard --logdir {run_dir / run_files.TENSORBOARD}")
    if importlib.util.find_spec("irra.cli.search") is not None:
        images = run_dir / "data" / "CUHK-PEDES" / "imgs"
        index = run_dir / "index"
        model = run_dir / run_files.MODEL
        print(f"  irra index --checkpoint {model} --images {images} --out {index}")
        print(f'  irra search --index {index} "a woman in a red dress with a black backpack"')
        print(f"  irra serve --index {index}")
