"""``irra serve``: the HTTP API and search page over an index."""

from __future__ import annotations

import argparse
import ipaddress
import logging

from irra.cli.engine_args import add_engine_args

logger = logging.getLogger(__name__)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``irra serve``."""
    p = subparsers.add_parser(
        "serve",
        help="HTTP API and web page to search an index",
        description=(
            "Serve an index: a search page at /, POST /api/search (JSON), POST "
            "/api/search/upload (a query photo, multipart), GET /api/images/{id}, GET "
            "/api/facets, GET /api/health and the OpenAPI schema at /docs. Listens on 127.0.0.1 "
            "only unless --host says otherwise."
        ),
    )
    p.add_argument("--index", required=True, help="index folder, or milvus://HOST:PORT/COLLECTION")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--nprobe", type=int, help="approximate index: cells scanned per query")
    add_engine_args(
        p,
        checkpoint_help="the model, if it moved since the index was built, or an export directory "
        "of it",
    )


def run(args: argparse.Namespace) -> int:
    """Run ``irra serve`` until interrupted; returns the exit status."""
    try:
        import uvicorn

        from irra.service import create_app
    except ImportError as err:
        logger.error("irra serve needs the serve extra: pip install 'irra[serve]' (%s)", err)
        return 2
    from irra.retrieval import IndexStoreError, Retriever

    try:
        retriever = Retriever.open(
            args.index,
            checkpoint=args.checkpoint,
            engine=args.engine,
            device=args.device,
            nprobe=args.nprobe,
            threads=args.threads,
        )
    except (IndexStoreError, ValueError, RuntimeError) as err:
        logger.error("%s", err)
        return 2
    encoder = retriever.encoder
    logger.info("queries encoded by %s (%s engine)", encoder.source, encoder.engine)
    if not _is_loopback(args.host):
        logger.warning(
            "listening on %s: anyone who can reach this address can search the index and see "
            "its images",
            args.host,
        )
    print(f"serving {len(retriever)} images at http://{args.host}:{args.port}/", flush=True)
    uvicorn.run(create_app(retriever), host=args.host, port=args.port, log_level="warning")
    return 0


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
