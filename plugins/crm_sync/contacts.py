"""Customer contact fields as technicians type them: emails, phone numbers, names. Pure functions, no I/O.

Customer fields on a check-in are free text typed by a technician on a phone, so every normaliser here
returns the cleaned value (or ``None``) together with human-readable warnings; nothing raises on bad data.

* **Emails** are trimmed, lower-cased (local part included: CRMs and people treat addresses
  case-insensitively, and match keys must be stable) and validated with ``email_validator`` without a
  DNS lookup. When a field holds several addresses the first *valid* one is kept.
* **Phones** are found with ``phonenumbers.PhoneNumberMatcher`` (so "(512) 555-0100 cell" or two numbers
  in one field work) and accepted when ``phonenumbers.is_valid_number`` says so. The NANP's fictional
  range NXX-555-0100..0199 is accepted as well even if a metadata version judged it invalid, so test data
  stays usable. Numbers without a ``+`` are read in ``default_region``. A phone as a CRM stores it (any
  format) becomes E.164 with :func:`to_e164`.
* **Names**: honorifics (Mr., Dr., ...) and professional suffixes (MD, PhD, ...) are dropped; generational
  suffixes (Jr., III) stay at the end of the last name. "Last, First" is understood. Otherwise the first
  token is the first name and the rest the last name, except that a surname particle (van, von, de, der,
  da, di, du, la, le, st., ...) after the first token starts the last name: "Mary Ann van der Berg" ->
  ("Mary Ann", "van der Berg"). All-caps or all-lower input is title-cased; mixed case is kept as typed.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from decimal import Decimal
from typing import Any

import phonenumbers
from email_validator import EmailNotValidError, validate_email

from crm_hooks.phones import to_e164
from crm_sync.text import WHITESPACE, clean_text, echo, shorten

__all__ = ["normalize_email", "normalize_phone", "split_name", "to_e164"]


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
    token = token.split("?", 1)[0]  # mailto:a@x.com?subject=...
    return token.rstrip(".:")


def normalize_email(raw: Any) -> tuple[str | None, list[str]]:
    """Trimmed, lower-cased, validated email (first valid one of several) and warnings."""
    raw, problems = _as_text(raw, "customer_email")
    if raw is None:
        return None, problems
    email, warnings = _email_of(raw)
    return email, list(warnings)


# A returning customer's check-ins carry the same text: validated once per process (pure, and bounded).
@functools.lru_cache(maxsize=8192)
def _email_of(raw: str) -> tuple[str | None, tuple[str, ...]]:
    text = unicodedata.normalize("NFC", raw).strip()
    if not text:
        return None, ()
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
        return None, (f"customer_email {echo(text)} is not a valid email address ({shorten(reason, 100)}): dropped",)
    warnings: list[str] = []
    dropped = valid[1:] + [c for c, _ in rejected]
    if dropped:
        shown = ", ".join(echo(d, 40) for d in dropped[:3]) + (" ..." if len(dropped) > 3 else "")
        warnings.append(
            f"customer_email {echo(text)} holds {len(dropped) + 1} addresses: kept '{valid[0]}', dropped {shown}"
        )
    return valid[0], tuple(warnings)


# --------------------------------------------------------------------------- phone
_FICTIONAL_NANP = re.compile(r"^[2-9](?!11)\d{2}55501\d{2}$")  # NXX-555-0100..0199
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
    e164, extension, warnings = _phone_of(raw, default_region)
    return e164, extension, list(warnings)


@functools.lru_cache(maxsize=8192)  # as :func:`_email_of`
def _phone_of(raw: str, default_region: str) -> tuple[str | None, str | None, tuple[str, ...]]:
    text = unicodedata.normalize("NFKC", raw).strip()
    if not text:
        return None, None, ()
    accepted: list[phonenumbers.PhoneNumber] = []
    problems: list[str] = []
    try:
        matches = list(phonenumbers.PhoneNumberMatcher(text, default_region, leniency=phonenumbers.Leniency.POSSIBLE))
    except Exception:  # pragma: no cover - defensive: the matcher is not supposed to raise
        matches = []
    for match in matches:
        if _phone_ok(match.number):
            if all(
                match.number.national_number != a.national_number or match.number.country_code != a.country_code
                for a in accepted
            ):
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
        return None, None, (f"customer_phone {echo(text)} is not a valid phone number ({reason}): dropped",)
    first = accepted[0]
    e164 = _format_e164(first)
    extension = first.extension or None
    warnings: list[str] = []
    if len(accepted) > 1:
        dropped = ", ".join(_format_e164(n) for n in accepted[1:])
        warnings.append(
            f"customer_phone {echo(text)} holds {len(accepted)} phone numbers: kept {e164}, dropped {dropped}"
        )
    return e164, extension, tuple(warnings)


def _format_e164(number: phonenumbers.PhoneNumber) -> str:
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


# --------------------------------------------------------------------------- names
_HONORIFICS = {"mr", "mrs", "ms", "miss", "mx", "dr", "prof", "rev", "sir", "mister", "madam", "mme", "mlle"}
_GENERATIONAL = {"jr": "Jr.", "sr": "Sr.", "ii": "II", "iii": "III", "iv": "IV"}
_PROFESSIONAL = {"md", "phd", "dds", "dmd", "esq", "cpa", "rn", "dvm"}
_EMAIL_LIKE = re.compile(r"[<(\[]?\S+@\S+[>)\]]?")
_PARTICLES = {
    "van",
    "von",
    "de",
    "der",
    "den",
    "del",
    "della",
    "di",
    "da",
    "du",
    "la",
    "le",
    "dos",
    "das",
    "ten",
    "ter",
    "st",
    "st.",
    "ste",
    "saint",
    "bin",
    "ibn",
}


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
    text = WHITESPACE.sub(" ", unicodedata.normalize("NFC", clean_text(raw))).strip(" ,;")
    if not text:
        return None, None, []
    if "@" in text:  # "John Smith <john@x.com>": keep the name part
        text = WHITESPACE.sub(" ", _EMAIL_LIKE.sub(" ", text)).strip(" ,;")
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
    if len(pieces) >= 2:  # "Smith, John"
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
