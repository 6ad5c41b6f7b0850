"""A real Milvus server for the tests: Milvus Lite's gRPC server (``milvus-lite server``).

``milvus_uri_factory`` (session) starts ``python -m milvus_lite server`` on 127.0.0.1 at a free
port with a temporary data folder, waits until it answers a call, and gives fresh
``milvus://127.0.0.1:PORT/<collection>`` URIs; the server is stopped at the end of the session.
A server that does not start is a test failure (with its output), never a skip.

A test module uses it as a plugin: ``pytest_plugins = ["milvus_server"]``.
"""

from __future__ import annotations

import itertools
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

#: Seconds the server may take to answer its first call.
START_TIMEOUT_S = 90.0
HOST = "127.0.0.1"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (now)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _answers(port: int) -> bool:
    from pymilvus import MilvusClient, MilvusException

    try:
        client = MilvusClient(f"http://{HOST}:{port}", timeout=2, dedicated=True)
    except MilvusException:
        return False
    try:
        client.list_collections()
        return True
    except MilvusException:
        return False
    finally:
        client.close()


def start_server(data_dir: Path, log_path: Path) -> tuple[subprocess.Popen[bytes], int]:
    """Start ``milvus-lite server`` and wait until it answers; the process and its port.

    Fails the test (with the server's output) when it exits or does not answer in time.
    """
    port = free_port()
    command = [sys.executable, "-m", "milvus_lite", "server", "--data-dir", str(data_dir)]
    command += ["--host", HOST, "--port", str(port)]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + START_TIMEOUT_S
    while not _answers(port):
        if process.poll() is not None or time.monotonic() > deadline:
            stop_server(process)
            output = log_path.read_text(errors="replace")[-4000:]
            pytest.fail(
                f"the Milvus Lite server ({' '.join(command)}) did not answer on port {port} "
                f"within {START_TIMEOUT_S:.0f} s (exit code {process.returncode}); it is "
                f"installed by pip install -e '.[milvus]'. Its output:\n{output}",
                pytrace=False,
            )
        time.sleep(0.2)
    return process, port


def stop_server(process: subprocess.Popen[bytes]) -> None:
    """Stop the server (SIGTERM, then SIGKILL after 10 s)."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture(scope="session")
def milvus_uri_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[], str]]:
    """A function giving a fresh ``milvus://127.0.0.1:PORT/<new collection>`` at each call."""
    folder = tmp_path_factory.mktemp("milvus")
    process, port = start_server(folder / "data", folder / "server.log")
    names = itertools.count()
    try:
        yield lambda: f"milvus://{HOST}:{port}/t{next(names)}"
    finally:
        stop_server(process)


@pytest.fixture
def milvus_uri(milvus_uri_factory: Callable[[], str]) -> str:
    """A URI of a collection that does not exist yet."""
    return milvus_uri_factory()


@pytest.fixture
def free_tcp_port() -> int:
    """A port on 127.0.0.1 where no server listens (for "unreachable server" tests)."""
    return free_port()
