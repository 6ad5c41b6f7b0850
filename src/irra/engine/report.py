"""The run report: training curves, CMC curve, a retrieval grid, and ``report.html``."""

from __future__ import annotations

import html
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import torch

from irra.fileio import atomic_write_text
from irra.metrics import METRIC_KEYS
from irra.viz import RankedItem, retrieval_grid

logger = logging.getLogger(__name__)


def plot_training_curves(history: Sequence[dict[str, float]], path: Path) -> None:
    """Losses per epoch (left) and evaluation R1 per epoch (right) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [int(h["epoch"]) for h in history]
    loss_keys = [
        k
        for k in ("loss", "sdm", "itc", "cmpm", "id", "mlm")
        if all(k in h for h in history) and history
    ]
    r1_keys = sorted({k for h in history for k in h if k.endswith("/R1")})
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for key in loss_keys:
        axes[0].plot(epochs, [h[key] for h in history], marker=".", label=key)
    axes[0].set_xlabel("epoch")
    axes[0].set_ylabel("loss (epoch mean)")
    axes[0].legend()
    axes[0].grid(alpha=0.3)
    for key in r1_keys:
        points = [(int(h["epoch"]), h[key]) for h in history if key in h]
        axes[1].plot(*zip(*points, strict=True), marker="o", label=key)
    axes[1].set_xlabel("epoch")
    axes[1].set_ylabel("Rank-1 (%)")
    if r1_keys:
        axes[1].legend()
    axes[1].grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_cmc(cmc: torch.Tensor, path: Path, label: str = "test") -> None:
    """The CMC curve (percent of queries with a match within rank k) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ranks = list(range(1, len(cmc) + 1))
    fig, ax = plt.subplots(figsize=(5, 3.6))
    ax.plot(ranks, cmc.tolist(), marker="o", label=label)
    ax.set_xlabel("rank k")
    ax.set_ylabel("matching rate (%)")
    ax.set_ylim(0, 100)
    ax.set_xticks(ranks[:: max(1, len(ranks) // 10)])
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def grid_rows(
    similarity: torch.Tensor,
    captions: Sequence[str],
    query_pids: torch.Tensor,
    image_paths: Sequence[str | os.PathLike[str]],
    gallery_pids: torch.Tensor,
    queries: Sequence[int],
    k: int = 10,
) -> list[tuple[str, list[RankedItem]]]:
    """Top-``k`` gallery items of the chosen ``queries`` with their correctness.

    Args:
        similarity: (Q, G) float, text rows.
        queries: indices of the query rows to show.
    """
    rows = []
    for q in queries:
        scores, order = similarity[q].float().topk(min(k, similarity.shape[1]))
        items = [
            RankedItem(image_paths[g], float(s), bool(gallery_pids[g] == query_pids[q]))
            for s, g in zip(scores.tolist(), order.tolist(), strict=True)
        ]
        rows.append((captions[q], items))
    return rows


def write_report(
    folder: Path,
    *,
    title: str,
    metrics: dict[str, float],
    history: Sequence[dict[str, float]],
    cmc: torch.Tensor | None = None,
    rows: Sequence[tuple[str, Sequence[RankedItem]]] = (),
    thumb: tuple[int, int] = (128, 48),
    notes: Sequence[str] = (),
) -> Path:
    """Write the PNGs and ``report.html`` into ``folder``; returns the HTML path."""
    folder.mkdir(parents=True, exist_ok=True)
    figures = []
    if history:
        plot_training_curves(history, folder / "training_curves.png")
        figures.append(("Training curves", "training_curves.png"))
    if cmc is not None:
        plot_cmc(cmc, folder / "cmc.png")
        figures.append(("CMC curve (text-to-image)", "cmc.png"))
    if rows:
        grid = retrieval_grid(rows, thumb=thumb)
        grid.save(folder / "retrieval_grid.png")
        figures.append(
            (
                "Retrieval examples: top-10 per query, green = same identity, red = other",
                "retrieval_grid.png",
            )
        )
    head = "".join(f"<th>{html.escape(k)}</th>" for k in METRIC_KEYS if k in metrics)
    cells = "".join(f"<td>{metrics[k]:.2f}</td>" for k in METRIC_KEYS if k in metrics)
    figure_html = "\n".join(
        f'<h2>{html.escape(caption)}</h2><img src="{name}" alt="{html.escape(caption)}">'
        for caption, name in figures
    )
    notes_html = "".join(f"<li>{html.escape(n)}</li>" for n in notes)
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
th, td {{ border: 1px solid #ccc; padding: 0.4em 1em; text-align: right; }}
img {{ max-width: 100%; border: 1px solid #eee; }}
</style></head>
<body>
<h1>{html.escape(title)}</h1>
<p>Text-to-image retrieval on the held-out test split (percent).</p>
<table><tr>{head}</tr><tr>{cells}</tr></table>
<ul>{notes_html}</ul>
{figure_html}
</body></html>
"""
    out = folder / "report.html"
    atomic_write_text(out, page)
    return out
