"""Writing a SynthPedes dataset in the CUHK-PEDES distribution format.

Layout of ``out_dir``::

    reid_raw.json     [{"captions": [...], "file_path": "train/0001/0001_01.jpg", "id": 1,
                        "split": "train"}, ...]   (train ids 1..N_train, then val, then test)
    imgs/<split>/<id>/<id>_<k>.jpg
    attributes.json   generator parameters and the attributes of every identity

Everything random is drawn from generators keyed by ``(seed, stream, identity, image)``, so the
bytes written depend on the parameters only, never on the number of worker processes.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from irra.data.synth.attributes import Identity, sample_population
from irra.data.synth.body import sample_view
from irra.data.synth.captions import write_captions
from irra.data.synth.output import check_target, move_into_place, partial_dir
from irra.data.synth.render import render_person

logger = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
GENERATOR = "irra.synthpedes"
#: Bumped whenever the same parameters would give different bytes.
GENERATOR_VERSION = 1
ATTRIBUTES_FILE = "attributes.json"
ANNOTATION_FILE = "reid_raw.json"
_FAMILY, _VIEWS, _IMAGE, _CAPTION = 1, 2, 3, 4  # random streams

ProgressFn = Callable[[int, int], None]


@dataclass(frozen=True)
class SynthSummary:
    """What :func:`generate_synthpedes` wrote. ``splits[name]`` has ids / images / captions."""

    out_dir: Path
    num_ids: int
    num_images: int
    num_captions: int
    splits: dict[str, dict[str, int]] = field(default_factory=dict)
    seconds: float = 0.0
    reused: bool = False


def rng_for(seed: int, *key: int) -> np.random.Generator:
    """Independent generator for ``(seed, *key)`` (NumPy ``SeedSequence`` spawn keys)."""
    return np.random.default_rng(np.random.SeedSequence(entropy=seed, spawn_key=key))


def split_counts(num_ids: int, fractions: Mapping[str, float]) -> dict[str, int]:
    """Identities per split: val and test get ``round(num_ids * fraction)``, train the rest."""
    counts = {s: int(round(num_ids * fractions[s])) for s in ("val", "test")}
    counts = {"train": num_ids - counts["val"] - counts["test"], **counts}
    if counts["train"] < 1:
        raise ValueError(f"split_fractions {dict(fractions)} leave no training identity")
    return counts


def _fractions(split_fractions: Mapping[str, float] | Sequence[float]) -> dict[str, float]:
    if isinstance(split_fractions, Mapping):
        unknown = set(split_fractions) - set(SPLITS)
        if unknown:
            raise ValueError(f"unknown split names {sorted(unknown)}; use {SPLITS}")
        fr = {s: float(split_fractions.get(s, 0.0)) for s in SPLITS}
    else:
        if len(split_fractions) != 3:
            raise ValueError(
                f"split_fractions needs 3 numbers (train, val, test), got {split_fractions}"
            )
        fr = dict(zip(SPLITS, map(float, split_fractions), strict=True))
    if any(v < 0 for v in fr.values()) or abs(sum(fr.values()) - 1.0) > 1e-6:
        raise ValueError(f"split_fractions {fr} must be non-negative and sum to 1")
    return fr


def views_for(seed: int, index: int, count: int) -> list[str]:
    """Views of an identity's images: front, back and one side first (shuffled), then random."""
    rng = rng_for(seed, _VIEWS, index)
    first = ["front", "back", "left" if rng.random() < 0.5 else "right"]
    views = [first[k] for k in rng.permutation(3)][:count]
    return views + [sample_view(rng) for _ in range(count - len(views))]


@dataclass(frozen=True)
class _Job:
    slot: int  # index of the entry in reid_raw.json
    identity: Identity
    index: int  # 0-based identity index
    image: int  # 0-based image index
    view: str
    path: str  # absolute output path
    seed: int
    image_size: tuple[int, int]
    captions: int


def _run_job(job: _Job) -> tuple[int, list[str]]:
    """Render, save and caption one image (runs in worker processes)."""
    rendered = render_person(
        job.identity, rng_for(job.seed, _IMAGE, job.index, job.image), job.image_size, view=job.view
    )
    if job.path.endswith(".png"):
        rendered.image.save(job.path, format="PNG", optimize=False)
    else:
        rendered.image.save(job.path, format="JPEG", quality=90, subsampling=0, optimize=False)
    rng = rng_for(job.seed, _CAPTION, job.index, job.image)
    return job.slot, write_captions(job.identity, job.view, rng, job.captions)


def summarize(
    out_dir: str | os.PathLike, seconds: float = 0.0, reused: bool = False
) -> SynthSummary:
    """Counts of a written dataset, read back from its ``reid_raw.json``."""
    out = Path(out_dir)
    entries = json.loads((out / ANNOTATION_FILE).read_text())
    splits = {s: {"ids": 0, "images": 0, "captions": 0} for s in SPLITS}
    ids: dict[str, set[int]] = {s: set() for s in SPLITS}
    for e in entries:
        ids[e["split"]].add(e["id"])
        splits[e["split"]]["images"] += 1
        splits[e["split"]]["captions"] += len(e["captions"])
    for s in SPLITS:
        splits[s]["ids"] = len(ids[s])
    return SynthSummary(
        out_dir=out,
        num_ids=sum(v["ids"] for v in splits.values()),
        num_images=len(entries),
        num_captions=sum(v["captions"] for v in splits.values()),
        splits=splits,
        seconds=seconds,
        reused=reused,
    )


def _write_json(path: Path, data: Any, indent: int | None = None) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=indent, sort_keys=indent is None) + "\n")
    os.replace(tmp, path)


def generate_synthpedes(
    out_dir: str | os.PathLike,
    *,
    num_ids: int = 1000,
    images_per_id: int = 4,
    captions_per_image: int = 2,
    seed: int = 0,
    image_size: tuple[int, int] = (192, 80),
    split_fractions: Mapping[str, float] | Sequence[float] = (0.8, 0.1, 0.1),
    image_format: str = "jpg",
    workers: int = 1,
    overwrite: bool = False,
    progress: ProgressFn | None = None,
) -> SynthSummary:
    """Generate a SynthPedes dataset in CUHK-PEDES format under ``out_dir``.

    Args:
        out_dir: target folder; written atomically (built in a hidden sibling folder, then
            renamed). If it already holds the same dataset it is reused as is.
        num_ids: number of identities (split by identity: train, val, test).
        images_per_id: images per identity (views front, back, side first).
        captions_per_image: captions per image (different sentences).
        seed: non-negative integer; the same parameters give byte-identical files.
        image_size: (H, W) of every image.
        split_fractions: train/val/test fractions (mapping or 3 numbers summing to 1).
        image_format: "jpg" (quality 90) or "png".
        workers: processes for drawing (1 = in this process); does not change the output.
        overwrite: replace an existing SynthPedes dataset made with other parameters.
        progress: ``progress(done_images, total_images)`` called as images complete.

    Returns:
        A :class:`SynthSummary` with per-split counts.

    Example:
        >>> generate_synthpedes("data/SynthPedes", num_ids=200, workers=2)  # doctest: +SKIP
    """
    if num_ids < 1 or images_per_id < 1 or captions_per_image < 1:
        raise ValueError("num_ids, images_per_id and captions_per_image must be at least 1")
    if seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed}")
    if image_format not in ("jpg", "png"):
        raise ValueError(f"image_format must be 'jpg' or 'png', got {image_format!r}")
    fractions = _fractions(split_fractions)
    counts = split_counts(num_ids, fractions)
    height, width = (int(v) for v in image_size)
    params = {
        "version": GENERATOR_VERSION,
        "num_ids": num_ids,
        "images_per_id": images_per_id,
        "captions_per_image": captions_per_image,
        "seed": seed,
        "image_size": [height, width],
        "split_fractions": fractions,
        "image_format": image_format,
    }
    out = Path(out_dir)
    start = time.perf_counter()
    if check_target(
        out,
        params,
        overwrite,
        meta_file=ATTRIBUTES_FILE,
        generator=GENERATOR,
        complete_file=ANNOTATION_FILE,
        what="a SynthPedes dataset",
    ):
        logger.info("%s already holds this SynthPedes dataset; reusing it", out)
        return summarize(out, time.perf_counter() - start, reused=True)

    members = sample_population(num_ids, lambda f: rng_for(seed, _FAMILY, f))
    split_of = [s for s in SPLITS for _ in range(counts[s])]
    digits = max(4, len(str(num_ids)))
    tmp = partial_dir(out)
    try:
        entries: list[dict[str, Any]] = []
        jobs: list[_Job] = []
        for i, member in enumerate(members):
            pid, split = i + 1, split_of[i]
            folder = tmp / "imgs" / split / f"{pid:0{digits}d}"
            folder.mkdir(parents=True)
            for j, view in enumerate(views_for(seed, i, images_per_id)):
                rel = f"{split}/{pid:0{digits}d}/{pid:0{digits}d}_{j + 1:02d}.{image_format}"
                entries.append({"split": split, "id": pid, "file_path": rel, "captions": []})
                jobs.append(
                    _Job(
                        len(jobs),
                        member.identity,
                        i,
                        j,
                        view,
                        str(tmp / "imgs" / rel),
                        seed,
                        (height, width),
                        captions_per_image,
                    )
                )
        _run_all(jobs, entries, workers, progress)
        identities = [
            {
                "id": i + 1,
                "split": split_of[i],
                "family": m.family,
                "base_id": m.base + 1,
                "attributes": m.identity.to_dict(),
            }
            for i, m in enumerate(members)
        ]
        meta = {"generator": GENERATOR, "params": params, "identities": identities}
        _write_json(tmp / ATTRIBUTES_FILE, meta, indent=1)
        _write_json(tmp / ANNOTATION_FILE, entries)  # last: marks the dataset complete
        move_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    seconds = time.perf_counter() - start
    summary = summarize(out, seconds)
    logger.info(
        "wrote SynthPedes to %s: %d ids, %d images, %d captions in %.1f s",
        out,
        summary.num_ids,
        summary.num_images,
        summary.num_captions,
        seconds,
    )
    return summary


def _run_all(
    jobs: list[_Job], entries: list[dict[str, Any]], workers: int, progress: ProgressFn | None
) -> None:
    total = len(jobs)
    if workers <= 1:
        results = map(_run_job, jobs)
        pool = None
    else:
        pool = multiprocessing.get_context("spawn").Pool(workers)
        results = pool.imap_unordered(
            _run_job, jobs, chunksize=max(1, min(32, total // (workers * 8)))
        )
    try:
        for done, (slot, captions) in enumerate(results, start=1):
            entries[slot]["captions"] = captions
            if progress is not None:
                progress(done, total)
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
