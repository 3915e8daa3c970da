"""What each CRM requires and accepts in a customer's fields, checked before anything is sent. Pure, no I/O.

One declaration per CRM (:data:`RULES`, a :class:`CrmFieldRules`) lists the customer fields the CRM
takes, which are required, their formats and lengths, whether the CRM has a company field and whether
its phone field holds an extension. :func:`apply_field_rules` checks a prepared check-in against them:

* a value that fails an **optional** field is repaired or dropped, and the row keeps a warning saying
  what and why (a foreign number where the CRM takes North American numbers only is dropped; an
  extension moves to the visit's note where the phone field has none; an over-long text is cut);
* the **name rule**, shared by every CRM: a business-looking name ("Bob the Plumber", "Acme Heating
  LLC") goes to the company field where the CRM has one (and stays the contact's last name, first name
  empty); a single name (or a business name) is the last
  name where the CRM requires one; with no usable name at all, such a CRM gets one made from the email's
  local part, else "Unknown" (as the Salesforce mapping already did), with a warning.

:func:`refused_fields` reads a CRM's 400 answer for the fields it names (the vendors' documented error
bodies, as the hooks render them into the error text); :mod:`crm_sync.destinations.base` then sends the
record once more without an optional refused field, and quarantines (``crm_rejected``, field named) only
when a required field is refused.

Vendor facts (``UNCONFIRMED`` where no vendor page says so):

* FieldEdge customer (https://docs.gravitee-fe.dev/customer-1981961m0): first/last names 2-50
  characters without digits; an email or a phone is required; phone in international format
  (``+14155552671``). ``lastName`` required: what FieldEdge answers (``400 lastName is required``,
  seen by users, issue 15); the page marks only the lengths. Phone extension: no field (UNCONFIRMED).
* Housecall Pro ``CustomerCreate`` (housecall.v1.yaml): "One of first_name, last_name, email,
  mobile_number, home_number, work_number are required", ``company`` exists. ``mobile_number``
  validity ("Mobile number is invalid" for numbers without area code, foreign numbers, "ext 12"):
  observed answers (issue 15), not in the spec: UNCONFIRMED; North American 10-digit numbers pass.
* HubSpot contacts (contacts-v3.json): every property optional in the schema; ``company`` is a default
  contact property; ``phone`` is free text (no extension property). String properties hold 65,536
  characters. A contact needs one of email, firstname, lastname: the sandbox's rule, UNCONFIRMED.
* Salesforce Contact: ``LastName`` required (80), ``FirstName`` 40, ``Email`` 80, ``Phone`` 40
  (Object Reference, Contact). The Account carries the customer's whole name (no separate company).
* Jobber ``ClientCreateInput`` (2022-03-10 schema excerpt): ``firstName``, ``lastName``,
  ``companyName`` all optional; phone numbers are free text (the extension is kept in the number).
* ServiceTitan CRM v2 (tenant-crm-v2.yml): ``name`` (one field, required), contacts of type Phone
  with a ``memo`` (the extension goes there). No company field apart from ``name``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

import phonenumbers

from crm_sync.models import Customer, PreparedCheckIn
from crm_sync.text import echo

__all__ = [
    "RULES",
    "CrmFieldRules",
    "FieldRule",
    "apply_field_rules",
    "check_customer",
    "is_business_name",
    "refused_fields",
    "rules_for",
]

#: Formats a :class:`FieldRule` can demand.
PHONE_NANP = "phone_nanp"  # North American number (+1 and 10 digits)
PHONE_ANY = "phone"  # any valid E.164 number
EMAIL = "email"
PERSON_NAME = "person_name"  # letters only (no digits)


@dataclass(frozen=True)
class FieldRule:
    """One customer field as one CRM takes it.

    ``attr`` is the :class:`crm_sync.models.Customer` attribute; ``crm_names`` how the CRM names the
    field in bodies and error messages (API names and the labels its messages use).
    """

    attr: str
    crm_names: tuple[str, ...]
    required: bool = False
    max_len: int | None = None
    min_len: int | None = None
    fmt: str | None = None
    #: where the limit / format comes from; "UNCONFIRMED" when no vendor page says it
    source: str = ""


@dataclass(frozen=True)
class CrmFieldRules:
    """The customer fields of one CRM (see the module docstring for the sources)."""

    crm_type: str
    label: str
    fields: tuple[FieldRule, ...]
    #: the CRM's company field (None: it has none apart from the customer's name)
    company_field: str | None = None
    #: the phone field holds an extension ("512-555-0100 x12"); otherwise the extension goes to the note
    phone_takes_extension: bool = False
    #: a customer needs a first name, a last name or an email (a phone alone is refused)
    name_or_email_required: bool = False

    def rule(self, attr: str) -> FieldRule | None:
        return next((f for f in self.fields if f.attr == attr), None)

    @property
    def last_name_required(self) -> bool:
        rule = self.rule("last_name")
        return bool(rule and rule.required)


RULES: dict[str, CrmFieldRules] = {
    r.crm_type: r
    for r in (
        CrmFieldRules(
            "fieldedge",
            "FieldEdge",
            (
                FieldRule("first_name", ("firstName",), max_len=50, min_len=2, fmt=PERSON_NAME, source="customer page"),
                FieldRule(
                    "last_name",
                    ("lastName",),
                    required=True,
                    max_len=50,
                    min_len=2,
                    fmt=PERSON_NAME,
                    source="customer page (lengths); required: FieldEdge's 400 answer",
                ),
                FieldRule("company", ("companyName",), max_len=100, source="UNCONFIRMED length"),
                FieldRule("email", ("email",), fmt=EMAIL, source="customer page"),
                FieldRule("phone", ("phoneNumber", "phone", "Phone number"), fmt=PHONE_ANY, source="customer page"),
                FieldRule("street", ("address1", "addressLine1"), max_len=100, source="UNCONFIRMED length"),
                FieldRule("city", ("city",), max_len=50, source="UNCONFIRMED length"),
                FieldRule("zip", ("zip", "postalCode"), max_len=10, source="UNCONFIRMED length"),
            ),
            company_field="companyName",
        ),
        CrmFieldRules(
            "housecallpro",
            "Housecall Pro",
            (
                FieldRule("first_name", ("first_name",), max_len=255, source="UNCONFIRMED length"),
                FieldRule("last_name", ("last_name",), max_len=255, source="UNCONFIRMED length"),
                FieldRule("company", ("company",), max_len=255, source="housecall.v1.yaml; UNCONFIRMED length"),
                FieldRule("email", ("email", "Email"), fmt=EMAIL, source="housecall.v1.yaml"),
                FieldRule(
                    "phone",
                    ("mobile_number", "Mobile number"),
                    fmt=PHONE_NANP,
                    source="UNCONFIRMED: Housecall Pro's 'Mobile number is invalid' answers (issue 15)",
                ),
            ),
            company_field="company",
        ),
        CrmFieldRules(
            "hubspot",
            "HubSpot",
            (
                FieldRule("first_name", ("firstname",), max_len=65_536),
                FieldRule("last_name", ("lastname",), max_len=65_536),
                FieldRule("company", ("company",), max_len=65_536),
                FieldRule("email", ("email",), fmt=EMAIL),
                FieldRule("phone", ("phone",), fmt=PHONE_ANY),
                FieldRule("street", ("address",), max_len=65_536),
                FieldRule("city", ("city",), max_len=65_536),
                FieldRule("zip", ("zip",), max_len=65_536),
            ),
            company_field="company",
            name_or_email_required=True,
        ),
        CrmFieldRules(
            "salesforce",
            "Salesforce",
            (
                FieldRule("first_name", ("FirstName",), max_len=40, source="Contact object reference"),
                FieldRule("last_name", ("LastName",), required=True, max_len=80, source="Contact object reference"),
                FieldRule("email", ("Email",), max_len=80, fmt=EMAIL, source="Contact object reference"),
                FieldRule("phone", ("Phone",), max_len=40, fmt=PHONE_ANY, source="Contact object reference"),
                FieldRule("street", ("MailingStreet", "BillingStreet"), max_len=255),
                FieldRule("city", ("MailingCity", "BillingCity"), max_len=40),
                FieldRule("zip", ("MailingPostalCode", "BillingPostalCode"), max_len=20),
            ),
        ),
        CrmFieldRules(
            "jobber",
            "Jobber",
            (
                FieldRule("first_name", ("firstName",)),
                FieldRule("last_name", ("lastName",)),
                FieldRule("company", ("companyName",)),
                FieldRule("email", ("emails", "email"), fmt=EMAIL),
                FieldRule("phone", ("phones", "phone", "number"), fmt=PHONE_ANY),
            ),
            company_field="companyName",
            phone_takes_extension=True,
        ),
        CrmFieldRules(
            "servicetitan",
            "ServiceTitan",
            (
                FieldRule("first_name", ()),
                FieldRule("last_name", ()),
                FieldRule("email", ("Email",), fmt=EMAIL),
                FieldRule("phone", ("Phone",), fmt=PHONE_ANY),
            ),
            phone_takes_extension=True,
        ),
    )
}


def rules_for(crm_type: str) -> CrmFieldRules | None:
    return RULES.get(crm_type)


# --------------------------------------------------------------------------- the name rule
#: Words that make a name a business: legal forms and trades (lower-case, no punctuation).
_LEGAL = {"llc", "inc", "co", "corp", "corporation", "ltd", "llp", "pllc", "lp", "company", "gmbh", "pc"}
_TRADES = {
    "plumber",
    "plumbing",
    "heating",
    "cooling",
    "hvac",
    "electric",
    "electrical",
    "roofing",
    "services",
    "service",
    "construction",
    "contractors",
    "contracting",
    "landscaping",
    "properties",
    "property",
    "management",
    "holdings",
    "enterprises",
    "group",
    "solutions",
    "restaurant",
    "church",
    "school",
    "apartments",
    "hotel",
    "clinic",
}
_WORD = re.compile(r"[^\W\d_]+|\d+|&", re.UNICODE)


def is_business_name(name: str | None) -> bool:
    """Whether a customer name reads as a business: a legal form (LLC, Inc), a trade word
    (Plumbing, Heating), "&", or "<Name> the <Trade>" ("Bob the Plumber")."""
    words = [w.casefold() for w in _WORD.findall(name or "")]
    if len(words) < 2:
        return False
    if "&" in words or any(w in _LEGAL or w in _TRADES for w in words[1:]):
        return True
    return "the" in words[1:-1]


def _name_from_email(email: str | None) -> str | None:
    local = re.sub(r"[^A-Za-z]+", " ", (email or "").split("@", 1)[0]).strip()
    return local.title() if len(local) >= 2 else None


# --------------------------------------------------------------------------- checks
def _phone_problem(rule: FieldRule, phone: str) -> str | None:
    try:
        number = phonenumbers.parse(phone, None)
    except phonenumbers.NumberParseException:
        return "is not a phone number"
    if rule.fmt == PHONE_NANP and number.country_code != 1:
        return "is not a North American number"
    return None


def _text_rule(label: str, rules: CrmFieldRules, rule: FieldRule, value: str, warnings: list[str]) -> str | None:
    """A text value within the rule's format and lengths: repaired when it can be, else None."""
    shown = f"{rule.crm_names[0] if rule.crm_names else rule.attr}"
    if rule.fmt == PERSON_NAME and re.search(r"\d", value):
        repaired = " ".join(re.sub(r"\d+", " ", value).split())
        warnings.append(f"{label} {echo(value)}: {rules.label} refuses digits in {shown}: digits removed")
        value = repaired
    if rule.min_len and len(value) < rule.min_len:
        warnings.append(
            f"{label} {echo(value)} is shorter than {rules.label}'s {rule.min_len} characters for {shown}: not sent"
        )
        return None
    if rule.max_len and len(value) > rule.max_len:
        if rule.fmt == EMAIL:
            warnings.append(
                f"{label} {echo(value)} is longer than {rules.label}'s {rule.max_len} characters for {shown}: not sent"
            )
            return None
        warnings.append(f"{label} {echo(value)} is longer than {rules.label}'s {rule.max_len} characters: cut")
        value = value[: rule.max_len - 1].rstrip() + "…"
    return value or None


def check_customer(crm_type: str, customer: Customer) -> tuple[Customer, str | None, list[str]]:
    """``customer`` as ``crm_type`` accepts it, a line for the visit's note (a moved phone extension)
    or None, and warnings naming each value dropped, moved or repaired and why. Unknown CRM: unchanged."""
    rules = RULES.get(crm_type)
    if rules is None:
        return customer, None, []
    warnings: list[str] = []
    first, last, company = customer.first_name, customer.last_name, customer.company
    full = customer.full_name
    if rules.company_field and not company and is_business_name(full):
        # The whole name is the company, and the contact's (last) name too: CRMs show and search
        # customers by it, and some need a name to create one at all (HubSpot without an email).
        company, first, last = full, None, full
        warnings.append(f"customer name {echo(full)} reads as a business: sent as {rules.label} {rules.company_field}")
    elif last is None and first and rules.last_name_required:
        first, last = None, first
        warnings.append(f"customer name {echo(full)} is a single name: sent as {rules.label}'s required last name")

    values = {"first_name": first, "last_name": last, "company": company}
    for attr in ("first_name", "last_name", "company", "email", "street", "city", "zip"):
        value = values.get(attr, getattr(customer, attr))
        rule = rules.rule(attr)
        if rule is None:
            values[attr] = None if attr == "company" else value
            continue
        values[attr] = _text_rule(f"customer {attr.replace('_', ' ')}", rules, rule, value, warnings) if value else None
    if rules.last_name_required and not values["last_name"]:
        fallback = _name_from_email(customer.email) or "Unknown"
        if values["first_name"]:
            fallback, values["first_name"] = values["first_name"], None
        values["last_name"] = fallback
        warnings.append(
            f"customer has no name {rules.label} accepts as its required last name: last name set to {echo(fallback)}"
        )
    elif rules.name_or_email_required and not (values["first_name"] or values["last_name"] or values["email"]):
        values["last_name"] = "Unknown"
        warnings.append(
            f"customer has no name or email, one of which {rules.label} requires: last name set to 'Unknown'"
        )

    phone, extension, note = customer.phone, customer.phone_extension, None
    phone_rule = rules.rule("phone")
    if phone and phone_rule is not None:
        problem = _phone_problem(phone_rule, phone)
        if problem:
            names = "/".join(phone_rule.crm_names[:1])
            warnings.append(f"customer phone {echo(phone)} {problem}, which {rules.label} refuses in {names}: not sent")
            note = f"Customer phone: {phone}" + (f" ext. {extension}" if extension else "")
            phone, extension = None, None
    if extension and not rules.phone_takes_extension:
        note = f"Customer phone extension: {extension}"
        warnings.append(
            f"customer phone extension {echo(extension)}: {rules.label}'s phone field has no extension: "
            "moved to the visit note"
        )
        extension = None
    checked = replace(customer, phone=phone, phone_extension=extension, **values)
    return checked, note, warnings


def apply_field_rules(crm_type: str, row: PreparedCheckIn) -> PreparedCheckIn:
    """``row`` with its customer checked by :func:`check_customer` for ``crm_type``: warnings added, a
    moved extension (or a dropped phone) appended to the visit's body. A row with an error is returned as is."""
    if row.error:
        return row
    customer, note, warnings = check_customer(crm_type, row.customer)
    if customer == row.customer and not warnings:
        return row
    visit = row.visit
    if note and visit is not None:
        visit = replace(visit, body=f"{visit.body}\n\n{note}" if visit.body else note)
    return replace(row, customer=customer, visit=visit, warnings=row.warnings + warnings)


# --------------------------------------------------------------------------- refusals
def refused_fields(crm_type: str, message: str) -> list[FieldRule]:
    """The customer fields a CRM's refusal names (``message`` as the hook renders the vendor's error body:
    FieldEdge ``errors: {field: [..]}``, Housecall Pro ``{"error": {"message": "Mobile number is invalid"}}``,
    HubSpot / Salesforce ``(field x)``, Jobber ``userErrors`` paths). A name counts only as a whole word."""
    rules = RULES.get(crm_type)
    if rules is None or not message:
        return []
    text = message.split(": ", 1)[1] if " HTTP " in message.split(": ", 1)[0] else message
    found = []
    for rule in rules.fields:
        for name in rule.crm_names:
            if re.search(rf"(?<![A-Za-z0-9_]){re.escape(name)}(?![A-Za-z0-9_])", text, re.IGNORECASE):
                found.append(rule)
                break
    return found


def without_fields(row: PreparedCheckIn, refused: Sequence[FieldRule], crm_label: str, reason: str) -> bool:
    """Clear the optional refused fields on ``row``'s customer (and say so in its warnings); False when
    the row has none of them to clear, so a resend would change nothing."""
    cleared = {r.attr: None for r in refused if getattr(row.customer, r.attr, None)}
    if not cleared:
        return False
    if "phone" in cleared:
        cleared["phone_extension"] = None
    row.customer = replace(row.customer, **cleared)
    names = ", ".join(r.crm_names[0] if r.crm_names else r.attr for r in refused)
    row.warnings.append(f"{crm_label} refused {names} ({reason}): sent again without it")
    return True
