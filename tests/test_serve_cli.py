"""``irra serve`` started as a user starts it: a separate process, answered over HTTP."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from retrieval_fixtures import brute_force_ranking, tiny_model, write_gallery, write_model

from irra.cli import main

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

QUERY = "a man in a black jacket"


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[str]]:
    base = tmp_path_factory.mktemp("serve")
    model = write_model(base / "model")
    paths = write_gallery(base / "imgs", 12)
    argv = ["index", "--checkpoint", str(model), "--images", str(base / "imgs")]
    argv += ["--index-type", "ivf", "--nlist", "2", "--nprobe", "1"]
    assert main([*argv, "--out", str(base / "index"), "--workers", "0", "--device", "cpu"]) == 0
    return base / "index", base / "imgs", paths


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_serve(*args: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), PYTHONUNBUFFERED="1")
    return subprocess.Popen(
        [sys.executable, "-m", "irra", "serve", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_line(process: subprocess.Popen, start: str, timeout: float = 120) -> str:
    """The first stdout line starting with ``start``; fails if the server exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if line.startswith(start):
            return line
        if not line and process.poll() is not None:
            pytest.fail(f"irra serve exited with {process.returncode}: {process.stderr.read()}")
    pytest.fail(f"irra serve printed no '{start}' line in {timeout} s")


def get_json(url: str, body: dict | None = None, timeout: float = 60) -> dict:
    """GET (or POST ``body`` as JSON) once the port answers."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.loads(response.read())
        except (ConnectionError, urllib.error.URLError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def stop(process: subprocess.Popen) -> str:
    """Stop the server as Ctrl-C would; returns its stderr."""
    process.terminate()
    try:
        _, err = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        _, err = process.communicate()
    return err


def test_serve_answers_searches_like_the_python_api(index):
    folder, images, paths = index
    port = free_port()
    # --nprobe 2 scans both cells of the ivf index: exact search
    process = start_serve(
        "--index", str(folder), "--port", str(port), "--device", "cpu", "--nprobe", "2"
    )
    try:
        line = wait_for_line(process, "serving")
        assert line.strip() == f"serving 12 images at http://127.0.0.1:{port}/"
        health = get_json(f"http://127.0.0.1:{port}/api/health")
        assert (health["status"], health["images"]) == ("ok", 12)
        found = get_json(f"http://127.0.0.1:{port}/api/search", {"query": QUERY, "k": 12})
    finally:
        err = stop(process)
    expected = brute_force_ranking(tiny_model(), images, paths, QUERY)
    assert [r["path"] for r in found["results"]] == [p for p, _ in expected]
    assert "anyone who can reach" not in err  # loopback: no warning


def test_serve_takes_an_exported_model_its_engine_and_threads(index, tmp_path):
    """``--checkpoint EXPORT --engine torchscript --threads 1``: the export answers, with the
    torch model's ranking."""
    folder, images, paths = index
    export = tmp_path / "ts"
    model = folder.parent / "model"
    argv = ["export", "--checkpoint", str(model), "--out", str(export), "--format", "torchscript"]
    assert main(argv) == 0
    port = free_port()
    process = start_serve(
        "--index", str(folder), "--port", str(port), "--device", "cpu", "--nprobe", "2",
        "--checkpoint", str(export), "--engine", "torchscript", "--threads", "1",
    )  # fmt: skip
    try:
        wait_for_line(process, "serving")
        found = get_json(f"http://127.0.0.1:{port}/api/search", {"query": QUERY, "k": 12})
    finally:
        err = stop(process)
    assert "torchscript" in err and str(export) in err  # the log says which model answers
    expected = brute_force_ranking(tiny_model(), images, paths, QUERY)
    assert [r["path"] for r in found["results"]] == [p for p, _ in expected]


def test_serve_refuses_a_folder_that_is_not_an_index(tmp_path):
    (tmp_path / "empty").mkdir()
    process = start_serve("--index", str(tmp_path / "empty"), "--device", "cpu")
    out, err = process.communicate(timeout=120)
    assert process.returncode == 2
    assert str(tmp_path / "empty") in err
    assert "serving" not in out


def test_serve_warns_when_listening_beyond_this_machine(index):
    port = free_port()
    process = start_serve(
        "--index", str(index[0]), "--host", "0.0.0.0", "--port", str(port), "--device", "cpu"
    )
    try:
        assert wait_for_line(process, "serving").startswith("serving 12 images at http://0.0.0.0")
    finally:
        err = stop(process)
    assert "listening on 0.0.0.0: anyone who can reach this address can search" in err


def test_a_running_server_sees_appends_and_deletes_within_two_seconds(index, tmp_path):
    folder, images, _ = index
    live, gallery = tmp_path / "index", tmp_path / "imgs"
    import shutil

    shutil.copytree(images, gallery)
    model = str(Path(folder).parent / "model")
    argv = ["index", "--checkpoint", model, "--images", str(gallery), "--out", str(live)]
    assert main([*argv, "--workers", "0", "--device", "cpu"]) == 0
    port = free_port()
    process = start_serve("--index", str(live), "--port", str(port), "--device", "cpu")
    url = f"http://127.0.0.1:{port}/api/search"

    def found() -> dict[str, int]:
        results = get_json(url, {"query": QUERY, "k": 100})["results"]
        return {r["path"]: r["id"] for r in results}

    try:
        wait_for_line(process, "serving")
        before = found()
        assert len(before) == 12
        added = write_gallery(gallery, 10, start=500)
        assert main([*argv, "--workers", "0", "--device", "cpu"]) == 0  # while it serves
        done = time.monotonic()
        while len(now := found()) != 22:
            assert time.monotonic() - done < 2.0, f"{len(now)} images seen after 2 s"
            time.sleep(0.05)
        assert set(now) == set(before) | set(added)
        assert all(now[p] == i for p, i in before.items())  # ids did not move
        gone = sorted(now.values())[::4][:5]
        delete = ["delete", "--index", str(live)] + [f"--id={i}" for i in gone]
        assert main(delete) == 0
        done = time.monotonic()
        while set(gone) & set((now := found()).values()):
            assert time.monotonic() - done < 2.0, "deleted images still returned after 2 s"
            time.sleep(0.05)
        assert len(now) == 17
        for image_id in gone:
            request = urllib.request.Request(f"http://127.0.0.1:{port}/api/images/{image_id}")
            with pytest.raises(urllib.error.HTTPError) as info:
                urllib.request.urlopen(request, timeout=30)
            assert info.value.code == 404
    finally:
        err = stop(process)
    assert "Traceback" not in err, err
