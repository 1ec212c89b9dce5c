"""The JSON API described as OpenAPI 3.0 (served at ``/api/openapi.json``).

The tests validate this document with openapi-spec-validator and fuzz the API from it with
schemathesis, so it cannot drift from what the routes do.
"""

from __future__ import annotations

from search.limits import MAX_ID, MAX_K
from search.query import MAX_REPEATED, SORTS
from webui.service import MAX_OFFSET

NULLABLE_STRING = {"type": "string", "nullable": True}
NULLABLE_INT = {"type": "integer", "nullable": True}
ERROR = {"$ref": "#/components/schemas/Error"}


def _json(schema: dict, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict:
    return _json(ERROR, description)


# The search fields, shared by GET (query string) and POST (form or query string).
SEARCH_FIELDS: dict[str, dict] = {
    "q": {"type": "string", "description": "Text: terms 'a + b - c', each may be "
          "weighted 'W:text' (default weight 1)."},
    "k": {"type": "integer", "minimum": 1, "maximum": MAX_K, "description": "Results per page."},
    "offset": {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET},
    "not": {"type": "array", "items": {"type": "string"}, "maxItems": MAX_REPEATED,
            "description": "Texts to push matches away from ('W:text' weights them)."},
    "after": {"type": "string", "description": "Taken on this date or later (YYYY-MM-DD or "
              "ISO date-time; EXIF time, else file time; local time)."},
    "before": {"type": "string", "description": "Taken before this date (exclusive)."},
    "folder": {"type": "array", "items": {"type": "string"}, "maxItems": MAX_REPEATED,
               "description": "Only photos under one of these folders; a folder with "
                              "no indexed photo under it is a 400 naming it."},
    "camera": {"type": "string", "description": "A case-insensitive part of the camera name."},
    "text": {"type": "string", "description": "Words to find in the text read from photos "
             "(OCR): alone, or beside q. Alone, a result's score is the text relevance."},
    "place": {"type": "array", "items": {"type": "string"}, "maxItems": MAX_REPEATED,
              "description": "Only photos taken in one of these cities, regions or "
              "countries (EXIF GPS; case and accents ignored)."},
    "near": {"type": "string", "description": "LAT,LON[,KM]: only photos taken within KM "
             "(default 5) of this position."},
    "tag": {"type": "array", "items": {"type": "string"}, "maxItems": MAX_REPEATED,
            "description": "Only photos with every one of these tags (pixseek tag)."},
    "not_tag": {"type": "array", "items": {"type": "string"}, "maxItems": MAX_REPEATED,
                "description": "Only photos with none of these tags."},
    "min_score": {"type": "number", "minimum": -1, "maximum": 1},
    "similar": {"type": "array", "items": {"type": "string"}, "maxItems": MAX_REPEATED,
                "description": "Photos like these library photos: an id or an indexed path "
                "('W:id' weights it). The photos themselves are left out."},
    "sort": {"type": "string", "enum": list(SORTS),
             "description": "Date orders apply among the strong matches; weak ones follow."},
    "exact": {"type": "string", "enum": ["0", "1", "true", "false", "yes", "no"],
              "description": "1: bypass the approximate index (to check its recall)."},
    "collapse": {"type": "string", "enum": ["0", "1", "true", "false", "yes", "no"],
                 "description": "0: every near-duplicate as its own result. By default "
                 "(1) a group of near-duplicates is one result listing the others in "
                 "'duplicates'."},
    "parse": {"type": "string", "enum": ["0", "1", "true", "false", "yes", "no"],
              "description": "0: search q as typed. By default (1) dates, the library's "
              "places and its cameras in q are read as filters (answered in 'understood'); "
              "explicit after, before, place and camera win."},
}

RESULT = {
    "type": "object",
    "required": ["id", "path", "score", "paths", "strong", "image_url", "thumb_url"],
    "properties": {
        "id": {"type": "integer"},
        "path": {"type": "string"},
        "score": {"type": "number", "description": "Cosine similarity to the query."},
        "paths": {"type": "array", "items": {"type": "string"}},
        "width": NULLABLE_INT,
        "height": NULLABLE_INT,
        "taken_at": NULLABLE_STRING,
        "camera": NULLABLE_STRING,
        "strong": {"type": "boolean",
                   "description": "Above the model's relevance cut: a strong match."},
        "date": NULLABLE_STRING,
        "image_url": {"type": "string"},
        "thumb_url": {"type": "string"},
        "thumb_url_2x": {"type": "string"},
        "details_url": {"type": "string"},
        "duplicates": {"type": "array", "items": {"type": "integer"},
                       "description": "Ids of the near-duplicates folded into this result "
                       "(empty when none, or with collapse=0)."},
        "text": {**NULLABLE_STRING, "description": "A snippet of the text read from the "
                 "photo (OCR): around the query's words, else its start."},
        "matched": {"type": "array", "items": {"type": "string", "enum": ["image", "text"]},
                    "description": "How it matched: its pixels (image) and/or its text."},
    },
}

ANSWER = {
    "type": "object",
    "required": ["query", "results", "offset", "next_offset"],
    "properties": {
        "query": NULLABLE_STRING,
        "example": {"type": "string"},
        "results": {"type": "array", "items": {"$ref": "#/components/schemas/Result"}},
        "offset": {"type": "integer"},
        "next_offset": NULLABLE_INT,
        "message": {"type": "string", "description": "Why there are no results, if known."},
        "understood": {
            "type": "object", "nullable": True,
            "description": "What was read from q: the words left (empty when q was all "
            "dates and places: its words as typed then rank the photos), dates (after "
            "inclusive, before exclusive), places and cameras. Null without q or with "
            "parse=0.",
            "required": ["text", "after", "before", "places", "cameras"],
            "properties": {"text": {"type": "string"}, "after": NULLABLE_STRING,
                           "before": NULLABLE_STRING,
                           "places": {"type": "array", "items": {"type": "string"}},
                           "cameras": {"type": "array", "items": {"type": "string"}}}},
    },
}

PHOTO = {
    "type": "object",
    "required": ["id", "path", "paths", "size", "width", "height", "date_source"],
    "properties": {
        "id": {"type": "integer"},
        "path": {"type": "string"},
        "paths": {"type": "array", "items": {"type": "string"}},
        "size": {"type": "integer"},
        "width": NULLABLE_INT,
        "height": NULLABLE_INT,
        "format": NULLABLE_STRING,
        "taken_at": NULLABLE_STRING,
        "camera": NULLABLE_STRING,
        "date": NULLABLE_STRING,
        "date_source": {"type": "string", "enum": ["exif", "file"]},
        "text": NULLABLE_STRING,
        "place": {"type": "object", "nullable": True, "properties": {
            "latitude": {"type": "number"}, "longitude": {"type": "number"},
            "altitude": {"type": "number", "nullable": True}, "city": NULLABLE_STRING,
            "area": NULLABLE_STRING, "region": NULLABLE_STRING, "country": NULLABLE_STRING,
            "country_code": NULLABLE_STRING}},
        "image_url": {"type": "string"},
        "thumb_url": {"type": "string"},
        "thumb_url_2x": {"type": "string"},
    },
}

FACETS = {
    "type": "object",
    "required": ["folders", "cameras", "dates"],
    "properties": {
        "folders": {"type": "array", "items": {
            "type": "object", "required": ["path", "count"],
            "properties": {"path": {"type": "string"}, "count": {"type": "integer"}}}},
        "cameras": {"type": "array", "items": {
            "type": "object", "required": ["name", "count"],
            "properties": {"name": {"type": "string"}, "count": {"type": "integer"}}}},
        "dates": {"type": "object", "properties": {
            "oldest": NULLABLE_STRING, "newest": NULLABLE_STRING}},
        "places": {"type": "object", "properties": {
            "countries": {"type": "array", "items": {
                "type": "object", "required": ["name", "count"],
                "properties": {"name": {"type": "string"}, "count": {"type": "integer"}}}},
            "cities": {"type": "array", "items": {
                "type": "object", "required": ["name", "count"],
                "properties": {"name": {"type": "string"}, "country": NULLABLE_STRING,
                               "count": {"type": "integer"}}}}}},
        "tags": {"type": "array", "description": "Tags with photos (pixseek tag).", "items": {
            "type": "object", "required": ["name", "count"],
            "properties": {"name": {"type": "string"}, "count": {"type": "integer"}}}},
    },
}


def _query_parameters() -> list[dict]:
    params = []
    for name, schema in SEARCH_FIELDS.items():
        param = {"name": name, "in": "query", "required": False, "schema": schema}
        if schema.get("type") == "array":
            param.update(style="form", explode=True)
        params.append(param)
    return params


def _search_responses() -> dict:
    return {
        "200": _json({"$ref": "#/components/schemas/SearchAnswer"}, "One page of results."),
        "400": _error("A bad field: the message names it and what is allowed."),
        "413": _error("The upload is over the size limit."),
        "503": _error("The model cannot be loaded."),
    }


def document() -> dict:
    return {
        "openapi": "3.0.3",
        "info": {"title": "pixseek", "version": "1",
                 "description": "Semantic search over your photos. Errors are "
                 "{\"error\": message}."},
        "paths": {
            "/api/search": {
                "get": {
                    "summary": "Search by text, library photos (similar) and filters.",
                    "parameters": _query_parameters(),
                    "responses": _search_responses(),
                },
                "post": {
                    "summary": "Search by an example image (plus any GET field).",
                    "requestBody": {"required": True, "content": {"multipart/form-data": {
                        "schema": {
                            "type": "object", "required": ["image"],
                            "properties": {
                                "image": {"type": "string", "format": "binary"},
                                "image_weight": {"type": "number", "minimum": 0.01,
                                                 "maximum": 100},
                                "q": SEARCH_FIELDS["q"],
                                "k": SEARCH_FIELDS["k"],
                            },
                        },
                    }}},
                    "responses": _search_responses(),
                },
            },
            "/api/photos/{id}": {
                "get": {
                    "summary": "One photo's paths and metadata.",
                    "parameters": [{"name": "id", "in": "path", "required": True,
                                    "schema": {"type": "integer", "minimum": 0,
                                               "maximum": MAX_ID}}],
                    "responses": {
                        "200": _json({"$ref": "#/components/schemas/Photo"}, "The photo."),
                        "404": _error("No indexed photo has this id."),
                    },
                },
            },
            "/api/facets": {
                "get": {
                    "summary": "The folders, cameras and date range there are to filter by.",
                    "responses": {"200": _json({"$ref": "#/components/schemas/Facets"},
                                               "What there is to filter by.")},
                },
            },
            "/api/status": {
                "get": {
                    "summary": "Counts, failures, model and index state.",
                    "responses": {"200": _json({"type": "object"}, "The library's state.")},
                },
            },
        },
        "components": {"schemas": {
            "Error": {"type": "object", "required": ["error"],
                      "properties": {"error": {"type": "string"}}},
            "Result": RESULT,
            "SearchAnswer": ANSWER,
            "Photo": PHOTO,
            "Facets": FACETS,
        }},
    }
