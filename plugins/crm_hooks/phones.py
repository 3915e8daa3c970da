"""A phone as a CRM stores it -> E.164: the one conversion the hooks and the sync share.

It lives beside the hooks because the sync depends on them, never the other way round.
"""

from __future__ import annotations

from typing import Any

import phonenumbers


def to_e164(raw: Any, default_region: str = "US") -> str | None:
    """A phone in any format -> E.164, or None when it does not parse.

    Lenient on purpose (no validity check): it compares what a CRM holds with the sync's
    own numbers, which are E.164 already.
    """
    if not raw:
        return None
    try:
        number = phonenumbers.parse(str(raw), default_region)
    except phonenumbers.NumberParseException:
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
