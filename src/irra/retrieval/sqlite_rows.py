"""The SQLite side of the embedded store: schema, row values, selectors as SQL, connections."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from irra.retrieval.store import FORMAT_VERSION, ImageRecord, IndexStoreError, RowSelector

#: Database page size: rows of fp32 512-d vectors fill 16 KiB pages to about 90%.
PAGE_SIZE = 16384
FIELDS = (
    "path",
    "size",
    "mtime_ns",
    "identity",
    "camera",
    "time",
    "source",
    "frame",
    "box_x",
    "box_y",
    "box_w",
    "box_h",
    "track",
)
SCHEMA = f"""
CREATE TABLE rows (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    path TEXT NOT NULL UNIQUE, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
    identity TEXT, camera TEXT, time REAL, source TEXT, frame INTEGER,
    box_x INTEGER, box_y INTEGER, box_w INTEGER, box_h INTEGER, track INTEGER,
    seq INTEGER NOT NULL, vector BLOB NOT NULL);
CREATE INDEX rows_seq ON rows(seq);
CREATE INDEX rows_source ON rows(source, track);
CREATE INDEX rows_identity ON rows(identity);
CREATE INDEX rows_time ON rows(time);
CREATE TABLE tombstones (id INTEGER PRIMARY KEY, seq INTEGER NOT NULL, row_seq INTEGER NOT NULL);
CREATE INDEX tombstones_seq ON tombstones(seq);
CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE sources (path TEXT PRIMARY KEY, signature TEXT NOT NULL);
INSERT INTO settings VALUES ('format_version', '{FORMAT_VERSION}'), ('seq', '0'),
    ('purged_seq', '0');
"""


def record_values(record: ImageRecord) -> tuple[Any, ...]:
    """The values of :data:`FIELDS` for ``record``."""
    box = record.box if record.box is not None else (None,) * 4
    return (
        record.path,
        int(record.size),
        int(record.mtime_ns),
        record.identity,
        record.camera,
        None if record.time is None else float(record.time),
        record.source,
        None if record.frame is None else int(record.frame),
        *(None if v is None else int(v) for v in box),
        None if record.track is None else int(record.track),
    )


def record_of(row: Sequence[Any]) -> ImageRecord:
    """A row of :data:`FIELDS` values -> :class:`ImageRecord`."""
    box = None if row[8] is None else (int(row[8]), int(row[9]), int(row[10]), int(row[11]))
    return ImageRecord(*row[:8], box=box, track=row[12])


def blob(vector: np.ndarray) -> bytes:
    return np.ascontiguousarray(vector, dtype="<f4").tobytes()


def matrix(blobs: Sequence[bytes], dim: int) -> np.ndarray:
    if not blobs:
        return np.empty((0, dim), np.float32)
    return np.frombuffer(b"".join(blobs), dtype="<f4").reshape(len(blobs), dim).astype(np.float32)


def selector_sql(selector: RowSelector) -> tuple[str, list[Any]]:
    """A selector -> SQL condition over ``rows`` and its parameters (values never in the text)."""
    parts: list[str] = []
    params: list[Any] = []
    if selector.ids:
        parts.append("id IN (SELECT value FROM json_each(?))")
        params.append(json.dumps([int(i) for i in selector.ids]))
    if selector.path:
        parts.append("path >= ? AND path < ?")
        params += [selector.path, selector.path + "\U0010ffff"]
    if selector.paths:
        parts.append("path IN (SELECT value FROM json_each(?))")
        params.append(json.dumps(list(selector.paths)))
    if selector.sources:
        parts.append("source IN (SELECT value FROM json_each(?))")
        params.append(json.dumps(list(selector.sources)))
    if selector.tracks:
        parts.append(
            "(source, track) IN (SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') "
            "FROM json_each(?))"
        )
        params.append(json.dumps([[s, int(t)] for s, t in selector.tracks]))
    if selector.identities:
        parts.append("identity IN (SELECT value FROM json_each(?))")
        params.append(json.dumps(list(selector.identities)))
    if selector.before is not None:
        parts.append("time < ?")
        params.append(float(selector.before))
    return " AND ".join(f"({p})" for p in parts), params


def connect(path: Path, *, create: bool) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), WAL, durable commits."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        if create:  # 16 KiB pages hold seven 512-d rows (2 KiB each); 4 KiB pages hold one
            conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA secure_delete = ON")
        if create:
            conn.executescript(f"BEGIN; {SCHEMA} COMMIT;")
        conn.execute("SELECT value FROM settings LIMIT 1").fetchall()
    except sqlite3.Error as err:
        raise IndexStoreError(
            f"{path}: truncated or corrupted index database ({type(err).__name__}: {err}); "
            "rebuild the index with irra index --rebuild"
        ) from err
    return conn


def create_database(
    path: Path,
    settings: dict[str, Any],
    records: Sequence[ImageRecord],
    vectors: np.ndarray,
    sources: dict[str, dict[str, Any]],
) -> None:
    """Write a new store database at ``path`` holding ``records`` at ids 0..N-1 (migrations)."""
    conn = connect(path, create=True)
    try:
        conn.execute("BEGIN")
        conn.execute(
            "INSERT INTO settings VALUES ('manifest', ?)",
            (json.dumps({k: v for k, v in settings.items() if k != "format_version"}),),
        )
        conn.execute("UPDATE settings SET value = '1' WHERE key = 'seq'")
        marks = ", ".join("?" * (len(FIELDS) + 3))
        conn.executemany(
            f"INSERT INTO rows (id, {', '.join(FIELDS)}, seq, vector) VALUES ({marks})",
            (
                (i, *record_values(r), 1, blob(v))
                for i, (r, v) in enumerate(zip(records, vectors, strict=True))
            ),
        )
        conn.executemany(
            "INSERT INTO sources VALUES (?, ?)", ((p, json.dumps(s)) for p, s in sources.items())
        )
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
