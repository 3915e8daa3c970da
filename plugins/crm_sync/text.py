"""Text utilities for free-text fields: HTML to plain text, whitespace, UTF-16 lengths, visible truncation.

Pure functions, no I/O, nothing raises on bad data.

* **Lengths** for CRM limits are counted in UTF-16 code units (:func:`utf16_len`), which is how the
  (Java-based) CRMs count and is never less than Python's ``len``.
* :func:`clean_text` turns a technician's free text (possibly HTML from the app's editor) into plain
  text; :func:`truncate_visibly` cuts it to a CRM limit with a marker saying how much was cut.
* Warnings quote at most :data:`ECHO_LIMIT` characters of a raw value (:func:`echo`).
"""

from __future__ import annotations

import re
from html import unescape
from html.parser import HTMLParser
from typing import Any

__all__ = [
    "ECHO_LIMIT",
    "WHITESPACE",
    "clean_text",
    "echo",
    "one_line",
    "shorten",
    "truncate_visibly",
    "utf16_len",
    "utf16_prefix",
]

#: Longest piece of a raw value quoted in a warning.
ECHO_LIMIT = 60

#: A run of whitespace (collapse with ``WHITESPACE.sub(" ", text)``).
WHITESPACE = re.compile(r"\s+")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_ASTRAL = re.compile("[\U00010000-\U0010ffff]")


def shorten(value: Any, limit: int = ECHO_LIMIT) -> str:
    """``value`` as one line of at most ``limit`` characters (ending in "…" when cut)."""
    text = WHITESPACE.sub(" ", str(value)).strip() if value is not None else ""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def echo(value: Any, limit: int = ECHO_LIMIT) -> str:
    """``value`` quoted for a warning: ``'<one line, at most limit characters>'``."""
    return f"'{shorten(value, limit)}'"


def utf16_len(text: str) -> int:
    """Length of ``text`` in UTF-16 code units (how HubSpot and Salesforce count characters)."""
    return len(text) + len(_ASTRAL.findall(text))


def utf16_prefix(text: str, units: int) -> str:
    """A prefix of ``text`` of at most ``units`` UTF-16 code units (never splits a character)."""
    if units <= 0:
        return ""
    candidate = text[:units]
    excess = utf16_len(candidate) - units
    while excess > 0:  # each dropped character is worth 1 or 2 units
        candidate = candidate[: len(candidate) - (excess + 1) // 2]
        excess = utf16_len(candidate) - units
    return candidate


def one_line(raw: Any) -> str | None:
    """A short single-line value (city, zip, job type...): cleaned, whitespace collapsed, or None."""
    if raw is None:
        return None
    text = WHITESPACE.sub(" ", clean_text(raw)).strip()
    return text or None


_KNOWN_TAGS = {
    "a",
    "abbr",
    "address",
    "article",
    "aside",
    "b",
    "big",
    "blockquote",
    "body",
    "br",
    "caption",
    "center",
    "cite",
    "code",
    "col",
    "colgroup",
    "dd",
    "del",
    "details",
    "dfn",
    "div",
    "dl",
    "dt",
    "em",
    "figcaption",
    "figure",
    "font",
    "footer",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "head",
    "header",
    "hr",
    "html",
    "i",
    "img",
    "ins",
    "kbd",
    "label",
    "li",
    "main",
    "mark",
    "meta",
    "nav",
    "noscript",
    "ol",
    "p",
    "pre",
    "q",
    "s",
    "section",
    "small",
    "span",
    "strike",
    "strong",
    "sub",
    "summary",
    "sup",
    "table",
    "tbody",
    "td",
    "tfoot",
    "th",
    "thead",
    "title",
    "tr",
    "tt",
    "u",
    "ul",
    "link",
    "script",
    "style",
    "template",
    "iframe",
    "object",
    "svg",
}
_SKIP_CONTENT = {"script", "style", "head", "title", "template", "noscript", "iframe", "object", "svg"}
_BLOCK = {
    "address",
    "article",
    "aside",
    "blockquote",
    "caption",
    "center",
    "dd",
    "details",
    "div",
    "dl",
    "dt",
    "figcaption",
    "figure",
    "footer",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "header",
    "hr",
    "main",
    "nav",
    "ol",
    "p",
    "pre",
    "section",
    "summary",
    "table",
    "tbody",
    "tfoot",
    "thead",
    "tr",
    "ul",
}
_PARAGRAPH = {"p", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre", "table", "ul", "ol"}
_TAG_NAMES = "|".join(sorted(_KNOWN_TAGS, key=len, reverse=True))
_LOOKS_HTML = re.compile(
    rf"<\s*/?\s*(?:{_TAG_NAMES})\b[^<>]{{0,2000}}>|<!--",  # bounded: linear on hostile text
    re.IGNORECASE,
)
_ENTITY = re.compile(r"&(?:#\d{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});")


class _TextExtractor(HTMLParser):
    """HTML -> plain text: block tags become line breaks, script/style content is dropped,
    links keep their target, and tags that are not HTML (``<3/4 inch>``) stay as text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip_depth = 0
        self._links: list[tuple[str | None, int]] = []

    def _break(self, lines: int) -> None:
        """End the current block: make sure the output ends with at least ``lines`` newlines."""
        have = 0
        for part in reversed(self.parts):
            if part.strip(" \t\n"):
                break
            have += part.count("\n")
        if have < lines:
            self.parts.append("\n" * (lines - have))

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in _KNOWN_TAGS:
            if not self._skip_depth:
                self.parts.append(self.get_starttag_text() or "")
            return
        if tag in _SKIP_CONTENT:
            self._skip_depth += 1
        elif self._skip_depth:
            return
        elif tag == "br":
            self.parts.append("\n")
        elif tag == "li":
            self._break(1)
            self.parts.append("- ")
        elif tag in ("td", "th"):
            self.parts.append(" ")
        elif tag in _BLOCK:
            self._break(2 if tag in _PARAGRAPH else 1)
        elif tag == "a":
            self._links.append((dict(attrs).get("href"), len(self.parts)))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP_CONTENT:
            return
        self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag not in _KNOWN_TAGS:
            if not self._skip_depth:
                self.parts.append(f"</{tag}>")
            return
        if tag in _SKIP_CONTENT:
            self._skip_depth = max(0, self._skip_depth - 1)
        elif self._skip_depth:
            return
        elif tag in _BLOCK or tag == "li":
            self._break(2 if tag in _PARAGRAPH else 1)
        elif tag == "a" and self._links:
            href, start = self._links.pop()
            label = "".join(self.parts[start:]).strip()
            if (
                href
                and href.strip().lower().startswith(("http://", "https://", "mailto:"))
                and href.strip() not in label
            ):
                self.parts.append(f" ({href.strip()})")

    def handle_data(self, data: str) -> None:
        if not self._skip_depth:
            self.parts.append(data)


def _html_to_text(text: str) -> str:
    parser = _TextExtractor()
    parser.feed(text)
    parser.close()
    return "".join(parser.parts)


def clean_text(raw: Any, limit: int | None = None) -> str:
    """Plain text from a free-text field: HTML stripped, entities decoded, newlines normalised, trimmed.

    ``limit`` (UTF-16 units) truncates visibly with :func:`truncate_visibly`.
    """
    if raw is None:
        return ""
    if isinstance(raw, (bytes, bytearray)):
        raw = bytes(raw).decode("utf-8", "replace")
    text = raw if isinstance(raw, str) else str(raw)
    text = _SURROGATE.sub("\ufffd", text)
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\u2028", "\n").replace("\u2029", "\n")
    is_html = bool(_LOOKS_HTML.search(text))
    if is_html:
        text = _html_to_text(text)
    elif _ENTITY.search(text):
        text = unescape(text)
    text = text.replace("\xa0", " ").replace("\u200b", "")
    text = _CONTROL.sub("", text)
    lines = [line.strip() if is_html else line.rstrip() for line in text.split("\n")]
    if is_html:
        lines = [re.sub(r"[ \t]{2,}", " ", line) for line in lines]
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
    if limit is not None:
        text, _ = truncate_visibly(text, limit)
    return text


def _marker(total: int, hidden: int) -> str:
    return f"\n…[truncated by Rank It Pro sync: {total:,} characters, {hidden:,} not shown]"


def _cut(text: str, room: int) -> str:
    """A prefix of ``text`` within ``room`` UTF-16 units, ending on a nearby word boundary when there is one."""
    kept = utf16_prefix(text, room)
    if len(kept) < len(text) and kept and not kept[-1].isspace() and not text[len(kept)].isspace():
        boundary = max(kept.rfind(" "), kept.rfind("\n"))
        if boundary > 0 and boundary >= len(kept) - 40:
            kept = kept[:boundary]
    return kept.rstrip()


def truncate_visibly(text: str, limit: int) -> tuple[str, bool]:
    """``text`` cut to at most ``limit`` UTF-16 units, ending with a marker saying how much was cut.

    Returns ``(text, truncated)``. The result is never longer than ``limit``
    (by ``len`` or by UTF-16 units); a limit too small for the marker gives a bare cut.
    """
    if limit < 0:
        raise ValueError("limit must be >= 0")
    if utf16_len(text) <= limit:
        return text, False
    total = len(text)
    hidden = total  # first guess: the longest marker
    best: str | None = None
    for _ in range(10):
        room = limit - utf16_len(_marker(total, hidden))
        if room <= 0:
            break
        kept = _cut(text, room)
        actual = total - len(kept)
        result = kept + _marker(total, actual)
        if utf16_len(result) <= limit:
            best = result
            if actual == hidden:
                break
        hidden = actual if utf16_len(result) <= limit else hidden + (utf16_len(result) - limit)
    if best is None:
        return utf16_prefix(text, limit), True
    return best, True
