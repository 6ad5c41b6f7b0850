"""Unit vectors shaped like the demo model's embeddings: identities as clusters in a low-rank space.

Uniform random unit vectors are the wrong test of an approximate index: every point is about as
far from a query as every other. Person embeddings are not like that. Measured on the test split
of the demo model (``irra demo --out runs/demo``: 100 held-out identities, 4 images each, 2
captions per image; the demo model's embeddings are 64-d) with::

    python bench/embedding_like.py --measure --model runs/demo/model \\
        --data runs/demo/data/CUHK-PEDES

    cosine similarity                 mean    std    q01    q05    q50    q95    q99
    image-image, same identity       0.928  0.070  0.648  0.794  0.951  0.988  0.993
    image-image, other identities    0.022  0.361 -0.679 -0.531 -0.005  0.663  0.895
    text-image, matching pair        0.811  0.116  0.394  0.602  0.844  0.934  0.948
    text-image, other identities    -0.004  0.349 -0.685 -0.540 -0.031  0.618  0.818

The embeddings fill about 10 directions: the images' covariance has 10 eigenvalues falling about
linearly from 0.22 to 0.013, then a cliff to 0.001 (0.74% of the variance lies outside those 10);
an identity's spread lies in the same directions. The images' mean has norm 0.18, the texts' 0.13,
at cosine 0.17 to each other (the gap between the modalities). Some identities look alike to the
model: 1.3% of the pairs of identity centres are at cosine > 0.9 (the heavy right tail of the
other-identity distribution); grouping the 100 identities at 0.9 leaves 56 groups.

The generator follows that description, in a random orthonormal basis of ``rank + 2``
directions of R^dim (``m``: the images' mean, ``t``: the texts' mean, then ``rank`` signal
directions with variance shares ``s_i`` proportional to ``rank + 1 - i``, summing to 1):

* ``looks`` appearance centres ``a ~ N(0, diag(s))``; identity j's centre ``c_j`` is a look
  drawn uniformly plus ``N(0, identity * diag(s))``;
* an image of identity j (:func:`clustered_vectors`) is ``mean * m + c_j + sqrt(instance * g_j)
  * N(0, diag(s)) + sqrt(tail / dim) * N(0, I)``, normalised, ``g_j ~ Gamma(spread_shape)`` of
  mean 1 per identity (some identities are tighter than others);
* a text describing identity j (:func:`queries_like`) is ``text_mean * t + c_j + sqrt(query *
  h) * N(0, diag(s))`` plus the same tail, normalised, ``h ~ Gamma(spread_shape)`` per query.

Fitted with ``python bench/embedding_like.py --fit --looks 60 80 110`` (Nelder-Mead on the
means, stds and some quantiles above; ``rank`` 10 and ``per_identity`` 4 as measured, ``tail``
set to leave 0.8% of the variance outside the top 10 directions; 60 looks fitted best):
:data:`DEMO` = looks 60, identity 0.035, mean 0.154, instance 0.068, spread_shape 2.0, tail
0.006, query 0.23, text_mean 0.335. ``python bench/embedding_like.py --check --identities
25000`` (100,000 generated images, 512-d)::

    image-image, same identity       0.930  0.069  0.660  0.798  0.951  0.989  0.993
    image-image, other identities    0.037  0.354 -0.684 -0.530  0.031  0.619  0.899
    text-image, matching pair        0.808  0.118  0.386  0.578  0.839  0.933  0.953
    text-image, other identities     0.009  0.339 -0.684 -0.536  0.004  0.571  0.798

and 1.5% of identity pairs at centre cosine > 0.9, 0.81% of the variance outside the top 10
directions, a mean image of norm 0.19.

What does not match: the measured other-identity distribution is more skewed (median -0.005,
q95 0.66) than the mixture gives (0.03, 0.62). And the demo model is small: a full-size model's
embeddings spread over many more than 10 directions, so these vectors are easier for an IVF
index's cells than real 512-d embeddings and, with ~4,000 identities per look at 1M rows, denser
in near-duplicates.

Rows come in chunks of :data:`CHUNK_IDS` identities, each drawn by its own seeded generators:
1M rows take about 10 s and no memory beyond the (n, dim) float32 output, and a smaller ``n``
gives a prefix (to float rounding) of a larger one with the same seed.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

#: Identities per generated chunk (fixed: the rows do not depend on ``n``).
CHUNK_IDS = 8192
QUANTILES = (0.01, 0.05, 0.5, 0.95, 0.99)


@dataclass(frozen=True)
class Shape:
    """Parameters of the generator (the module docstring gives the model).

    Attributes:
        rank: signal directions (identity centres and their spread live there).
        looks: appearance clusters that identities are drawn from (people who dress alike).
        identity: expected squared length of an identity centre's offset from its look (the
            looks have expected squared length 1).
        mean: length of the mean direction shared by every image.
        instance: expected squared length of an image's offset from its identity centre.
        spread_shape: Gamma shape of the per-identity (per-query) scale of that offset.
        tail: expected squared length of isotropic noise over all ``dim`` directions.
        query: expected squared length of a query's offset from its identity centre.
        text_mean: length of the mean direction shared by every query (another direction than
            the images': the gap between the two modalities).
        per_identity: images per identity.
    """

    rank: int = 10
    looks: int = 60
    identity: float = 0.035
    mean: float = 0.154
    instance: float = 0.068
    spread_shape: float = 2.0
    tail: float = 0.006
    query: float = 0.23
    text_mean: float = 0.335
    per_identity: int = 4


DEMO = Shape()

#: The demo model's test split (see the module docstring): name -> mean, std, quantiles.
MEASURED: dict[str, dict[str, float]] = {
    "intra": {"mean": 0.928, "std": 0.070, "q01": 0.648, "q05": 0.794, "q50": 0.951,
              "q95": 0.988, "q99": 0.993},
    "inter": {"mean": 0.022, "std": 0.361, "q01": -0.679, "q05": -0.531, "q50": -0.005,
              "q95": 0.663, "q99": 0.895},
    "text_match": {"mean": 0.811, "std": 0.116, "q01": 0.394, "q05": 0.602, "q50": 0.844,
                   "q95": 0.934, "q99": 0.948},
    "text_other": {"mean": -0.004, "std": 0.349, "q01": -0.685, "q05": -0.540, "q50": -0.031,
                   "q95": 0.618, "q99": 0.818},
}  # fmt: skip
#: Shape figures of the demo model's test split (:func:`shape_figures`).
MEASURED_SHAPE: dict[str, float] = {
    "identities": 100, "images per identity (mean)": 4, "images per identity (min)": 4,
    "dim": 64, "variance share outside the top 10 directions": 0.0074,
    "norm of the mean image": 0.176, "identity pairs with centres at cosine > 0.9": 0.0129,
}  # fmt: skip
#: What ``--fit`` matches: (distribution, statistic, weight of its squared error).
FIT_TARGETS = (
    ("intra", "mean", 1.0), ("intra", "std", 1.0), ("intra", "q05", 0.5), ("intra", "q50", 0.5),
    ("inter", "mean", 1.0), ("inter", "std", 1.0), ("inter", "q05", 0.5), ("inter", "q95", 1.0),
    ("inter", "q99", 1.0), ("text_match", "mean", 1.0), ("text_match", "std", 1.0),
    ("text_match", "q05", 0.5), ("text_match", "q50", 0.5),
)  # fmt: skip
#: The parameters ``--fit`` moves (the others stay as given).
FITTED = ("identity", "mean", "instance", "spread_shape", "query", "text_mean")
LABELS = {
    "intra": "image-image, same identity",
    "inter": "image-image, other identities",
    "text_match": "text-image, matching pair",
    "text_other": "text-image, other identities",
}


def _shares(rank: int) -> np.ndarray:
    """(rank,) float32 variance shares of the signal directions: linear fall, sum 1."""
    weights = np.arange(rank, 0, -1, dtype=np.float64)
    return (weights / weights.sum()).astype(np.float32)


def _basis(dim: int, rank: int, seed: int) -> np.ndarray:
    """(rank + 2, dim) float32 orthonormal rows: the images' mean direction, the texts' mean
    direction, then the signal directions."""
    if dim < rank + 2:
        raise ValueError(f"dim ({dim}) must be at least rank + 2 ({rank + 2})")
    gauss = np.random.default_rng([seed, 0, 0]).standard_normal((dim, rank + 2))
    q, _ = np.linalg.qr(gauss)
    return np.ascontiguousarray(q.T, dtype=np.float32)


def _rng(seed: int, chunk: int, stream: int) -> np.random.Generator:
    """The generator of one array (``stream``) of one chunk of identities."""
    return np.random.default_rng([seed, 1, chunk, stream])


def _looks(shape: Shape, seed: int) -> np.ndarray:
    """(looks, rank) float32 look centres ~ N(0, diag(s))."""
    gauss = np.random.default_rng([seed, 0, 1]).standard_normal((shape.looks, shape.rank))
    return (gauss * np.sqrt(_shares(shape.rank))).astype(np.float32)


def _centres(shape: Shape, seed: int, chunk: int, count: int) -> np.ndarray:
    """(count, rank) float32: the first ``count`` identity centres of ``chunk``."""
    look = _rng(seed, chunk, 4).integers(0, shape.looks, count)
    gauss = _rng(seed, chunk, 0).standard_normal((count, shape.rank), dtype=np.float32)
    offsets = gauss * np.sqrt(shape.identity * _shares(shape.rank))
    return _looks(shape, seed)[look] + offsets


def _scales(shape: Shape, rng: np.random.Generator, count: int) -> np.ndarray:
    """(count,) float32 Gamma(spread_shape) draws of mean 1."""
    k = shape.spread_shape
    return rng.gamma(k, 1.0 / k, count).astype(np.float32)


def _finish(
    signal: np.ndarray, basis: np.ndarray, tail: float, rng: np.random.Generator
) -> np.ndarray:
    """Rows ``signal`` (m, rank + 2) in the basis, plus isotropic tail noise, normalised."""
    dim = basis.shape[1]
    rows = rng.standard_normal((len(signal), dim), dtype=np.float32)
    rows *= np.float32(math.sqrt(tail / dim))
    rows += signal @ basis
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    return rows


def clustered_vectors(
    n: int, dim: int = 512, seed: int = 0, shape: Shape = DEMO
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` unit vectors in identity clusters, shaped like the demo model's image embeddings.

    Args:
        n: rows.
        dim: width D.
        seed: the same seed gives the same rows; a smaller ``n`` gives a prefix of a larger one.
        shape: the generator's parameters (default: fitted to the demo model).

    Returns:
        vectors (n, D) float32 unit rows and identity labels (n,) int64: rows
        ``j * per_identity ...`` are identity j's images.

    Example:
        >>> vectors, labels = clustered_vectors(1_000_000)  # about 10 s, 2 GB
    """
    basis = _basis(dim, shape.rank, seed)
    per = shape.per_identity
    out = np.empty((n, dim), dtype=np.float32)
    step = CHUNK_IDS * per
    sqrt_shares = np.sqrt(_shares(shape.rank))
    for chunk, start in enumerate(range(0, n, step)):
        rows = min(step, n - start)
        identities = -(-rows // per)
        owner = np.arange(rows) // per
        spread = np.sqrt(shape.instance * _scales(shape, _rng(seed, chunk, 1), identities))
        offsets = _rng(seed, chunk, 2).standard_normal((rows, shape.rank), dtype=np.float32)
        signal = np.zeros((rows, shape.rank + 2), dtype=np.float32)
        signal[:, 0] = shape.mean
        signal[:, 2:] = _centres(shape, seed, chunk, identities)[owner]
        signal[:, 2:] += offsets * sqrt_shares * spread[owner, None]
        out[start : start + rows] = _finish(signal, basis, shape.tail, _rng(seed, chunk, 3))
    return out, np.arange(n, dtype=np.int64) // per


def queries_like(
    count: int,
    n: int,
    dim: int = 512,
    seed: int = 0,
    query_seed: int = 1,
    shape: Shape = DEMO,
) -> tuple[np.ndarray, np.ndarray]:
    """Query vectors behaving like the demo model's text queries against ``clustered_vectors(n)``.

    Each query describes one identity of the gallery (drawn uniformly): it lies near that
    identity's centre, at the text-image cosine measured on the demo model.

    Args:
        count: queries.
        n, dim, seed, shape: those of the gallery's :func:`clustered_vectors` call.
        query_seed: seeds the choice of identities and the query noise.

    Returns:
        queries (count, D) float32 unit rows and the identity each describes (count,) int64.
    """
    identities = -(-n // shape.per_identity)
    rng = np.random.default_rng([seed, 2, query_seed])
    chosen = rng.integers(0, identities, count)
    signal = np.zeros((count, shape.rank + 2), dtype=np.float32)
    signal[:, 1] = shape.text_mean
    for chunk in np.unique(chosen // CHUNK_IDS):
        mine = chosen // CHUNK_IDS == chunk
        local = chosen[mine] % CHUNK_IDS
        signal[mine, 2:] = _centres(shape, seed, int(chunk), int(local.max()) + 1)[local]
    spread = np.sqrt(shape.query * _scales(shape, rng, count))
    offsets = rng.standard_normal((count, shape.rank), dtype=np.float32)
    signal[:, 2:] += offsets * np.sqrt(_shares(shape.rank)) * spread[:, None]
    return _finish(signal, _basis(dim, shape.rank, seed), shape.tail, rng), chosen


def summary(values: np.ndarray) -> dict[str, float]:
    """Mean, std and :data:`QUANTILES` of a sample of cosines."""
    values = np.asarray(values, dtype=np.float64)
    stats = {"mean": float(values.mean()), "std": float(values.std())}
    for q, value in zip(QUANTILES, np.quantile(values, QUANTILES), strict=True):
        stats[f"q{round(100 * q):02d}"] = float(value)
    return stats


def distributions(
    images: np.ndarray,
    labels: np.ndarray,
    texts: np.ndarray,
    text_labels: np.ndarray,
    text_images: np.ndarray | None = None,
    pairs: int = 400_000,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """The four cosine distributions of :data:`MEASURED`, by brute force.

    Args:
        images: (N, D) unit rows; labels: (N,) their identities.
        texts: (T, D) unit rows; text_labels: (T,) the identity each describes.
        text_images: (T,) the image each text captions (the matching pair); None: every image
            of the text's identity matches.
        pairs: other-identity pairs sampled (image-image and text-image) when there are more.
    """
    order = np.argsort(labels, kind="stable")
    groups = np.split(order, np.flatnonzero(np.diff(labels[order])) + 1)
    intra = np.concatenate([_upper(images[g] @ images[g].T) for g in groups if len(g) > 1])
    rng = np.random.default_rng(seed)
    inter = _other_pairs(images, labels, images, labels, pairs, rng, same_set=True)
    if text_images is not None:
        match = np.einsum("ij,ij->i", texts, images[text_images])
    else:
        by_label = {int(v): np.flatnonzero(labels == v) for v in np.unique(text_labels)}
        match = np.concatenate(
            [images[by_label[int(v)]] @ t for t, v in zip(texts, text_labels, strict=True)]
        )
    other = _other_pairs(texts, text_labels, images, labels, pairs, rng, same_set=False)
    return {
        "intra": summary(intra), "inter": summary(inter),
        "text_match": summary(match), "text_other": summary(other),
    }  # fmt: skip


def _upper(gram: np.ndarray) -> np.ndarray:
    return gram[np.triu_indices(len(gram), 1)]


def _other_pairs(a, a_labels, b, b_labels, pairs, rng, *, same_set):
    """Cosines of (a row, b row) pairs of different identities: every pair when there are at
    most ``pairs`` of them (each unordered pair once when ``a`` is ``b``), else a sample."""
    if len(a) * len(b) <= pairs:
        gram, other = a @ b.T, a_labels[:, None] != b_labels[None, :]
        return gram[np.triu(other, 1) if same_set else other]
    i, j = rng.integers(0, len(a), pairs), rng.integers(0, len(b), pairs)
    keep = a_labels[i] != b_labels[j]
    return np.einsum("ij,ij->i", a[i[keep]], b[j[keep]])


def measure(model: Path, data: Path) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    """The distributions of the demo model on the test split of ``data`` (CUHK-PEDES layout).

    Returns:
        the four distributions and a few shape figures (identities, images per identity,
        embedding width, variance in the top 10 directions, norm of the images' mean).
    """
    from irra.inference import open_encoder

    entries = json.loads((data / "reid_raw.json").read_text())
    test = [e for e in entries if e["split"] == "test"]
    encoder = open_encoder(model, device="cpu")
    images = encoder.encode_images([data / "imgs" / e["file_path"] for e in test])
    labels = np.array([e["id"] for e in test], dtype=np.int64)
    captions = [(i, c) for i, e in enumerate(test) for c in e["captions"]]
    texts = encoder.encode_texts([c for _, c in captions])
    owners = np.array([i for i, _ in captions], dtype=np.int64)
    dists = distributions(images, labels, texts, labels[owners], owners)
    return dists, shape_figures(images, labels)


def shape_figures(images: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Identities, images per identity, width, variance outside the top 10 directions and the
    norm of the mean of ``images`` (N, D)."""
    centred = images - images.mean(0)
    eig = np.linalg.eigvalsh(centred.T @ centred / len(images))[::-1]
    names, per = np.unique(labels, return_counts=True)
    first = names[:1000]  # look-alike identities: centres of (at most) 1,000 identities
    centres = np.stack([images[labels == name].mean(0) for name in first])
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    alike = _upper(centres @ centres.T) > 0.9
    return {
        "identities": float(len(per)), "images per identity (mean)": float(per.mean()),
        "images per identity (min)": float(per.min()), "dim": float(images.shape[1]),
        "variance share outside the top 10 directions": float(eig[10:].sum() / eig.sum()),
        "norm of the mean image": float(np.linalg.norm(images.mean(0))),
        "identity pairs with centres at cosine > 0.9": float(np.mean(alike)),
    }  # fmt: skip


def generated(
    identities: int = 5000, dim: int = 512, seed: int = 0, shape: Shape = DEMO
) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    """The four distributions and the shape figures of a generated gallery of ``identities``
    identities (and 2,000 queries)."""
    n = identities * shape.per_identity
    images, labels = clustered_vectors(n, dim, seed, shape)
    texts, text_labels = queries_like(2000, n, dim, seed, shape=shape)
    return distributions(images, labels, texts, text_labels), shape_figures(images, labels)


def fit(start: Shape = DEMO, identities: int = 2000, evaluations: int = 200):
    """Fit :data:`FITTED` to :data:`MEASURED` by Nelder-Mead from ``start`` (a few minutes).

    The loss is the weighted squared error of :data:`FIT_TARGETS` on a gallery of
    ``identities`` identities of one seed (the same draws at every step).

    Returns:
        the fitted :class:`Shape` and its loss.
    """
    from scipy.optimize import minimize  # scikit-learn's dependency (irra[train])

    def shape_of(x: np.ndarray) -> Shape:
        return replace(start, **{n: abs(float(v)) for n, v in zip(FITTED, x, strict=True)})

    def loss(x: np.ndarray) -> float:
        dists, _ = generated(identities, shape=shape_of(x))
        return sum(w * (dists[d][s] - MEASURED[d][s]) ** 2 for d, s, w in FIT_TARGETS)

    x0 = np.array([getattr(start, n) for n in FITTED])
    options = {"maxfev": evaluations, "xatol": 1e-3, "fatol": 1e-6}
    best = minimize(loss, x0, method="Nelder-Mead", options=options)
    return shape_of(best.x), float(best.fun)


def _table(columns: Sequence[tuple[str, dict[str, dict[str, float]]]]) -> str:
    stats = ["mean", "std", *(f"q{round(100 * q):02d}" for q in QUANTILES)]
    lines = [f"{'cosine similarity':32s} {'':10s} " + " ".join(f"{s:>6s}" for s in stats)]
    for key, label in LABELS.items():
        for name, dists in columns:
            values = " ".join(f"{dists[key][s]:6.3f}" for s in stats)
            lines.append(f"{label:32s} {name:10s} {values}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--check", action="store_true", help="measured vs generated")
    mode.add_argument("--measure", action="store_true", help="measure a model (--model, --data)")
    mode.add_argument("--fit", action="store_true", help="fit the generator to MEASURED")
    parser.add_argument(
        "--looks", type=int, nargs="+", default=[DEMO.looks], help="--fit: try each"
    )
    parser.add_argument("--model", type=Path, help="the demo model (irra demo's OUT/model)")
    parser.add_argument("--data", type=Path, help="the demo data (OUT/data/CUHK-PEDES)")
    parser.add_argument("--identities", type=int, default=5000, help="generated (--check)")
    parser.add_argument("--dim", type=int, default=512)
    args = parser.parse_args(argv)
    if args.measure:
        if args.model is None or args.data is None:
            parser.error("--measure needs --model and --data")
        dists, figures = measure(args.model, args.data)
        print(_table([("measured", dists)]))
        for name, value in figures.items():
            print(f"{name}: {value:.4g}")
        return 0
    if args.fit:
        for looks in args.looks:
            shape, loss = fit(replace(DEMO, looks=looks))
            print(f"looks {looks}: loss {loss:.5f}, {asdict(shape)}", flush=True)
        return 0
    gen, figures = generated(args.identities, args.dim)
    print(f"generator: {asdict(DEMO)}, {args.identities * DEMO.per_identity:,} images")
    print(_table([("measured", MEASURED), ("generated", gen)]))
    for name, value in figures.items():
        print(f"{name}: {value:.4g} (measured: {MEASURED_SHAPE[name]:.4g})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
