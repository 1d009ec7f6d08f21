"""
Checks every JSON answer the integration suite gets against the schema
docs/openapi.yaml gives for its route, method and status (issue 14). The
suite's HTTP client (crush.http_request) reports each answer here; the
mismatches are collected and test_zz_openapi.py fails on any.
"""

import json
import re
from pathlib import Path

import yaml
from jsonschema import Draft202012Validator
from jsonschema.validators import RefResolver

DOC = Path(__file__).resolve().parents[2] / "docs" / "openapi.yaml"

_routes = None  # [(regex, path template, {method: operation})]
_resolver = None
MISMATCHES = []  # (method, path, status, error)
CHECKED = [0]


def _load():
    global _routes, _resolver
    doc = yaml.safe_load(DOC.read_text())
    _resolver = RefResolver.from_schema(doc)
    routes = []
    for tmpl, ops in doc["paths"].items():
        # {path} is the catch-all of routed requests: any rest of the path.
        rx = re.escape(tmpl).replace(r"\{path\}", ".+")
        rx = re.sub(r"\\\{[a-z_]+\\\}", "[^/]+", rx)
        routes.append((re.compile("^" + rx + "$"), tmpl, ops))
    # The most specific template first: fewer parameters, longer literal.
    routes.sort(key=lambda r: (r[1].count("{path}"), r[1].count("{"), -len(r[1])))
    _routes = routes


def _schema(method, path, status):
    if _routes is None:
        _load()
    for rx, tmpl, ops in _routes:
        if rx.match(path):
            op = ops.get(method.lower())
            if op is None:
                return None
            resp = op.get("responses", {})
            r = resp.get(str(status)) or resp.get(f"{str(status)[0]}XX") or resp.get("default")
            if r is None:
                return None
            if "$ref" in r:
                _, r = _resolver.resolve(r["$ref"])
            content = r.get("content", {}).get("application/json")
            return content.get("schema") if content else None
    return None


def check(method, path, status, headers, body):
    """One answer: checked when it is JSON and the document has a schema
    for it (routes the worker answers are checked where documented)."""
    if not headers.get("content-type", "").startswith("application/json") or not body:
        return
    try:
        value = json.loads(body)
    except ValueError as e:
        MISMATCHES.append((method, path, status, f"not JSON: {e}"))
        return
    schema = _schema(method, path.split("?", 1)[0], status)
    if schema is None:
        return
    CHECKED[0] += 1
    errors = sorted(Draft202012Validator(schema, resolver=_resolver).iter_errors(value), key=str)
    if errors:
        e = errors[0]
        MISMATCHES.append((method, path.split("?", 1)[0], status,
                           f"{e.message} at {'/'.join(map(str, e.absolute_path))}"))
