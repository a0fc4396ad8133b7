"""Reading a `POST /v1/predict` body with bounded work, in short steps on the event loop.

FastAPI would parse and validate a body param on the replica's event loop before the route
runs, all of it in one step however many rows it holds: a 1 MiB body of 6,000 invalid rows
holds the loop for 1.7 s (and answers 11 MB of errors), stalling every cached GET meanwhile.
Here, instead:

* the row count is checked right after JSON parsing, before any row is validated;
* an object with more keys than its model has fields is refused from its unknown keys, so
  the work per row is bounded by the model's fields;
* rows are validated `ROWS_PER_SLICE` at a time, yielding to the loop between slices;
* at most `MAX_ERRORS` errors come back, echoing only small inputs.

On the loop rather than in a worker thread: validation holds the GIL, so a busy worker
thread makes every step of the loop wait for it (Python's 5 ms switch interval), which costs
cached GETs more than short slices do (median 96 ms against 12 ms in
`test_the_largest_bodies_do_not_hold_up_cached_gets`). The one long step left is `json.loads`
of the body (about 10 ms for 1 MiB).

The answers keep FastAPI's shapes: 422 with `detail` a list of errors whose `loc` starts with
`body`, 400 for a body that is not text. `predict_body_openapi()` puts the request model into
the OpenAPI document: the route takes the raw request, so FastAPI cannot derive it.
"""

from __future__ import annotations

import asyncio
import email.message
import json
import math
from itertools import islice
from typing import Any

from fastapi import HTTPException, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

from cryptopred_serving.backend import ClientError
from cryptopred_serving.schemas import IndicatorRowIn, PredictRequest

ROWS_PER_SLICE = 100
MAX_ERRORS = 10


def _is_json(content_type: str | None) -> bool:
    """Whether a Content-Type is JSON (`application/json` or `application/*+json`), as FastAPI
    decides it: other types are not parsed, so a form cannot post JSON across sites."""
    if not content_type:
        return False
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json")
    )


def parse_json(body: bytes, content_type: str | None) -> Any:
    """The JSON value of a request body (the raw bytes when it is not JSON: validation then
    refuses them, as FastAPI does); 422 when empty or malformed, 400 when not text."""
    if not body:
        missing: dict[str, Any] = {"type": "missing", "loc": ("body",), "msg": "Field required"}
        raise RequestValidationError([missing | {"input": None}])
    if not _is_json(content_type):
        return body
    try:
        return json.loads(body)
    except json.JSONDecodeError as exc:
        error: dict[str, Any] = {
            "type": "json_invalid",
            "loc": ("body", exc.pos),
            "msg": "JSON decode error",
            "input": {},
            "ctx": {"error": exc.msg},
        }
        raise RequestValidationError([error]) from None
    except (ValueError, RecursionError):  # not UTF-8/16/32, or nested too deep
        raise HTTPException(400, "There was an error parsing the body") from None


def _check_keys(value: Any, model: type[BaseModel], loc: tuple[str | int, ...]) -> None:
    """422 when `value` is an object with more keys than `model` has fields: the unknown ones
    (the first `MAX_ERRORS`), found without validating one error per key."""
    if isinstance(value, dict) and len(value) > len(model.model_fields):
        unknown = islice((k for k in value if k not in model.model_fields), MAX_ERRORS)
        msg = "Extra inputs are not permitted"
        raise RequestValidationError(
            [{"type": "extra_forbidden", "loc": (*loc, k), "msg": msg} for k in unknown]
        )


def _small(value: Any) -> bool:
    """Whether an error may echo `value`: short, and JSON (no NaN or infinity)."""
    if isinstance(value, float):
        return math.isfinite(value)
    return (
        value is None
        or isinstance(value, bool | int)
        or (isinstance(value, str) and len(value) <= 200)
    )


def _errors(exc: ValidationError, loc: tuple[str | int, ...]) -> list[dict[str, Any]]:
    """Pydantic's errors under `loc`, the first `MAX_ERRORS`, echoing only small inputs."""
    return [
        {k: v for k, v in e.items() if k != "input" or _small(v)} | {"loc": (*loc, *e["loc"])}
        for e in exc.errors(include_url=False)[:MAX_ERRORS]
    ]


async def validate_predict(data: Any, max_rows: int) -> PredictRequest:
    """`data` (a parsed body) as a PredictRequest, 422 naming the fields otherwise.

    The rows are validated `ROWS_PER_SLICE` at a time, yielding to the event loop between
    slices; there are at most `max_rows` of them, else 422 on `rows` before any is looked at.
    422 and not 413: the body is within the byte cap and well-formed, the value of one field
    is out of range, so it is answered like every other invalid field (413 is the body cap's).
    """
    _check_keys(data, PredictRequest, ("body",))
    rows = data.get("rows") if isinstance(data, dict) else None
    if not isinstance(rows, list):
        try:
            return PredictRequest.model_validate(data)
        except ValidationError as exc:
            raise RequestValidationError(_errors(exc, ("body",))) from None
    if len(rows) > max_rows:
        raise ClientError(
            422,
            f"at most {max_rows} rows per request (CRYPTOPRED_MAX_ROWS_PER_REQUEST), "
            f"got {len(rows)}",
            ("body", "rows"),
        )
    try:
        head = PredictRequest.model_validate({**data, "rows": None})
    except ValidationError as exc:
        raise RequestValidationError(_errors(exc, ("body",))) from None
    valid: list[IndicatorRowIn] = []
    errors: list[dict[str, Any]] = []
    for first in range(0, len(rows), ROWS_PER_SLICE):
        if first:
            await asyncio.sleep(0)  # let the loop answer others between slices
        for i, row in enumerate(rows[first : first + ROWS_PER_SLICE], first):
            try:
                _check_keys(row, IndicatorRowIn, ("body", "rows", i))
                valid.append(IndicatorRowIn.model_validate(row))
            except RequestValidationError as exc:
                errors += exc.errors()
            except ValidationError as exc:
                errors += _errors(exc, ("body", "rows", i))
        if len(errors) >= MAX_ERRORS:
            break
    if errors:
        raise RequestValidationError(errors[:MAX_ERRORS])
    return head.model_copy(update={"rows": valid})


async def read_predict(request: Request, max_rows: int) -> PredictRequest:
    """The request's body read, parsed and validated as a PredictRequest (see the module)."""
    body = await request.body()
    return await validate_predict(parse_json(body, request.headers.get("content-type")), max_rows)


def _inline_refs(node: Any, defs: dict[str, Any]) -> Any:
    """`node` with every `{"$ref": "#/$defs/X"}` replaced by the definition of X."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            return _inline_refs(defs[ref.removeprefix("#/$defs/")], defs)
        return {k: _inline_refs(v, defs) for k, v in node.items()}
    if isinstance(node, list):
        return [_inline_refs(v, defs) for v in node]
    return node


def predict_body_openapi() -> dict[str, Any]:
    """The route's `openapi_extra`: `PredictRequest` as its required JSON body."""
    schema = PredictRequest.model_json_schema()
    schema = _inline_refs(schema, schema.pop("$defs", {}))
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}
