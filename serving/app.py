"""The HTTP face of ``sweepflow serve``: FastAPI routes over a :class:`serving.live.LiveModel`.

- ``POST /predict``: raw rows as JSON records (a list of objects, or ``{"records": [...]}``;
  ``{"dataframe_records": [...]}`` as MLflow's server takes them) or a CSV body with a header
  row; answers one churn probability per row, in order, with the model version that scored
  them. Rows are cleaned by :func:`churnml.schema.to_features`, the cleaning every other path
  uses, so a row scores the same here as in batch scoring and through MLflow's pyfunc.
- ``GET /health``: the live version, since when, what was checked, the last refusal.
- ``GET /docs``: the OpenAPI page (``/openapi.json`` the schema).

Bad requests get a 4xx whose ``detail`` names the column or value (never a stack trace):
400 empty body, bad JSON or CSV; 413 too many rows or too large a body; 415 another content
type; 422 a missing column or text in a numeric column. A category the model never saw is
scored like a missing one and counted in ``unseen_categories``.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
import pandas as pd
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from churnml.schema import PASSTHROUGH_COLUMNS, TEXT_COLUMNS, DataValidationError, to_features
from churnml.scoring import predict_churn
from serving.limits import DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_ROWS
from serving.live import AliasFollower, LiveModel, Served

logger = logging.getLogger("sweepflow.serve")


class RequestRefused(Exception):
    """A request we answer with a 4xx and a one-line ``detail``."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


class Prediction(BaseModel):
    """The answer to ``POST /predict``."""

    model_name: str
    model_version: str = Field(description="The registry version that scored every row.")
    rows: int
    churn_probability: list[float] = Field(description="P(churn), one per row, in input order.")
    unseen_categories: dict[str, int] = Field(
        description="Rows per column whose category the model never saw (scored as missing)."
    )


class RefusalOut(BaseModel):
    version: str
    reason: str
    at: str


class Health(BaseModel):
    """The answer to ``GET /health``."""

    status: str
    model_name: str
    following: str | None = Field(description="The alias followed; null for a fixed version.")
    live_version: str
    since: str = Field(description="UTC time this version started answering.")
    sha256: str
    checks: str
    poll_seconds: float | None
    last_poll: str | None
    last_poll_error: str | None
    last_refusal: RefusalOut | None


class Problem(BaseModel):
    detail: str


_EXAMPLE = [
    {
        "CreditScore": 619,
        "Geography": "France",
        "Gender": "Female",
        "Age": 42,
        "Tenure": 2,
        "Balance": 0.0,
        "NumOfProducts": 1,
        "HasCrCard": 1,
        "IsActiveMember": 1,
        "EstimatedSalary": 101348.88,
    }
]
_PREDICT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "oneOf": [
                        {"type": "array", "items": {"type": "object"}},
                        {
                            "type": "object",
                            "properties": {
                                "records": {"type": "array", "items": {"type": "object"}}
                            },
                        },
                    ]
                },
                "example": _EXAMPLE,
            },
            "text/csv": {
                "schema": {"type": "string"},
                "example": "CreditScore,Geography,Gender,Age,Tenure,Balance,NumOfProducts,"
                "HasCrCard,IsActiveMember,EstimatedSalary\n619,France,Female,42,2,0,1,1,1,101348.88\n",
            },
        },
    }
}
_ERRORS = {
    code: {"model": Problem, "description": text}
    for code, text in {
        400: "Empty body, or not valid JSON/CSV.",
        413: "Too many rows, or too large a body.",
        415: "Neither JSON nor CSV.",
        422: "A missing column, or text in a numeric column (the detail names it).",
    }.items()
}


def create_app(
    live: LiveModel,
    *,
    follower: AliasFollower | None = None,
    max_rows: int = DEFAULT_MAX_ROWS,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> FastAPI:
    """The service over ``live``; ``follower`` (if any) runs while the app does."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if follower is not None:
            follower.start()
        try:
            yield
        finally:
            if follower is not None:
                follower.stop()

    app = FastAPI(
        title="sweepflow serve",
        summary="Churn probabilities from the registered model version an alias points at.",
        version="1",
        lifespan=lifespan,
    )

    @app.exception_handler(RequestRefused)
    async def refused(_: Request, error: RequestRefused) -> JSONResponse:
        return JSONResponse({"detail": error.detail}, status_code=error.status)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        logger.exception("internal error on %s %s", request.method, request.url.path)
        return JSONResponse(
            {"detail": f"internal error ({type(error).__name__}); see the server log"},
            status_code=500,
        )

    @app.post(
        "/predict",
        summary="Churn probability of each row",
        openapi_extra=_PREDICT_BODY,
        responses={200: {"model": Prediction}, **_ERRORS},
    )
    async def predict(request: Request) -> Response:
        served = live.served  # this request scores with this version to the end
        body = await read_body(request, max_body_bytes)
        kind = request.headers.get("content-type", "application/json").split(";")[0].strip()
        frame, line_offset = parse_rows(body, kind.lower(), max_rows)
        result = await run_in_threadpool(score, served, frame, line_offset)
        return Response(json.dumps(result), media_type="application/json")

    @app.get("/health", summary="The live version and the last refusal", response_model=Health)
    async def health() -> dict[str, Any]:
        served = live.served
        refusal = live.last_refusal
        return {
            "status": "ok",
            "model_name": served.name,
            "following": follower.alias if follower else None,
            "live_version": served.version,
            "since": served.since,
            "sha256": served.sha256,
            "checks": served.checks,
            "poll_seconds": follower.poll_seconds if follower else None,
            "last_poll": live.last_poll,
            "last_poll_error": live.last_poll_error,
            "last_refusal": refusal.__dict__ if refusal else None,
        }

    return app


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused (413) as soon as it is known to exceed ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise RequestRefused(
            413, f"body of {int(declared):,} bytes is over the limit of {limit:,} bytes"
        )
    parts, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestRefused(413, f"body is over the limit of {limit:,} bytes")
        parts.append(chunk)
    return b"".join(parts)


def parse_rows(body: bytes, content_type: str, max_rows: int) -> tuple[pd.DataFrame, int | None]:
    """Raw rows of a JSON or CSV body, and the offset from data row to line (CSV only).

    Raises:
        RequestRefused: The body is empty, unparsable, too long, or of another content type.
    """
    if not body.strip():
        raise RequestRefused(
            400, "empty body: send a JSON array of records or a CSV with a header row"
        )
    if content_type in ("application/json", "text/json", ""):
        frame, line_offset = _json_rows(body), None
    elif content_type in ("text/csv", "application/csv"):
        frame, line_offset = _csv_rows(body), 1
    else:
        raise RequestRefused(
            415, f"content type {content_type!r} is not served; use application/json or text/csv"
        )
    if len(frame) == 0:
        raise RequestRefused(400, "no rows to score: the body holds a header or [] only")
    if len(frame) > max_rows:
        raise RequestRefused(
            413, f"{len(frame):,} rows is over the limit of {max_rows:,} per request; split it"
        )
    return frame, line_offset


def _json_rows(body: bytes) -> pd.DataFrame:
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise RequestRefused(400, f"body is not valid JSON: {error}") from None
    if isinstance(data, dict):
        found = [key for key in ("records", "dataframe_records") if key in data]
        if not found:
            raise RequestRefused(400, 'JSON body must be a list of records or {"records": [...]}')
        data = data[found[0]]
    if not isinstance(data, list):
        raise RequestRefused(400, "JSON records must be a list of objects")
    for number, record in enumerate(data, start=1):
        if not isinstance(record, dict):
            raise RequestRefused(
                422, f"record {number} is {type(record).__name__}, not an object of columns"
            )
    return pd.DataFrame(data) if data else pd.DataFrame()


def _csv_rows(body: bytes) -> pd.DataFrame:
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise RequestRefused(400, "CSV body is not UTF-8 text") from None
    dtypes = {name: object for name in (*TEXT_COLUMNS, *PASSTHROUGH_COLUMNS)}
    try:
        return pd.read_csv(io.StringIO(text), dtype=dtypes, skip_blank_lines=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as error:
        message = " ".join(str(error).split())
        raise RequestRefused(400, f"body is not valid CSV: {message}") from None


def score(served: Served, frame: pd.DataFrame, line_offset: int | None) -> dict[str, Any]:
    """Clean and score rows with one served version (runs in a worker thread).

    Raises:
        RequestRefused: (422) a missing feature column or a bad value, named.
    """
    try:
        features = to_features(frame, source="request body", line_offset=line_offset)
    except DataValidationError as error:
        raise RequestRefused(422, str(error)) from None
    probabilities = predict_churn(served.model, features)
    unseen = {}
    for name, known in served.categories.items():
        values = features[name]
        count = int((values.notna() & ~values.isin(known)).sum())
        if count:
            unseen[name] = count
    return {
        "model_name": served.name,
        "model_version": served.version,
        "rows": len(features),
        "churn_probability": np.asarray(probabilities, dtype=float).tolist(),
        "unseen_categories": unseen,
    }
