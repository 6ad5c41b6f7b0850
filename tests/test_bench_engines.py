"""bench/bench_engines.py on irra's own engine at a tiny size (LanceDB and Milvus not needed).

The script is run as a user runs it (a subprocess: it pins thread counts in its environment,
which must not leak into this test process).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "bench_engines.py"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=600
    )


def _table_rows(report: str, header_word: str) -> dict[str, list[str]]:
    """Rows of the Markdown table whose header holds ``header_word``: config -> cells."""
    tables = report.split("\n\n")
    table = next(t for t in tables if t.startswith("|") and header_word in t.splitlines()[0])
    rows = {}
    for line in table.splitlines()[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0]] = cells[1:]
    return rows


def test_irra_engines_are_exact_and_survive_a_kill(tmp_path):
    out = tmp_path / "engines.md"
    done = _run(
        "--engines", "irra", "--size", "2000", "--batch", "100", "--queries", "20",
        "--crash-rounds", "1", "--work", str(tmp_path / "work"), "--out", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = out.read_text()
    assert report in done.stdout
    speed = _table_rows(report, "p50 ms")
    right = _table_rows(report, "recall@10")
    assert set(speed) == set(right) == {"irra-flat", "irra-ivf"}
    for config, cells in right.items():
        recall, recall_1pct, exact, after, exact_after, bad, count, opened, kept, flight = cells
        # below 10,000 rows an ivf index stays flat: both are exact here
        assert recall == recall_1pct == after == "1.000", config
        assert exact == exact_after == "20/20", config
        assert (bad, count, opened) == ("0", "ok", "1/1"), config
        acked_kept, acked = kept.split("/")
        assert acked_kept == acked and int(acked) >= 3, config
        assert "torn" not in flight, config
        assert all(float(c.split()[0]) >= 0 for c in speed[config][:10]), config


def test_an_unknown_engine_is_refused_with_the_valid_names(tmp_path):
    done = _run("--engines", "faiss", "--size", "100", "--work", str(tmp_path))
    assert done.returncode != 0
    assert "unknown engine or configuration 'faiss'" in done.stderr
    assert "irra-flat" in done.stderr and "lancedb" in done.stderr
