"""Turn one raw ``check_ins`` row into a :class:`PreparedCheckIn`: pure functions, no I/O.

Customer fields on a check-in are free text typed by a technician on a phone, so
every normaliser here returns the cleaned value (or ``None``) together with
human-readable warnings; nothing raises on bad data. Warnings echo at most
:data:`ECHO_LIMIT` characters of the raw value.

Decisions worth knowing:

* **Emails** are trimmed, lower-cased (local part included: CRMs and people
  treat addresses case-insensitively, and match keys must be stable) and
  validated with ``email_validator`` without a DNS lookup. When a field holds
  several addresses the first *valid* one is kept.
* **Phones** are found with ``phonenumbers.PhoneNumberMatcher`` (so "(512)
  555-0100 cell" or two numbers in one field work) and accepted when
  ``phonenumbers.is_valid_number`` says so. The NANP's fictional range
  NXX-555-0100..0199 is accepted as well even if a metadata version judged it
  invalid, so test data stays usable. Numbers without a ``+`` are read in
  ``default_region``.
* **Names**: honorifics (Mr., Dr., ...) and professional suffixes (MD, PhD,
  ...) are dropped; generational suffixes (Jr., III) stay at the end of the
  last name. "Last, First" is understood. Otherwise the first token is the
  first name and the rest the last name, except that a surname particle
  (van, von, de, der, da, di, du, la, le, st., ...) after the first token starts
  the last name: "Mary Ann van der Berg" -> ("Mary Ann", "van der Berg").
  All-caps or all-lower input is title-cased; mixed case is kept as typed.
* **Lengths** for CRM limits are counted in UTF-16 code units
  (:func:`utf16_len`), which is how the (Java-based) CRMs count and is never
  less than Python's ``len``.
* **Visit body** is plain text: a header (job type, technician, visit date in
  UTC, address, check-in id), then labelled sections (Problem, Work performed,
  Solution, Materials, Notes, Customer feedback, Follow-up, Photos); empty
  sections are left out. Each free-text section is cut visibly at
  :data:`SECTION_LIMIT` so one huge field cannot push the later sections out
  of a CRM's limit; the CRM limits themselves are applied by ``crm_sync.mapping``.
* **source_hash** covers the *raw* values of :data:`HASHED_COLUMNS` (not the
  normalised ones, so improving a normaliser does not re-send history). The
  technician's name and the sync settings are not part of it.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from html import unescape
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urlsplit

import phonenumbers
from email_validator import EmailNotValidError, validate_email

from crm_sync.models import (
    MATCH_STRATEGIES,
    Customer,
    PreparedCheckIn,
    SyncSettings,
    Visit,
)

__all__ = [
    "CHECK_IN_COLUMNS",
    "CHECK_IN_FIELDS",
    "ECHO_LIMIT",
    "HASHED_COLUMNS",
    "SECTION_LIMIT",
    "clean_text",
    "echo",
    "shorten",
    "normalize_email",
    "normalize_phone",
    "photo_urls",
    "prepare_check_in",
    "resolve_check_in_field",
    "source_hash",
    "split_name",
    "truncate_visibly",
    "utf16_len",
    "utf16_prefix",
]

#: Longest piece of a raw value quoted in a warning.
ECHO_LIMIT = 60

#: Every column of ``public.check_ins`` (schema.sql), in table order.
CHECK_IN_COLUMNS: tuple[str, ...] = (
    "id", "job_type", "notes", "customer_name", "customer_email", "customer_phone",
    "work_performed", "materials_used", "latitude", "longitude", "location", "address",
    "city", "state", "zip", "address_verified", "location_source", "photos",
    "before_photos", "after_photos", "problem_description", "solution_description",
    "customer_feedback", "follow_up_required", "follow_up_notes", "is_blog",
    "generated_content", "wordpress_sync_status", "wordpress_post_id", "wordpress_post_url",
    "technician_id", "company_id", "location_id", "created_at",
)


def _camel(column: str) -> str:
    head, *rest = column.split("_")
    return head + "".join(p.capitalize() for p in rest)


#: camelCase check-in field (the names ``customFieldMapping`` uses) -> row key.
#: ``technicianName`` is the joined ``technicians.name`` (row key ``technician_name``).
CHECK_IN_FIELDS: dict[str, str] = {_camel(c): c for c in CHECK_IN_COLUMNS} | {"technicianName": "technician_name"}
_FIELD_BY_COLUMN = {column: camel for camel, column in CHECK_IN_FIELDS.items()}

#: The columns whose content the sync sends; :func:`source_hash` covers exactly these.
HASHED_COLUMNS: tuple[str, ...] = (
    "job_type", "customer_name", "customer_email", "customer_phone",
    "notes", "work_performed", "materials_used", "problem_description", "solution_description",
    "customer_feedback", "follow_up_required", "follow_up_notes",
    "address", "city", "state", "zip", "location",
    "photos", "before_photos", "after_photos",
)
_PHOTO_COLUMNS = ("photos", "before_photos", "after_photos")
#: Longest free-text section (notes, work performed, ...) in a visit body. One huge
#: field is cut here, visibly, so the sections after it (feedback, follow-up,
#: photos) still fit into Salesforce's 32,000-character Case description.
SECTION_LIMIT = 30_000
_HASH_VERSION = "v1"


def resolve_check_in_field(name: Any) -> str | None:
    """The camelCase check-in field for ``name`` (camelCase or the column's snake_case), else None."""
    if not isinstance(name, str):
        return None
    name = name.strip()
    if name in CHECK_IN_FIELDS:
        return name
    return _FIELD_BY_COLUMN.get(name)


# --------------------------------------------------------------------------- small helpers
_WS = re.compile(r"\s+")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_ASTRAL = re.compile("[\U00010000-\U0010ffff]")


def shorten(value: Any, limit: int = ECHO_LIMIT) -> str:
    """``value`` as one line of at most ``limit`` characters (ending in "…" when cut)."""
    text = _WS.sub(" ", str(value)).strip() if value is not None else ""
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
    while excess > 0:               # each dropped character is worth 1 or 2 units
        candidate = candidate[: len(candidate) - (excess + 1) // 2]
        excess = utf16_len(candidate) - units
    return candidate


def _as_text(raw: Any, column: str) -> tuple[str | None, list[str]]:
    """A customer field as text: str as is, bytes decoded, numbers as digits; other types are dropped."""
    if raw is None or isinstance(raw, str):
        return raw, []
    if isinstance(raw, (bytes, bytearray)):
        return bytes(raw).decode("utf-8", "replace"), []
    if isinstance(raw, (int, Decimal)) and not isinstance(raw, bool):
        return str(raw), []
    if isinstance(raw, float) and raw.is_integer():
        return str(int(raw)), []
    return None, [f"{column} is not text (got {type(raw).__name__}): dropped"]


def _one_line(raw: Any) -> str | None:
    """A short single-line value (city, zip, job type...): cleaned, whitespace collapsed, or None."""
    if raw is None:
        return None
    text = _WS.sub(" ", clean_text(raw)).strip()
    return text or None


# --------------------------------------------------------------------------- email
_EMAIL_SPLIT = re.compile(r"[,;\s]+")
_AROUND_AT = re.compile(r"\s*@\s*")
_MAILTO = re.compile(r"^mailto:", re.IGNORECASE)


def _email_token(token: str) -> str:
    token = token.strip()
    previous = None
    while token != previous:
        previous = token
        token = token.strip("<>()[]{}\"'`").strip()
        token = _MAILTO.sub("", token)
    token = token.split("?", 1)[0]          # mailto:a@x.com?subject=...
    return token.rstrip(".:")


def normalize_email(raw: Any) -> tuple[str | None, list[str]]:
    """Trimmed, lower-cased, validated email (first valid one of several) and warnings."""
    raw, problems = _as_text(raw, "customer_email")
    if raw is None:
        return None, problems
    text = unicodedata.normalize("NFC", raw).strip()
    if not text:
        return None, []
    compact = _AROUND_AT.sub("@", text)
    tokens = [t for t in _EMAIL_SPLIT.split(compact) if t]
    candidates = [c for c in (_email_token(t) for t in tokens if "@" in t) if c]
    if not candidates:
        candidates = [_email_token(compact)]
    valid: list[str] = []
    rejected: list[tuple[str, str]] = []
    for candidate in candidates:
        try:
            result = validate_email(candidate.lower(), check_deliverability=False)
        except EmailNotValidError as exc:
            rejected.append((candidate, str(exc)))
            continue
        address = result.normalized.lower()
        if address not in valid:
            valid.append(address)
    if not valid:
        reason = rejected[0][1] if rejected else "empty"
        return None, [f"customer_email {echo(text)} is not a valid email address "
                      f"({shorten(reason, 100)}): dropped"]
    warnings: list[str] = []
    dropped = valid[1:] + [c for c, _ in rejected]
    if dropped:
        shown = ", ".join(echo(d, 40) for d in dropped[:3]) + (" ..." if len(dropped) > 3 else "")
        warnings.append(f"customer_email {echo(text)} holds {len(dropped) + 1} addresses: "
                        f"kept '{valid[0]}', dropped {shown}")
    return valid[0], warnings


# --------------------------------------------------------------------------- phone
_FICTIONAL_NANP = re.compile(r"^[2-9](?!11)\d{2}55501\d{2}$")   # NXX-555-0100..0199
_POSSIBLE_REASONS = {
    phonenumbers.ValidationResult.IS_POSSIBLE_LOCAL_ONLY: "no area code",
    phonenumbers.ValidationResult.INVALID_COUNTRY_CODE: "unknown country code",
    phonenumbers.ValidationResult.TOO_SHORT: "too short",
    phonenumbers.ValidationResult.INVALID_LENGTH: "wrong length",
    phonenumbers.ValidationResult.TOO_LONG: "too long",
}


def _phone_ok(number: phonenumbers.PhoneNumber) -> bool:
    """Valid per phonenumbers, or NANP-fictional (NXX-555-01XX) in an area code that exists."""
    if phonenumbers.is_valid_number(number):
        return True
    national = str(number.national_number)
    if number.country_code != 1 or not _FICTIONAL_NANP.match(national):
        return False
    probe = phonenumbers.PhoneNumber(country_code=1, national_number=int(national[:3] + "2345678"))
    return phonenumbers.is_valid_number(probe)


def _phone_problem(number: phonenumbers.PhoneNumber) -> str:
    reason = phonenumbers.is_possible_number_with_reason(number)
    return _POSSIBLE_REASONS.get(reason, "not a valid number")


def normalize_phone(raw: Any, default_region: str = "US") -> tuple[str | None, str | None, list[str]]:
    """(E.164 number, extension, warnings). Several numbers in the field: the first valid one wins."""
    raw, problems = _as_text(raw, "customer_phone")
    if raw is None:
        return None, None, problems
    text = unicodedata.normalize("NFKC", raw).strip()
    if not text:
        return None, None, []
    accepted: list[phonenumbers.PhoneNumber] = []
    problems: list[str] = []
    try:
        matches = list(phonenumbers.PhoneNumberMatcher(text, default_region,
                                                       leniency=phonenumbers.Leniency.POSSIBLE))
    except Exception:  # pragma: no cover - defensive: the matcher is not supposed to raise
        matches = []
    for match in matches:
        if _phone_ok(match.number):
            if all(match.number.national_number != a.national_number
                   or match.number.country_code != a.country_code for a in accepted):
                accepted.append(match.number)
        else:
            problems.append(_phone_problem(match.number))
    if not accepted and not matches:
        # Formats the matcher does not pick up (vanity numbers such as 1-800-FLOWERS).
        try:
            number = phonenumbers.parse(text, default_region)
        except phonenumbers.NumberParseException:
            problems.append("no phone number found" if not any(c.isdigit() for c in text) else "not a phone number")
        else:
            if _phone_ok(number):
                accepted.append(number)
            else:
                problems.append(_phone_problem(number))
    if not accepted:
        reason = problems[0] if problems else "not a valid number"
        return None, None, [f"customer_phone {echo(text)} is not a valid phone number ({reason}): dropped"]
    first = accepted[0]
    e164 = phonenumbers.format_number(first, phonenumbers.PhoneNumberFormat.E164)
    extension = first.extension or None
    warnings: list[str] = []
    if len(accepted) > 1:
        dropped = ", ".join(phonenumbers.format_number(n, phonenumbers.PhoneNumberFormat.E164) for n in accepted[1:])
        warnings.append(f"customer_phone {echo(text)} holds {len(accepted)} phone numbers: kept {e164}, "
                        f"dropped {dropped}")
    return e164, extension, warnings


# --------------------------------------------------------------------------- names
_HONORIFICS = {"mr", "mrs", "ms", "miss", "mx", "dr", "prof", "rev", "sir", "mister", "madam", "mme", "mlle"}
_GENERATIONAL = {"jr": "Jr.", "sr": "Sr.", "ii": "II", "iii": "III", "iv": "IV"}
_PROFESSIONAL = {"md", "phd", "dds", "dmd", "esq", "cpa", "rn", "dvm"}
_EMAIL_LIKE = re.compile(r"[<(\[]?\S+@\S+[>)\]]?")
_PARTICLES = {"van", "von", "de", "der", "den", "del", "della", "di", "da", "du", "la", "le",
              "dos", "das", "ten", "ter", "st", "st.", "ste", "saint", "bin", "ibn"}


def _bare(token: str) -> str:
    return token.lower().replace(".", "").strip(",")


def _strip_honorifics(tokens: list[str]) -> list[str]:
    while tokens and _bare(tokens[0]) in _HONORIFICS:
        tokens = tokens[1:]
    return tokens


def _strip_suffixes(tokens: list[str], keep: list[str]) -> list[str]:
    """Drop trailing suffix tokens; generational ones are appended (in order) to ``keep``."""
    found: list[str] = []
    while len(tokens) > 1 and (_bare(tokens[-1]) in _GENERATIONAL or _bare(tokens[-1]) in _PROFESSIONAL):
        bare = _bare(tokens.pop())
        if bare in _GENERATIONAL:
            found.insert(0, _GENERATIONAL[bare])
    keep.extend(found)
    return tokens


def _is_suffix_piece(piece: str) -> bool:
    tokens = piece.split()
    return bool(tokens) and all(_bare(t) in _GENERATIONAL or _bare(t) in _PROFESSIONAL for t in tokens)


def _recase(tokens: list[str], first_position: bool) -> list[str]:
    out = []
    for i, token in enumerate(tokens):
        bare = _bare(token)
        if bare in _GENERATIONAL:
            out.append(_GENERATIONAL[bare])
        elif bare in _PARTICLES and not (first_position and i == 0):
            out.append(token.lower())
        else:
            out.append(token.title())
    return out


def split_name(raw: Any) -> tuple[str | None, str | None, list[str]]:
    """(first name, last name, warnings) from a free-text customer name."""
    raw, problems = _as_text(raw, "customer_name")
    if raw is None:
        return None, None, problems
    text = _WS.sub(" ", unicodedata.normalize("NFC", clean_text(raw))).strip(" ,;")
    if not text:
        return None, None, []
    if "@" in text:    # "John Smith <john@x.com>": keep the name part
        text = _WS.sub(" ", _EMAIL_LIKE.sub(" ", text)).strip(" ,;")
        if not any(c.isalpha() for c in text):
            return None, None, [f"customer_name {echo(raw)} looks like an email address: dropped"]
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return None, None, [f"customer_name {echo(text)} has no letters: dropped"]
    recase = all(c.isupper() for c in letters) or all(c.islower() for c in letters)

    generational: list[str] = []
    pieces = [p.strip() for p in text.split(",") if p.strip()]
    while len(pieces) > 1 and _is_suffix_piece(pieces[-1]):
        for token in pieces.pop().split():
            if _bare(token) in _GENERATIONAL:
                generational.append(_GENERATIONAL[_bare(token)])
    if len(pieces) >= 2:                                   # "Smith, John"
        last_tokens = _strip_suffixes(_strip_honorifics(pieces[0].split()), generational)
        first_tokens = _strip_suffixes(_strip_honorifics(" ".join(pieces[1:]).split()), generational)
        if not first_tokens and not last_tokens:
            return None, None, [f"customer_name {echo(text)} has no usable name: dropped"]
    else:
        tokens = _strip_suffixes(_strip_honorifics(pieces[0].split() if pieces else []), generational)
        if not tokens or (len(tokens) == 1 and _is_suffix_piece(tokens[0])):
            return None, None, [f"customer_name {echo(text)} has no usable name: dropped"]
        split_at = 1
        for i in range(1, len(tokens) - 1):
            if _bare(tokens[i]) in _PARTICLES or tokens[i].lower() in _PARTICLES:
                split_at = i
                break
        first_tokens, last_tokens = tokens[:split_at], tokens[split_at:]
    if recase:
        first_tokens = _recase(first_tokens, True)
        last_tokens = _recase(last_tokens, not first_tokens)
    if last_tokens:
        last_tokens = last_tokens + generational
    first = " ".join(first_tokens) or None
    last = " ".join(last_tokens) or None
    return first, last, []


# --------------------------------------------------------------------------- text
_KNOWN_TAGS = {
    "a", "abbr", "address", "article", "aside", "b", "big", "blockquote", "body", "br", "caption",
    "center", "cite", "code", "col", "colgroup", "dd", "del", "details", "dfn", "div", "dl", "dt",
    "em", "figcaption", "figure", "font", "footer", "h1", "h2", "h3", "h4", "h5", "h6", "head",
    "header", "hr", "html", "i", "img", "ins", "kbd", "label", "li", "main", "mark", "meta", "nav",
    "noscript", "ol", "p", "pre", "q", "s", "section", "small", "span", "strike", "strong", "sub",
    "summary", "sup", "table", "tbody", "td", "tfoot", "th", "thead", "title", "tr", "tt", "u", "ul",
    "link", "script", "style", "template", "iframe", "object", "svg",
}
_SKIP_CONTENT = {"script", "style", "head", "title", "template", "noscript", "iframe", "object", "svg"}
_BLOCK = {"address", "article", "aside", "blockquote", "caption", "center", "dd", "details", "div",
          "dl", "dt", "figcaption", "figure", "footer", "h1", "h2", "h3", "h4", "h5", "h6", "header",
          "hr", "main", "nav", "ol", "p", "pre", "section", "summary", "table", "tbody", "tfoot",
          "thead", "tr", "ul"}
_PARAGRAPH = {"p", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre", "table", "ul", "ol"}
_LOOKS_HTML = re.compile(r"<\s*/?\s*(?:%s)\b[^<>]{0,2000}>|<!--"      # bounded: linear on hostile text
                         % "|".join(sorted(_KNOWN_TAGS, key=len, reverse=True)), re.IGNORECASE)
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
            if href and href.strip().lower().startswith(("http://", "https://", "mailto:")) \
                    and href.strip() not in label:
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
    hidden = total                      # first guess: the longest marker
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


# --------------------------------------------------------------------------- photos
_MAX_URL = 2048
_MAX_PHOTO_WARNINGS = 5
_URL_SPLIT = re.compile(r"[\s,;|]+(?=https?://)", re.IGNORECASE)
_URL_KEYS = ("url", "src", "href", "uri", "secure_url")


def _photo_items(value: Any, where: str, depth: int = 0) -> Iterable[tuple[str, Any]]:
    """Flatten one photos value into (location, candidate) pairs."""
    if value is None:
        return
    if depth > 4:
        yield where, value
        return
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value).decode("utf-8", "replace")
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return
        if text[:1] in "[{\"":
            try:
                decoded = json.loads(text)
            except ValueError:
                decoded = None
            else:
                yield from _photo_items(decoded, where, depth + 1)
                return
        parts = _URL_SPLIT.split(text)
        for part in parts:
            yield where, part
        return
    if isinstance(value, Mapping):
        for key in _URL_KEYS:
            if key in value and value[key] not in (None, ""):
                yield from _photo_items(value[key], where, depth + 1)
                return
        if value and all(isinstance(k, str) and k.isdigit() for k in value):   # an array stored as an object
            for key in sorted(value, key=int):
                yield from _photo_items(value[key], f"{where}[{key}]", depth + 1)
            return
        yield where, value
        return
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            yield from _photo_items(item, f"{where}[{i}]", depth + 1)
        return
    yield where, value


def _http_url(candidate: Any) -> str | None:
    if not isinstance(candidate, str):
        return None
    url = candidate.strip()
    if not url or len(url) > _MAX_URL or any(c.isspace() for c in url):
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return None
    return url


def photo_urls(*raw_values: Any, names: Sequence[str] | None = None) -> tuple[list[str], list[str]]:
    """De-duplicated http(s) photo URLs from jsonb photo values, in order, and warnings for dropped items.

    Each value may be a list of URLs or ``{"url": ...}`` objects, a single URL, an
    object, a JSON-encoded string of any of those, or None. ``names`` labels the
    values in warnings (e.g. ``("photos", "before_photos")``).
    """
    urls: list[str] = []
    dropped: list[str] = []
    for index, value in enumerate(raw_values):
        where = names[index] if names and index < len(names) else f"photos value {index + 1}"
        for location, candidate in _photo_items(value, where):
            url = _http_url(candidate)
            if url is None:
                shown = echo(candidate) if isinstance(candidate, str) else f"({type(candidate).__name__})"
                dropped.append(f"{location} {shown} is not an http(s) URL: dropped")
            elif url not in urls:
                urls.append(url)
    warnings = dropped[:_MAX_PHOTO_WARNINGS]
    if len(dropped) > _MAX_PHOTO_WARNINGS:
        warnings.append(f"... and {len(dropped) - _MAX_PHOTO_WARNINGS} more photo items dropped")
    return urls, warnings


# --------------------------------------------------------------------------- hashing
def _canonical(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, Decimal):
        return str(value.normalize()) if value.is_finite() else str(value)
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "replace")
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def _decoded_json(value: Any) -> Any:
    if isinstance(value, str) and value.strip()[:1] in ("[", "{", '"'):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def source_hash(row: Mapping[str, Any]) -> str:
    """Stable sha256 (hex) of the check-in content the sync sends (:data:`HASHED_COLUMNS`).

    Missing keys count as None; dict key order does not matter; photo columns
    that arrive as JSON text hash like the decoded value.
    """
    content = {}
    for column in HASHED_COLUMNS:
        value = row.get(column)
        if column in _PHOTO_COLUMNS:
            value = _decoded_json(value)
        content[column] = _canonical(value)
    payload = json.dumps([_HASH_VERSION, content], sort_keys=True, ensure_ascii=False,
                         separators=(",", ":"), allow_nan=True)
    return hashlib.sha256(payload.encode("utf-8", "surrogatepass")).hexdigest()


# --------------------------------------------------------------------------- prepare
def _utc(value: Any) -> datetime | None:
    """``created_at`` as an aware UTC datetime (naive values are UTC, as the app writes them)."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            return None
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    return None


def _match_keys(strategy: str, customer: Customer) -> list[str]:
    keys = {
        "email": f"email:{customer.email}" if customer.email else None,
        "phone": f"phone:{customer.phone}" if customer.phone else None,
        "name": f"name:{_WS.sub(' ', customer.full_name).strip().lower()}" if customer.full_name else None,
    }
    if strategy != "all":
        return [keys[strategy]] if keys[strategy] else []
    # 'all': email, then phone. A name alone identifies nobody well ("John Smith"), so it is a
    # key only for a row that has neither; name searches are also the CRMs' costliest lookups.
    contact = [keys[k] for k in ("email", "phone") if keys[k]]
    return contact or ([keys["name"]] if keys["name"] else [])


def _why_missing(column: str, raw: Any) -> str:
    if raw is None or not str(raw).strip():
        return f"{column} missing"
    return f"{column} {echo(raw)} invalid"


def _no_key_error(strategy: str, row: Mapping[str, Any]) -> str:
    columns = {"email": "customer_email", "phone": "customer_phone", "name": "customer_name"}
    if strategy == "all":
        reasons = "; ".join(_why_missing(c, row.get(c)) for c in columns.values())
        return f"no usable customer email, phone or name for match strategy 'all' ({reasons})"
    column = columns[strategy]
    return f"no usable customer {strategy} for match strategy '{strategy}' ({_why_missing(column, row.get(column))})"


def _address_line(customer: Customer) -> str | None:
    state_zip = " ".join(p for p in (customer.state, customer.zip) if p)
    line = ", ".join(p for p in (customer.street, customer.city, state_zip) if p)
    return line or None


def _body(row: Mapping[str, Any], job_type: str, occurred_at: datetime, customer: Customer,
          photos: list[str], sync_photos: bool) -> str:
    header = [f"Job type: {job_type}"]
    technician = _one_line(row.get("technician_name"))
    if technician:
        header.append(f"Technician: {technician}")
    header.append(f"Visit date: {occurred_at:%Y-%m-%d %H:%M} UTC")
    address = _address_line(customer) or _one_line(row.get("location"))
    if not address and row.get("latitude") is not None and row.get("longitude") is not None:
        address = f"GPS {row.get('latitude')}, {row.get('longitude')}"
    if address:
        header.append(f"Address: {address}")
    header.append(f"Rank It Pro check-in: #{row.get('id')}")
    sections = ["\n".join(header)]
    for label, column in (("Problem", "problem_description"), ("Work performed", "work_performed"),
                          ("Solution", "solution_description"), ("Materials", "materials_used"),
                          ("Notes", "notes"), ("Customer feedback", "customer_feedback")):
        text = clean_text(row.get(column), limit=SECTION_LIMIT)
        if text:
            sections.append(f"{label}:\n{text}")
    follow_up_notes = clean_text(row.get("follow_up_notes"), limit=SECTION_LIMIT)
    if row.get("follow_up_required") is True or follow_up_notes:
        status = "required" if row.get("follow_up_required") is True else "not flagged as required"
        sections.append(f"Follow-up: {status}" + (f"\n{follow_up_notes}" if follow_up_notes else ""))
    if sync_photos and photos:
        sections.append("Photos:\n" + "\n".join(photos))
    return "\n\n".join(sections)


def _fields(row: Mapping[str, Any], customer: Customer, occurred_at: datetime | None,
            photos_by_column: dict[str, list[str]], sync_photos: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for camel, column in CHECK_IN_FIELDS.items():
        value = row.get(column)
        if column in _PHOTO_COLUMNS:
            value = photos_by_column.get(column) if sync_photos and value is not None else None
        elif column == "customer_email":
            value = customer.email
        elif column == "customer_phone":
            value = customer.phone
        elif column == "created_at":
            value = occurred_at
        elif isinstance(value, str):
            value = clean_text(value)
        out[camel] = value
    return out


def prepare_check_in(row: Mapping[str, Any], settings: SyncSettings) -> PreparedCheckIn:
    """Normalise one ``check_ins`` row (plus optional ``technician_name``) for the CRM destinations.

    Never raises on bad data: problems become ``warnings``, and a row that cannot
    be synced at all gets ``error`` (the engine quarantines it with that reason).
    """
    check_in_id = int(row["id"])
    company_id = int(row["company_id"])
    digest = source_hash(row)
    try:
        return _prepare(row, settings, check_in_id, company_id, digest)
    except Exception as exc:  # a bug or an unforeseen value must not stop the other rows
        return PreparedCheckIn(check_in_id=check_in_id, company_id=company_id, source_hash=digest,
                               customer=Customer(), visit=None, match_keys=[],
                               error=f"could not prepare check-in: {type(exc).__name__}: {shorten(exc, 200)}")


def _prepare(row: Mapping[str, Any], settings: SyncSettings, check_in_id: int, company_id: int,
             digest: str) -> PreparedCheckIn:
    warnings: list[str] = []
    email, w = normalize_email(row.get("customer_email"))
    warnings += w
    phone, extension, w = normalize_phone(row.get("customer_phone"))
    warnings += w
    first, last, w = split_name(row.get("customer_name"))
    warnings += w
    customer = Customer(
        email=email, phone=phone, phone_extension=extension, first_name=first, last_name=last,
        street=_one_line(row.get("address")), city=_one_line(row.get("city")),
        state=_one_line(row.get("state")), zip=_one_line(row.get("zip")),
    )

    strategy = settings.customer_match_strategy
    if strategy not in MATCH_STRATEGIES:
        warnings.append(f"unknown customer match strategy {echo(strategy)}: 'all' used")
        strategy = "all"
    match_keys = _match_keys(strategy, customer)
    error = None if match_keys else _no_key_error(strategy, row)

    photos_by_column: dict[str, list[str]] = {}
    all_photos: list[str] = []
    if settings.sync_photos:
        for column in _PHOTO_COLUMNS:
            urls, w = photo_urls(row.get(column), names=(column,))
            photos_by_column[column] = urls
            warnings += w
            all_photos += [u for u in urls if u not in all_photos]

    occurred_at = _utc(row.get("created_at"))
    visit = None
    if occurred_at is None:
        error = error or f"created_at {echo(row.get('created_at'))} is not a timestamp"
    else:
        job_type = _one_line(row.get("job_type")) or "Service visit"
        visit = Visit(
            title=f"{job_type} – {occurred_at:%Y-%m-%d}",
            body=_body(row, job_type, occurred_at, customer, all_photos, settings.sync_photos),
            occurred_at=occurred_at,
            job_type=job_type,
            photo_urls=tuple(all_photos) if settings.sync_photos else (),
            fields=_fields(row, customer, occurred_at, photos_by_column, settings.sync_photos),
        )
    return PreparedCheckIn(check_in_id=check_in_id, company_id=company_id, source_hash=digest,
                           customer=customer, visit=visit, match_keys=match_keys,
                           warnings=warnings, error=error)
