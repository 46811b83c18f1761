"""Unit tests of ``cert_core._pricing``: hand-checked prices, agreement with genai-prices, price files."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import genai_prices
import pytest
from genai_prices import types as genai_types
from genai_prices.data_snapshot import get_snapshot

import cert_core
from cert_core import (
    CallPrice,
    PriceConfigError,
    Usage,
    _pricing,
    configure_prices,
    load_price_overrides,
    price_call,
)

MTOK = 1_000_000
AT = datetime(2025, 9, 1, tzinfo=timezone.utc)
# Price keys a plain token count can be billed under (per-request extras such as web searches never apply).
TOKEN_PRICE_KEYS = {"input_mtok", "output_mtok", "cache_read_mtok", "cache_write_mtok", "cache_write_1h_mtok"}
PER_REQUEST_PRICE_KEYS = {"web_searches_kcount", "storage_searches_kcount"}


@pytest.fixture(autouse=True)
def _no_price_overrides(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every test starts without overrides and leaves the module's price book as it found it."""
    monkeypatch.delenv("CERT_PRICES", raising=False)
    saved = _pricing._book._overrides
    configure_prices(None)
    yield
    configure_prices(None)
    _pricing._book._overrides = saved


def as_mapping(counts: dict[str, int]) -> Mapping[str, Any]:
    return dict(counts)


def as_struct(counts: dict[str, int]) -> Usage:
    return Usage(**counts)


USAGE_FORMS = [pytest.param(as_mapping, id="mapping"), pytest.param(as_struct, id="Usage")]


def write_price_file(tmp_path: Path, text: str, name: str = "prices.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


# Published prices, USD per million tokens:
#   gpt-4o: $2.50 input, $1.25 cached input, $10 output
#   o1: $15 input, $7.50 cached input, $60 output
#   Claude 3.5 Sonnet and Claude Sonnet 4: $3 input, $0.30 cache read, $3.75 cache write (5 min), $15 output
HAND_PRICED = [
    pytest.param(
        "openai",
        "gpt-4o",
        {"input_tokens": 1_200, "output_tokens": 350},
        1_200 * 2.50 / MTOK,  # 0.003
        350 * 10.00 / MTOK,  # 0.0035
        id="gpt-4o-plain",
    ),
    pytest.param(
        "openai",
        "gpt-4o-2024-08-06",
        {"input_tokens": 10_000, "output_tokens": 500, "cache_read_input_tokens": 4_000},
        (6_000 * 2.50 + 4_000 * 1.25) / MTOK,  # 0.015 + 0.005 = 0.02
        500 * 10.00 / MTOK,  # 0.005
        id="gpt-4o-cache-read",
    ),
    pytest.param(
        "openai",
        "o1",
        # 2_500 of the 3_000 output tokens are reasoning: billed as output, never added on top
        {
            "input_tokens": 2_000,
            "output_tokens": 3_000,
            "cache_read_input_tokens": 1_000,
            "reasoning_tokens": 2_500,
        },
        (1_000 * 15.00 + 1_000 * 7.50) / MTOK,  # 0.015 + 0.0075 = 0.0225
        3_000 * 60.00 / MTOK,  # 0.18
        id="o1-reasoning-cache-read",
    ),
    pytest.param(
        "anthropic",
        "claude-3-5-sonnet-20241022",
        {
            "input_tokens": 100_000,
            "output_tokens": 3_000,
            "cache_read_input_tokens": 40_000,
            "cache_creation_input_tokens": 10_000,
        },
        # 50_000 uncached + 40_000 read + 10_000 written: 0.15 + 0.012 + 0.0375 = 0.1995
        (50_000 * 3.00 + 40_000 * 0.30 + 10_000 * 3.75) / MTOK,
        3_000 * 15.00 / MTOK,  # 0.045
        id="claude-3-5-sonnet-cache-read-and-write",
    ),
    pytest.param(
        "anthropic",
        "claude-sonnet-4-20250514",
        {"input_tokens": 5_000, "output_tokens": 1_000},
        5_000 * 3.00 / MTOK,  # 0.015
        1_000 * 15.00 / MTOK,  # 0.015
        id="claude-sonnet-4-plain",
    ),
    pytest.param(
        "anthropic",
        "claude-sonnet-4-20250514",
        {"input_tokens": 20_000, "output_tokens": 200, "cache_creation_input_tokens": 18_000},
        (2_000 * 3.00 + 18_000 * 3.75) / MTOK,  # 0.006 + 0.0675 = 0.0735
        200 * 15.00 / MTOK,  # 0.003
        id="claude-sonnet-4-cache-write",
    ),
]


@pytest.mark.parametrize("to_usage", USAGE_FORMS)
@pytest.mark.parametrize(("provider", "model", "counts", "input_cost", "output_cost"), HAND_PRICED)
def test_price_matches_hand_computed_published_prices(
    provider: str,
    model: str,
    counts: dict[str, int],
    input_cost: float,
    output_cost: float,
    to_usage: Callable[[dict[str, int]], Any],
) -> None:
    result = price_call(provider, model, to_usage(counts), at=AT)

    assert result.error is None
    assert result.input_cost_usd == pytest.approx(input_cost, rel=1e-12)
    assert result.output_cost_usd == pytest.approx(output_cost, rel=1e-12)
    assert result.cost_usd == pytest.approx(input_cost + output_cost, rel=1e-12)
    assert result.source is not None
    assert result.source.startswith("genai-prices ")


def test_hand_computed_totals_are_the_published_figures() -> None:
    """The arithmetic above, spelled out once as plain numbers."""
    claude = price_call(
        "anthropic",
        "claude-3-5-sonnet-20241022",
        {
            "input_tokens": 100_000,
            "output_tokens": 3_000,
            "cache_read_input_tokens": 40_000,
            "cache_creation_input_tokens": 10_000,
        },
    )
    o1 = price_call(
        "openai", "o1", {"input_tokens": 2_000, "output_tokens": 3_000, "cache_read_input_tokens": 1_000}
    )

    assert claude.cost_usd == pytest.approx(0.2445, rel=1e-12)
    assert o1.cost_usd == pytest.approx(0.2025, rel=1e-12)


def test_call_price_is_a_frozen_record() -> None:
    result = price_call("openai", "gpt-4o", {"input_tokens": 1, "output_tokens": 1})

    assert isinstance(result, CallPrice)
    with pytest.raises(AttributeError):
        result.cost_usd = 0.0  # type: ignore[misc]


@pytest.mark.parametrize("provider", ["openai", None])
def test_unknown_model_has_no_cost_and_an_error_naming_it(provider: str | None) -> None:
    result = price_call(provider, "gpt-nonexistent-9000", {"input_tokens": 10, "output_tokens": 10})

    assert result.cost_usd is None  # never 0: an unknown price is not free
    assert result.input_cost_usd is None
    assert result.output_cost_usd is None
    assert result.error is not None
    assert "'gpt-nonexistent-9000'" in result.error
    assert "price file" in result.error  # says what to do about it


@pytest.mark.parametrize(
    ("provider", "model"),
    [
        pytest.param("acme", "gpt-4o", id="provider-genai-prices-does-not-know"),
        pytest.param("openai", "claude-3-5-sonnet", id="another-providers-model"),
        pytest.param("anthropic", "gpt-4o", id="another-providers-model-2"),
    ],
)
def test_a_named_provider_is_never_priced_from_another_providers_table(provider: str, model: str) -> None:
    """A proxy, a private deployment or a region may charge otherwise: no guess from a list price."""
    result = price_call(provider, model, {"input_tokens": 10, "output_tokens": 10})

    assert result.cost_usd is None
    assert result.error is not None
    assert f"provider {provider!r}" in result.error
    assert "price file" in result.error
    # Without a provider (None or ""), the model's own id finds its list price.
    assert price_call(None, model, {"input_tokens": 10, "output_tokens": 10}).cost_usd
    assert price_call("", model, {"input_tokens": 10, "output_tokens": 10}).cost_usd


@pytest.mark.parametrize("model", [None, ""])
def test_missing_model_name_has_no_cost(model: str | None) -> None:
    result = price_call("openai", model, {"input_tokens": 10})

    assert result.cost_usd is None
    assert result.error is not None
    assert "model" in result.error


@pytest.mark.parametrize(
    ("usage", "field"),
    [
        pytest.param({"input_tokens": -1}, "input_tokens", id="negative-input"),
        pytest.param({"input_tokens": 10, "output_tokens": -5}, "output_tokens", id="negative-output"),
        pytest.param({"input_tokens": 1.5}, "input_tokens", id="float"),
        pytest.param({"input_tokens": "100"}, "input_tokens", id="string"),
        pytest.param({"input_tokens": 10, "output_tokens": True}, "output_tokens", id="bool-true"),
        pytest.param(
            {"input_tokens": 10, "cache_read_input_tokens": -1},
            "cache_read_input_tokens",
            id="negative-cache",
        ),
        pytest.param(
            {"input_tokens": 10, "cache_creation_input_tokens": 2.0},
            "cache_creation_input_tokens",
            id="float-cache",
        ),
        pytest.param(
            {
                "input_tokens": 10,
                "output_tokens": 1,
                "cache_read_input_tokens": 8,
                "cache_creation_input_tokens": 5,
            },
            "cache_read_input_tokens",
            id="cache-exceeds-input",
        ),
        pytest.param(
            Usage(input_tokens=100, output_tokens=1, cache_read_input_tokens=101),
            "cache_read_input_tokens",
            id="Usage-cache-exceeds-input",
        ),
        pytest.param(
            {"input_tokens": 10, "output_tokens": False},
            "output_tokens",
            id="bool-false",
        ),
        pytest.param(
            {"input_tokens": "", "output_tokens": 3},
            "input_tokens",
            id="empty-string",
        ),
        pytest.param(
            {"input_tokens": 10, "output_tokens": 5, "reasoning_tokens": -3},
            "reasoning_tokens",
            id="negative-reasoning",
        ),
        pytest.param(
            Usage(input_tokens=10, output_tokens=-100_000),
            "output_tokens",
            id="Usage-negative-output",
        ),
        pytest.param(
            Usage(input_tokens="abc"),  # type: ignore[arg-type]
            "input_tokens",
            id="Usage-non-int",
        ),
    ],
)
def test_bad_usage_has_no_cost_and_an_error_naming_the_field(usage: Any, field: str) -> None:
    result = price_call("openai", "gpt-4o", usage)

    assert result.cost_usd is None
    assert result.error is not None
    assert field in result.error


def test_inconsistent_cache_counts_error_names_all_three_fields() -> None:
    result = price_call(
        "anthropic",
        "claude-sonnet-4-20250514",
        {"input_tokens": 10, "cache_read_input_tokens": 8, "cache_creation_input_tokens": 5},
    )

    assert result.cost_usd is None
    assert result.error is not None
    for text in ("cache_read_input_tokens (8)", "cache_creation_input_tokens (5)", "input_tokens (10)"):
        assert text in result.error


def _decimal_or_none(prices: Any, key: str) -> Decimal | None:
    value = getattr(prices, key, None)
    return value if isinstance(value, Decimal) else None


def _flat_models() -> list[Any]:
    """OpenAI and Anthropic models with one flat (not tiered, not dated) input and output price."""
    snapshot = get_snapshot()
    params = []
    for provider in snapshot.providers:
        if provider.id not in ("openai", "anthropic"):
            continue
        for model in provider.models:
            prices = model.prices
            if not isinstance(prices, genai_types.ModelPrice):
                continue
            if (
                _decimal_or_none(prices, "input_mtok") is None
                or _decimal_or_none(prices, "output_mtok") is None
            ):
                continue
            try:
                _, found = snapshot.find_provider_model(model.id, None, provider.id, None)
            except LookupError:
                continue  # the id is no name of its own (e.g. "ft:gpt-4o" matches "ft:gpt-4o-2024-...")
            if found is not model:
                continue
            params.append(pytest.param(provider, model, id=f"{provider.id}/{model.id}"))
    return params


FLAT_MODELS = _flat_models()

USAGES_FOR_AGREEMENT = [
    pytest.param({"input_tokens": 1_000, "output_tokens": 500}, id="plain"),
    pytest.param(
        {"input_tokens": 5_000, "output_tokens": 10, "cache_read_input_tokens": 2_000}, id="cache-read"
    ),
    pytest.param(
        {
            "input_tokens": 100_000,
            "output_tokens": 3_000,
            "cache_read_input_tokens": 40_000,
            "cache_creation_input_tokens": 10_000,
        },
        id="cache-read-write",
    ),
]


def test_flat_model_list_covers_the_well_known_models() -> None:
    ids = {param.id for param in FLAT_MODELS}

    assert {"openai/gpt-4o", "openai/o1", "anthropic/claude-3-5-sonnet", "anthropic/claude-sonnet-4-0"} <= ids
    assert len(ids) > 50


@pytest.mark.parametrize("counts", USAGES_FOR_AGREEMENT)
@pytest.mark.parametrize(("provider", "model"), FLAT_MODELS)
def test_cached_price_agrees_with_genai_prices(provider: Any, model: Any, counts: dict[str, int]) -> None:
    cread = counts.get("cache_read_input_tokens", 0)
    cwrite = counts.get("cache_creation_input_tokens", 0)
    prices = model.prices
    keys = {key for key, value in vars(prices).items() if value is not None}
    # Tables with other units (audio, images) are priced by genai-prices itself, cache tokens included.
    token_only = keys <= TOKEN_PRICE_KEYS | PER_REQUEST_PRICE_KEYS
    missing_read = bool(cread) and _decimal_or_none(prices, "cache_read_mtok") is None
    missing_write = bool(cwrite) and _decimal_or_none(prices, "cache_write_mtok") is None

    first = price_call(provider.id, model.id, counts, at=AT)
    second = price_call(provider.id, model.id, counts, at=AT)  # from the resolved-rates cache

    assert second == first
    if token_only and (missing_read or missing_write):
        assert first.cost_usd is None
        assert first.error is not None
        kind = "cache-read" if missing_read else "cache-write"
        assert f"has no {kind} price" in first.error
        assert model.id in first.error
        return
    expected = model.calc_price(
        genai_prices.Usage(
            input_tokens=counts["input_tokens"],
            output_tokens=counts["output_tokens"],
            cache_read_tokens=cread,
            cache_write_tokens=cwrite,
        ),
        provider,
        genai_request_timestamp=AT,
    )
    assert first.error is None
    assert first.cost_usd == pytest.approx(float(expected.total_price), rel=1e-9)
    assert first.input_cost_usd == pytest.approx(float(expected.input_price), rel=1e-9)
    assert first.output_cost_usd == pytest.approx(float(expected.output_price), rel=1e-9)


def _gemini_25_pro() -> tuple[Any, Any]:
    return get_snapshot().find_provider_model("gemini-2.5-pro", None, "google", None)


def test_gemini_25_pro_is_tiered_in_the_snapshot() -> None:
    _, model = _gemini_25_pro()

    assert isinstance(model.prices.input_mtok, genai_types.TieredPrices)


@pytest.mark.parametrize(
    ("input_tokens", "expected"),
    [
        # at most 200k prompt tokens: $1.25 in, $10 out
        pytest.param(100_000, 100_000 * 1.25 / MTOK + 1_000 * 10.00 / MTOK, id="below-200k"),  # 0.135
        # above 200k the whole prompt is billed at $2.50 in, $15 out
        pytest.param(250_000, 250_000 * 2.50 / MTOK + 1_000 * 15.00 / MTOK, id="above-200k"),  # 0.64
    ],
)
def test_tiered_model_is_priced_like_genai_prices(input_tokens: int, expected: float) -> None:
    provider, model = _gemini_25_pro()
    reference = model.calc_price(
        genai_prices.Usage(input_tokens=input_tokens, output_tokens=1_000),
        provider,
        genai_request_timestamp=AT,
    )

    result = price_call(
        "gcp.gemini", "gemini-2.5-pro", {"input_tokens": input_tokens, "output_tokens": 1_000}, at=AT
    )

    assert result.error is None
    assert result.cost_usd == pytest.approx(float(reference.total_price), rel=1e-9)
    assert result.cost_usd == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        # o3 launched at $10 in / $40 out and dropped to $2 / $8 on 2025-06-10
        pytest.param(
            datetime(2025, 5, 1, tzinfo=timezone.utc), (1_000 * 10 + 1_000 * 40) / MTOK, id="before-cut"
        ),
        pytest.param(
            datetime(2025, 7, 1, tzinfo=timezone.utc), (1_000 * 2 + 1_000 * 8) / MTOK, id="after-cut"
        ),
    ],
)
def test_date_dependent_model_uses_the_price_at_the_call_time(at: datetime, expected: float) -> None:
    provider, model = get_snapshot().find_provider_model("o3", None, "openai", None)
    assert not isinstance(model.prices, genai_types.ModelPrice)  # a dated list of prices
    reference = model.calc_price(
        genai_prices.Usage(input_tokens=1_000, output_tokens=1_000), provider, genai_request_timestamp=at
    )

    result = price_call("openai", "o3", {"input_tokens": 1_000, "output_tokens": 1_000}, at=at)

    assert result.cost_usd == pytest.approx(float(reference.total_price), rel=1e-9)
    assert result.cost_usd == pytest.approx(expected, rel=1e-12)


PRICE_FILE = """
prices:
  - model: "gpt-4o"
    input_per_mtok: 5.0
    output_per_mtok: 20
    cache_read_per_mtok: 2.5
    note: "contract price"
  - model: "My-Deploy-*"
    provider: Azure.OpenAI
    input_per_mtok: 1
    output_per_mtok: 2
"""


def test_load_price_overrides_reads_every_field(tmp_path: Path) -> None:
    path = write_price_file(tmp_path, PRICE_FILE)

    first, second = load_price_overrides(path)

    assert first == cert_core.PriceOverride(
        model="gpt-4o",
        input_per_mtok=5.0,
        output_per_mtok=20.0,
        cache_read_per_mtok=2.5,
        where=f"{path}:2 (contract price)",
    )
    assert second.provider == "Azure.OpenAI"
    assert second.where == f"{path}:7"
    assert isinstance(second.input_per_mtok, float)
    assert second.cache_read_per_mtok is None


def test_load_price_overrides_accepts_an_empty_list(tmp_path: Path) -> None:
    assert load_price_overrides(write_price_file(tmp_path, "prices: []\n")) == []


def test_override_wins_over_genai_prices_and_names_file_and_line(tmp_path: Path) -> None:
    path = write_price_file(tmp_path, PRICE_FILE)
    configure_prices(path)

    result = price_call(
        "openai", "gpt-4o", {"input_tokens": 1_000, "output_tokens": 1_000, "cache_read_input_tokens": 400}
    )

    # 600 * $5 + 400 * $2.50 in, 1_000 * $20 out (genai-prices would say 0.01125)
    assert result.input_cost_usd == pytest.approx((600 * 5.0 + 400 * 2.5) / MTOK)
    assert result.cost_usd == pytest.approx((600 * 5.0 + 400 * 2.5 + 1_000 * 20.0) / MTOK)
    assert result.source == f"override {path}:2 (contract price)"


@pytest.mark.parametrize(
    ("provider", "model"),
    [
        pytest.param("azure.openai", "my-deploy-eu-1", id="glob"),
        pytest.param("AZURE.OPENAI", "MY-DEPLOY-US", id="upper-case"),
        pytest.param("azure.openai", "My-Deploy-", id="empty-star"),
    ],
)
def test_override_model_is_a_case_insensitive_glob(tmp_path: Path, provider: str, model: str) -> None:
    path = write_price_file(tmp_path, PRICE_FILE)
    configure_prices(path)

    result = price_call(provider, model, {"input_tokens": 2_000, "output_tokens": 1_000})

    assert result.cost_usd == pytest.approx((2_000 * 1 + 1_000 * 2) / MTOK)
    assert result.source == f"override {path}:7"


@pytest.mark.parametrize("provider", ["openai", None])
def test_override_with_a_provider_only_applies_to_that_provider(tmp_path: Path, provider: str | None) -> None:
    configure_prices(write_price_file(tmp_path, PRICE_FILE))

    result = price_call(provider, "my-deploy-eu-1", {"input_tokens": 2_000, "output_tokens": 1_000})

    assert result.cost_usd is None
    assert result.error is not None
    assert "'my-deploy-eu-1'" in result.error


@pytest.mark.parametrize(
    ("counts", "missing"),
    [
        pytest.param({"input_tokens": 1_000, "cache_read_input_tokens": 100}, "cache-read", id="read"),
        pytest.param({"input_tokens": 1_000, "cache_creation_input_tokens": 100}, "cache-write", id="write"),
    ],
)
def test_override_without_cache_price_is_an_error_not_a_guess(
    tmp_path: Path, counts: dict[str, int], missing: str
) -> None:
    path = write_price_file(tmp_path, PRICE_FILE)
    configure_prices(path)

    result = price_call("azure.openai", "my-deploy-eu-1", counts)

    assert result.cost_usd is None
    assert result.error is not None
    assert f"has no {missing} price" in result.error
    assert f"{path}:7" in result.error


def test_configure_prices_none_removes_overrides(tmp_path: Path) -> None:
    configure_prices(write_price_file(tmp_path, PRICE_FILE))
    usage = {"input_tokens": 1_000, "output_tokens": 1_000}
    assert price_call("openai", "gpt-4o", usage).cost_usd == pytest.approx(0.025)

    configure_prices(None)
    result = price_call("openai", "gpt-4o", usage)

    assert result.cost_usd == pytest.approx((1_000 * 2.50 + 1_000 * 10.00) / MTOK)  # genai-prices again
    assert result.source is not None
    assert result.source.startswith("genai-prices ")


def test_a_bad_price_file_leaves_the_previous_overrides_in_place(tmp_path: Path) -> None:
    good = write_price_file(tmp_path, PRICE_FILE)
    configure_prices(good)

    with pytest.raises(PriceConfigError):
        configure_prices(tmp_path / "missing.yaml")

    assert (
        price_call("openai", "gpt-4o", {"input_tokens": 1_000}).source
        == f"override {good}:2 (contract price)"
    )


def test_cert_prices_environment_variable_is_read_on_first_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_price_file(tmp_path, PRICE_FILE, name="env-prices.yaml")
    monkeypatch.setenv("CERT_PRICES", str(path))
    _pricing._book._overrides = None  # as in a fresh process: read CERT_PRICES on the next lookup

    result = price_call("azure.openai", "my-deploy-env", {"input_tokens": 1_000, "output_tokens": 1_000})

    assert result.cost_usd == pytest.approx((1_000 * 1 + 1_000 * 2) / MTOK)
    assert result.source == f"override {path}:7"


def test_configure_prices_wins_over_cert_prices(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from_env = write_price_file(tmp_path, PRICE_FILE, name="env-prices.yaml")
    monkeypatch.setenv("CERT_PRICES", str(from_env))
    _pricing._book._overrides = None
    configure_prices(None)

    result = price_call("openai", "gpt-4o", {"input_tokens": 1_000, "output_tokens": 1_000})

    assert result.source is not None
    assert result.source.startswith("genai-prices ")


GOOD_ENTRY = """
  - model: a
    input_per_mtok: 1
    output_per_mtok: 2
"""


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        pytest.param("prices:\n  - model: 'unterminated\n", ["not valid YAML", "line 2"], id="not-yaml"),
        pytest.param("models:\n  - model: a\n", [":1:", "'prices:'"], id="no-prices-key"),
        pytest.param("prices: {model: a}\n", [":1:", "'prices:'"], id="prices-not-a-list"),
        pytest.param("", [":1:", "'prices:'"], id="empty-file"),
        pytest.param("prices:\n  - just-a-name\n", ["prices[0]", "mapping"], id="entry-not-a-mapping"),
        pytest.param(
            "prices:"
            + GOOD_ENTRY
            + "  - model: b\n    input_per_mtok: 1\n    output_per_mtok: 2\n    input_price: 3\n",
            [":5:", "prices[1]", "unknown field 'input_price'", "input_per_mtok"],
            id="unknown-field",
        ),
        pytest.param(
            "prices:" + GOOD_ENTRY + "  - model: b\n    input_per_mtok: 1\n",
            [":5:", "prices[1].output_per_mtok", "required"],
            id="missing-output-price",
        ),
        pytest.param(
            "prices:\n  - input_per_mtok: 1\n    output_per_mtok: 2\n",
            [":2:", "prices[0].model", "required"],
            id="missing-model",
        ),
        pytest.param(
            "prices:\n  - model: a\n    input_per_mtok: -1\n    output_per_mtok: 2\n",
            [":2:", "prices[0].input_per_mtok", ">= 0", "-1"],
            id="negative-price",
        ),
        pytest.param(
            "prices:\n  - model: a\n    input_per_mtok: cheap\n    output_per_mtok: 2\n",
            [":2:", "prices[0].input_per_mtok", "'cheap'"],
            id="price-not-a-number",
        ),
        pytest.param(
            "prices:\n  - model: a\n    input_per_mtok: 1\n    output_per_mtok: true\n",
            [":2:", "prices[0].output_per_mtok", "True"],
            id="price-is-a-bool",
        ),
        pytest.param(
            "prices:\n  - model: 42\n    input_per_mtok: 1\n    output_per_mtok: 2\n",
            [":2:", "prices[0].model", "string", "42"],
            id="model-not-a-string",
        ),
        pytest.param(
            "prices:\n  - model: a\n    provider: ''\n    input_per_mtok: 1\n    output_per_mtok: 2\n",
            [":2:", "prices[0].provider", "non-empty"],
            id="empty-provider",
        ),
        pytest.param(
            "prices:\n  - model: a\n    input_per_mtok: .nan\n    output_per_mtok: 2\n",
            [":2:", "prices[0].input_per_mtok"],
            id="nan-price",
        ),
    ],
)
def test_bad_price_file_error_names_file_line_and_field(
    tmp_path: Path, text: str, fragments: list[str]
) -> None:
    path = write_price_file(tmp_path, text, name="bad-prices.yaml")

    with pytest.raises(PriceConfigError) as excinfo:
        load_price_overrides(path)

    message = str(excinfo.value)
    assert message.startswith(str(path))
    for fragment in fragments:
        assert fragment in message


def test_missing_price_file_error_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.yaml"

    with pytest.raises(PriceConfigError, match="cannot read price file") as excinfo:
        configure_prices(path)

    assert str(path) in str(excinfo.value)
    assert isinstance(excinfo.value, ValueError)


PRICE_CACHE_SCRIPT = """
import sys
from cert_core import Usage, price_call

price = price_call("openai", "gpt-4o-mini-2024-07-18", Usage(input_tokens=1000, output_tokens=100))
print(price.cost_usd, price.source, "genai_prices" in sys.modules)
"""


def test_flat_rates_are_cached_on_disk_per_genai_prices_version(tmp_path: Path) -> None:
    import subprocess
    import sys

    env = {**os.environ, "CERT_CACHE_DIR": str(tmp_path)}

    def run() -> list[str]:
        done = subprocess.run(
            [sys.executable, "-c", PRICE_CACHE_SCRIPT], env=env, capture_output=True, text=True, check=True
        )
        return done.stdout.split()

    first, second = run(), run()
    assert first[-1] == "True"  # priced by genai-prices, which wrote the cache
    assert second[-1] == "False"  # the cache answered: genai-prices not even imported
    assert first[:-1] == second[:-1]
    (cache,) = (tmp_path / "pytest-cert").glob("prices-*.json")
    cache.write_text("{not json")  # a damaged cache is ignored, never trusted
    assert run()[:-1] == first[:-1]
    env["CERT_CACHE_DIR"] = "off"
    assert run()[-1] == "True"


def test_pricing_never_touches_the_network(tmp_path: Path) -> None:
    """genai-prices' bundled data is all pricing reads: a fresh process with every socket call
    refused prices the verified models (no cache on disk to lean on)."""
    script = textwrap.dedent(
        """
        import socket

        def refuse(*args, **kwargs):
            raise AssertionError("pricing tried to reach the network")

        socket.socket.connect = refuse
        socket.create_connection = refuse
        socket.getaddrinfo = refuse

        from cert_core import price_call

        usage = {"input_tokens": 1000, "output_tokens": 100, "cache_read_input_tokens": 200}
        for provider, model in [("openai", "gpt-4o"), ("openai", "o1"),
                                ("anthropic", "claude-3-5-sonnet"), ("anthropic", "claude-sonnet-4")]:
            result = price_call(provider, model, usage)
            assert result.cost_usd and result.cost_usd > 0, (model, result)
        print("priced offline")
        """
    )
    env = {**os.environ, "CERT_CACHE_DIR": "off", "CERT_PRICES": ""}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "priced offline"
