"""``irra ablate``: train configs x loss combinations x noise rates and tabulate the results."""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

#: The paper's ablation rows: SDM alone, + ID, + IRR (MLM), all three, and ITC instead of SDM.
DEFAULT_VARIANTS = ("sdm", "sdm+id", "sdm+mlm", "sdm+mlm+id", "itc+mlm+id")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``irra ablate``."""
    p = subparsers.add_parser(
        "ablate",
        help="train configs x loss combinations x noise rates and print a results table",
        description=(
            "One training run per (config, loss combination, noise rate), each in its own "
            "folder of OUT, then OUT/ablation.md and OUT/ablation.json with the test metrics "
            "(and, for RDE, the clean-sample division's precision/recall per epoch). With one "
            "config and no --noise the loss combinations default to the paper's ablation rows; "
            "otherwise each config trains its own losses. Finished runs are reused and "
            "interrupted ones resumed, so the command can be run again after a stop. With a "
            "SynthPedes config (synth, rde_synth), SynthPedes is generated into OUT/data when "
            "data.root is not given."
        ),
    )
    p.add_argument(
        "--config",
        nargs="+",
        default=["synth"],
        help="config files or shipped names, e.g. one per method: synth rde_synth (default synth)",
    )
    p.add_argument("--out", default="runs/ablation", help="output folder (runs/ablation)")
    p.add_argument(
        "--variants",
        nargs="+",
        default=None,
        metavar="LOSSES",
        help=f"loss combinations (default with one config: {' '.join(DEFAULT_VARIANTS)})",
    )
    p.add_argument(
        "--noise",
        nargs="+",
        type=float,
        default=None,
        metavar="RATE",
        help="noise rates (data.noise_rate), e.g. 0 0.2 0.5 0.8: a column of the table",
    )
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted config overrides")


def run(args: argparse.Namespace) -> int:
    """Run ``irra ablate``; returns the exit status."""
    from irra.cli.demo import ensure_synthpedes
    from irra.config import ConfigError
    from irra.data import DatasetError
    from irra.engine.run import RunError
    from irra.fileio import atomic_write_text
    from irra.methods import MethodError
    from irra.model import parse_loss_names

    out = Path(args.out).expanduser().resolve()
    rows: list[dict] = []
    try:
        # "--variants a b key=value": argparse hands the overrides to a list option; take them back
        listed = [*(args.variants or []), *args.config]
        overrides = [v for v in listed if "=" in v] + list(args.overrides)
        configs = [c for c in args.config if "=" not in c]
        variants: list[tuple[str, ...] | None] = [None]  # None: the config's own losses
        if args.variants is not None:
            variants = [parse_loss_names(v) for v in args.variants if "=" not in v]
        elif len(configs) == 1 and args.noise is None:
            variants = [parse_loss_names(v) for v in DEFAULT_VARIANTS]
        noises: list[float | None] = list(args.noise) if args.noise is not None else [None]
        if any("synth" in Path(c).stem for c in configs) and not any(
            o.startswith("data.root=") for o in overrides
        ):
            ensure_synthpedes(out / "data" / "CUHK-PEDES", workers=os.cpu_count() or 1)
            overrides.insert(0, f"data.root={out / 'data'}")
        label_method = len(configs) > 1
        for config_name in configs:
            for names in variants:
                for noise in noises:
                    rows.append(_run_one(out, config_name, names, noise, overrides, label_method))
    except (ConfigError, DatasetError, RunError, MethodError, ValueError) as err:
        logger.error("%s", err)
        return 2
    except KeyboardInterrupt:
        logger.warning("interrupted; run the same command again to continue")
        return 130
    table = ablation_table(rows, method=label_method, noise=args.noise is not None)
    atomic_write_text(out / "ablation.md", table + "\n")
    atomic_write_text(out / "ablation.json", json.dumps(rows, indent=2) + "\n")
    print(table)
    print(f"\nwritten: {out / 'ablation.md'}")
    return 0


def _run_one(
    out: Path,
    config_name: str,
    names: tuple[str, ...] | None,
    noise: float | None,
    overrides: list[str],
    label_method: bool,
) -> dict[str, Any]:
    """Train (or reuse) one cell of the table; returns its row."""
    from irra.cli.progress import TrainProgressHook, bar, counter
    from irra.config import load_config
    from irra.engine import run_files
    from irra.engine.run import train

    extra = list(overrides)
    if names is not None:
        extra.append(f"loss.names=[{','.join(names)}]")
    if noise is not None:
        extra.append(f"data.noise_rate={noise}")
    config = load_config(config_name, extra)
    config.data.root = str(Path(config.data.root).expanduser().resolve())
    label = "+".join(config.loss.names)
    parts = [config.model.method] if label_method else []
    parts.append(label.replace("+", "_"))
    if noise is not None:
        parts.append(f"noise{noise:g}")
    run_dir = out / "_".join(parts)
    if run_files.is_finished(run_dir):
        logger.info("%s: finished earlier, reusing %s", run_dir.name, run_dir)
    else:
        logger.info("ablation run %s -> %s", run_dir.name, run_dir)
        train(
            config,
            run_dir,
            resume=(run_dir / run_files.LAST).is_file(),
            hooks=[TrainProgressHook()],
            progress=bar,
            check_progress=counter("checking images"),
        )
    metrics = json.loads((run_dir / run_files.METRICS).read_text(encoding="utf-8"))
    row: dict[str, Any] = {"method": config.model.method, "losses": label, **metrics}
    if noise is not None:
        row["noise"] = noise
    division = division_history(run_dir / run_files.EPOCH_LOG)
    if division:
        row["division"] = division
    return row


def division_history(log: Path) -> list[dict[str, float]]:
    """Per epoch, the clean-sample division's precision/recall (percent) logged by RDE runs."""
    if not log.is_file():
        return []
    history = []
    for line in log.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        if "division/clean_precision" in record:
            history.append(
                {
                    "epoch": record["epoch"],
                    "precision": record["division/clean_precision"],
                    "recall": record["division/clean_recall"],
                }
            )
    return history


def _division_cell(history: list[dict[str, float]]) -> str:
    """``P / R, P / R, ...`` per divided epoch, led by ``from epoch N:`` when N is not 1."""
    text = ", ".join(f"{d['precision']:.1f} / {d['recall']:.1f}" for d in history)
    first = int(history[0]["epoch"])
    return text if first == 1 else f"from epoch {first}: {text}"


def ablation_table(rows: list[dict], *, method: bool = False, noise: bool = False) -> str:
    """A Markdown table: one row per run, test metrics in percent.

    With ``method`` a method column leads, with ``noise`` a noise column follows the losses,
    and when any run logged a clean-sample division, its precision / recall per epoch.
    """
    from irra.metrics import METRIC_KEYS

    heads = (["method"] if method else []) + ["losses"] + (["noise"] if noise else [])
    division = any("division" in row for row in rows)
    columns = heads + list(METRIC_KEYS) + (["division P / R per epoch"] if division else [])
    lines = [
        "| " + " | ".join(columns) + " |",
        "|---" * len(heads) + "|" + "---:|" * len(METRIC_KEYS) + ("---|" if division else ""),
    ]
    for row in rows:
        cells = [row["method"]] if method else []
        cells.append(row["losses"])
        if noise:
            cells.append(f"{100 * row['noise']:g}%")
        cells += [f"{row[k]:.2f}" for k in METRIC_KEYS]
        if division:
            cells.append(_division_cell(row["division"]) if "division" in row else "")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
