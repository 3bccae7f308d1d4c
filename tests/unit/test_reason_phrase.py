"""The reason phrase an upload refusal carries: twine shows only the status line."""

from __future__ import annotations

import pytest

from proxy.web.middleware import reason_phrase


@pytest.mark.parametrize(
    ("message", "phrase"),
    [
        ("file 'a.whl' exists", "file 'a.whl' exists"),
        ("first line\r\nInjected: header", "first line"),
        ("first\rsecond", "first"),
        ("  padded  \n", "padded"),
        ("caf\u00e9 \u2603 \x00\x7f", "caf? ? ??"),
        ("x" * 500, "x" * 197 + "..."),
        ("", ""),
    ],
)
def test_reason_phrase_is_one_safe_bounded_line(message: str, phrase: str) -> None:
    assert reason_phrase(message) == phrase
