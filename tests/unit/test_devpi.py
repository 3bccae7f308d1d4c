"""devpi's index bodies → wheelwell's (proxy/web/devpi.index_body): edits, strings, envelopes."""

from __future__ import annotations

from typing import Any

import pytest

from proxy.errors import InvalidInputError
from proxy.web.devpi import index_body

CURRENT: dict[str, Any] = {
    "name": "root/dev",
    "type": "private",
    "bases": ["root/public"],
    "volatile": True,
    "acl_upload": ["root"],
    "acl_read": [":ANONYMOUS:"],
    "mirror_whitelist": [],
}


@pytest.mark.parametrize(
    ("edits", "body"),
    [
        (["volatile=False"], {"volatile": False}),
        (["acl_upload+=bob"], {"acl_upload": ["root", "bob"]}),
        (["acl_upload+=root"], {}),  # already there: no change
        (["acl_upload-=root"], {"acl_upload": []}),
        (["bases-="], {"bases": []}),
        (["bases=root/pypi,root/public"], {"bases": "root/pypi,root/public"}),
        (["acl_upload+=a", "acl_upload+=b", "acl_upload-=root"], {"acl_upload": ["a", "b"]}),
        (["type=stage"], {}),  # devpi's word for private: no change
    ],
)
def test_edits(edits: list[str], body: dict[str, Any]) -> None:
    assert index_body(edits, CURRENT) == body


@pytest.mark.parametrize(
    ("edits", "words"),
    [
        (["acl_upload-=carol"], "doesn't have value 'carol'"),
        (["volatile+=x"], "'volatile' is not a list"),
        (["volatile=maybe"], "must be true or false"),
        (["novalue"], "'key=value'"),
        ([3], "'key=value'"),
    ],
)
def test_bad_edits(edits: list[Any], words: str) -> None:
    with pytest.raises(InvalidInputError, match=words):
        index_body(edits, CURRENT)


def test_get_sent_back_is_no_change() -> None:
    assert index_body({**CURRENT, "projects": ["x"]}, CURRENT) == {}
    envelope = {"type": "indexconfig", "result": {**CURRENT, "volatile": False}}
    assert index_body(envelope, CURRENT) == {"volatile": False}


def test_name_cannot_change() -> None:
    with pytest.raises(InvalidInputError, match="'name'"):
        index_body({"name": "root/other"}, CURRENT)


def test_strings_only_for_devpi_client() -> None:
    assert index_body({"volatile": "no"}, CURRENT) == {"volatile": "no"}  # from_api refuses it
    assert index_body({"volatile": "no"}, CURRENT, strings=True) == {"volatile": False}
    assert index_body({"type": "stage"}, None, strings=True) == {"type": "private"}


def test_a_scalar_body_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="JSON object or a list"):
        index_body("volatile", CURRENT)
