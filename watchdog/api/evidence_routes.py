"""``GET /v1/incidents/{id}/evidence.png``: the evidence picture the ticket and the chat link to."""

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, FastAPI
from fastapi.responses import JSONResponse, Response

from watchdog.api.auth import Principal
from watchdog.api.models import ApiError
from watchdog.evidence import NoPicture, evidence_png
from watchdog.store import Store


def add_evidence_routes(api: FastAPI, store: Store, principal: Callable[..., Principal]) -> None:
    """The picture route, for every role (``principal`` is the API's token check)."""

    @api.get(
        "/v1/incidents/{incident_id}/evidence.png",
        tags=["read"],
        response_class=Response,
        responses={
            200: {"content": {"image/png": {}}, "description": "The picture, 1200 × 700 px."},
            404: {"model": ApiError, "description": "No such incident, or no watch decided it."},
        },
    )
    def evidence_picture(who: Annotated[Principal, Depends(principal)], incident_id: int) -> Any:
        """The evidence of a rollback a watch decided, as a PNG: per failed signal (at most 3) the
        canary's and the baseline's figures, the test's statistic against its bound, the deploy
        and the decision. A human's rollback or an incident report has none (404)."""
        try:
            png = evidence_png(store, incident_id)
        except NoPicture as exc:
            return JSONResponse(ApiError(error=str(exc), field="path.incident_id").model_dump(), 404)
        return Response(png, media_type="image/png")
