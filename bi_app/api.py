"""The JSON API under /api/v1/: one endpoint per analysis, the pages' query parameters.

Bad parameters answer 400 with a JSON body naming the parameter; a database
that cannot be reached answers 503 with the reason. The OpenAPI description is
built from the same registry the endpoints use (:data:`bi_app.service.ANALYSES`).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from typing import Any

from flask import Blueprint, Response, jsonify, request
from sqlalchemy.exc import SQLAlchemyError

from bi_app import service
from bi_app.errors import database_error_response, error_response
from bi_app.incidents import reference_for
from bi_app.jsonable import to_jsonable
from data_layer.filters import COMPARISONS, LIST_PARAMETERS, PERIODS, FilterError

log = logging.getLogger(__name__)

api = Blueprint("api", __name__, url_prefix="/api/v1")


@api.get("/")
def index() -> Response:
    """What the API offers: one endpoint per analysis, and its OpenAPI document."""
    endpoints = {f"/api/v1/{name}": spec.summary for name, spec in service.ANALYSES.items()}
    return Response(json.dumps({"endpoints": endpoints, "openapi": "/api/v1/openapi.json"}),
                    mimetype="application/json")


@api.get("/<name>")
def analysis(name: str) -> Response | tuple[Response, int]:
    """Run analysis ``name`` for the filters in the query string."""
    spec = service.ANALYSES.get(name)
    if spec is None:
        return error_response(404, "not_found", f"no endpoint {name!r}; see /api/v1/openapi.json")
    try:
        filters, parameters = service.parse_request(request.args.to_dict(flat=False), spec.parameters)
        result = service.run(name, filters, **parameters)
    except FilterError as exc:
        return error_response(exc.status, "bad_parameter" if exc.status == 400 else "forbidden", exc.message,
                              parameter=exc.parameter)
    except SQLAlchemyError as exc:
        reference = reference_for(log, f"API {name}: database error", exc)
        return database_error_response(exc, reference)
    return Response(json.dumps({"filters": dict_of_filters(filters), "currency": service.money_format().currency,
                                "data": to_jsonable(result)}),
                    mimetype="application/json")


@api.get("/openapi.json")
def openapi() -> Response:
    """The OpenAPI 3 description of this API."""
    return jsonify(openapi_document())


def dict_of_filters(filters: Any) -> dict[str, Any]:
    """The filters as the API echoes them back."""
    return to_jsonable(asdict(filters))


def openapi_document() -> dict[str, Any]:
    """OpenAPI 3.0 paths for every analysis, sharing the filter parameters."""
    filter_parameters = [
        {"name": "start", "in": "query", "schema": {"type": "string", "format": "date"},
         "description": "First order date to include (YYYY-MM-DD)."},
        {"name": "end", "in": "query", "schema": {"type": "string", "format": "date"},
         "description": "Last order date to include (YYYY-MM-DD), on or after start."},
        {"name": "period", "in": "query", "schema": {"type": "string", "enum": list(PERIODS)},
         "description": "A date preset relative to the data's last order date, instead of start and end "
                        "(month-, quarter- and year-to-date and the last 12 months are partial periods, "
                        "compared like for like)."},
        {"name": "compare", "in": "query", "schema": {"type": "string", "enum": list(COMPARISONS)},
         "description": "Which comparison the pages lead with; answers hold both."},
        *[
            {"name": name, "in": "query", "style": "form", "explode": True,
             "schema": {"type": "array", "items": {"type": "string"}},
             "description": f"Keep only these {name} values; repeat the parameter for several "
                            f"(?{name}=A&{name}=B). Values must exist in the data."}
            for name in LIST_PARAMETERS
        ],
    ]
    error = {"type": "object", "properties": {"error": {"type": "object", "properties": {
        "code": {"type": "string"}, "message": {"type": "string"}, "parameter": {"type": "string"}}}}}
    paths = {}
    for name, spec in service.ANALYSES.items():
        extra = [
            {"name": p.name, "in": "query", "description": p.description,
             "schema": {"type": "integer", "minimum": p.minimum, "maximum": p.maximum, "default": p.default}}
            for p in spec.parameters
        ]
        paths[f"/api/v1/{name}"] = {"get": {
            "operationId": name,
            "summary": spec.summary,
            "parameters": filter_parameters + extra,
            "responses": {
                "200": {"description": "The answer, with the filters it was computed for.",
                        "content": {"application/json": {"schema": {"type": "object", "properties": {
                            "filters": {"type": "object"},
                            "currency": {"type": "string", "description": "ISO 4217 code of every money figure"},
                            "data": {}}}}}},
                "400": {"description": "A query parameter is malformed, unknown or names a value not in the data.",
                        "content": {"application/json": {"schema": error}}},
                "503": {"description": "The database cannot be reached.",
                        "content": {"application/json": {"schema": error}}},
            },
        }}
    return {
        "openapi": "3.0.3",
        "info": {"title": "E-commerce BI API", "version": "1",
                 "description": "Analytics over the orders, under the same filters as the dashboard."},
        "paths": paths,
    }
