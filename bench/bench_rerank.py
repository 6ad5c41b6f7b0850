"""Re-ranking a query's top candidates with the gallery's image-to-image structure, measured.

Rules compared on a test split, for text -> image and image -> image (each gallery image a
query, itself left out):

* ``none``: the plain cosine ranking;
* ``expand m``: alpha-query expansion: the query vector plus its top m hits weighted by their
  score cubed, searched again;
* ``k-reciprocal k1``: k-reciprocal re-ranking (Zhong et al., CVPR 2017: Jaccard distance of
  Gaussian-weighted k-reciprocal sets, k2 = 6 local expansion, lambda 0.3) over the query and
  its top 100 candidates;
* ``neighbours``: irra's ``--rerank`` (:mod:`irra.retrieval.rerank`): each of the top 100
  candidates scores with the mean score of its 3 nearest gallery images.

Tasks: text -> image (every caption); image -> image (every image, itself left out); text +
image (every caption plus another image of the same person, summed as irra combines parts; that
image left out). A left-out image is also nobody's neighbour. Prints R1 / mAP (percent,
:func:`irra.metrics.retrieval_metrics`) and the milliseconds per query of the re-ranking step
alone (numpy, exact neighbours). With ``--index`` (an index of the split's images) it also
times ``Retriever.search`` end to end for each query kind, with and without ``rerank``.

    OMP_NUM_THREADS=1 python bench/bench_rerank.py --model runs/demo/model --root runs/demo/data \
        [--index runs/demo/test-index]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from irra.data.formats import read_dataset
from irra.inference import open_encoder
from irra.metrics import retrieval_metrics
from irra.retrieval.rerank import BETA, NEIGHBOURS, NeighbourCache, rerank

CANDIDATES = 100


def k_reciprocal(scores_q: np.ndarray, feats: np.ndarray, k1: int, k2: int = 6, lam: float = 0.3):
    """Final distances (R,) of R candidates to the query: k-reciprocal Jaccard + original."""
    count = len(feats) + 1
    sim = np.empty((count, count), dtype=np.float64)
    sim[0, 0] = 1.0
    sim[0, 1:] = sim[1:, 0] = scores_q
    sim[1:, 1:] = feats @ feats.T
    dist = 2.0 - 2.0 * sim
    dist = dist / np.maximum(dist.max(axis=0, keepdims=True), 1e-12)
    rank = np.argsort(dist, axis=1, kind="stable")

    def reciprocal(i: int, k: int) -> np.ndarray:
        forward = rank[i, : k + 1]
        backward = rank[forward, : k + 1]
        return forward[(backward == i).any(axis=1)]

    weights = np.zeros((count, count))
    for i in range(count):
        found = reciprocal(i, k1)
        expanded = found
        for j in found:
            inner = reciprocal(int(j), int(round(k1 / 2)))
            if len(np.intersect1d(inner, found)) > 2 / 3 * len(inner):
                expanded = np.append(expanded, inner)
        expanded = np.unique(expanded)
        w = np.exp(-dist[i, expanded])
        weights[i, expanded] = w / w.sum()
    if k2 > 1:
        weights = np.stack([weights[rank[i, :k2]].mean(axis=0) for i in range(count)])
    mins = np.minimum(weights[0][None], weights[1:]).sum(axis=1)
    maxs = np.maximum(weights[0][None], weights[1:]).sum(axis=1)
    jaccard = 1.0 - mins / np.maximum(maxs, 1e-12)
    return (1 - lam) * jaccard + lam * dist[0, 1:]


def rerank_rows(
    queries: np.ndarray, gallery: np.ndarray, exclude: np.ndarray, rule: Callable
) -> tuple[np.ndarray, float]:
    """(Q, G) scores after ``rule`` re-ranks each query's top candidates; ms per query."""
    out = queries @ gallery.T
    for q in range(len(queries)):
        if exclude[q] >= 0:
            out[q, exclude[q]] = -np.inf
    seconds = 0.0
    for q in range(len(queries)):
        start = time.perf_counter()
        out[q] = rule(queries[q], out[q], gallery, exclude[q])
        seconds += time.perf_counter() - start
    return out, 1000 * seconds / len(queries)


def with_expansion(m: int, alpha: float = 3.0) -> Callable:
    """alpha-query expansion: the query plus its top m hits weighted by score**alpha."""

    def rule(query, row, gallery, excluded):
        top = np.argsort(-row, kind="stable")[:m]
        vector = query + (np.maximum(row[top], 0) ** alpha) @ gallery[top]
        new = gallery @ (vector / np.linalg.norm(vector))
        if excluded >= 0:
            new[excluded] = -np.inf
        return new

    return rule


def with_k_reciprocal(k1: int) -> Callable:
    def rule(query, row, gallery, excluded):
        top = np.argsort(-row, kind="stable")[:CANDIDATES]
        final = k_reciprocal(row[top], gallery[top], k1)
        new = row.copy()
        new[top] = 3.0 - final  # above every cosine: candidates stay ahead of the rest
        return new

    return rule


def with_neighbours(beta: float) -> Callable:
    """irra's --rerank (:func:`irra.retrieval.rerank.rerank`), neighbours by brute force; the
    query's own image (image -> image) is no one's neighbour."""

    def rule(query, row, gallery, excluded):
        def search(vectors: np.ndarray, k: int) -> np.ndarray:
            sims = vectors @ gallery.T
            if excluded >= 0:
                sims[:, excluded] = -np.inf
            return np.argsort(-sims, axis=1, kind="stable")[:, :k]

        def rows(ids: np.ndarray) -> np.ndarray:
            return gallery[ids]

        top = np.argsort(-row, kind="stable")[:CANDIDATES]
        scores, ids = rerank(query, top, row[top], NeighbourCache(search, rows), rows, beta)
        new = row.copy()
        new[ids] = 3.0 + scores  # candidates stay ahead of the rest
        return new

    return rule


def helper_images(split) -> np.ndarray:
    """Per caption, the first other image of the same person in gallery order (-1: none)."""
    pids, own = np.asarray(split.image_pids), np.asarray(split.caption_image_index)
    helper = np.full(len(split.captions), -1)
    for q, pid in enumerate(split.caption_pids):
        others = np.flatnonzero((pids == pid) & (np.arange(len(pids)) != own[q]))
        helper[q] = others[0] if len(others) else -1
    return helper


def end_to_end(index: Path, split, helper: np.ndarray, count: int) -> None:
    """p50 / p99 ms of ``Retriever.search`` (k 10, query encoding included) per query kind."""
    from irra.retrieval import Retriever
    from irra.retrieval.store import open_store

    with open_store(index) as store:
        root = Path(store.settings()["images_root"])
        ids = {r.path: i for i, r in store.rows()}
    image_ids = [ids[Path(p).resolve().relative_to(root).as_posix()] for p in split.image_paths]
    kinds = {
        "text": lambda r, q, rr: r.search(split.captions[q], 10, rerank=rr),
        "image (similar id)": lambda r, q, rr: r.search(
            similar=[image_ids[q % len(image_ids)]], k=10, rerank=rr
        ),
        "text + image (similar id)": lambda r, q, rr: r.search(
            split.captions[q], 10, similar=[image_ids[helper[q]]], rerank=rr
        ),
    }
    print("\n| query (Retriever.search, k 10) | rerank | p50 ms | p99 ms |\n|---|---|---:|---:|")
    with Retriever.open(index, device="cpu") as retriever:
        for name, run in kinds.items():
            for rr in (False, True):
                run(retriever, 0, rr)  # warm-up (and, with rerank, the first neighbour lists)
                seconds = []
                for q in range(count):
                    start = time.perf_counter()
                    run(retriever, q, rr)
                    seconds.append(time.perf_counter() - start)
                p50, p99 = np.percentile(1000 * np.asarray(seconds), [50, 99])
                print(f"| {name} | {'yes' if rr else 'no'} | {p50:.2f} | {p99:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--root", required=True)
    parser.add_argument("--dataset", default="CUHK-PEDES")
    parser.add_argument("--split", default="test")
    parser.add_argument("--index", type=Path, help="an index of the split's images: time searches")
    parser.add_argument("--timed", type=int, default=200, help="queries timed per kind")
    args = parser.parse_args()
    split = read_dataset(args.dataset, args.root, check_images=False).split(args.split)
    encoder = open_encoder(args.model, device="cpu")
    images = encoder.encode_images([Path(p) for p in split.image_paths]).astype(np.float64)
    texts = encoder.encode_texts(list(split.captions)).astype(np.float64)
    gallery_pids = torch.tensor(split.image_pids)
    helper = helper_images(split)
    has = helper >= 0
    both = texts[has] + images[helper[has]]
    both /= np.linalg.norm(both, axis=1, keepdims=True)
    caption_pids = torch.tensor(split.caption_pids)
    tasks = {
        "text->image": (texts, caption_pids, np.full(len(texts), -1)),
        "image->image": (images, gallery_pids, np.arange(len(images))),
        "text+image": (both, caption_pids[torch.from_numpy(has)], helper[has]),
    }
    rules = {"none": lambda q, row, g, e: row}
    rules |= {f"expand m={m}": with_expansion(m) for m in (1, 2, 5)}
    rules |= {f"k-reciprocal k1={k}": with_k_reciprocal(k) for k in (6, 20)}
    rules |= {f"neighbours k={NEIGHBOURS} beta={b:g}": with_neighbours(b) for b in (BETA, 1.0)}
    print("| task | rule | R1 | mAP | ms/query |\n|---|---|---:|---:|---:|")
    for task, (queries, pids, exclude) in tasks.items():
        for name, rule in rules.items():
            scores, ms = rerank_rows(queries, images, exclude, rule)
            scores = np.where(np.isfinite(scores), scores, -10.0)
            metrics = retrieval_metrics(
                torch.from_numpy(scores), pids, gallery_pids, exclude=torch.from_numpy(exclude)
            )
            print(f"| {task} | {name} | {metrics['R1']:.2f} | {metrics['mAP']:.2f} | {ms:.2f} |")
    if args.index:
        end_to_end(args.index, split, helper, min(args.timed, int(has.sum())))


if __name__ == "__main__":
    main()
