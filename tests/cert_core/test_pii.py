"""Personal-data detection: true positives, true negatives, checksum edge cases, masking."""

from __future__ import annotations

import pytest

from cert_core.pii import count_pii, find_pii, mask


@pytest.mark.parametrize(
    ("text", "kinds"),
    [
        ("write to jane.doe+billing@example.co.uk today", ["email"]),
        ("call +31 20 555 0142 or +1 (415) 555-2671", ["phone", "phone"]),
        ("US office: (555) 123-4567, fax 555.123.4568", ["phone", "phone"]),
        ("IBAN GB82 WEST 1234 5698 7654 32", ["iban"]),
        ("IBAN DE89370400440532013000", ["iban"]),
        ("card 4111 1111 1111 1111", ["card"]),
        ("amex 3782-822463-10005", ["card"]),
        ("DNI 12345678Z, NIE X1234567L", ["national_id", "national_id"]),
        ("BSN 111222333", ["national_id"]),
        ("NIR 2 84 05 75 123 456 72", ["national_id"]),
        ("SSN 123-45-6789", ["national_id"]),
        ("from 192.168.1.20 and 2001:db8::ff00:42:8329", ["ip", "ip"]),
    ],
)
def test_true_positives(text: str, kinds: list[str]) -> None:
    assert [f.kind for f in find_pii(text)] == kinds


@pytest.mark.parametrize(
    "text",
    [
        "IBAN GB82 WEST 1234 5698 7654 33",  # mod-97 check fails
        "NIR 2 84 05 75 123 456 75",  # wrong key
        "card 4111 1111 1111 1112",  # Luhn fails
        "order 1234 5678 9012 3456",  # Luhn fails
        "DNI 12345678A",  # wrong check letter
        "BSN 123456789",  # fails the 11-test
        "SSN 000-12-3456 and 666-12-3456",  # never issued
        "version 1.2.3.4, build 10.0.0",  # version numbers, not addresses
        "at 10:30:00, ratio 3:2:1",  # times and ratios
        "The Helios 10 stores 10.2 kWh; 6,000 cycles; $4,999.00; 3.9% a year; 2026-10-01",
        "Northwind was founded in 2011 and ships 1,400 units a week from Rotterdam.",
    ],
)
def test_true_negatives(text: str) -> None:
    assert find_pii(text) == []


def test_findings_are_masked_and_counted() -> None:
    text = "Mail a@example.com or b@example.org; card 4111 1111 1111 1111."
    found = find_pii(text)
    assert [f.masked for f in found] == ["*@*******.*om", "*@*******.*rg", "**** **** **** **11"]
    for finding in found:
        assert "example" not in repr(finding)
        assert "4111" not in repr(finding)
    assert text[found[2].start : found[2].end] == "4111 1111 1111 1111"
    assert count_pii(text) == {"email": 2, "card": 1}
    assert mask("123") == "***"
    assert find_pii(text, kinds=("card",))[0].kind == "card"


def test_positions_hold_after_text_outside_latin_1() -> None:
    """Digit runs are looked for in a one-byte-per-character copy of the text: findings after
    emoji, CJK or Cyrillic text must still sit where the value is."""
    prefix = "Заказ 注文 \U0001f600 ok: "
    text = prefix + "card 4111 1111 1111 1111 and 123-45-6789."
    found = find_pii(text)
    assert [(f.kind, text[f.start : f.end]) for f in found] == [
        ("card", "4111 1111 1111 1111"),
        ("national_id", "123-45-6789"),
    ]
