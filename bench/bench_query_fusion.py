"""How to combine the parts of a query (text + image) into one ranking, measured on a test split.

For every caption of the split, the query is the caption plus one *other* image of the same
person (the first one in gallery order that is not the caption's own image); that helper image
is left out of the ranking. Rules compared (all exact, over the whole gallery):

* ``text`` / ``image``: one part alone;
* ``sum w``: the sum of the parts' unit embeddings, image weighted ``w`` (ranks as the weighted
  sum of the parts' cosine scores);
* ``z-score``: late fusion of per-part scores, each standardised over the gallery (mean 0, std 1)
  before summing;
* ``rrf``: reciprocal-rank fusion, sum of 1 / (60 + rank) over the parts.

Also prints image -> image over the gallery (each image a query, itself left out). Metrics are
percent (:func:`irra.metrics.retrieval_metrics`).

    python bench/bench_query_fusion.py --model runs/demo/model --root runs/demo/data
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from irra.data.formats import read_dataset
from irra.inference import open_encoder
from irra.metrics import retrieval_metrics


def ranks_of(scores: np.ndarray) -> np.ndarray:
    """(Q, G) scores -> (Q, G) 1-based ranks (ties by lower index)."""
    order = np.argsort(-scores, axis=1, kind="stable")
    ranks = np.empty_like(order)
    rows = np.arange(scores.shape[0])[:, None]
    ranks[rows, order] = np.arange(1, scores.shape[1] + 1)
    return ranks


def zscore(scores: np.ndarray) -> np.ndarray:
    """Standardise each row over the gallery."""
    return (scores - scores.mean(1, keepdims=True)) / scores.std(1, keepdims=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="checkpoint or export directory")
    parser.add_argument("--root", required=True, help="data root holding <DATASET>/")
    parser.add_argument("--dataset", default="CUHK-PEDES")
    parser.add_argument("--split", default="test")
    parser.add_argument("--json", help="also write the table here")
    args = parser.parse_args()

    split = read_dataset(args.dataset, args.root, check_images=False).split(args.split)
    encoder = open_encoder(args.model, device="cpu")
    start = time.perf_counter()
    images = encoder.encode_images([Path(p) for p in split.image_paths], batch_size=64)
    texts = encoder.encode_texts(list(split.captions))
    print(
        f"encoded {len(images)} images, {len(texts)} captions "
        f"in {time.perf_counter() - start:.1f} s"
    )
    gallery_pids = np.asarray(split.image_pids)
    caption_pids = np.asarray(split.caption_pids)
    own = np.asarray(split.caption_image_index)

    helper = np.full(len(texts), -1)
    for q in range(len(texts)):
        others = np.flatnonzero(
            (gallery_pids == caption_pids[q]) & (np.arange(len(images)) != own[q])
        )
        if len(others):
            helper[q] = others[0]
    keep = helper >= 0
    t, h, pids, exclude = texts[keep], images[helper[keep]], caption_pids[keep], helper[keep]
    text_scores, image_scores = t @ images.T, h @ images.T

    rules = {
        "text": text_scores,
        "image": image_scores,
        "sum w=0.5": (t + 0.5 * h) @ images.T,
        "sum w=1": (t + h) @ images.T,
        "sum w=2": (t + 2 * h) @ images.T,
        "z-score": zscore(text_scores) + zscore(image_scores),
        "rrf": 1 / (60 + ranks_of(text_scores)) + 1 / (60 + ranks_of(image_scores)),
    }
    table = {}
    for name, scores in rules.items():
        metrics = retrieval_metrics(
            torch.from_numpy(np.asarray(scores, dtype=np.float64)),
            torch.from_numpy(pids),
            torch.from_numpy(gallery_pids),
            exclude=torch.from_numpy(exclude),
        )
        table[f"text+image: {name}"] = metrics
    i2i = retrieval_metrics(
        torch.from_numpy(images @ images.T),
        torch.from_numpy(gallery_pids),
        torch.from_numpy(gallery_pids),
        exclude=torch.arange(len(images)),
    )
    table["image->image"] = i2i
    t2i = retrieval_metrics(
        torch.from_numpy(texts @ images.T),
        torch.from_numpy(caption_pids),
        torch.from_numpy(gallery_pids),
    )
    table["text->image (all captions, nothing left out)"] = t2i
    print(f"{len(t)} caption + helper-image queries over {len(images)} gallery images")
    print("| query | R1 | R5 | mAP | mINP |\n|---|---:|---:|---:|---:|")
    for name, m in table.items():
        print(f"| {name} | {m['R1']:.2f} | {m['R5']:.2f} | {m['mAP']:.2f} | {m['mINP']:.2f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(table, indent=2) + "\n")


if __name__ == "__main__":
    main()
