"""bench/bench_store.py at a tiny size, and bench/embedding_like.py against its stated targets.

The benchmark runs as a user runs it (a subprocess: it pins thread counts in its environment,
which must not leak into this test process). The generator is checked by brute force on a
small gallery, independently of the module's own statistics code.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

from embedding_like import DEMO, LABELS, MEASURED, clustered_vectors, queries_like  # noqa: E402

TYPES = ("flat", "ivf", "ivf-sq8", "ivf-pq")


def _run(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(BENCH / script), *args], capture_output=True, text=True, timeout=600
    )


def _table(report: str, header_word: str) -> list[list[str]]:
    """Cells of each row of the Markdown table whose header holds ``header_word``."""
    table = next(
        t for t in report.split("\n\n") if t.startswith("|") and header_word in t.splitlines()[0]
    )
    return [[c.strip() for c in line.strip("|").split("|")] for line in table.splitlines()[2:]]


def _has_old_code() -> bool:
    """Whether the commit the baseline runs is in this clone's history (not in a shallow one)."""
    root = Path(__file__).resolve().parents[1]
    found = subprocess.run(
        ["git", "cat-file", "-e", "1c32bfb^{commit}"], cwd=root, capture_output=True
    )
    return found.returncode == 0


def test_bench_store_reports_every_type_before_and_after(tmp_path):
    out = tmp_path / "store.md"
    before = _has_old_code()
    done = _run(
        "bench_store.py", "--sizes", "2000", "--queries", "5", "--nlist", "16",
        "--scratch", str(tmp_path), "--out", str(out), *(() if before else ("--no-before",)),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = out.read_text()
    assert report in done.stdout
    changes = {(r[0], r[2]): r for r in _table(report, "append 1,000 ms")}
    old = {("before", "flat"), ("before", "ivf")} if before else set()
    assert set(changes) == old | {("after", t) for t in TYPES}
    for (code, kind), cells in changes.items():
        assert cells[3] == "2,000", (code, kind)
        append_ms, delete_ms = float(cells[6].replace(",", "")), float(cells[8].replace(",", ""))
        assert append_ms > 0 and delete_ms > 0, (code, kind)
    searches = _table(report, "recall@10")
    assert len(searches) == len(changes) * 4  # no filter, 50%, 1%, 0.01%
    for code, _, kind, _, keeps, _, recall, p50, p99 in searches:
        assert 0 <= float(recall) <= 1 and 0 < float(p50) <= float(p99), (code, kind, keeps)
        if kind == "flat":  # exact: the store and the oracle agree row for row
            assert recall == "1.000", (code, keeps)
    assert {r[4]: r[5] for r in searches} == {
        "all (no filter)": "2,000", "50%": "1,000", "1%": "22", "0.01%": "1",
    }  # fmt: skip
    assert "after, embedded flat" not in report  # one size: no ratio across sizes
    assert ("flat at 2,000 rows, before / after: append" in report) == before
    assert not list(tmp_path.glob("bench-store-*"))  # the stores were removed


def test_bench_store_refuses_an_index_type_no_engine_offers(tmp_path):
    done = _run("bench_store.py", "--sizes", "2000", "--types", "hnsw", "--no-before")
    assert done.returncode != 0
    assert "hnsw not offered" in done.stderr and "ivf-sq8" in done.stderr


@pytest.fixture(scope="module")
def gallery():
    identities = 600
    vectors, labels = clustered_vectors(identities * DEMO.per_identity, dim=512, seed=3)
    return vectors, labels


def test_clustered_vectors_are_unit_rows_grouped_by_identity(gallery):
    vectors, labels = gallery
    assert vectors.dtype == np.float32 and vectors.shape == (2400, 512)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    np.testing.assert_array_equal(labels, np.repeat(np.arange(600), DEMO.per_identity))


def test_clustered_vectors_match_the_measured_distributions(gallery):
    vectors, labels = gallery
    gram = vectors.astype(np.float64) @ vectors.T.astype(np.float64)
    upper = np.triu(np.ones_like(gram, dtype=bool), 1)
    same = labels[:, None] == labels[None, :]
    intra, inter = gram[upper & same], gram[upper & ~same]
    assert len(intra) == 600 * 6
    for values, target in ((intra, MEASURED["intra"]), (inter, MEASURED["inter"])):
        assert values.mean() == pytest.approx(target["mean"], abs=0.03)
        assert values.std() == pytest.approx(target["std"], abs=0.02)
    assert np.quantile(inter, 0.99) == pytest.approx(MEASURED["inter"]["q99"], abs=0.05)


def test_queries_sit_at_the_measured_text_image_cosine(gallery):
    vectors, labels = gallery
    queries, described = queries_like(400, len(vectors), dim=512, seed=3)
    assert queries.shape == (400, 512) and described.max() < 600
    np.testing.assert_allclose(np.linalg.norm(queries, axis=1), 1, atol=1e-5)
    scores = queries @ vectors.T
    match = scores[described[:, None] == labels[None, :]]
    other = scores[described[:, None] != labels[None, :]]
    assert match.mean() == pytest.approx(MEASURED["text_match"]["mean"], abs=0.03)
    assert match.std() == pytest.approx(MEASURED["text_match"]["std"], abs=0.04)
    assert other.mean() == pytest.approx(MEASURED["text_other"]["mean"], abs=0.03)


def test_clustered_vectors_are_seeded_and_a_smaller_n_is_a_prefix():
    small, small_labels = clustered_vectors(1000, dim=64, seed=5)
    large, large_labels = clustered_vectors(40_000, dim=64, seed=5)  # two chunks of identities
    np.testing.assert_allclose(large[:1000], small, atol=1e-6)
    np.testing.assert_array_equal(large_labels[:1000], small_labels)
    assert not np.allclose(clustered_vectors(1000, dim=64, seed=6)[0], small)


def test_check_prints_measured_and_generated_side_by_side():
    done = _run("embedding_like.py", "--check", "--identities", "300")
    assert done.returncode == 0, done.stderr
    for label in LABELS.values():
        rows = [line for line in done.stdout.splitlines() if label in line]
        assert [r.split(label)[1].split()[0] for r in rows] == ["measured", "generated"], label
