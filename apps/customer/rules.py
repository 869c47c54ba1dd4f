"""Pure customer rules: what a valid email, name, phone, address line and country look like. No I/O.

Each check returns the value as it is stored (normalised) or raises ``InvalidField`` naming the field.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Final, Literal

from apps.common.errors import InvalidField
from apps.common.fields import worded

__all__ = [
    "ACTIVE",
    "ADDRESS_TYPES",
    "COUNTRY_CODES",
    "COUNTRY_PATTERN",
    "EMAIL_LOCAL_PART_PATTERN",
    "EMAIL_PATTERN",
    "MAX_ADDRESS_LINE_LENGTH",
    "MAX_CITY_LENGTH",
    "MAX_COMPANY_LENGTH",
    "MAX_EMAIL_LENGTH",
    "MAX_NAME_LENGTH",
    "MAX_PHONE_INPUT_LENGTH",
    "MAX_POSTAL_CODE_LENGTH",
    "MAX_STATE_LENGTH",
    "PHONE_PATTERN",
    "POSTAL_CODE_PATTERN",
    "AddressType",
    "check_address_type",
    "check_country",
    "check_email",
    "check_name",
    "check_optional_text",
    "check_phone",
    "check_postal_code",
    "check_text",
]

ACTIVE: Final = "active"

AddressType = Literal["shipping", "billing"]
ADDRESS_TYPES: Final = frozenset({"shipping", "billing"})

# Column widths of the seed's customers / customer_addresses: checking here turns what would be a
# database error into a 400 that names the field.
MAX_EMAIL_LENGTH: Final = 254  # RFC 5321's limit on a forward path (the column is VARCHAR(255))
MAX_EMAIL_LOCAL_LENGTH: Final = 64
MAX_NAME_LENGTH: Final = 100
MAX_COMPANY_LENGTH: Final = 255
MAX_ADDRESS_LINE_LENGTH: Final = 255
MAX_CITY_LENGTH: Final = 100
MAX_STATE_LENGTH: Final = 100
MAX_POSTAL_CODE_LENGTH: Final = 20

# An addr-spec with a dot-atom local part and a DNS host name: what mail systems deliver to in practice.
# Quoted local parts, IP-literal domains and non-ASCII addresses are refused (IDN domains go as xn--).
_ATOM: Final = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL: Final = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_EMAIL_RE: Final = re.compile(rf"{_ATOM}(?:\.{_ATOM})*@(?:{_LABEL}\.)+(?:[A-Za-z]{{2,63}}|xn--[A-Za-z0-9-]{{1,59}})")
# The request schema declares the same shape (and OpenAPI shows it), so the document and check_email agree;
# the local part's limit is a second pattern (a lookahead would defeat generators of test data).
EMAIL_PATTERN: Final = worded(f"^{_EMAIL_RE.pattern}$", "must be an email address, e.g. ada@example.com")
EMAIL_LOCAL_PART_PATTERN: Final = r"^[^@]{1,64}@"

# People type phone numbers with separators; we store E.164-like digits: an optional leading "+" and
# 7 to 15 digits (E.164's maximum), which fits the seed's VARCHAR(20).
PHONE_PATTERN: Final = worded(
    r"^[ ().-]*\+?[ ().-]*(?:[0-9][ ().-]*){7,15}$",
    "must be a phone number: 7 to 15 digits, a leading + and spaces, dots, dashes or brackets allowed",
)
MAX_PHONE_INPUT_LENGTH: Final = 32
_PHONE_SEPARATORS: Final = str.maketrans("", "", " ().-")
_PHONE_STORED_RE: Final = re.compile(r"\+?[0-9]{7,15}")

POSTAL_CODE_PATTERN: Final = worded(
    r"^[A-Za-z0-9][A-Za-z0-9 -]*$", "must be letters, digits, spaces and dashes, starting with a letter or digit"
)
_POSTAL_CODE_RE: Final = re.compile(POSTAL_CODE_PATTERN)

# ISO 3166-1 alpha-2, officially assigned codes only (user-assigned codes such as XK are not included).
# A country is where parcels go and taxes apply, so a well-formed but unassigned code is refused too.
_ISO_3166_ALPHA2: Final = """
    AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS BT BV
    BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE EG EH ER ES
    ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT HU ID IE
    IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY
    MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU
    NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM
    SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE
    VG VI VN VU WF WS YE YT ZA ZM ZW
"""
COUNTRY_CODES: Final = frozenset(_ISO_3166_ALPHA2.split())
COUNTRY_PATTERN: Final = worded(
    f"^(?:{'|'.join(sorted(COUNTRY_CODES))})$",
    "must be an assigned ISO 3166-1 alpha-2 country code in capitals, e.g. US",
)


def check_email(email: str, *, field: str = "email") -> str:
    """Return the address lower-cased (emails are unique case-insensitively), or raise if it is not one."""
    address = email.strip()
    if len(address) > MAX_EMAIL_LENGTH:
        raise InvalidField(field, f"must be at most {MAX_EMAIL_LENGTH} characters")
    if not _EMAIL_RE.fullmatch(address):
        raise InvalidField(field, "is not a valid email address")
    local, _, _domain = address.rpartition("@")
    if len(local) > MAX_EMAIL_LOCAL_LENGTH:
        raise InvalidField(field, f"the part before '@' must be at most {MAX_EMAIL_LOCAL_LENGTH} characters")
    return address.lower()


def check_text(field: str, value: str, *, max_length: int) -> str:
    """Return ``value`` without surrounding whitespace; it must not be blank, too long or hold control
    characters (PostgreSQL refuses NUL outright; newlines and tabs do not belong in a name or a line)."""
    stripped = value.strip()
    if not stripped:
        raise InvalidField(field, "must not be blank")
    if len(stripped) > max_length:
        raise InvalidField(field, f"must be at most {max_length} characters")
    if any(unicodedata.category(char) == "Cc" for char in stripped):
        raise InvalidField(field, "must not contain control characters")
    return stripped


def check_optional_text(field: str, value: str | None, *, max_length: int) -> str | None:
    """Like ``check_text``, but ``None`` (or only whitespace) means "not given" and is stored as NULL."""
    if value is None or not value.strip():
        return None
    return check_text(field, value, max_length=max_length)


def check_name(value: str, *, field: str) -> str:
    """A first or last name: trimmed, not blank, at most 100 characters."""
    return check_text(field, value, max_length=MAX_NAME_LENGTH)


def check_phone(phone: str, *, field: str = "phone") -> str:
    """Return the number without separators ("+44 20 7946-0958" -> "+442079460958")."""
    compact = phone.strip().translate(_PHONE_SEPARATORS)
    if not _PHONE_STORED_RE.fullmatch(compact):
        raise InvalidField(
            field, "must be 7 to 15 digits, optionally starting with '+' (spaces, '-', '.', '(', ')' allowed)"
        )
    return compact


def check_country(country: str, *, field: str = "country") -> str:
    """Return the country if it is an assigned ISO 3166-1 alpha-2 code (uppercase, e.g. DE)."""
    if country not in COUNTRY_CODES:
        raise InvalidField(field, "must be an ISO 3166-1 alpha-2 country code in uppercase, e.g. DE")
    return country


def check_postal_code(postal_code: str | None, *, field: str = "postal_code") -> str | None:
    """Return the trimmed postal code (letters, digits, spaces, '-'), or None when not given."""
    code = check_optional_text(field, postal_code, max_length=MAX_POSTAL_CODE_LENGTH)
    if code is not None and not _POSTAL_CODE_RE.fullmatch(code):
        raise InvalidField(field, "may only contain letters, digits, spaces and '-'")
    return code


def check_address_type(address_type: str, *, field: str = "type") -> AddressType:
    """Return the address type if it is shipping or billing."""
    if address_type == "shipping":
        return "shipping"
    if address_type == "billing":
        return "billing"
    raise InvalidField(field, f"must be one of: {', '.join(sorted(ADDRESS_TYPES))}")
