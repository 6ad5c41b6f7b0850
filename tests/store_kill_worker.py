"""Appends and deletes rows of an embedded store in a loop, logging each acknowledged operation.

Usage: ``python store_kill_worker.py INDEX LOG FIRST_OP``. Operation n appends 1-40 rows whose
paths and vectors follow from n (``op{n}/img{j}.jpg``, vectors drawn with seed n), or deletes a
few live rows; every fourth operation also runs ``maintain`` (an ANN checkpoint after deletes).
Before a delete its chosen ids are logged (``T n id...``); after the store returns, one line is
appended to LOG and synced: ``A n id...`` or ``D n id...``.
The parent kills this process with SIGKILL at random moments and checks the store against LOG.
"""

from __future__ import annotations

import os
import sys

import numpy as np

from irra.retrieval.store import ImageRecord, RowSelector, open_store

DIM = 16
SETTINGS = {
    "model": {"fingerprint": "k" * 64, "source": None, "engine": "torch", "config": {}},
    "dim": DIM,
    "images_root": "/gallery",
    "metric": "inner_product",
    "index_type": "flat",
    "nlist": None,
    "nprobe": None,
}


def op_rows(n: int) -> tuple[list[ImageRecord], np.ndarray]:
    """The rows operation ``n`` appends."""
    rng = np.random.default_rng(n)
    count = int(rng.integers(1, 41))
    vectors = rng.standard_normal((count, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    records = [ImageRecord(f"op{n}/img{j}.jpg", j, n, camera=f"c{j % 3}") for j in range(count)]
    return records, vectors


def main() -> None:
    index, log, first = sys.argv[1], sys.argv[2], int(sys.argv[3])
    store = open_store(index, create=SETTINGS, writer=True)
    with open(log, "a", encoding="utf-8") as ack:
        n = first
        while True:
            rng = np.random.default_rng(10_000 + n)
            if rng.random() < 0.6 or store.count() < 20:
                records, vectors = op_rows(n)
                ids = store.append(records, vectors)
                line = f"A {n} " + " ".join(map(str, ids.tolist()))
            else:
                live = [i for i, _ in store.rows()]
                chosen = rng.choice(
                    live, size=min(len(live), int(rng.integers(1, 8))), replace=False
                )
                ack.write(f"T {n} " + " ".join(map(str, chosen.tolist())) + "\n")  # intent
                ack.flush()
                deleted = store.delete(RowSelector(ids=[int(i) for i in chosen]))
                line = f"D {n} " + " ".join(str(i) for i, _ in deleted)
            if n % 4 == 0:
                store.maintain()
            ack.write(line + "\n")
            ack.flush()
            os.fsync(ack.fileno())
            n += 1


if __name__ == "__main__":
    main()
