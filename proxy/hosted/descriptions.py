"""Release descriptions to safe HTML: uploaders write them, browsers of other users render them.

Rendering costs time and memory in proportion to what an uploader wrote (a 5 MB Markdown file
took 13 s and ~1 GB), so `render_bounded` shows long descriptions as truncated plain text and
falls back to plain text when rendering takes too long (the render finishes in its thread and
is cached for the next view).
"""

from __future__ import annotations

import asyncio
import functools
import html
import logging

import nh3
from docutils.core import publish_parts
from docutils.utils import SystemMessage
from markdown_it import MarkdownIt

#: docutils settings that keep a description from reading files or passing raw HTML through
_RST_SETTINGS = {
    "file_insertion_enabled": False,
    "raw_enabled": False,
    "_disable_config": True,
    "report_level": 5,  # no system messages in the output
    "halt_level": 5,
    "warning_stream": False,
    "syntax_highlight": "none",
    "math_output": "HTML",
}
_URL_SCHEMES = {"http", "https", "mailto"}
_EXTRA_ATTRIBUTES = {"*": {"class", "id"}, "img": {"src", "alt", "title", "width", "height"}}

log = logging.getLogger(__name__)


async def render_bounded(text: str, content_type: str, *, max_size: int, max_seconds: float) -> str:
    """`render_description` off the loop; plain text past `max_size` chars or `max_seconds`."""
    if len(text) > max_size:
        return render_truncated(text, max_size)
    loop = asyncio.get_running_loop()
    rendering = loop.run_in_executor(None, render_description, text, content_type)
    try:
        return await asyncio.wait_for(rendering, max_seconds)
    except TimeoutError:
        log.warning(
            "description of %d chars took over %.1fs to render: shown as text",
            len(text),
            max_seconds,
        )
        return _render_plain(text)


def render_truncated(text: str, max_size: int) -> str:
    """The first `max_size` chars as escaped plain text, with a note saying the rest is cut."""
    note = (
        f'<p class="truncated">The description is longer than {max_size} characters'
        f" ({len(text)}): shown as plain text, truncated.</p>"
    )
    return note + _render_plain(text[:max_size])


@functools.lru_cache(maxsize=32)  # a release's description never changes; docutils is slow
def render_description(text: str, content_type: str) -> str:
    """Markdown, reStructuredText or plain text, sanitized: the result may go into a page as is."""
    kind = content_type.split(";", 1)[0].strip().lower()
    if not text.strip():
        return ""
    if kind == "text/markdown":
        body = _render_markdown(text)
    elif kind == "text/plain":
        body = _render_plain(text)
    else:  # core metadata's default is reStructuredText
        body = _render_rst(text)
    return sanitize(body)


def sanitize(body: str) -> str:
    """Drop scripts, event handlers and non-http(s) URLs; keep ordinary document markup."""
    attributes = {tag: set(names) for tag, names in nh3.ALLOWED_ATTRIBUTES.items()}
    for tag, names in _EXTRA_ATTRIBUTES.items():
        attributes.setdefault(tag, set()).update(names)
    return nh3.clean(
        body,
        attributes=attributes,
        url_schemes=_URL_SCHEMES,
        link_rel="nofollow noopener noreferrer",
        strip_comments=True,
    )


def _render_markdown(text: str) -> str:
    md = MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"])
    return str(md.render(text))


def _render_rst(text: str) -> str:
    """reStructuredText body HTML, or the text in <pre> when docutils cannot parse it."""
    try:
        parts = publish_parts(text, writer="html5", settings_overrides=_RST_SETTINGS)
    except (SystemMessage, ValueError, AttributeError, TypeError):  # docutils' failure modes
        return _render_plain(text)
    return str(parts["html_title"]) + str(parts["body"])


def _render_plain(text: str) -> str:
    return f"<pre>{html.escape(text)}</pre>"
