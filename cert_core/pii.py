"""Personal data in model outputs: detection with checksums, and masking that never shows it.

Kinds found (each candidate is validated where a checksum exists, so random digit runs are not
reported):

* ``email``: ``local@domain.tld``;
* ``phone``: international numbers (``+`` and 8 to 15 digits, spaces, dots, dashes and one
  parenthesised area code allowed) and North American ``(555) 123-4567`` / ``555-123-4567``;
* ``iban``: country code, check digits and account, valid by ISO 13616 mod-97;
* ``card``: payment card numbers, 13 to 19 digits (spaces or dashes allowed), valid by Luhn and with
  a known issuer prefix;
* ``national_id``: ids whose check digit can be verified: Spanish DNI/NIE (mod-23 letter), Dutch
  BSN (11-test, written as 9 digits), French NIR (mod-97 key), US SSN (format rules: no checksum
  exists; written ``123-45-6789``);
* ``ip``: IPv4 addresses (each octet 0-255; version-like triples are left alone) and IPv6.

:func:`find_pii` returns :class:`PiiFinding` items that carry the kind, the position and a masked
form (:func:`mask`: all but the last two characters replaced), never the value itself in their
``repr``, so findings can be logged and reported safely.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections import Counter
from collections.abc import Callable

__all__ = ["KINDS", "PiiFinding", "count_pii", "find_pii", "mask"]

KINDS = ("email", "phone", "iban", "card", "national_id", "ip")

_EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9._%+-]{1,64}@(?:[A-Za-z0-9-]{1,63}\.)+[A-Za-z]{2,24}\b")
_PHONE_INTL = re.compile(r"(?<![\w+])\+\d{1,3}(?:[ .-]?\(?\d{1,4}\)?){2,6}(?![\w])")
_PHONE_NANP = re.compile(r"(?<![\w(])(?:\(\d{3}\)\s?|\d{3}[-.])\d{3}[-.]\d{4}(?!\w)")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]{4}){2,7}(?:[ ]?[A-Z0-9]{1,3})?\b")
_CARD = re.compile(r"(?<![\w.])\d(?:[ -]?\d){12,18}(?!\w|\.\d)")
_DNI = re.compile(r"\b[XYZ]?\d{7,8}-?[A-Z]\b")
_BSN = re.compile(r"(?<![\w.,-])\d{9}(?!\w|[.,-]\d)")
_NIR = re.compile(r"\b[12]\s?\d{2}\s?(?:0[1-9]|1[0-2])\s?(?:\d{2}|2[AB])\s?\d{3}\s?\d{3}\s?\d{2}\b")
_SSN = re.compile(r"(?<![\w-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\w-])")
_IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?!\w|\.\d)")
# Starts at a hex group or "::", so the scan does not try every position of the text.
_IPV6 = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{1,4}|(?=::))(?::[0-9A-Fa-f]{0,4}){2,7}(?![\w:])")
_DNI_LETTERS = "TRWAGMYFPDXBNJZSQVHLCKE"
# Issuer prefixes of payment cards (Visa, Mastercard, Amex, Discover, Diners, JCB, UnionPay, Maestro).
# 4: Visa; 5: Mastercard, Maestro; 2[2-7]: Mastercard; 3[4-8], 30[0-5]: Amex, JCB, Diners; 6: Discover,
# UnionPay, Maestro.
_CARD_PREFIX = re.compile(r"^(?:[456]|2[2-7]|3[4-8]|30[0-5])")


def mask(value: str) -> str:
    """``value`` with every character but the last two replaced by ``*`` (separators kept)."""
    keep = 2 if len(value) > 4 else 0
    head, tail = value[: len(value) - keep], value[len(value) - keep :]
    return re.sub(r"[^\s.@-]", "*", head) + tail


@dataclasses.dataclass(frozen=True)
class PiiFinding:
    """One piece of personal data: its kind, where it is, and a masked form."""

    kind: str
    start: int
    end: int
    masked: str

    def to_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)


def _digits(text: str) -> str:
    return re.sub(r"\D", "", text)


def _luhn(number: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(number)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _iban_ok(candidate: str) -> bool:
    compact = candidate.replace(" ", "")
    if not 15 <= len(compact) <= 34:
        return False
    moved = compact[4:] + compact[:4]
    return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1


def _dni_ok(candidate: str) -> bool:
    compact = candidate.replace("-", "")
    number, letter = compact[:-1], compact[-1]
    number = number.replace("X", "0").replace("Y", "1").replace("Z", "2")
    return number.isdigit() and _DNI_LETTERS[int(number) % 23] == letter


def _bsn_ok(candidate: str) -> bool:
    weights = [9, 8, 7, 6, 5, 4, 3, 2, -1]
    return candidate[0] != "0" and sum(int(d) * w for d, w in zip(candidate, weights, strict=True)) % 11 == 0


def _nir_ok(candidate: str) -> bool:
    compact = candidate.replace(" ", "")
    body, key = compact[:13], compact[13:]
    body = body.replace("2A", "19").replace("2B", "18")  # Corsica
    return body.isdigit() and key.isdigit() and 97 - int(body) % 97 == int(key)


def _card_ok(candidate: str) -> bool:
    digits = _digits(candidate)
    return 13 <= len(digits) <= 19 and _luhn(digits) and _CARD_PREFIX.match(digits) is not None


def _phone_ok(candidate: str) -> bool:
    return 8 <= len(_digits(candidate)) <= 15


def _ip_ok(candidate: str) -> bool:
    try:
        address = ipaddress.ip_address(candidate)
    except ValueError:
        return False
    if address.version == 4:
        return not all(int(part) < 10 for part in candidate.split("."))  # 1.2.3.4-style versions
    return True


# Where personal data could start: an @, a + before a digit, a run of 7+ digits and separators, a
# hex group followed by colons. Only windows around these are scanned by the patterns above, so
# ordinary prose (years, prices, short numbers) costs one pass of this pattern.
# In order of strength: a later kind may not claim text an earlier one found (a card number is not
# also a phone number). Each pattern with the check its candidates must pass (if any), and a
# character it cannot match without (a window lacking it is skipped).
_CHECKS: tuple[tuple[str, re.Pattern[str], Callable[[str], bool] | None, str], ...] = (
    ("email", _EMAIL, None, "@"),
    ("iban", _IBAN, _iban_ok, ""),
    ("card", _CARD, _card_ok, ""),
    ("national_id", _NIR, _nir_ok, ""),
    ("national_id", _DNI, _dni_ok, ""),
    ("national_id", _SSN, None, "-"),
    ("national_id", _BSN, _bsn_ok, ""),
    ("phone", _PHONE_INTL, _phone_ok, "+"),
    ("phone", _PHONE_NANP, None, ""),
    ("ip", _IPV4, _ip_ok, "."),
    ("ip", _IPV6, _ip_ok, ":"),
)

# One pass each: Python's re runs a pattern that starts with a literal far faster than an
# alternation.
# Each with how far to look before and after it: an email's local part and domain; an IBAN's
# country code and check digits before its first digit run; an address's other groups.
_HINTS = tuple(
    (re.compile(pattern), before, after)
    for pattern, before, after in (
        ("@", 70, 260),
        (r"\+\d", 2, 40),
        ("::", 40, 40),
        (r":[0-9A-Fa-f]{1,4}:", 40, 40),
    )
)
# A run of 7+ digits and separators. Searched on a copy where every ASCII digit is "0", so the
# pattern starts with a literal and the scan skips ahead as fast as for "@" (a pattern starting
# with a class tests every position). Latin-1 with "replace" keeps one byte per character, so
# offsets stay the text's; digits outside ASCII are not hints.
_DIGIT_RUN = re.compile(rb"0[0 .()/-]{5,}0")
_ZERO_DIGITS = bytes.maketrans(b"0123456789", b"0" * 10)
_DIGIT_CONTEXT = 16


def _windows(text: str) -> list[tuple[int, int]]:
    spans = [
        (max(0, hint.start() - before), min(len(text), hint.end() + after))
        for pattern, before, after in _HINTS
        for hint in pattern.finditer(text)
    ]
    zeroed = text.encode("latin-1", "replace").translate(_ZERO_DIGITS)
    spans += (
        (max(0, hint.start() - _DIGIT_CONTEXT), min(len(text), hint.end() + _DIGIT_CONTEXT))
        for hint in _DIGIT_RUN.finditer(zeroed)
    )
    spans.sort()
    merged: list[tuple[int, int]] = []
    for start, end in spans:
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def find_pii(text: str, kinds: tuple[str, ...] = KINDS) -> list[PiiFinding]:
    """Every piece of personal data in ``text`` (validated), in order; overlapping matches of a
    weaker kind are dropped (a card number is not also a phone number)."""
    found: list[PiiFinding] = []
    taken = bytearray(len(text))  # 1 where a finding already is: a weaker kind may not overlap it
    windows = _windows(text)
    for kind, pattern, valid, needs in _CHECKS:
        if kind not in kinds:
            continue
        for start, end in windows:
            if needs and text.find(needs, start, end) < 0:
                continue
            # pos/endpos keep the look-behinds seeing the real text before the window.
            for match in pattern.finditer(text, start, end):
                if 1 in taken[match.start() : match.end()]:
                    continue
                if valid is not None and not valid(match.group()):
                    continue
                found.append(PiiFinding(kind, match.start(), match.end(), mask(match.group())))
                taken[match.start() : match.end()] = b"\x01" * (match.end() - match.start())
    return sorted(found, key=lambda f: f.start)


def count_pii(text: str) -> Counter[str]:
    """How many of each kind ``text`` holds."""
    return Counter(f.kind for f in find_pii(text))
