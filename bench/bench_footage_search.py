"""Searching footage by description: does each person's caption find that person's track?

Indexes ``irra synth scenes`` sequences from their ``det/det.txt`` (the simulated detector, no
ids: irra's tracker links them) three ways - the frame folders by track, the mp4 files by
track, the frame folders per frame - and for every caption of ``captions.json`` searches the
index of all sequences together: R1 / R5 = the share of captions whose person is the first / in
the first five results (a result is that person when its track, or per frame its box, overlaps
the person's ground-truth boxes at IoU >= 0.5 in most frames: :func:`truth_of_tracks`). A person
the detector and tracker never stored counts as a miss.

Also checks provenance: for every result of a test query, cutting ``box`` from frame ``frame``
of ``source`` gives the stored crop, pixel for pixel.

    irra synth scenes --out SCENES --video   (or --format png --lossless-video: equal pixels)
    python bench/bench_footage_search.py --model MODEL --scenes SCENES [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from irra.footage import Detection, open_footage, read_mot, select_detections, truth_of_tracks
from irra.inference import open_encoder
from irra.retrieval import Retriever
from irra.retrieval.footage import FootageSource, build_footage_index
from irra.retrieval.store import open_store


def person_of_entries(index: Path, sequences: list[Path], per_frame: bool) -> dict[int, tuple]:
    """Entry id -> (sequence name, ground-truth person id or None)."""
    with open_store(index) as store:
        rows = list(store.rows())
    out: dict[int, tuple] = {}
    for seq in sequences:
        footage = open_footage(seq)
        truth = read_mot(seq / "gt" / "gt.txt").detections
        dets = read_mot(seq / "det" / "det.txt", frame_size=footage.size).detections
        if per_frame:
            mine = [(i, r) for i, r in rows if Path(r.source).stem in seq.name]
            boxes = [Detection(r.frame, r.box, track=i) for i, r in mine]
            mapping = truth_of_tracks(truth, boxes)
            out.update({i: (seq.name, mapping[i]) for i, _ in mine})
        else:
            tracked = select_detections(dets, per_track=None, frame_size=footage.size)
            mapping = truth_of_tracks(truth, tracked)
            for i, r in rows:
                if Path(r.source).stem in seq.name:
                    out[i] = (seq.name, mapping.get(r.track))
    return out


def ranks(index: Path, sequences: list[Path], per_frame: bool) -> tuple[float, float, int]:
    """R1, R5 (%) over every caption, and the number of captions."""
    person = person_of_entries(index, sequences, per_frame)
    hits1 = hits5 = total = 0
    with Retriever.open(index, device="cpu") as retriever:
        for seq in sequences:
            captions = json.loads((seq / "captions.json").read_text())
            for pid, caption in captions.items():
                found = [person[h.id] for h in retriever.search(caption, k=5)]
                target = (seq.name, int(pid))
                hits1 += found[:1] == [target]
                hits5 += target in found
                total += 1
    return 100 * hits1 / total, 100 * hits5 / total, total


def provenance_check(index: Path, query: str, k: int) -> tuple[int, int]:
    """(results checked, pixel-equal): cut each result's box from its frame, compare."""
    equal = 0
    with Retriever.open(index, device="cpu") as retriever:
        hits = retriever.search(query, k=k)
        for h in hits:
            x, y, w, h_ = h.box
            frame = open_footage(h.source).frame(h.frame).image
            with Image.open(retriever.image_path(h.id)) as stored:
                equal += np.array_equal(np.asarray(stored), frame[y : y + h_, x : x + w])
    return len(hits), equal


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="the model (e.g. the demo's)")
    parser.add_argument("--scenes", required=True, help="irra synth scenes output (with --video)")
    parser.add_argument("--out", help="where the indexes go (default: a temporary folder)")
    args = parser.parse_args()
    scenes = Path(args.scenes)
    sequences = sorted(p for p in scenes.iterdir() if (p / "captions.json").is_file())
    encoder = open_encoder(args.model, device="cpu")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out or tmp)
        runs = {
            "frame folders, by track": ([FootageSource(s) for s in sequences], False),
            "mp4 files, by track": (
                [FootageSource(s / f"{s.name}.mp4", s / "det" / "det.txt") for s in sequences],
                False,
            ),
            "frame folders, per frame": ([FootageSource(s) for s in sequences], True),
        }
        print("| index | entries | " + " | ".join(s.name for s in sequences) + " | R1 | R5 |")
        print("|---|---:|" + "---:|" * len(sequences) + "---:|---:|")
        for i, (name, (sources, per_frame)) in enumerate(runs.items()):
            index = out / f"index-{i}"
            build_footage_index(encoder, sources, index, per_frame=per_frame, rebuild=True)
            with open_store(index) as store:
                records = [record for _, record in store.rows()]
            per_seq = [sum(Path(r.source).stem in s.name for r in records) for s in sequences]
            r1, r5, total = ranks(index, sequences, per_frame)
            cells = " | ".join(f"{n:,}" for n in per_seq)
            print(f"| {name} | {len(records):,} | {cells} | {r1:.2f} | {r5:.2f} |")
        print(f"\n{total} captions (one per ground-truth person).")
        for i, name in enumerate(runs):
            checked, equal = provenance_check(out / f"index-{i}", "a person walking", 50)
            print(f"provenance, {name}: {equal} of {checked} results pixel-equal to their box")


if __name__ == "__main__":
    main()
