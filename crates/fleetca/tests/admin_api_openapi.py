"""Independent checks of the admin API's OpenAPI document, run by admin_api_openapi.rs in
the virtual environment that .ci/run makes (target/openapi-venv, openapi-spec-validator
from PyPI, which brings openapi-schema-validator and jsonschema).

    python admin_api_openapi.py spec SPEC.json
        Validates the document with openapi-spec-validator (OpenAPI 3.1 rules and its
        JSON Schema dialect). Prints every error; exit status 1 if any.

    python admin_api_openapi.py responses SPEC.json SAMPLES.json
        SAMPLES.json: [{"method", "template", "status", "content_type", "body"}], real
        answers of the server. Each must be documented by the operation (the status or
        "default", the media type) and its JSON body must validate against the documented
        schema (OAS 3.1 dialect, $refs resolved inside the document). Undocumented error
        statuses are reported as notes. Prints one line per finding; exit status 1 if any
        answer fails.
"""

import json
import sys

from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SPEC_URI = "urn:fleetca:openapi"


def check_spec(spec):
    try:
        validate(spec)
    except Exception as e:  # the validator's own error, shown as it is
        print(f"invalid OpenAPI document: {e}")
        return 1
    print(f"valid OpenAPI {spec.get('openapi')} document, {len(spec.get('paths', {}))} paths")
    return 0


def pointer_token(s):
    return s.replace("~", "~0").replace("/", "~1")


def operation_path(spec, template):
    """The key of `paths` for a template relative to /api/v1 (the document may name the
    paths with or without the prefix)."""
    for key in (template, "/api/v1" + template):
        if key in spec.get("paths", {}):
            return key
    return None


def check_responses(spec, samples):
    registry = Registry().with_resource(
        SPEC_URI, Resource.from_contents(spec, default_specification=DRAFT202012)
    )
    failures = 0
    for s in samples:
        what = f"{s['method']} {s['template']} -> {s['status']} {s['content_type']}"
        path = operation_path(spec, s["template"])
        if path is None:
            print(f"FAIL {what}: path not documented")
            failures += 1
            continue
        op = spec["paths"][path].get(s["method"].lower())
        if op is None:
            print(f"FAIL {what}: method not documented")
            failures += 1
            continue
        responses = op.get("responses", {})
        status = str(s["status"])
        code = next(
            (c for c in (status, status[0] + "XX", "default") if c in responses), None
        )
        if code is None:
            if s["status"] < 400:
                print(f"FAIL {what}: status not documented (documented: {sorted(responses)})")
                failures += 1
            else:
                print(f"NOTE {what}: error status not documented (documented: {sorted(responses)})")
            continue
        raw = responses[code]
        response = raw
        if "$ref" in raw:
            name = raw["$ref"].rsplit("/", 1)[-1]
            response = spec["components"]["responses"][name]
        media = s["content_type"].split(";")[0].strip()
        content = response.get("content", {})
        if media not in content:
            if s["body"] is None and not content:
                print(f"ok   {what}: no content, as documented")
                continue
            print(f"FAIL {what}: media type not documented (documented: {sorted(content)})")
            failures += 1
            continue
        if "schema" not in content[media]:
            print(f"FAIL {what}: no schema documented")
            failures += 1
            continue
        if s["body"] is None:
            print(f"ok   {what}: not JSON, media type documented")
            continue
        pointer = "/".join(
            [
                "#",
                "paths",
                pointer_token(path),
                s["method"].lower(),
                "responses",
                pointer_token(code),
                "content",
                pointer_token(media),
                "schema",
            ]
        )
        if "$ref" in raw:
            pointer = "/".join(
                ["#", "components", "responses", pointer_token(name), "content",
                 pointer_token(media), "schema"]
            )
        validator = OAS31Validator({"$ref": SPEC_URI + pointer}, registry=registry)
        errors = sorted(validator.iter_errors(s["body"]), key=lambda e: list(e.path))
        if errors:
            failures += 1
            for e in errors[:5]:
                at = "/" + "/".join(str(p) for p in e.absolute_path)
                print(f"FAIL {what}: at {at}: {e.message}")
        else:
            print(f"ok   {what}")
    print(f"{len(samples)} answers checked, {failures} failed")
    return 1 if failures else 0


def main(argv):
    if len(argv) >= 3 and argv[1] == "spec":
        with open(argv[2]) as f:
            return check_spec(json.load(f))
    if len(argv) >= 4 and argv[1] == "responses":
        with open(argv[2]) as f:
            spec = json.load(f)
        with open(argv[3]) as f:
            samples = json.load(f)
        return check_responses(spec, samples)
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
