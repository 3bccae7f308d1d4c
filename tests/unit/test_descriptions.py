"""Descriptions are uploader-controlled HTML sources: every format ends sanitized."""

from __future__ import annotations

import asyncio
import html

import pytest

from proxy.hosted.descriptions import DescriptionRenderer, render_description, sanitize

RST = """Title
=====

Some *text*.

.. raw:: html

   <script>alert(1)</script>

.. include:: /etc/passwd

`bad <javascript:alert(1)>`_
"""


@pytest.mark.parametrize(
    ("dirty", "clean"),
    [
        ("<script>alert(1)</script><p>ok</p>", "<p>ok</p>"),
        ('<img src="a.png" onerror="alert(1)">', '<img src="a.png">'),
        ('<a href="javascript:alert(1)">x</a>', '<a rel="nofollow noopener noreferrer">x</a>'),
        ('<p onclick="x()" style="color:red">p</p>', "<p>p</p>"),
        ("<iframe src='https://a.test/'></iframe>t", "t"),
    ],
)
def test_sanitize(dirty: str, clean: str) -> None:
    assert sanitize(dirty) == clean


def test_markdown_heading_kept_script_dropped() -> None:
    out = render_description("# Head\n\n<script>alert(1)</script>\n\n*em*", "text/markdown")
    assert "<h1>Head</h1>" in out
    assert "script" not in out and "alert" not in out
    assert "<em>em</em>" in out


def test_markdown_content_type_parameters_are_ignored() -> None:
    out = render_description("## H2", "text/markdown; charset=UTF-8; variant=GFM")
    assert "<h2>H2</h2>" in out


def test_rst_has_no_raw_no_include_no_javascript() -> None:
    out = render_description(RST, "text/x-rst")
    assert "Title" in out and "<em>text</em>" in out
    assert "script" not in out and "root:" not in out and "javascript" not in out


def test_rst_is_the_default_and_plain_text_is_escaped() -> None:
    assert "<em>x</em>" in render_description("*x*", "")
    assert render_description("a <b> c", "text/plain") == "<pre>a &lt;b&gt; c</pre>"
    assert render_description("  \n", "text/markdown") == ""


async def test_a_long_description_is_truncated_escaped_text() -> None:
    renderer = DescriptionRenderer(max_size=80, max_seconds=5)
    out = await renderer.render("<b>x</b>" * 100, "text/markdown")
    assert out.startswith('<p class="truncated">The description is longer than 80 characters')
    assert out.endswith("<pre>" + "&lt;b&gt;x&lt;/b&gt;" * 10 + "</pre>")


async def test_a_slow_render_falls_back_to_escaped_text() -> None:
    text = "Title\n=====\n\n" + "* *item* <i>\n" * 5000
    renderer = DescriptionRenderer(max_size=10**6, max_seconds=0.0001)
    views = await asyncio.gather(*(renderer.render(text, "") for _ in range(3)))
    assert views == ["<pre>" + html.escape(text) + "</pre>"] * 3
    assert len(renderer._running) == 1  # one render for all three views
    renderer.close()


async def test_a_bounded_render_is_the_full_render() -> None:
    renderer = DescriptionRenderer(max_size=100, max_seconds=5)
    out = await renderer.render("*x*", "text/markdown")
    assert out == render_description("*x*", "text/markdown")
