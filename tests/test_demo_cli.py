"""``irra demo`` run again: an interrupted demo resumes, a finished one is reused, and
``--overwrite`` trains again on the same data."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from test_train_run import TINY, _StopBeforeEpoch

from irra.cli import main
from irra.config import load_config
from irra.engine.run import train


def epoch_lines(out: Path) -> list[str]:
    return (out / "log.jsonl").read_text().splitlines()


def test_demo_resumes_then_reuses_then_overwrites(synth_root, tmp_path, caplog):
    out = tmp_path / "demo"
    data = out / "data" / "CUHK-PEDES"
    shutil.copytree(synth_root / "CUHK-PEDES", data)  # the demo reuses data it finds
    tiny = [o for o in TINY if not o.startswith("data.root")] + ["train.epochs=2"]

    # A demo killed after its first epoch (same config as `irra demo` uses)...
    config = load_config("synth", [f"data.root={out / 'data'}", *tiny])
    with pytest.raises(KeyboardInterrupt):
        train(config, out, hooks=[_StopBeforeEpoch(1)])
    first_epoch = epoch_lines(out)
    assert len(first_epoch) == 1 and not (out / "metrics.json").exists()
    annotation = (data / "reid_raw.json").stat().st_mtime_ns

    # ... resumes where it stopped: epoch 1 is not trained again.
    with caplog.at_level("INFO", logger="irra"):
        assert main(["demo", "--out", str(out), *tiny]) == 0
    assert "resumed after epoch 1 of 2" in caplog.text
    lines = epoch_lines(out)
    assert lines[:1] == first_epoch and len(lines) == 2
    metrics = json.loads((out / "metrics.json").read_text())
    stamp = (out / "last.pt").stat().st_mtime_ns

    # A finished demo is reused as it is.
    caplog.clear()
    with caplog.at_level("INFO", logger="irra"):
        assert main(["demo", "--out", str(out), *tiny]) == 0
    assert "already holds a finished demo run" in caplog.text
    assert (out / "last.pt").stat().st_mtime_ns == stamp
    assert epoch_lines(out) == lines

    # --overwrite trains again from scratch on the same data (same seed: same result).
    (out / "report" / "marker.txt").write_text("from the old run")
    assert main(["demo", "--out", str(out), "--overwrite", *tiny]) == 0
    assert (out / "last.pt").stat().st_mtime_ns != stamp
    assert not (out / "report" / "marker.txt").exists()
    assert (data / "reid_raw.json").stat().st_mtime_ns == annotation
    assert len(epoch_lines(out)) == 2
    assert json.loads((out / "metrics.json").read_text()) == metrics


def test_demo_draws_its_data_with_the_workers_asked_for(tmp_path, monkeypatch):
    """``--workers 2`` reaches the SynthPedes drawing, whose output equals one process's."""
    import irra.cli.demo as demo
    import irra.data.synth as synth

    monkeypatch.setattr(demo, "DEMO_IDS", 20)
    monkeypatch.setattr(demo, "DEMO_HELD_OUT", 4)
    workers = []
    draw = synth.generate_synthpedes

    def spy(*args, **kwargs):
        workers.append(kwargs["workers"])
        return draw(*args, **kwargs)

    monkeypatch.setattr(synth, "generate_synthpedes", spy)
    out = tmp_path / "demo"
    tiny = [o for o in TINY if not o.startswith("data.root")] + ["train.epochs=1"]
    assert main(["demo", "--out", str(out), "--workers", "2", *tiny]) == 0
    assert workers == [2]
    alone = draw(tmp_path / "alone", num_ids=20, split_fractions=(0.6, 0.2, 0.2), workers=1)
    demo_data = out / "data" / "CUHK-PEDES"
    files = sorted(p.relative_to(alone.out_dir) for p in alone.out_dir.rglob("*") if p.is_file())
    assert files and files == sorted(
        p.relative_to(demo_data) for p in demo_data.rglob("*") if p.is_file()
    )
    for name in files:
        assert (demo_data / name).read_bytes() == (alone.out_dir / name).read_bytes(), name
