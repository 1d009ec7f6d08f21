"""
Runs last (file order): every JSON answer the suite got was checked
against docs/openapi.yaml's schema for its route, method and status
(crush.http_request reports each to openapi_check); none may differ.
"""

import openapi_check
import pytest


def test_every_json_answer_of_the_suite_matches_the_openapi_document():
    if openapi_check.CHECKED[0] == 0:
        pytest.skip("no answer was checked: run it after the rest of the suite")
    print(f"{openapi_check.CHECKED[0]} JSON answers checked against docs/openapi.yaml")
    ms = openapi_check.MISMATCHES
    assert not ms, f"{len(ms)} of {openapi_check.CHECKED[0]} answers differ from docs/openapi.yaml; first ones:\n" + \
        "\n".join(f"{m} {p} {s}: {e}" for m, p, s, e in ms[:15])
