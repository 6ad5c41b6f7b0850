"""Write an index in the layout of formats 1-3 (before stable ids), to test their migration.

The old layout, written here independently of irra's reader: ``CURRENT`` naming a version
folder with ``manifest.json``, ``vectors.faiss`` (a FAISS ``IndexFlatIP``, ids = row positions)
and ``meta.sqlite`` (one row per image, ids in path order).
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import faiss
import numpy as np

from irra.retrieval.store import open_store

COLUMNS = (
    "path", "size", "mtime_ns", "identity", "camera", "time", "source", "frame",
    "box_x", "box_y", "box_w", "box_h", "track",
)  # fmt: skip


def to_legacy(index: Path, format_version: int = 3) -> Path:
    """Turn the (new-format) index at ``index`` into a format-3 one in place, rows in path
    order; returns the version folder."""
    store = open_store(index)
    try:
        settings = store.settings()
        sources = store.sources()
        rows = sorted(store.rows(), key=lambda row: row[1].path)
        vectors = store.vectors([i for i, _ in rows])
    finally:
        store.close()
    for name in ("store.sqlite", "store.sqlite-wal", "store.sqlite-shm"):
        (index / name).unlink(missing_ok=True)
    for ann in index.glob("ann-*.faiss"):
        ann.unlink()
    version = index / "v-0123456789ab"
    version.mkdir()
    flat = faiss.IndexFlatIP(vectors.shape[1])
    flat.add(np.ascontiguousarray(vectors, dtype=np.float32))
    faiss.write_index(flat, str(version / "vectors.faiss"))
    conn = sqlite3.connect(version / "meta.sqlite")
    conn.execute(
        "CREATE TABLE images (id INTEGER PRIMARY KEY, path TEXT NOT NULL UNIQUE, size INTEGER, "
        "mtime_ns INTEGER, identity TEXT, camera TEXT, time REAL, source TEXT, frame INTEGER, "
        "box_x INTEGER, box_y INTEGER, box_w INTEGER, box_h INTEGER, track INTEGER)"
    )
    for position, (_, r) in enumerate(rows):
        box = r.box or (None,) * 4
        values = (r.path, r.size, r.mtime_ns, r.identity, r.camera, r.time, r.source, r.frame)
        conn.execute(
            f"INSERT INTO images VALUES (?{', ?' * len(COLUMNS)})",
            (position, *values, *box, r.track),
        )
    conn.commit()
    conn.close()
    manifest = {
        "format": "irra-index",
        "format_version": format_version,
        "count": len(rows),
        **{k: v for k, v in settings.items() if k != "format_version"},
        "index_type": "flat",
    }
    if "footage" in settings:
        manifest["footage"] = {
            "per_track": settings["footage"]["per_track"],
            "sources": list(sources.values()),
        }
    (version / "manifest.json").write_text(json.dumps(manifest))
    (index / "CURRENT").write_text(version.name + "\n")
    return version
