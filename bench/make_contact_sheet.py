"""Make docs/img/synthpedes_contact_sheet.png: SynthPedes identities with their first caption.

Run: ``python bench/make_contact_sheet.py [--out docs/img/synthpedes_contact_sheet.png]``.
It generates a small SynthPedes set (default image size and seed) in a temporary folder and
shows a family of near-identical siblings followed by the base identities of other families.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from irra.data.synth import generate_synthpedes, make_contact_sheet


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/img/synthpedes_contact_sheet.png")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rows", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "SynthPedes"
        start = time.perf_counter()
        generate_synthpedes(root, num_ids=60, images_per_id=4, seed=args.seed)
        took = time.perf_counter() - start
        rows = json.loads((root / "attributes.json").read_text())["identities"]
        family = [r["id"] for r in rows if r["family"] == rows[0]["family"]][:3]
        others = [r["id"] for r in rows if r["id"] == r["base_id"] and r["id"] not in family]
        ids = (family + others)[: args.rows]
        path = make_contact_sheet(root, args.out, ids=ids)
    size_kb = path.stat().st_size / 1024
    print(f"generated 240 images in {took:.1f} s; wrote {path} ({size_kb:.0f} KB), ids {ids}")


if __name__ == "__main__":
    main()
