"""Release descriptions to safe HTML: uploaders write them, browsers of other users render them.

Rendering costs time and memory in proportion to what an uploader wrote (a 5 MB Markdown file
took 13 s and ~1 GB), so `DescriptionRenderer` shows long descriptions as truncated plain text
and falls back to plain text when rendering takes too long (the render finishes in its thread
and is cached for the next view).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
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


class DescriptionRenderer:
    """Renders on its own thread, one at a time, each description at most once at a time.

    A slow render keeps its thread; every viewer waits at most `max_seconds` for it (then gets
    plain text) instead of starting another, so repeated views of a huge description cost one
    render, and file serving never waits behind docutils in the default pool.
    """

    def __init__(self, max_size: int, max_seconds: float) -> None:
        self.max_size = max_size  #: limits.max_description_size, in characters
        self.max_seconds = max_seconds  #: limits.description_render_timeout
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="descriptions")
        self._running: dict[tuple[str, str], asyncio.Future[str]] = {}

    async def render(self, text: str, content_type: str) -> str:
        """Safe HTML; plain text past `max_size` or `max_seconds`."""
        if len(text) > self.max_size:
            return render_truncated(text, self.max_size)
        key = (text, content_type)
        running = self._running.get(key)
        if running is None:
            work = self._pool.submit(render_description, text, content_type)
            running = asyncio.wrap_future(work)
            self._running[key] = running
            running.add_done_callback(lambda _: self._running.pop(key, None))
        try:
            return await asyncio.wait_for(asyncio.shield(running), self.max_seconds)
        except TimeoutError:
            log.warning(
                "description of %d chars took over %.1fs to render: shown as text",
                len(text),
                self.max_seconds,
            )
            return _render_plain(text)

    def close(self) -> None:
        """Drop queued renders; one still running finishes in its thread."""
        self._pool.shutdown(wait=False, cancel_futures=True)


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
