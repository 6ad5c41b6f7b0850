"""The embedded store: an index in a folder, no server. SQLite keeps the rows, FAISS searches them.

Layout::

    INDEX/store.sqlite      the store of record (SQLite, WAL journal): rows (id, metadata,
                            vector), tombstones of deleted ids, settings, footage sources
    INDEX/ann-<token>.faiss the ANN checkpoint: a FAISS index of the rows up to one commit
    INDEX/crops/            the crops of a footage index (:mod:`irra.retrieval.footage`)
    INDEX/.lock             held by the one writer

SQLite gives what a store must not get wrong: atomic appends, deletes and updates, durability
(``synchronous=FULL``: a commit that returned survives a kill or a power cut), one writer with
many concurrent readers (WAL), ids that are never given twice (``AUTOINCREMENT``), deleted
content overwritten on disk (``secure_delete``). Each write is one transaction that bumps a
commit number ``seq``; rows carry the ``seq`` that added them and tombstones the ``seq`` that
deleted them, so a reader catches up by reading what came after its own ``seq``.

FAISS (:mod:`irra.retrieval.vectors`) is only an accelerator, rebuilt from SQLite when missing
or damaged. Each reader holds the ANN index in memory: it loads the checkpoint, applies the
rows and tombstones committed after it, and on every search applies what other processes
committed since (:meth:`EmbeddedStore.refresh`): a running server sees an append or a delete
at its next query. A writer rewrites the checkpoint when many rows were added since it, or
when it holds a deleted row (so that an erased vector leaves the disk), see
:meth:`EmbeddedStore.maintain`. ``docs/index-store.md`` compares this with LanceDB and Milvus
Lite.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import threading
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from irra.retrieval.ann_view import AnnView
from irra.retrieval.query import SearchFilter
from irra.retrieval.sqlite_rows import (
    FIELDS,
    blob,
    connect,
    matrix,
    record_of,
    record_values,
    selector_sql,
)
from irra.retrieval.store import (
    FORMAT_VERSION,
    CompactReport,
    Facets,
    ImageRecord,
    IndexStoreError,
    RowSelector,
    checked_rows,
)
from irra.retrieval.vectors import (
    SUBSET_FRACTION,
    build_vector_index,
    check_index_type,
    index_type_of,
    read_vector_index,
    search_selected,
    set_nprobe,
    stored_rows,
    top_k,
    write_vector_index,
)

logger = logging.getLogger(__name__)

DATABASE = "store.sqlite"
LOCK = ".lock"
#: Rewrite the ANN checkpoint once this many rows (or a tenth of the index, if more) came
#: after it: a reader replays at most that many rows when it opens.
CHECKPOINT_ROWS = 50_000
#: Retrain an approximate index's cells once the rows outnumber those it was trained on by this.
RETRAIN_GROWTH = 4.0
#: Candidates re-scored with exact vectors per result, for the quantised types (chosen with
#: bench/bench_store.py: at 1M rows ivf-pq finds 0.82 of the true top 10 with 4 per result).
REFINE = {"ivf-sq8": 4, "ivf-pq": 16}


def folder_holds_index(folder: str | os.PathLike[str]) -> bool:
    """Whether ``folder`` holds an index: this format, or an older one to migrate."""
    from irra.retrieval.legacy import is_legacy_index

    return (Path(folder) / DATABASE).is_file() or is_legacy_index(folder)


class EmbeddedStore:
    """A :class:`~irra.retrieval.store.VectorStore` in a folder (see the module docstring).

    Thread-safe: one lock guards the database connection and the in-memory ANN index.
    """

    def __init__(self, folder: Path, conn: sqlite3.Connection, lock_handle: Any) -> None:
        self.folder = folder
        self.location = str(folder)
        self._conn = conn
        self._lock_handle = lock_handle
        self._lock = threading.RLock()
        self._memory: AnnView | None = None
        self._nprobe: int | None = None
        settings = self.settings()
        self.dim = int(settings.get("dim", 0))

    # -- opening -------------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        folder: str | os.PathLike[str],
        *,
        create: dict[str, Any] | None = None,
        writer: bool = False,
    ) -> EmbeddedStore:
        """Open (or, given ``create`` settings, create) the store in ``folder``.

        Raises:
            IndexStoreError: no index there and no ``create``; an index of an older format
                (with the command that migrates it); a damaged database; a second writer.
        """
        from irra.retrieval.legacy import is_legacy_index, legacy_format

        folder = Path(folder)
        database = folder / DATABASE
        if not database.is_file():
            if is_legacy_index(folder):
                raise IndexStoreError(
                    f"{folder}: index format {legacy_format(folder)} is older than this irra "
                    f"searches ({FORMAT_VERSION}: stable ids); migrate it with "
                    f"`irra index --out {folder}` (no image is encoded again)"
                )
            if create is None:
                raise IndexStoreError(
                    f"{folder}: not an irra index (no {DATABASE}); build one with "
                    f"irra index --checkpoint CKPT --images DIR --out {folder}"
                )
            if folder.exists() and not folder.is_dir():
                raise IndexStoreError(f"{folder}: a file, not an index folder; use another --out")
            writer = True
        lock_handle = _take_writer_lock(folder) if writer else None
        try:
            conn = connect(database, create=not database.is_file())
            store = cls(folder, conn, lock_handle)
            if create is not None and not store.settings().get("model"):
                store.set_settings(create)
                store.dim = int(create["dim"])
            store._check()
            if writer:
                store._sweep()
            return store
        except BaseException:
            if lock_handle is not None:
                lock_handle.close()
            raise

    def _check(self) -> None:
        settings = self.settings()
        version = settings.get("format_version")
        if version != FORMAT_VERSION:
            raise IndexStoreError(
                f"{self.folder / DATABASE}: index format {version!r}, this irra reads "
                f"{FORMAT_VERSION}; upgrade irra, or rebuild the index with irra index --rebuild"
            )
        if not isinstance(settings.get("model"), dict) or not isinstance(
            settings["model"].get("fingerprint"), str
        ):
            raise IndexStoreError(
                f"{self.folder / DATABASE}: the index settings lack the model's fingerprint; "
                "rebuild the index with irra index --rebuild"
            )

    def close(self) -> None:
        """Close the database and release the writer lock."""
        with self._lock:
            self._conn.close()
            self._memory = None
            if self._lock_handle is not None:
                self._lock_handle.close()
                self._lock_handle = None

    def __enter__(self) -> EmbeddedStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- settings and sources ------------------------------------------------------------------

    def _state(self, key: str) -> str | None:
        row = self._conn.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def settings(self) -> dict[str, Any]:
        """The manifest (see :meth:`VectorStore.settings`)."""
        with self._lock, self._errors("read"):
            text = self._state("manifest")
            version = self._state("format_version")
        try:
            manifest = json.loads(text) if text else {}
        except ValueError as err:
            raise IndexStoreError(f"{self.folder / DATABASE}: unreadable settings ({err})") from err
        manifest["format_version"] = None if version is None else int(version)
        return manifest

    def set_settings(self, settings: dict[str, Any]) -> None:
        """Replace the manifest."""
        check_index_type(settings.get("index_type", "flat"))
        text = json.dumps({k: v for k, v in settings.items() if k != "format_version"})
        with self._write() as conn:
            conn.execute("INSERT OR REPLACE INTO settings VALUES ('manifest', ?)", (text,))

    def sources(self) -> dict[str, dict[str, Any]]:
        """Footage sources: path -> signature."""
        with self._lock, self._errors("read"):
            rows = self._conn.execute("SELECT path, signature FROM sources").fetchall()
        return {path: json.loads(sig) for path, sig in rows}

    def set_source(self, path: str, signature: dict[str, Any] | None) -> None:
        """Record (or forget) a footage source's signature."""
        with self._write() as conn:
            if signature is None:
                conn.execute("DELETE FROM sources WHERE path = ?", (path,))
            else:
                conn.execute(
                    "INSERT OR REPLACE INTO sources VALUES (?, ?)", (path, json.dumps(signature))
                )

    # -- writing -------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE ... COMMIT), rolled back on any error."""
        with self._lock:
            conn = self._conn
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as err:
                raise self._error("write", err) from err
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException as err:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                if isinstance(err, sqlite3.Error):
                    raise self._error("write", err) from err
                raise

    def _next_seq(self, conn: sqlite3.Connection) -> int:
        seq = int(self._state("seq") or 0) + 1
        conn.execute("UPDATE settings SET value = ? WHERE key = 'seq'", (str(seq),))
        return seq

    def append(self, records: Sequence[ImageRecord], vectors: np.ndarray) -> np.ndarray:
        """Add rows in one transaction; returns their new (N,) int64 ids."""
        vectors = checked_rows(self.location, records, vectors, self.dim)
        if not records:
            return np.empty(0, np.int64)
        with self._write() as conn:
            seq = self._next_seq(conn)
            row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'rows'").fetchone()
            first = (row[0] if row else -1) + 1
            ids = np.arange(first, first + len(records), dtype=np.int64)
            marks = ", ".join("?" * (len(FIELDS) + 3))
            try:
                conn.executemany(
                    f"INSERT INTO rows (id, {', '.join(FIELDS)}, seq, vector) VALUES ({marks})",
                    (
                        (int(i), *record_values(r), seq, blob(v))
                        for i, r, v in zip(ids, records, vectors, strict=True)
                    ),
                )
            except sqlite3.IntegrityError as err:
                raise IndexStoreError(
                    f"{self.location}: cannot add rows ({err}): a path is indexed already; "
                    "delete it first"
                ) from err
        return ids

    def update(self, ids: Sequence[int], records: Sequence[ImageRecord]) -> None:
        """Replace the metadata of rows (their vectors and ids stay)."""
        if not ids:
            return
        with self._write() as conn:
            seq = self._next_seq(conn)
            sets = ", ".join(f"{f} = ?" for f in FIELDS)
            conn.executemany(
                f"UPDATE rows SET {sets}, seq = ? WHERE id = ?",
                ((*record_values(r), seq, int(i)) for i, r in zip(ids, records, strict=True)),
            )

    def delete(self, selector: RowSelector) -> list[tuple[int, ImageRecord]]:
        """Remove the selected rows in one transaction; returns (id, record) of each."""
        if selector.is_empty:
            return []
        where, params = selector_sql(selector)
        with self._write() as conn:
            found = conn.execute(
                f"SELECT id, seq, {', '.join(FIELDS)} FROM rows WHERE {where} ORDER BY id", params
            ).fetchall()
            if not found:
                return []
            seq = self._next_seq(conn)
            conn.executemany(
                "INSERT OR REPLACE INTO tombstones VALUES (?, ?, ?)",
                ((r[0], seq, r[1]) for r in found),
            )
            conn.execute(
                "DELETE FROM rows WHERE id IN (SELECT value FROM json_each(?))",
                (json.dumps([r[0] for r in found]),),
            )
        return [(int(r[0]), record_of(r[2:])) for r in found]

    def reset(self, settings: dict[str, Any]) -> None:
        """Remove every row and source and replace the settings (ids keep counting)."""
        with self._write() as conn:
            seq = self._next_seq(conn)
            conn.execute("INSERT OR REPLACE INTO tombstones SELECT id, ?, seq FROM rows", (seq,))
            conn.execute("DELETE FROM rows")
            conn.execute("DELETE FROM sources")
        self.set_settings(settings)
        self.dim = int(settings["dim"])
        with self._lock:
            self._memory = None

    # -- reading -------------------------------------------------------------------------------

    def get(self, ids: Sequence[int]) -> dict[int, ImageRecord]:
        """Records of ``ids`` (unknown ids left out)."""
        ids = [int(i) for i in ids if 0 <= int(i) < 2**63]
        if not ids:
            return {}
        with self._lock, self._errors("read"):
            rows = self._conn.execute(
                f"SELECT id, {', '.join(FIELDS)} FROM rows "
                "WHERE id IN (SELECT value FROM json_each(?))",
                (json.dumps(ids),),
            ).fetchall()
        return {row[0]: record_of(row[1:]) for row in rows}

    def vectors(self, ids: Sequence[int]) -> np.ndarray:
        """(n, D) exact stored embeddings of ``ids`` (KeyError naming the first unknown)."""
        wanted = [int(i) for i in ids]
        found = self._exact(wanted)
        for i in wanted:
            if i not in found:
                raise KeyError(f"no image with id {i} in this index")
        if not wanted:
            return np.empty((0, self.dim), np.float32)
        return np.stack([found[i] for i in wanted])

    def _exact(self, ids: list[int]) -> dict[int, np.ndarray]:
        out: dict[int, np.ndarray] = {}
        valid = [i for i in ids if 0 <= i < 2**63]
        with self._lock, self._errors("read"):
            for start in range(0, len(valid), 50_000):
                rows = self._conn.execute(
                    "SELECT id, vector FROM rows WHERE id IN (SELECT value FROM json_each(?))",
                    (json.dumps(valid[start : start + 50_000]),),
                ).fetchall()
                out.update((i, np.frombuffer(b, "<f4").astype(np.float32)) for i, b in rows)
        return out

    def rows(self) -> Iterator[tuple[int, ImageRecord]]:
        """Every (id, record) in id order."""
        with self._lock, self._errors("read"):
            rows = self._conn.execute(
                f"SELECT id, {', '.join(FIELDS)} FROM rows ORDER BY id"
            ).fetchall()
        for row in rows:
            yield int(row[0]), record_of(row[1:])

    def count(self, where: SearchFilter | None = None) -> int:
        """Rows in the index (passing ``where``)."""
        if where is None or where.is_empty:
            with self._lock, self._errors("read"):
                return int(self._conn.execute("SELECT COUNT(*) FROM rows").fetchone()[0])
        with self._lock:
            memory = self._current()
            return int(np.count_nonzero(memory.mask(where, self._under(where))))

    def facets(self) -> Facets:
        """Camera names of the live rows and their capture-time range."""
        with self._lock:
            memory = self._current()
            codes = np.unique(memory.cameras[memory.cameras >= 0])
            names = {code: name for name, code in memory.camera_names.items()}
            times = memory.times[~np.isnan(memory.times)]
        first, last = (float(times.min()), float(times.max())) if times.size else (None, None)
        return Facets(sorted(names[int(c)] for c in codes), first, last)

    def _under(self, where: SearchFilter) -> np.ndarray | None:
        if not where.under:
            return None
        with self._errors("read"):
            rows = self._conn.execute(
                "SELECT id FROM rows WHERE path >= ? AND path < ? ORDER BY id",
                (where.under, where.under + "\U0010ffff"),
            ).fetchall()
        return np.fromiter((r[0] for r in rows), np.int64, len(rows))

    # -- searching -----------------------------------------------------------------------------

    def ann_info(self) -> dict[str, Any]:
        """What this reader searches: ``index_type`` (as built: an approximate type is flat
        until it is trained), ``nlist``, ``nprobe``, ``rows``, ``trained`` (rows its cells were
        trained on) and ``bytes_per_vector`` (codes in the ANN index)."""
        with self._lock:
            memory = self._current()
            kind = index_type_of(memory.ann)
            return {
                "index_type": kind,
                "nlist": None if kind == "flat" else int(memory.ann.nlist),
                "nprobe": None if kind == "flat" else int(memory.ann.nprobe),
                "rows": len(memory.ids),
                "trained": memory.trained,
                "bytes_per_vector": int(memory.ann.code_size),
            }

    def set_nprobe(self, nprobe: int | None) -> None:
        """Cells scanned per query by this reader (approximate types)."""
        with self._lock:
            self._nprobe = nprobe
            if self._memory is not None:
                set_nprobe(self._memory.ann, nprobe)

    def search(
        self, queries: np.ndarray, k: int, where: SearchFilter | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` of each query (Q, D) among the rows passing ``where`` (checked).

        A flat index is exact; an approximate one scans its nearest cells. A filtered search
        is exact for the fp32 types: few passing rows are gathered and scored one by one, many
        are scanned in every cell by FAISS with a selector; the quantised types rank the
        passing rows by their quantised score and re-score the best exactly. Either way k
        results come back whenever k rows pass.
        """
        queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        with self._lock:
            memory = self._current()
            keep = None
            if where is not None and not where.is_empty:
                keep = memory.ids[memory.mask(where, self._under(where))]
            results = [self._search_one(memory, q, k, keep) for q in queries]
        width = max((len(s) for s, _ in results), default=0)
        scores = np.full((len(queries), width), -np.inf, np.float32)
        ids = np.full((len(queries), width), -1, np.int64)
        for row, (s, i) in enumerate(results):
            scores[row, : len(s)], ids[row, : len(i)] = s, i
        return scores, ids

    def _search_one(
        self, memory: AnnView, query: np.ndarray, k: int, keep: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        total = len(memory.ids)
        passing = total if keep is None else len(keep)
        k = min(int(k), passing)
        if k <= 0:
            return np.empty(0, np.float32), np.empty(0, np.int64)
        wanted = k if memory.exact else max(k, 10) * REFINE[index_type_of(memory.ann)]
        if keep is not None and passing <= SUBSET_FRACTION * total:
            return self._gather(memory, query, keep, k, wanted)
        if keep is None:
            scores, ids = memory.ann.search(query[None], min(wanted, total))
            scores, ids = scores[0], ids[0]
        else:
            scores, ids = search_selected(memory.ann, query, keep, wanted)
        found = ids >= 0
        scores, ids = scores[found], ids[found]
        if keep is not None and len(ids) < k:  # the probed cells held too few passing rows
            return self._gather(memory, query, keep, k, wanted)
        if not memory.exact:
            scores = self._exact_rows(ids.tolist()) @ query
        return top_k(scores, ids, k)

    def _gather(
        self, memory: AnnView, query: np.ndarray, keep: np.ndarray, k: int, wanted: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` among ``keep`` ids, their vectors read from the ANN index and scored one by
        one: exact for the fp32 types; the quantised types score their decoded vectors and
        re-score the best ``wanted`` with the exact ones."""
        scores, ids = top_k(stored_rows(memory.ann, keep) @ query, keep, wanted)
        if not memory.exact:
            scores = self._exact_rows(ids.tolist()) @ query
        return top_k(scores, ids, k)

    def _exact_rows(self, ids: list[int]) -> np.ndarray:
        found = self._exact(ids)
        return np.stack([found[i] for i in ids]) if ids else np.empty((0, self.dim), np.float32)

    # -- the reader's memory -------------------------------------------------------------------

    def _current(self) -> AnnView:
        """The in-memory view, loaded on first use and brought up to the last commit."""
        if self._memory is None:
            self._memory = self._load()
        else:
            self.refresh()
        return self._memory  # type: ignore[return-value]

    def refresh(self) -> bool:
        """Apply what was committed since this reader's view; True when something changed."""
        with self._lock:
            memory = self._memory
            if memory is None:
                return False
            with self._errors("read"), self._snapshot():
                seq = int(self._state("seq") or 0)
                if seq == memory.seq:
                    return False
                if memory.seq < int(self._state("purged_seq") or 0):
                    self._memory = None  # tombstones it needs were purged: load afresh
                else:
                    self._catch_up(memory, memory.seq)
                    memory.seq = seq
            if self._memory is None:
                self._memory = self._load()
            return True

    def _catch_up(self, memory: AnnView, since: int) -> None:
        """Apply rows and tombstones committed after ``since`` (inside a read snapshot).

        A row updated since (new metadata, same vector) is removed and added again.
        """
        gone = self._conn.execute("SELECT id FROM tombstones WHERE seq > ?", (since,)).fetchall()
        rows = self._conn.execute(  # no ORDER BY: it would scan the table, not the seq index
            "SELECT id, camera, identity, time, vector FROM rows WHERE seq > ?", (since,)
        ).fetchall()
        rows.sort(key=lambda row: row[0])
        memory.remove(np.fromiter((r[0] for r in gone + rows), np.int64, len(gone) + len(rows)))
        memory.add([r[:4] for r in rows], matrix([r[4] for r in rows], self.dim))

    @contextlib.contextmanager
    def _snapshot(self) -> Iterator[None]:
        """A read transaction: every SELECT inside sees one commit."""
        self._conn.execute("BEGIN")
        try:
            yield
        finally:
            self._conn.execute("COMMIT")

    def _load(self) -> AnnView:
        """Load the ANN checkpoint (or rebuild it from SQLite) and catch up to the last commit."""
        with self._errors("read"), self._snapshot():
            seq = int(self._state("seq") or 0)
            ann_file, ann_seq = self._state("ann_file"), int(self._state("ann_seq") or 0)
            ann = self._read_checkpoint(ann_file, ann_seq)
            if ann is None:
                memory = self._rebuild(seq)
            else:
                memory = AnnView(ann, seq)
                memory.trained = int(self._state("ann_trained") or ann.ntotal)
                rows = self._conn.execute(
                    "SELECT id, camera, identity, time FROM rows WHERE seq <= ? ORDER BY id",
                    (ann_seq,),
                ).fetchall()
                memory.add(rows, None)
                self._catch_up(memory, ann_seq)
        set_nprobe(memory.ann, self._nprobe or self.settings().get("nprobe"))
        return memory

    def _read_checkpoint(self, name: str | None, ann_seq: int) -> Any | None:
        """The checkpoint's FAISS index if it is there, readable and holds what it should."""
        if not name:
            return None
        path = self.folder / name
        try:
            ann = read_vector_index(path)
        except (RuntimeError, OSError, ValueError) as err:  # faiss raises RuntimeError
            logger.warning("%s: unreadable ANN checkpoint (%s); rebuilding it", path, err)
            return None
        expected = self._conn.execute(
            "SELECT (SELECT COUNT(*) FROM rows WHERE seq <= ?1) + "
            "(SELECT COUNT(*) FROM tombstones WHERE seq > ?1 AND row_seq <= ?1)",
            (ann_seq,),
        ).fetchone()[0]
        if getattr(ann, "d", None) != self.dim or ann.ntotal != expected:
            logger.warning("%s: ANN checkpoint does not match the rows; rebuilding it", path)
            return None
        return ann

    def _rebuild(self, seq: int) -> AnnView:
        """A fresh ANN index of every row (trained as the settings ask)."""
        rows = self._conn.execute(
            "SELECT id, camera, identity, time, vector FROM rows ORDER BY id"
        ).fetchall()
        vectors = matrix([r[4] for r in rows], self.dim)
        settings = self.settings()
        ids = np.fromiter((r[0] for r in rows), np.int64, len(rows))
        ann = build_vector_index(
            vectors, settings.get("index_type", "flat"), settings.get("nlist"), ids
        )
        memory = AnnView(ann, seq)
        memory.add([r[:4] for r in rows], None)
        memory.trained = len(rows)
        return memory

    # -- maintenance ---------------------------------------------------------------------------

    def maintain(self) -> bool:
        """Rewrite the ANN checkpoint when it is due; True when it was rewritten.

        Due when more than :data:`CHECKPOINT_ROWS` rows (or a tenth of the index) came after
        it, when it holds a deleted row (the vector must leave the disk), or when an
        approximate index has outgrown its training (retrained then).
        """
        with self._lock, self._errors("read"):
            ann_seq = int(self._state("ann_seq") or 0)
            since = self._conn.execute(
                "SELECT COUNT(*) FROM rows WHERE seq > ?", (ann_seq,)
            ).fetchone()[0]
            total = self._conn.execute("SELECT COUNT(*) FROM rows").fetchone()[0]
            erased = self._conn.execute(
                "SELECT 1 FROM tombstones WHERE seq > ? AND row_seq <= ? LIMIT 1",
                (ann_seq, ann_seq),
            ).fetchone()
        if since <= max(CHECKPOINT_ROWS, total // 10) and not erased and self._state("ann_file"):
            return False
        try:
            self.checkpoint()
        except (OSError, RuntimeError) as err:  # faiss raises RuntimeError on a write error
            logger.warning(
                "%s: could not write the ANN checkpoint (%s); the rows are stored and readers "
                "rebuild the ANN index from them - free space and run irra index --compact",
                self.folder,
                err,
            )
            return False
        return True

    def checkpoint(self) -> None:
        """Write the ANN index of every live row as the new checkpoint (atomically)."""
        with self._lock:
            memory = self._current()
            settings = self.settings()
            wanted = settings.get("index_type", "flat")
            trained = memory.trained
            have = index_type_of(memory.ann)
            grown = have != "flat" and len(memory.ids) > RETRAIN_GROWTH * max(trained, 1)
            untrained = have != wanted and len(memory.ids) >= _train_rows(wanted, settings)
            if grown or untrained:
                logger.info("%s: training the %s index on %d rows", self, wanted, len(memory.ids))
                self._memory = memory = self._rebuild(memory.seq)
                trained = len(memory.ids)
            name = f"ann-{uuid.uuid4().hex[:12]}.faiss"
            tmp = self.folder / f".{name}.tmp"
            try:
                write_vector_index(memory.ann, tmp)
                with open(tmp, "rb") as handle:
                    os.fsync(handle.fileno())
                os.replace(tmp, self.folder / name)
                _fsync_dir(self.folder)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
            with self._write() as conn:
                for key, value in (("ann_file", name), ("ann_seq", memory.seq)):
                    conn.execute("INSERT OR REPLACE INTO settings VALUES (?, ?)", (key, str(value)))
                conn.execute(
                    "INSERT OR REPLACE INTO settings VALUES ('ann_trained', ?)", (str(trained),)
                )
            self._sweep()

    def compact(self) -> CompactReport:
        """Checkpoint the ANN index, purge tombstones and vacuum the database."""
        before = self._bytes()
        with self._lock:
            self.checkpoint()
            with self._write() as conn:
                seq = int(self._state("seq") or 0)
                conn.execute("DELETE FROM tombstones WHERE seq <= ?", (seq,))
                conn.execute("UPDATE settings SET value = ? WHERE key = 'purged_seq'", (str(seq),))
            with self._errors("compact"):
                self._conn.execute("VACUUM")
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            rows = self.count()
        return CompactReport(rows, before, self._bytes())

    def _bytes(self) -> int:
        return sum(p.stat().st_size for p in self.folder.iterdir() if p.is_file())

    def _sweep(self) -> None:
        """Remove ANN files the settings do not name (older checkpoints, cut-short writes)."""
        keep = self._state("ann_file")
        for entry in self.folder.iterdir():
            stale_ann = entry.name.startswith("ann-") and entry.name != keep
            if stale_ann or (entry.name.startswith(".ann-") and entry.name.endswith(".tmp")):
                entry.unlink(missing_ok=True)

    # -- errors --------------------------------------------------------------------------------

    def _error(self, action: str, err: sqlite3.Error) -> IndexStoreError:
        text = str(err)
        if "full" in text.lower():
            return IndexStoreError(
                f"{self.folder / DATABASE}: the disk is full ({text}); nothing of this {action} "
                "was stored - free space and run it again"
            )
        if "locked" in text.lower() or "busy" in text.lower():
            return IndexStoreError(
                f"{self.folder / DATABASE}: busy ({text}); another process holds the index - "
                "wait for it to finish"
            )
        return IndexStoreError(
            f"{self.folder / DATABASE}: cannot {action} the index database "
            f"({type(err).__name__}: {text}); rebuild the index with irra index --rebuild"
        )

    @contextlib.contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as err:
            raise self._error(action, err) from err

    def __repr__(self) -> str:
        return f"EmbeddedStore({self.location!r})"


def _train_rows(index_type: str, settings: dict[str, Any]) -> int:
    """Rows from which an index of ``index_type`` is trained (see vectors.MIN_TRAIN_ROWS)."""
    from irra.retrieval.vectors import MIN_TRAIN_ROWS

    if index_type == "flat":
        return 0
    return 39 * int(settings["nlist"]) if settings.get("nlist") else MIN_TRAIN_ROWS


def _take_writer_lock(folder: Path) -> Any:
    """Hold ``folder/.lock`` exclusively (POSIX advisory lock); refuse a second writer."""
    folder.mkdir(parents=True, exist_ok=True)
    handle = open(folder / LOCK, "a+b")  # noqa: SIM115 - held until the store closes
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        return handle
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as err:
        handle.close()
        raise IndexStoreError(
            f"{folder}: another process is writing this index (irra index, irra delete or a "
            "live source); wait for it to finish, then run this again"
        ) from err
    return handle


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


__all__ = ["EmbeddedStore", "folder_holds_index"]
