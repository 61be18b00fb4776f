"""schemathesis hooks of scripts/api-fuzz.sh (loaded with SCHEMATHESIS_HOOKS=scripts.api_fuzz_hooks).

schemathesis 3.39 has no serializer for `multipart/related`, the request body of STOW-RS
(`POST /dicomweb/studies`, `POST /dicomweb/studies/{study}`, documented as
`multipart/related; type="application/dicom"`): without one it cannot generate a single request
for those operations. This module registers one that sends the generated value as the one
`application/dicom` part of a well-formed multipart/related body, and a `before_call` hook that
sets the matching Content-Type (with `type` and `boundary`): schemathesis itself would send the bare
registered media type, which no multipart parser can split, since a serializer cannot replace
the Content-Type header schemathesis has already set.

It also keeps schemathesis's negative_data_rejection check to what reaches the server. In negative
mode schemathesis negates the *generated values* (a JSON null, a list, a string where an integer is
documented...) and then expects a 4xx; but some negated values are valid once on the wire, where the
server cannot tell them from positive data:
  - raw-bytes bodies (`multipart/related`, the correction's `application/octet-stream`): their schema
    is a JSON one (`Vec<u8>` is documented as an array of integers), but "negated" values are sent as
    bytes like any others (STOW-RS rightly answers 409 with a FailedSOPSequence for unreadable parts);
  - query values that requests serializes to valid ones or drops (a list `[5]` is sent as `limit=5`, an
    empty list or dict not at all), next to additional parameters, which the server ignores as
    schemathesis itself allows.
So before each negative call the hook rebuilds the request as it will be sent and checks every path
and query parameter the operation documents against its schema, from the wire strings (an integer
must be a canonical decimal within its format's range). When nothing that reaches the server is
invalid (and the body is not a negated JSON body), the case is marked positive: every other check
(server errors, status codes, content types, headers, response schemas) still runs on it. A case
with a value that is invalid on the wire (`/v1/review/items/null`, `?limit=false`, a 2^63 id) stays
negative and must be rejected with a documented 4xx.

And it points some generated path parameters at the data scripts/api-fuzz.sh makes before the run
(the two samples: studies, jobs and review items 1 and 2, and their viewer objects), so the success
responses of `/v1/studies/{id}`, `/v1/review/items/{id}`... are checked too: random int64 ids
practically never exist. Integer ids are replaced with 1 or 2 in some cases, object names with the
documented ones; invalid values are left alone.

Everything is deterministic (a fixed boundary; hypothesis draws the substitutions), so a seeded run
sends the same requests every time.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import jsonschema
import requests
import schemathesis
from hypothesis import strategies as st
from requests.structures import CaseInsensitiveDict
from schemathesis import DataGenerationMethod
from schemathesis.serializers import Binary

MEDIA_TYPE = "multipart/related"
# Request bodies that travel as raw bytes: no generated value is invalid on the wire.
RAW_BYTES_MEDIA_TYPES = (MEDIA_TYPE, "application/octet-stream")
# Fixed, so runs are reproducible; long enough that generated payloads never contain it.
BOUNDARY = "neurobatch-api-fuzz-7f3c9a1e5d2b8046"
CONTENT_TYPE = f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'
# What exists when the run starts (scripts/api-fuzz.sh): studies, jobs and review items 1 and 2, and
# the viewer's objects of a review item (the `name` parameter's documented values).
EXISTING_IDS = (1, 2)
OBJECT_NAMES = ("image", "mask", "entropy", "mutual_information", "correction")


def _part_bytes(value: Any) -> bytes:
    """The generated value as the bytes of one part: bytes as they are, a list of byte values
    (how `Vec<u8>` is documented) as those bytes, anything else (negative data) as its JSON."""
    if isinstance(value, Binary):
        return value.data
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8", errors="surrogatepass")
    if isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return bytes(v % 256 for v in value)
    return json.dumps(value, ensure_ascii=False, default=str).encode("utf-8", errors="surrogatepass")


def related_body(value: Any) -> bytes:
    """A multipart/related body (RFC 2387) with the generated value as its one application/dicom part."""
    data = _part_bytes(value)
    assert BOUNDARY.encode() not in data, "generated payload contains the multipart boundary"
    return b"".join(
        [
            f"--{BOUNDARY}\r\n".encode(),
            b"Content-Type: application/dicom\r\n\r\n",
            data,
            f"\r\n--{BOUNDARY}--\r\n".encode(),
        ]
    )


def _essence(media_type: str | None) -> str:
    return (media_type or "").split(";", 1)[0].strip().lower()


_CANONICAL_INTEGER = re.compile(r"-?(0|[1-9][0-9]*)")
_INTEGER_BITS = {"int32": 31, "int64": 63}


def _valid_on_the_wire(parameter: Any, values: list[str]) -> bool:
    """Whether the wire strings of one documented path or query parameter are valid for its schema.
    Conservative: anything this does not understand counts as invalid (the case stays negative)."""
    if not values:
        return not parameter.is_required
    schema = parameter.definition.get("schema")
    if len(values) > 1 or not isinstance(schema, dict) or "$ref" in json.dumps(schema):
        return False
    text, kind, fmt = values[0], schema.get("type"), schema.get("format")
    if kind == "integer":
        if not _CANONICAL_INTEGER.fullmatch(text) or (fmt is not None and fmt not in _INTEGER_BITS):
            return False
        value: Any = int(text)
        bits = _INTEGER_BITS.get(fmt)
        if bits is not None and not -(2**bits) <= value < 2**bits:
            return False
    elif kind == "string" and fmt is None:
        value = text
    else:
        return False
    return jsonschema.Draft202012Validator(schema).is_valid(value)


def _wire_parameters(case: Any) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """The path and query parameters of the request as it will be sent: name -> decoded strings."""
    base_url = case.get_full_base_url()
    kwargs = case.as_transport_kwargs(base_url=base_url)
    url = requests.Request(method=kwargs["method"], url=kwargs["url"], params=kwargs.get("params")).prepare().url
    split = urlsplit(url)
    template = urlsplit(base_url).path.rstrip("/") + case.operation.path
    names = re.findall(r"\{([^}]+)\}", template)
    pattern = "([^/]*)".join(re.escape(piece) for piece in re.split(r"\{[^}]+\}", template))
    match = re.fullmatch(pattern, split.path)
    if match is None:
        raise ValueError(f"{split.path} does not match {template}")
    path = {name: [unquote(value)] for name, value in zip(names, match.groups())}
    query: dict[str, list[str]] = {}
    for name, value in parse_qsl(split.query, keep_blank_values=True):
        query.setdefault(name, []).append(value)
    return path, query


def _negated_on_the_wire(case: Any) -> bool:
    """Whether anything the server receives is invalid for the schema (see the module's docstring)."""
    meta, operation = case.meta, case.operation
    negative = DataGenerationMethod.negative
    if meta is None:
        return True
    if meta.body == negative and _essence(case.media_type) not in RAW_BYTES_MEDIA_TYPES:
        return True
    if (meta.headers == negative and len(operation.headers) > 0) or (
        meta.cookies == negative and len(operation.cookies) > 0
    ):
        return True
    if negative not in (meta.path_parameters, meta.query):
        return False
    try:
        path, query = _wire_parameters(case)
    except Exception:  # not understood: leave the case negative
        return True
    return not all(_valid_on_the_wire(p, path.get(p.name, [])) for p in operation.path_parameters) or not all(
        _valid_on_the_wire(p, query.get(p.name, [])) for p in operation.query
    )


@schemathesis.serializer(MEDIA_TYPE)
class MultipartRelatedSerializer:
    def as_requests(self, context: Any, value: Any) -> dict[str, Any]:
        return {"data": related_body(value), "headers": {"Content-Type": CONTENT_TYPE}}

    def as_werkzeug(self, context: Any, value: Any) -> dict[str, Any]:
        return {"data": related_body(value), "headers": {"Content-Type": CONTENT_TYPE}}


@schemathesis.hook
def before_call(context: Any, case: Any) -> None:
    """Give multipart/related requests their full Content-Type (type and boundary), kept in the case so
    schemathesis's reproduction commands show the header that was sent; and mark a negative case
    whose negated values do not reach the server as positive (see the module's docstring)."""
    if _essence(case.media_type) == MEDIA_TYPE:
        # A CaseInsensitiveDict, as schemathesis makes them: it looks for "content-type" in a copy
        # of it before it sets its own.
        headers = CaseInsensitiveDict(case.headers or {})
        headers.setdefault("Content-Type", CONTENT_TYPE)
        case.headers = headers
    if case.data_generation_method == DataGenerationMethod.negative and not _negated_on_the_wire(case):
        case.data_generation_method = DataGenerationMethod.positive


def _point_at_data(drawn: tuple[Any, int | None, str | None]) -> Any:
    parameters, existing_id, object_name = drawn
    if not isinstance(parameters, dict):
        return parameters
    parameters = dict(parameters)
    current = parameters.get("id")
    if existing_id is not None and isinstance(current, int) and not isinstance(current, bool):
        parameters["id"] = existing_id
    if object_name is not None and isinstance(parameters.get("name"), str):
        parameters["name"] = object_name
    return parameters


@schemathesis.hook
def before_generate_path_parameters(context: Any, strategy: Any) -> Any:
    """Some valid ids and object names replaced with ones that exist (see the module's docstring)."""
    return st.tuples(
        strategy,
        st.sampled_from((None, *EXISTING_IDS)),
        st.sampled_from((None, *OBJECT_NAMES)),
    ).map(_point_at_data)


@schemathesis.hook
def after_call(context: Any, case: Any, response: Any) -> None:
    """One line per request to $API_FUZZ_CALL_LOG when it is set (operation, status, data kind, URL,
    and the start of the body of an error answer): the request counts of the run's summary, and what
    to grep when a failure needs context (a cassette would also hold every downloaded NIfTI)."""
    path = os.environ.get("API_FUZZ_CALL_LOG")
    if not path:
        return
    kind = case.data_generation_method.name if case.data_generation_method else "explicit"
    url = getattr(getattr(response, "request", None), "url", "") or ""
    detail = ""
    if response.status_code >= 400:
        detail = response.content[:160].decode("utf-8", errors="replace")
    fields = [case.operation.verbose_name, str(response.status_code), kind, url[:300], detail]
    with open(path, "a", encoding="utf-8") as log:
        log.write("\t".join(" ".join(f.split()) for f in fields) + "\n")
