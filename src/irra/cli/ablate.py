"""``irra ablate``: train one config with several loss combinations and tabulate the results."""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path

logger = logging.getLogger(__name__)

#: The paper's ablation rows: SDM alone, + ID, + IRR (MLM), all three, and ITC instead of SDM.
DEFAULT_VARIANTS = ("sdm", "sdm+id", "sdm+mlm", "sdm+mlm+id", "itc+mlm+id")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``irra ablate``."""
    p = subparsers.add_parser(
        "ablate",
        help="train a config with several loss combinations and print a results table",
        description=(
            "Run the loss ablation: one training run per loss combination, each in "
            "OUT/<losses>/, then OUT/ablation.md and OUT/ablation.json with the test metrics. "
            "Finished variants are reused and interrupted ones resumed, so the command can be "
            "run again after a stop. With the default config (synth), SynthPedes is generated "
            "into OUT/data when data.root holds no dataset."
        ),
    )
    p.add_argument("--config", default="synth", help="config file or shipped name (synth)")
    p.add_argument("--out", default="runs/ablation", help="output folder (runs/ablation)")
    p.add_argument(
        "--variants",
        nargs="+",
        default=list(DEFAULT_VARIANTS),
        metavar="LOSSES",
        help=f"loss combinations (default: {' '.join(DEFAULT_VARIANTS)})",
    )
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted config overrides")


def run(args: argparse.Namespace) -> int:
    """Run ``irra ablate``; returns the exit status."""
    from irra.cli.demo import ensure_synthpedes
    from irra.cli.progress import TrainProgressHook, bar, counter
    from irra.config import ConfigError, load_config
    from irra.data import DatasetError
    from irra.engine import run_files
    from irra.engine.run import RunError, train
    from irra.fileio import atomic_write_text
    from irra.model import parse_loss_names

    out = Path(args.out).expanduser().resolve()
    rows: list[dict] = []
    try:
        # "--variants a b key=value": argparse hands the overrides to --variants; take them back
        overrides = [v for v in args.variants if "=" in v] + list(args.overrides)
        variants = [parse_loss_names(v) for v in args.variants if "=" not in v]
        if Path(args.config).stem == "synth" and not any(
            o.startswith("data.root=") for o in overrides
        ):
            ensure_synthpedes(out / "data" / "CUHK-PEDES", workers=os.cpu_count() or 1)
            overrides.insert(0, f"data.root={out / 'data'}")
        for names in variants:
            label = "+".join(names)
            run_dir = out / label.replace("+", "_")
            config = load_config(args.config, [*overrides, f"loss.names=[{','.join(names)}]"])
            config.data.root = str(Path(config.data.root).expanduser().resolve())
            if run_files.is_finished(run_dir):
                logger.info("%s: finished earlier, reusing %s", label, run_dir)
            else:
                logger.info("ablation variant %s -> %s", label, run_dir)
                train(
                    config,
                    run_dir,
                    resume=(run_dir / run_files.LAST).is_file(),
                    hooks=[TrainProgressHook()],
                    progress=bar,
                    check_progress=counter("checking images"),
                )
            metrics = json.loads((run_dir / run_files.METRICS).read_text(encoding="utf-8"))
            rows.append({"losses": label, **metrics})
    except (ConfigError, DatasetError, RunError, ValueError) as err:
        logger.error("%s", err)
        return 2
    except KeyboardInterrupt:
        logger.warning("interrupted; run the same command again to continue")
        return 130
    table = ablation_table(rows)
    atomic_write_text(out / "ablation.md", table + "\n")
    atomic_write_text(out / "ablation.json", json.dumps(rows, indent=2) + "\n")
    print(table)
    print(f"\nwritten: {out / 'ablation.md'}")
    return 0


def ablation_table(rows: list[dict]) -> str:
    """A Markdown table: one row per loss combination, test metrics in percent."""
    from irra.metrics import METRIC_KEYS as keys

    lines = [
        "| losses | " + " | ".join(keys) + " |",
        "|---|" + "---:|" * len(keys),
    ]
    for row in rows:
        lines.append(f"| {row['losses']} | " + " | ".join(f"{row[k]:.2f}" for k in keys) + " |")
    return "\n".join(lines)
