"""openapi_check - checks HTTP responses against docs/openapi.yaml.

    spec = Spec()                                   # docs/openapi.yaml
    spec.check("/v2/models/{name}/infer", "POST", 200, headers, body)
    session = CheckedSession(spec)                  # a requests.Session that
    session.post(url, json=...)                     # checks every response

A response passes when the document lists its status for that route and
method, its required headers are present with values their schemas allow,
its Content-Type is one the document lists for it (or absent where the
document says x-amaas-sent-without-content-type), and a JSON body (for a
binary response, the first Inference-Header-Content-Length bytes) validates
against the response's schema.  OpenAPI 3.1 schemas are JSON Schema 2020-12:
they are checked with python3-jsonschema, their $refs ('#/components/...')
resolved in the document.  A request that matches no route, or no method of
its route, is checked against the document's x-amaas-unmatched-responses.
Failures are AssertionErrors that say what differs.

    /usr/bin/python3 tests/openapi_check.py [DOC]

checks the document itself: every example of a body or a parameter
validates against its schema (redocly lint does not check those).
"""
import json
import os
import re
import sys
from urllib.parse import urlsplit

import jsonschema
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCUMENT = os.path.join(ROOT, "docs", "openapi.yaml")
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
BINARY_HEADER = "inference-header-content-length"


def _media_type(content_type):
    """'application/json' of 'Application/JSON; charset=utf-8'; '' for None."""
    return (content_type or "").split(";", 1)[0].strip().lower()


class Spec:
    """docs/openapi.yaml (or DOC), loaded once, to check responses with."""

    def __init__(self, path=DOCUMENT):
        with open(path) as f:
            self.doc = yaml.safe_load(f)
        self.routes = []  # (regex, template), literal routes before templated ones
        for template in self.doc["paths"]:
            pattern = "^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template)) + "$"
            self.routes.append((re.compile(pattern), template))
        self.routes.sort(key=lambda route: route[1].count("{"))

    # -- the document ------------------------------------------------------

    def resolve(self, node):
        """node, or what its $ref ('#/a/b') points to in the document."""
        while isinstance(node, dict) and "$ref" in node:
            ref = node["$ref"]
            assert ref.startswith("#/"), "only local $refs are resolved: %s" % ref
            node = self.doc
            for part in ref[2:].split("/"):
                node = node[part.replace("~1", "/").replace("~0", "~")]
        return node

    def match(self, path):
        """The route template of a URL path ('/v2/models/iris/infer' ->
        '/v2/models/{name}/infer'), or None when no route matches."""
        path = urlsplit(path).path
        for regex, template in self.routes:
            if regex.match(path):
                return template
        return None

    def responses(self, template, method):
        """The responses the document lists for METHOD TEMPLATE (template
        None: a route it does not have)."""
        unmatched = self.doc.get("x-amaas-unmatched-responses", {})
        if template is None:
            return unmatched["unknownRoute"]
        assert template in self.doc["paths"], "the document has no route %s" % template
        item = self.doc["paths"][template]
        if method.lower() not in item:
            return unmatched["wrongMethod"]
        return item[method.lower()]["responses"]

    def response(self, template, method, status):
        """The response object for STATUS, AssertionError if not listed."""
        responses = self.responses(template, method)
        for key in (str(status), "%dXX" % (status // 100), "default"):
            if key in responses:
                return self.resolve(responses[key])
        raise AssertionError("docs/openapi.yaml lists no status %d for %s %s (it lists %s)"
                             % (status, method.upper(), template or "(an unknown route)",
                                ", ".join(sorted(map(str, responses)))))

    def validate(self, instance, schema, what):
        """AssertionError naming `what` unless instance validates."""
        # the schema is checked as part of a root that holds the document's
        # components, so that its '#/components/...' refs resolve
        root = {"$schema": "https://json-schema.org/draft/2020-12/schema",
                "components": self.doc.get("components", {}),
                "$defs": {"checked": schema}, "$ref": "#/$defs/checked"}
        validator = jsonschema.Draft202012Validator(root)
        errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
        if errors:
            e = errors[0]
            raise AssertionError("%s does not follow docs/openapi.yaml: at %s: %s\n%s"
                                 % (what, "/".join(map(str, e.absolute_path)) or "top",
                                    e.message, json.dumps(instance)[:2000]))

    # -- responses ---------------------------------------------------------

    def check(self, template, method, status, headers, body):
        """Checks one response to METHOD on a route TEMPLATE (None: a path
        no route matches): its status, headers (a dict-like, looked up
        without regard to case) and body (bytes).  Returns the decoded
        JSON (of the JSON part), or None for another media type."""
        where = "%s %s -> %d" % (method.upper(), template or "(unknown route)", status)
        response = self.response(template, method, status)
        lower = {k.lower(): v for k, v in dict(headers).items()}
        for name, header in (response.get("headers") or {}).items():
            header = self.resolve(header)
            value = lower.get(name.lower())
            if value is None:
                assert not header.get("required"), "%s: header %s missing" % (where, name)
                continue
            schema = header.get("schema", {})
            if schema.get("type") == "integer":
                assert re.fullmatch(r"\d+", value.strip()), \
                    "%s: header %s: %r is not an integer" % (where, name, value)
                value = int(value)
            self.validate(value, schema, "%s: header %s" % (where, name))
        content = response.get("content") or {}
        if not content:
            assert not body, "%s: the document describes no body, but one came" % where
            return None
        media_type = _media_type(lower.get("content-type"))
        if not media_type:  # a body the document says comes without a type
            media_type = next((m for m, v in content.items()
                               if v.get("x-amaas-sent-without-content-type")), "")
        assert media_type in content, "%s: Content-Type %r is not one of %s" % (
            where, lower.get("content-type"), ", ".join(content))
        if BINARY_HEADER in lower:
            # the binary tensor extension: JSON first, then raw tensors
            assert media_type == "application/octet-stream", \
                "%s: binary response with Content-Type %r" % (where, media_type)
            assert "application/json" in content, \
                "%s: the document has no JSON schema for the JSON part" % where
            length = int(lower[BINARY_HEADER])
            assert length <= len(body), "%s: %s %d, body has %d bytes" % (
                where, BINARY_HEADER, length, len(body))
            body, media_type = body[:length], "application/json"
        if media_type != "application/json" and not media_type.endswith("+json"):
            return None
        try:
            value = json.loads(body)
        except ValueError as e:
            raise AssertionError("%s: body is not JSON (%s): %r" % (where, e, body[:200]))
        schema = content[media_type].get("schema")
        if schema is not None:
            self.validate(value, schema, where)
        return value

    def check_response(self, response):
        """Checks a requests.Response (method and path from its request)."""
        request = response.request
        path = urlsplit(request.url).path
        self.check(self.match(path), request.method, response.status_code, response.headers,
                   response.content)
        return response

    # -- the document's own examples -----------------------------------------

    def check_examples(self):
        """Validates every example of a media type, parameter or header
        against its schema; returns how many were checked."""
        checked = 0

        def examples(node):
            node = self.resolve(node)
            out = []
            if "example" in node:
                out.append(node["example"])
            for example in (node.get("examples") or {}).values():
                example = self.resolve(example)
                if "value" in example:
                    out.append(example["value"])
            return out

        def media(content, what):
            nonlocal checked
            for media_type, m in (content or {}).items():
                if "schema" not in m or not (media_type.endswith("json")):
                    continue
                for value in examples(m):
                    self.validate(value, m["schema"], "%s %s example" % (what, media_type))
                    checked += 1

        components = self.doc.get("components", {})
        for name, response in components.get("responses", {}).items():
            media(response.get("content"), "response " + name)
        for name, body in components.get("requestBodies", {}).items():
            media(body.get("content"), "request body " + name)
        for name, p in list(components.get("parameters", {}).items()) + \
                list(components.get("headers", {}).items()):
            for value in examples(p):
                self.validate(value, p["schema"], "%s example" % name)
                checked += 1
        for template, item in self.doc["paths"].items():
            for method in METHODS:
                if method not in item:
                    continue
                op = item[method]
                what = "%s %s" % (method.upper(), template)
                for p in op.get("parameters", []) + item.get("parameters", []):
                    p = self.resolve(p)
                    for value in examples(p):
                        self.validate(value, p["schema"], what + " parameter " + p["name"])
                        checked += 1
                if "requestBody" in op:
                    media(self.resolve(op["requestBody"]).get("content"), what + " request")
                for status, response in op["responses"].items():
                    media(self.resolve(response).get("content"), "%s %s" % (what, status))
        return checked


try:
    import requests

    class CheckedSession(requests.Session):
        """A requests.Session whose every response is checked with spec;
        base_url, if given, is put before URLs that start with '/'."""

        def __init__(self, spec, base_url=""):
            super().__init__()
            self.spec = spec
            self.base_url = base_url.rstrip("/")

        def request(self, method, url, *args, **kwargs):
            if url.startswith("/"):
                url = self.base_url + url
            kwargs.setdefault("timeout", 60)
            if self.verify is not True:
                # a session's own CA file, which requests would otherwise
                # let REQUESTS_CA_BUNDLE of the environment override
                kwargs.setdefault("verify", self.verify)
            return self.spec.check_response(super().request(method, url, *args, **kwargs))
except ImportError:  # the document's self-check needs no requests
    pass


def main(argv):
    spec = Spec(argv[1] if len(argv) > 1 else DOCUMENT)
    n = spec.check_examples()
    print("openapi_check: %d routes, %d examples follow their schemas" % (len(spec.routes), n))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
