"""Kill safety: a loop of appends and deletes killed with SIGKILL at random moments (35 times)
loses no acknowledged operation and always leaves a store that opens and searches exactly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from store_kill_worker import op_rows

from irra.retrieval.store import open_store

WORKER = Path(__file__).with_name("store_kill_worker.py")
SRC = Path(__file__).resolve().parents[1] / "src"
KILLS = 35


def read_log(log: Path) -> list[tuple[str, int, list[int]]]:
    entries = []
    for line in log.read_text(encoding="utf-8").splitlines():
        if not line.endswith(tuple("0123456789 ")) or line.count(" ") < 1:
            continue  # a line cut short by the kill
        kind, n, *ids = line.split()
        entries.append((kind, int(n), [int(i) for i in ids]))
    return entries


def test_sigkilled_appends_and_deletes_lose_no_acknowledged_operation(tmp_path):
    index, log = tmp_path / "index", tmp_path / "ack.log"
    log.touch()
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
    rng = np.random.default_rng(0)
    next_op = 0
    for kill in range(KILLS):
        before = sum(kind != "T" for kind, _, _ in read_log(log))
        worker = subprocess.Popen(
            [sys.executable, str(WORKER), str(index), str(log), str(next_op)], env=env
        )
        deadline = time.monotonic() + 60
        while sum(k != "T" for k, _, _ in read_log(log)) == before and worker.poll() is None:
            assert time.monotonic() < deadline, "the worker never acknowledged an operation"
            time.sleep(0.01)
        time.sleep(float(rng.uniform(0.0, 0.25)))
        worker.send_signal(signal.SIGKILL)
        assert worker.wait(timeout=60) == -signal.SIGKILL, f"kill {kill}: the worker had exited"
        entries = read_log(log)
        next_op = entries[-1][1] + 2  # the operation cut short (if any) is never reused
        check_store(index, entries, kill)


def check_store(index: Path, entries: list[tuple[str, int, list[int]]], kill: int) -> None:
    appended: dict[int, tuple[int, int]] = {}  # id -> (operation, row j)
    deleted: set[int] = set()
    for kind, n, ids in entries:
        if kind == "A":
            appended.update({i: (n, j) for j, i in enumerate(ids)})
        elif kind == "D":
            deleted |= set(ids)
    # a delete cut short after its commit but before its acknowledgement may have happened
    done = {n for kind, n, _ in entries if kind == "D"}
    pending = {i for kind, n, ids in entries if kind == "T" and n not in done for i in ids}
    store = open_store(index)
    try:
        rows = dict(store.rows())
        live = set(appended) - deleted
        assert live - pending <= set(rows), f"kill {kill}: acknowledged rows lost"
        live &= set(rows)
        assert not deleted & set(rows), f"kill {kill}: acknowledged deletes undone"
        # other rows come from appends committed but cut short before their acknowledgement:
        # at most one per kill, each a whole operation that the log never acknowledged
        acked = {n for kind, n, _ in entries if kind == "A"}
        extra = {rows[i].path.split("/")[0] for i in set(rows) - live}
        assert len(extra) <= kill + 1 and not {int(op[2:]) for op in extra} & acked, kill
        for i in sorted(live)[:50]:
            n, j = appended[i]
            records, vectors = op_rows(n)
            assert rows[i] == records[j]
            np.testing.assert_array_equal(store.vectors([i])[0], vectors[j])
        ids = sorted(rows)
        vectors = store.vectors(ids)
        query = vectors[len(ids) // 2]
        scores, found = store.search(query[None], 10)
        expected = np.array(ids)[np.lexsort((ids, -(vectors @ query)))[:10]]
        assert set(found[0].tolist()) == set(expected.tolist()), f"kill {kill}: search"
    finally:
        store.close()
