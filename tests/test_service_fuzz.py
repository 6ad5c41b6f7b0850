"""The HTTP API fuzzed from its own OpenAPI schema: no input gives a server error (5xx).

Schemathesis generates requests (valid and invalid bodies, paths, headers, multipart uploads) for
every operation of ``/openapi.json``, over an image index and a footage index (whose crops have
frames to serve), and checks each response: never a 5xx, status codes and bodies
as documented, and a schema-valid request accepted - except for what no JSON schema can state
(an upload whose bytes are not an image, ``after`` later than ``before``, negatives cancelling the
positives), which must be refused with a 422 saying exactly that.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from retrieval_fixtures import write_gallery, write_model

pytest.importorskip("fastapi")
schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from schemathesis.specs.openapi.checks import positive_data_acceptance  # noqa: E402

from irra.data.synth.scenes import SceneParams, generate_scenes  # noqa: E402
from irra.inference import TorchEncoder  # noqa: E402
from irra.retrieval import Retriever, build_index  # noqa: E402
from irra.retrieval.footage import FootageSource, build_footage_index  # noqa: E402
from irra.service import create_app  # noqa: E402

#: The 422 messages a schema-valid request may get: checks that need the bytes or several fields.
BEYOND_THE_SCHEMA = ("cannot read image", "zero size", "is later than", "cancel", "at most one per")


@pytest.fixture(scope="module", params=["images", "footage"])
def api_schema(request, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """The schema of a service over an image folder, or over footage (crops with frames)."""
    base = tmp_path_factory.mktemp("fuzz")
    encoder = TorchEncoder.from_checkpoint(write_model(base / "model"), device="cpu")
    if request.param == "images":
        write_gallery(base / "imgs", 6)
        build_index(encoder, base / "imgs", base / "index")
    else:
        generate_scenes(base / "scenes", SceneParams(sequences=1, frames=12, width=320, height=180))
        build_footage_index(encoder, [FootageSource(base / "scenes" / "SYNTH-01")], base / "index")
    app = create_app(Retriever.open(Path(base / "index"), device="cpu"))
    return schemathesis.openapi.from_asgi("/openapi.json", app)


def test_no_request_gets_a_server_error(api_schema):  # type: ignore[no-untyped-def]
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert {op.path for op in operations} >= {
        "/api/search",
        "/api/search/upload",
        "/api/images/{image_id}",
        "/api/images/{image_id}/frame",
        "/api/facets",
    }
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
            response = case.call_and_validate(excluded_checks=[positive_data_acceptance])
            positive = case.meta is not None and case.meta.generation.mode.is_positive
            if positive and response.status_code == 422:
                detail = response.json()["detail"]
                assert any(reason in detail for reason in BEYOND_THE_SCHEMA), detail
            elif positive:
                case.validate_response(response, checks=[positive_data_acceptance])

        check()
