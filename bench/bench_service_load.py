"""Load test of ``irra serve`` on loopback: N concurrent clients x M queries, no errors allowed.

Builds a tiny random model and a generated gallery, starts the real server (uvicorn, 127.0.0.1,
a free port) in a background thread, and runs ``--clients`` threads that each POST ``--queries``
searches. Prints p50/p99 latency, throughput and the error count; exits 1 on any error.

    python bench/bench_service_load.py --clients 8 --queries 500
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _client(url: str, queries: list[str], k: int, latencies: list[float], errors: list[str]):
    for query in queries:
        body = json.dumps({"query": query, "k": k}).encode()
        request = urllib.request.Request(
            url, data=body, headers={"content-type": "application/json"}, method="POST"
        )
        start = time.perf_counter()
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                hits = json.loads(response.read())["results"]
                if len(hits) != k:
                    errors.append(f"{len(hits)} results for k={k}")
        except (urllib.error.URLError, OSError, ValueError, KeyError) as err:
            errors.append(repr(err))
        latencies.append(time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--queries", type=int, default=500, help="per client")
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--k", type=int, default=10)
    args = parser.parse_args()

    import uvicorn
    from retrieval_fixtures import write_gallery, write_model

    from irra.inference import TorchEncoder
    from irra.retrieval import Retriever, build_index
    from irra.service import create_app

    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        model = write_model(base / "model")
        write_gallery(base / "imgs", args.images)
        build_index(
            TorchEncoder.from_checkpoint(model, device="cpu"), base / "imgs", base / "index"
        )
        app = create_app(Retriever.open(base / "index", device="cpu"))
        port = _free_port()
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.05)
        url = f"http://127.0.0.1:{port}/api/search"
        words = ["red", "black", "white", "blue", "jacket", "backpack", "shorts", "dress"]
        latencies: list[float] = []
        errors: list[str] = []
        clients = [
            threading.Thread(
                target=_client,
                args=(
                    url,
                    [
                        f"a person in a {words[(c + i) % 8]} {words[(c * i) % 8]}"
                        for i in range(args.queries)
                    ],
                    args.k,
                    latencies,
                    errors,
                ),
            )
            for c in range(args.clients)
        ]
        start = time.perf_counter()
        for client in clients:
            client.start()
        for client in clients:
            client.join()
        elapsed = time.perf_counter() - start
        server.should_exit = True
        thread.join(timeout=10)

    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    print(
        f"{args.clients} clients x {args.queries} queries, {args.images} images, k={args.k}: "
        f"{len(latencies)} requests in {elapsed:.1f} s, {len(latencies) / elapsed:.1f} queries/s, "
        f"p50 {1000 * statistics.median(ordered):.1f} ms, p99 {1000 * p99:.1f} ms, "
        f"errors {len(errors)}"
    )
    for error in errors[:5]:
        print("  error:", error)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
