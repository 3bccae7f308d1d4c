"""PEP 503/691 codec: parse upstream pages into the model, render the model, negotiate Accept.

Pure: no I/O. PEP unions (bool-or-reason, bool-or-hashes, two metadata spellings) are settled here.
"""

from __future__ import annotations

import hashlib
import html
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from enum import StrEnum
from html.parser import HTMLParser
from typing import Any
from urllib.parse import unquote, urldefrag, urljoin, urlsplit

from packaging.utils import canonicalize_name

from proxy.accept import choose
from proxy.errors import NotAcceptableError, UpstreamProtocolError
from proxy.model import Distribution, ProjectList, ProjectPage


class Format(StrEnum):
    """The response formats, named by their content types."""

    JSON = "application/vnd.pypi.simple.v1+json"
    HTML = "application/vnd.pypi.simple.v1+html"
    LEGACY_HTML = "text/html"


#: server preference when a client rates several formats equally (HTML first, as PEP 691 suggests
#: for */*, since every client understands it)
_PREFERENCE = (Format.LEGACY_HTML, Format.HTML, Format.JSON)
_FORMAT_ALIASES = {
    "json": Format.JSON,
    "html": Format.HTML,
    Format.JSON.value: Format.JSON,
    Format.HTML.value: Format.HTML,
    Format.LEGACY_HTML.value: Format.LEGACY_HTML,
}
#: PEP 691's meta version `latest` names the newest version we speak, v1
LATEST_ALIASES = {
    "application/vnd.pypi.simple.latest+json": Format.JSON.value,
    "application/vnd.pypi.simple.latest+html": Format.HTML.value,
}
_METADATA_HASH_PREFERENCE = ("sha256", "sha384", "sha512", "blake2b", "md5")


# ---- negotiation -----------------------------------------------------------------------------


def negotiate(accept: str | None, format_param: str | None = None) -> Format:
    """Pick the response format: `?format=` wins, then Accept by q-value, then our preference."""
    if format_param:
        fmt = _FORMAT_ALIASES.get(format_param.strip().lower())
        if fmt is None:
            raise NotAcceptableError(f"format={format_param}", [f.value for f in _PREFERENCE])
        return fmt
    fmt = choose(accept, _PREFERENCE, aliases=LATEST_ALIASES)
    if fmt is None:
        raise NotAcceptableError(accept or "", [f.value for f in _PREFERENCE])
    return fmt


# ---- parsing ---------------------------------------------------------------------------------


def _hashes_from(value: Any) -> dict[str, str]:
    if type(value) is dict and len(value) == 1:  # the common {"sha256": "…"}: a page has 5,000
        ((name, digest),) = value.items()
        if type(name) is str and type(digest) is str and name.islower() and digest.islower():
            return {name: digest}
    if isinstance(value, Mapping):
        return {str(k).lower(): str(v).lower() for k, v in value.items() if isinstance(v, str)}
    return {}


def _metadata_from(value: Any) -> tuple[bool, dict[str, str]]:
    """PEP 658/714 value: false, true, or a hash mapping (JSON) / "true" or "sha256=..." (HTML)."""
    if value is None or value is False:
        return False, {}
    if value is True:
        return True, {}
    if isinstance(value, Mapping):
        return True, _hashes_from(value)
    if isinstance(value, str):
        name, sep, digest = value.partition("=")
        if sep and digest:
            return True, {name.strip().lower(): digest.strip().lower()}
        return value.strip().lower() != "false", {}
    return False, {}


def _yanked_from(value: Any) -> tuple[bool, str | None]:
    if value is None or value is False:
        return False, None
    if isinstance(value, str):
        return (True, value) if value else (False, None)  # "" is not yanked, as pip reads it
    return bool(value), None


def _filename_from_url(url: str) -> str:
    return unquote(urlsplit(url).path.rsplit("/", 1)[-1])


def parse_json(body: bytes, base_url: str) -> ProjectPage:
    """A PEP 691 project page; relative file URLs are resolved against `base_url`."""
    data = _load_json(body, base_url)
    raw_files = data.get("files")
    if not isinstance(raw_files, list):
        raise UpstreamProtocolError(base_url, "JSON project page has no 'files' list")
    files: list[Distribution] = []
    for raw in raw_files:
        if not isinstance(raw, Mapping) or not isinstance(raw.get("url"), str):
            continue
        url = _absolute(base_url, raw["url"])
        filename = raw.get("filename") or _filename_from_url(url)
        meta_value = raw.get("core-metadata", raw.get("dist-info-metadata"))
        metadata, metadata_hashes = _metadata_from(meta_value)
        yanked, reason = _yanked_from(raw.get("yanked"))
        size = raw.get("size")
        upload_time = raw.get("upload-time")
        requires_python = raw.get("requires-python")
        files.append(
            Distribution(
                filename=str(filename),
                url=url,
                hashes=_hashes_from(raw.get("hashes")),
                requires_python=requires_python if isinstance(requires_python, str) else None,
                yanked=yanked,
                yanked_reason=reason,
                metadata=metadata,
                metadata_hashes=metadata_hashes,
                size=size if type(size) is int and size >= 0 else None,
                upload_time=upload_time if isinstance(upload_time, str) else None,
                gpg_sig=raw.get("gpg-sig") if isinstance(raw.get("gpg-sig"), bool) else None,
            )
        )
    versions = data.get("versions")
    return ProjectPage(
        name=str(data.get("name", "")),
        files=tuple(files),
        versions=tuple(str(v) for v in versions) if isinstance(versions, list) else (),
        last_serial=_serial_from(data),
    )


def _absolute(base_url: str, url: str) -> str:
    """The URL resolved and without fragment; an absolute one without `#` as it is (most are)."""
    if url.startswith(("https://", "http://")) and "#" not in url:
        return url
    return urldefrag(urljoin(base_url, url))[0]


def parse_json_list(body: bytes, base_url: str) -> ProjectList:
    data = _load_json(body, base_url)
    projects = data.get("projects")
    if not isinstance(projects, list):
        raise UpstreamProtocolError(base_url, "JSON index page has no 'projects' list")
    names = tuple(
        str(p["name"])
        for p in projects
        if isinstance(p, Mapping) and isinstance(p.get("name"), str)
    )
    return ProjectList(names=names, last_serial=_serial_from(data))


def _load_json(body: bytes, base_url: str) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UpstreamProtocolError(base_url, f"invalid JSON page: {exc}") from exc
    if not isinstance(data, dict):
        raise UpstreamProtocolError(base_url, "JSON page is not an object")
    return data


def _serial_from(data: Mapping[str, Any]) -> int | None:
    meta = data.get("meta")
    serial = meta.get("_last-serial") if isinstance(meta, Mapping) else None
    if isinstance(serial, str) and serial.isdigit():
        return int(serial)
    return serial if isinstance(serial, int) and not isinstance(serial, bool) else None


class _AnchorParser(HTMLParser):
    """Collects <a> attributes and the <base href>, which HTMLParser already unescapes."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.base: str | None = None
        self.anchors: list[dict[str, str | None]] = []
        self.texts: list[str] = []
        self._in_anchor = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "base" and self.base is None:
            self.base = dict(attrs).get("href")
        elif tag == "a":
            self.anchors.append(dict(attrs))
            self.texts.append("")
            self._in_anchor = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "a":
            self._in_anchor = False

    def handle_data(self, data: str) -> None:
        if self._in_anchor and self.texts:
            self.texts[-1] += data


def _parse_anchors(body: bytes, base_url: str) -> tuple[_AnchorParser, str]:
    parser = _AnchorParser()
    try:
        parser.feed(body.decode("utf-8", errors="replace"))
        parser.close()
    except (AssertionError, ValueError) as exc:  # HTMLParser's own failure modes
        raise UpstreamProtocolError(base_url, f"invalid HTML page: {exc}") from exc
    base = urljoin(base_url, parser.base) if parser.base else base_url
    return parser, base


def parse_html(body: bytes, base_url: str, name: str = "") -> ProjectPage:
    """A PEP 503 project page; hrefs (relative or absolute) resolve against <base> or base_url."""
    parser, base = _parse_anchors(body, base_url)
    files: list[Distribution] = []
    for attrs in parser.anchors:
        href = attrs.get("href")
        if not href:
            continue
        url, fragment = urldefrag(urljoin(base, href))
        filename = _filename_from_url(url)
        if not filename:
            continue
        hashes: dict[str, str] = {}
        algo, sep, digest = fragment.partition("=")
        if sep and digest and algo.lower() in hashlib.algorithms_guaranteed:
            hashes[algo.lower()] = digest.lower()
        core = attrs.get("data-core-metadata", attrs.get("data-dist-info-metadata"))
        has_core = "data-core-metadata" in attrs or "data-dist-info-metadata" in attrs
        metadata, metadata_hashes = _metadata_from(core if core is not None else has_core)
        yanked = "data-yanked" in attrs
        reason = attrs.get("data-yanked") or None
        gpg = attrs.get("data-gpg-sig")
        files.append(
            Distribution(
                filename=filename,
                url=url,
                hashes=hashes,
                requires_python=attrs.get("data-requires-python") or None,
                yanked=yanked,
                yanked_reason=reason if yanked else None,
                metadata=metadata,
                metadata_hashes=metadata_hashes,
                gpg_sig=None if gpg is None else gpg.lower() == "true",
            )
        )
    return ProjectPage(name=name, files=tuple(files))


def parse_html_list(body: bytes, base_url: str) -> ProjectList:
    parser, _ = _parse_anchors(body, base_url)
    names = tuple(text.strip() for text in parser.texts if text.strip())
    return ProjectList(names=names)


# ---- rendering -------------------------------------------------------------------------------


def api_version(page: ProjectPage) -> str:
    """1.1 (PEP 700) only when every file has a size, since 1.1 makes `size` mandatory."""
    return "1.1" if all(d.size is not None for d in page.files) else "1.0"


def _metadata_attr(dist: Distribution) -> str:
    for algo in _METADATA_HASH_PREFERENCE:
        if algo in dist.metadata_hashes:
            return f"{algo}={dist.metadata_hashes[algo]}"
    return "true"


def render_html(page: ProjectPage, url_prefix: str = "") -> bytes:
    """PEP 503 page; file URLs are `url_prefix + dist.url` with the best hash as fragment."""
    esc = html.escape
    name = esc(page.name)
    out = [
        "<!DOCTYPE html>\n<html>\n  <head>\n",
        f'    <meta name="pypi:repository-version" content="{api_version(page)}">\n',
        f"    <title>Links for {name}</title>\n  </head>\n  <body>\n",
        f"    <h1>Links for {name}</h1>\n",
    ]
    for dist in page.files:
        href = url_prefix + dist.url
        for algo in ("sha256", *sorted(dist.hashes)):
            if algo in dist.hashes:
                href += f"#{algo}={dist.hashes[algo]}"
                break
        attrs = [f'href="{esc(href)}"']
        if dist.requires_python:
            attrs.append(f'data-requires-python="{esc(dist.requires_python)}"')
        if dist.metadata:
            value = esc(_metadata_attr(dist))
            attrs.append(f'data-dist-info-metadata="{value}" data-core-metadata="{value}"')
        if dist.yanked:
            attrs.append(f'data-yanked="{esc(dist.yanked_reason or "")}"')
        if dist.gpg_sig is not None:
            attrs.append(f'data-gpg-sig="{"true" if dist.gpg_sig else "false"}"')
        out.append(f"    <a {' '.join(attrs)}>{esc(dist.filename)}</a><br/>\n")
    out.append("  </body>\n</html>\n")
    return "".join(out).encode()


def _file_json(dist: Distribution, url_prefix: str) -> dict[str, Any]:
    item: dict[str, Any] = {
        "filename": dist.filename,
        "url": url_prefix + dist.url,
        "hashes": dict(dist.hashes),
    }
    if dist.requires_python:
        item["requires-python"] = dist.requires_python
    if dist.metadata:
        item["core-metadata"] = dict(dist.metadata_hashes) or True
    if dist.yanked:
        item["yanked"] = dist.yanked_reason or True
    if dist.gpg_sig is not None:
        item["gpg-sig"] = dist.gpg_sig
    if dist.size is not None:
        item["size"] = dist.size
    if dist.upload_time:
        item["upload-time"] = dist.upload_time
    return item


def render_json(page: ProjectPage, url_prefix: str = "") -> bytes:
    """PEP 691 page (with PEP 700 `versions`, `size` and `upload-time`)."""
    meta: dict[str, Any] = {"api-version": api_version(page)}
    if page.last_serial is not None:
        meta["_last-serial"] = page.last_serial
    data = {
        "meta": meta,
        "name": page.name,
        "files": [_file_json(d, url_prefix) for d in page.files],
        "versions": list(page.all_versions()),
    }
    return json.dumps(data, separators=(",", ":")).encode()


def render_page(page: ProjectPage, fmt: Format, url_prefix: str = "") -> bytes:
    if fmt is Format.JSON:
        return render_json(page, url_prefix)
    return render_html(page, url_prefix)


def render_list(projects: ProjectList, fmt: Format) -> bytes:
    """The root page; project links are relative (`name/`), as PEP 503 allows."""
    return b"".join(render_list_chunks(projects.names, fmt, projects.last_serial))


_LIST_BATCH = 2048  #: names rendered per yielded chunk
_PLAIN_NAME = re.compile(r"[A-Za-z0-9._-]+")


def _html_list_line(name: str) -> str:
    href = canonicalize_name(name)
    if _PLAIN_NAME.fullmatch(name):  # nothing to escape: the common case, twice as fast
        return f'    <a href="{href}/">{name}</a><br/>\n'
    return f'    <a href="{html.escape(href)}/">{html.escape(name)}</a><br/>\n'


def render_list_chunks(
    names: Iterable[str], fmt: Format, last_serial: int | None = None
) -> Iterator[bytes]:
    """The root page in pieces, for lists too long to hold rendered (same bytes as render_list)."""
    batch: list[str] = []
    if fmt is Format.JSON:
        meta: dict[str, Any] = {"api-version": "1.0"}
        if last_serial is not None:
            meta["_last-serial"] = last_serial
        yield b'{"meta":' + json.dumps(meta, separators=(",", ":")).encode() + b',"projects":['
        sep = ""
        for name in names:
            batch.append(f'{sep}{{"name":{_json_string(name)}}}')
            sep = ","
            if len(batch) >= _LIST_BATCH:
                yield "".join(batch).encode()
                batch.clear()
        yield "".join(batch).encode() + b"]}"
        return
    yield (
        b"<!DOCTYPE html>\n<html>\n  <head>\n"
        b'    <meta name="pypi:repository-version" content="1.0">\n'
        b"    <title>Simple index</title>\n  </head>\n  <body>\n"
    )
    for name in names:
        batch.append(_html_list_line(name))
        if len(batch) >= _LIST_BATCH:
            yield "".join(batch).encode()
            batch.clear()
    yield "".join(batch).encode() + b"  </body>\n</html>\n"


def _json_string(value: str) -> str:
    return json.dumps(value)


# ---- incremental root-list parsing -----------------------------------------------------------

#: an anchor, a JSON element or the part before the projects may not exceed this unfinished
MAX_CARRY = 64 * 1024
_MAX_HEAD = 1024 * 1024
_ANCHOR = re.compile(rb"<a\b[^>]*>(.*?)</a\s*>", re.IGNORECASE | re.DOTALL)
_ANCHOR_START = re.compile(rb"<a\b", re.IGNORECASE)
_TAG = re.compile(r"<[^>]*>")
_PROJECTS = re.compile(rb'"projects"\s*:\s*\[')
_ELEMENT = re.compile(rb'\s*,?\s*\{\s*"name"\s*:\s*"((?:[^"\\]|\\.)*)"\s*\}')
_SEPARATOR = re.compile(rb"\s*,?\s*")
_ARRAY_END = re.compile(rb"\s*\]")
_SERIAL = re.compile(rb'"_last-serial"\s*:\s*"?(\d+)')


def _listable(name: str) -> bool:
    return bool(name) and "\n" not in name and "\r" not in name


class ListScanner:
    """A root page's names from its body in chunks of any size, in bounded memory (pure).

    `feed` returns the names completed by a chunk; `close` the rest, or UpstreamProtocolError.
    HTML: each anchor's text, unescaped (what parse_html_list reads). JSON (PEP 691): each
    `projects` element's `name`, and `meta._last-serial` into `last_serial`.
    """

    def __init__(self, base_url: str, *, is_json: bool) -> None:
        self.base_url = base_url
        self.is_json = is_json
        self.last_serial: int | None = None
        self._carry = b""
        self._state = "head"  #: JSON: head, array, tail
        self._outside = b""  #: JSON text around the projects, for the serial
        self._decoder = json.JSONDecoder()

    def feed(self, data: bytes) -> list[str]:
        buf = self._carry + data if self._carry else data
        names = self._feed_json(buf) if self.is_json else self._feed_html(buf)
        if not self.is_json and len(self._carry) > MAX_CARRY:
            raise UpstreamProtocolError(self.base_url, "root page has an entry over 64 KiB")
        return names

    def close(self) -> list[str]:
        names = self.feed(b"")
        if self.is_json:
            if self._state == "array":
                raise UpstreamProtocolError(self.base_url, "JSON index page ends in its projects")
            if self._state != "tail":
                raise UpstreamProtocolError(self.base_url, "JSON index page has no 'projects' list")
            found = _SERIAL.search(self._outside)
            self.last_serial = int(found.group(1)) if found else None
        return names

    def _feed_html(self, buf: bytes) -> list[str]:
        names: list[str] = []
        end = 0
        for match in _ANCHOR.finditer(buf):
            text = match.group(1).decode("utf-8", errors="replace")
            if "<" in text:
                text = _TAG.sub("", text)
            name = html.unescape(text).strip()
            if _listable(name):
                names.append(name)
            end = match.end()
        start = _ANCHOR_START.search(buf, end)
        if start is not None:
            self._carry = buf[start.start() :]
        else:
            last = buf.rfind(b"<", end)
            self._carry = buf[last:] if last >= 0 and len(buf) - last < 8 else b""
        return names

    def _feed_json(self, buf: bytes) -> list[str]:
        if self._state == "head":
            found = _PROJECTS.search(buf)
            if found is None:
                if len(buf) > _MAX_HEAD:
                    raise UpstreamProtocolError(self.base_url, "JSON index page has no projects")
                self._carry = buf
                return []
            self._outside = buf[: found.start()]
            buf = buf[found.end() :]
            self._state = "array"
        if self._state == "tail":
            self._outside += buf[: _MAX_HEAD - len(self._outside)]
            self._carry = b""
            return []
        names, pos = self._elements(buf)
        self._carry = buf[pos:]
        if self._state == "tail":
            self._outside += self._carry[:_MAX_HEAD]
            self._carry = b""
        return names

    def _elements(self, buf: bytes) -> tuple[list[str], int]:
        """The names of the complete elements in `buf`, and where the unfinished rest starts."""
        names: list[str] = []
        pos = 0
        element, array_end = _ELEMENT.match, _ARRAY_END.match
        while True:
            match = element(buf, pos)
            if match is not None:
                raw = match.group(1)
                name = json.loads(b'"' + raw + b'"') if b"\\" in raw else raw.decode()
                if _listable(name):
                    names.append(name)
                pos = match.end()
                continue
            end = array_end(buf, pos)
            if end is not None:
                self._state = "tail"
                return names, end.end()
            sep = _SEPARATOR.match(buf, pos)
            start = sep.end() if sep is not None else pos
            if start >= len(buf):
                return names, pos
            value, used = self._general(buf, start)
            if used == 0:
                return names, pos
            name = value.get("name") if isinstance(value, Mapping) else None
            if isinstance(name, str) and _listable(name):
                names.append(name)
            pos = start + used

    def _general(self, buf: bytes, start: int) -> tuple[Any, int]:
        """Any other element, by the JSON decoder; (None, 0) when it is not all here yet."""
        window = buf[start : start + MAX_CARRY + 1]
        text = window.decode("utf-8", errors="replace")
        try:
            value, end = self._decoder.raw_decode(text)
        except json.JSONDecodeError as exc:
            if len(window) <= MAX_CARRY:
                return None, 0  # maybe unfinished: wait for more (close() then fails on it)
            raise UpstreamProtocolError(self.base_url, f"invalid JSON index page: {exc}") from exc
        return value, len(text[:end].encode())
