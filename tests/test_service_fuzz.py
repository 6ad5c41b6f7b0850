"""The HTTP API fuzzed from its own OpenAPI schema: no input gives a server error (5xx).

Schemathesis generates requests (valid and invalid bodies, paths, headers) for every operation of
``/openapi.json`` and checks each response: never a 5xx, status codes and bodies as documented.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from retrieval_fixtures import write_gallery, write_model

pytest.importorskip("fastapi")
schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402

from irra.inference import TorchEncoder  # noqa: E402
from irra.retrieval import Retriever, build_index  # noqa: E402
from irra.service import create_app  # noqa: E402


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    base = tmp_path_factory.mktemp("fuzz")
    model = write_model(base / "model")
    write_gallery(base / "imgs", 6)
    build_index(TorchEncoder.from_checkpoint(model, device="cpu"), base / "imgs", base / "index")
    app = create_app(Retriever.open(Path(base / "index"), device="cpu"))
    return schemathesis.openapi.from_asgi("/openapi.json", app)


def test_no_request_gets_a_server_error(api_schema):  # type: ignore[no-untyped-def]
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/api/search", "/api/images/{image_id}"}
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=60,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def check(case):  # type: ignore[no-untyped-def]
            case.call_and_validate()

        check()
