"""Cost of one LLM call in USD, from provider, model and token usage.

Prices come from the maintained ``genai-prices`` package (its bundled snapshot: offline, no network
at run time) and from user overrides in a YAML price file, which win. An unknown model gives
``cost_usd=None`` with the reason in ``error``: never 0, never a guess.

Token semantics follow :class:`~cert_core.Usage`: ``input_tokens`` includes the cache-read and
cache-write tokens (they are priced at their own rates and the rest at the input rate) and
``output_tokens`` includes reasoning tokens (billed as output by every provider priced here).

Speed: the model lookup and the price table of each ``(provider, model)`` are resolved once and
cached; after that a call is a few multiplications. Models whose prices are tiered by prompt length
or vary by date go through ``genai-prices``' own calculation each time (correct, slower).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import math
import os
import threading
from collections.abc import Mapping
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import yaml

from ._records import Usage

__all__ = [
    "CallPrice",
    "PriceConfigError",
    "PriceOverride",
    "configure_prices",
    "load_price_overrides",
    "price_call",
]

# Our provider names (OpenTelemetry ``gen_ai.provider.name``) -> genai-prices provider ids.
_PROVIDER_IDS = {
    "openai": "openai",
    "azure.openai": "azure",
    "azure.ai.openai": "azure",
    "azure.ai.inference": "azure",
    "anthropic": "anthropic",
    "aws.bedrock": "aws",
    "gcp.vertex_ai": "google",
    "gcp.gemini": "google",
    "gcp.gen_ai": "google",
    "mistral_ai": "mistral",
    "x_ai": "x-ai",
    "deepseek": "deepseek",
    "groq": "groq",
    "cohere": "cohere",
    "perplexity": "perplexity",
}
_USAGE_FIELDS = (
    "input_tokens",
    "output_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
    "reasoning_tokens",
)
_MTOK = 1_000_000


class PriceConfigError(ValueError):
    """A price file that cannot be used; the message names the file, line and field."""


class CallPrice(msgspec.Struct, frozen=True, gc=False):
    """The price of one call. ``cost_usd is None`` means unknown, and ``error`` says why."""

    cost_usd: float | None
    input_cost_usd: float | None = None
    output_cost_usd: float | None = None
    source: str | None = None
    error: str | None = None


@dataclasses.dataclass(frozen=True)
class PriceOverride:
    """One entry of a price file: USD per million tokens for models matching ``model``."""

    model: str
    input_per_mtok: float
    output_per_mtok: float
    provider: str | None = None
    cache_read_per_mtok: float | None = None
    cache_write_per_mtok: float | None = None
    where: str = ""

    def matches(self, provider: str | None, model: str) -> bool:
        if self.provider is not None and (provider or "").lower() != self.provider.lower():
            return False
        return fnmatch.fnmatchcase(model.lower(), self.model.lower())


@dataclasses.dataclass(frozen=True)
class _Rates:
    """Flat per-token prices (USD per token); ``None`` where the table has no separate rate."""

    input: float
    output: float
    cache_read: float | None
    cache_write: float | None
    source: str


class _LineLoader(yaml.SafeLoader):
    pass


def _mapping_with_line(loader: _LineLoader, node: yaml.MappingNode) -> dict[str, Any]:
    mapping = loader.construct_mapping(node, deep=True)
    mapping["__line__"] = node.start_mark.line + 1
    return mapping  # type: ignore[return-value]


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_with_line)

_OVERRIDE_FIELDS = {
    "model": str,
    "provider": str,
    "input_per_mtok": float,
    "output_per_mtok": float,
    "cache_read_per_mtok": float,
    "cache_write_per_mtok": float,
    "note": str,
}


def load_price_overrides(path: str | os.PathLike[str]) -> list[PriceOverride]:
    """Read a YAML price file::

        prices:
          - model: "my-gpt-4o-deployment"   # exact name or glob, case-insensitive
            provider: azure.openai          # optional: any provider when left out
            input_per_mtok: 2.75            # USD per million input tokens
            output_per_mtok: 11.00
            cache_read_per_mtok: 1.375      # optional
            cache_write_per_mtok: 3.4375    # optional
            note: "EU data zone, 2026 contract"   # optional

    Raises :class:`PriceConfigError` naming ``file:line`` and the field for anything wrong.
    """
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise PriceConfigError(f"{file}: cannot read price file: {exc.strerror or exc}") from exc
    try:
        doc = yaml.load(text, Loader=_LineLoader)
    except yaml.YAMLError as exc:
        raise PriceConfigError(f"{file}: not valid YAML: {exc}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("prices"), list):
        raise PriceConfigError(f"{file}:1: prices: expected a top-level 'prices:' list of entries")
    overrides = []
    for index, entry in enumerate(doc["prices"]):
        if not isinstance(entry, dict):
            raise PriceConfigError(f"{file}: prices[{index}]: expected a mapping with model and prices")
        where = f"{file}:{entry.pop('__line__', '?')}"
        unknown = set(entry) - set(_OVERRIDE_FIELDS)
        if unknown:
            raise PriceConfigError(
                f"{where}: prices[{index}]: unknown field {sorted(unknown)[0]!r} "
                f"(allowed: {', '.join(_OVERRIDE_FIELDS)})"
            )
        values: dict[str, Any] = {}
        for name, kind in _OVERRIDE_FIELDS.items():
            value = entry.get(name)
            if value is None:
                if name in ("model", "input_per_mtok", "output_per_mtok"):
                    raise PriceConfigError(f"{where}: prices[{index}].{name}: required field is missing")
                continue
            if kind is float:
                number = isinstance(value, (int, float)) and not isinstance(value, bool)
                if not number or not 0 <= value < math.inf:  # NaN fails both comparisons
                    raise PriceConfigError(
                        f"{where}: prices[{index}].{name}: expected a number >= 0 (USD per million tokens), "
                        f"got {value!r}"
                    )
                value = float(value)
            elif not isinstance(value, str) or not value:
                raise PriceConfigError(
                    f"{where}: prices[{index}].{name}: expected a non-empty string, got {value!r}"
                )
            values[name] = value
        note = values.pop("note", None)
        overrides.append(PriceOverride(**values, where=f"{where}" + (f" ({note})" if note else "")))
    return overrides


_UNRESOLVED = object()


class _PriceBook:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rates: dict[tuple[str | None, str], _Rates | str | None] = {}
        self._overrides: list[PriceOverride] | None = None
        self._genai_version: str | None = None

    def configure(self, path: str | os.PathLike[str] | None) -> None:
        overrides = load_price_overrides(path) if path is not None else []
        with self._lock:
            self._overrides = overrides
            self._rates.clear()

    def overrides(self) -> list[PriceOverride]:
        if self._overrides is None:
            env = os.environ.get("CERT_PRICES")
            self.configure(env or None)
        assert self._overrides is not None
        return self._overrides

    def lookup(self, provider: str | None, model: str) -> _Rates | str | None:
        """Cached flat rates, or ``str`` (an error), or ``None`` (use genai-prices each call)."""
        key = (provider, model)
        cached = self._rates.get(key, _UNRESOLVED)
        if cached is not _UNRESOLVED:
            return cached  # type: ignore[return-value]
        result = self._resolve(provider, model)
        with self._lock:
            self._rates[key] = result
        return result

    def _resolve(self, provider: str | None, model: str) -> _Rates | str | None:
        for override in self.overrides():
            if override.matches(provider, model):
                return _Rates(
                    input=override.input_per_mtok / _MTOK,
                    output=override.output_per_mtok / _MTOK,
                    cache_read=None
                    if override.cache_read_per_mtok is None
                    else override.cache_read_per_mtok / _MTOK,
                    cache_write=None
                    if override.cache_write_per_mtok is None
                    else override.cache_write_per_mtok / _MTOK,
                    source=f"override {override.where}",
                )
        cached = _rates_cache.get(provider, model)
        if cached is not None:
            return cached
        try:
            provider_info, model_info = _genai_find(provider, model)
        except LookupError as exc:
            where = f"provider {provider!r}" if provider else "any provider"
            return (
                f"no price known for model {model!r} ({where}) in genai-prices {self.genai_version()}: "
                f"{exc}; add it to a price file (CERT_PRICES or cert_core.configure_prices)"
            )
        from genai_prices import types

        prices = model_info.prices
        if not isinstance(prices, types.ModelPrice):
            return None  # prices change over time: resolve per call
        table = {k: v for k, v in prices.__dict__.items() if v is not None}
        simple = {"input_mtok", "output_mtok", "cache_read_mtok", "cache_write_mtok"}
        # Prices for things plain token usage never has (web searches, ...) do not affect the cost.
        ignorable = {"web_searches_kcount", "storage_searches_kcount", "cache_write_1h_mtok"}
        if set(table) - simple - ignorable or any(
            not isinstance(table.get(k, Decimal(0)), Decimal) for k in simple
        ):
            return None  # tiered or unusual units: let genai-prices compute each call
        if "input_mtok" not in table or "output_mtok" not in table:
            return None

        def rate(key: str) -> float | None:
            value = table.get(key)
            return None if value is None else float(value) / _MTOK

        rates = _Rates(
            input=float(table["input_mtok"]) / _MTOK,
            output=float(table["output_mtok"]) / _MTOK,
            cache_read=rate("cache_read_mtok"),
            cache_write=rate("cache_write_mtok"),
            source=f"genai-prices {self.genai_version()} ({provider_info.id}/{model_info.id})",
        )
        _rates_cache.put(provider, model, rates)
        return rates

    def genai_version(self) -> str:
        if self._genai_version is None:
            from importlib.metadata import version

            self._genai_version = version("genai-prices")
        return self._genai_version


class _RatesCache:
    """Flat rates genai-prices gave for a (provider, model), kept on disk per genai-prices version.

    Loading genai-prices' data takes about 60 ms; a test session that prices the same few models
    every run reads them from ``<cache dir>/pytest-cert/prices-<version>-<format>.json`` instead (the cache
    dir: ``CERT_CACHE_DIR``, else ``XDG_CACHE_HOME``, else ``~/.cache``; ``CERT_CACHE_DIR=off``
    switches it off). Only flat token prices are kept; a file that cannot be read or written is
    ignored: the cache only ever saves time.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._path: Path | None = None
        self._rates: dict[str, list[Any]] | None = None

    def _file(self) -> Path | None:
        if self._path is None:
            from importlib.metadata import PackageNotFoundError

            from ._cache import cache_dir

            folder = cache_dir()
            if folder is None:
                return None
            try:
                genai = _book.genai_version()
            except PackageNotFoundError:
                return None
            # The format number changes whenever what a lookup resolves to does (2: a named
            # provider is searched alone), so a cache written by an older release is not read.
            self._path = folder / f"prices-{genai}-{_CACHE_FORMAT}.json"
        return self._path

    def _load(self) -> dict[str, list[Any]]:
        if self._rates is None:
            rates: dict[str, list[Any]] = {}
            path = self._file()
            if path is not None:
                try:
                    data = msgspec.json.decode(path.read_bytes(), type=dict[str, list[Any]])
                    rates = {k: v for k, v in data.items() if _valid_entry(v)}
                except (OSError, msgspec.DecodeError, msgspec.ValidationError):
                    rates = {}
            self._rates = rates
        return self._rates

    def get(self, provider: str | None, model: str) -> _Rates | None:
        entry = self._load().get(f"{provider}\x00{model}")
        if entry is None:
            return None
        inp, out, cache_read, cache_write, source = entry
        return _Rates(input=inp, output=out, cache_read=cache_read, cache_write=cache_write, source=source)

    def put(self, provider: str | None, model: str, rates: _Rates) -> None:
        with self._lock:
            table = self._load()
            table[f"{provider}\x00{model}"] = [
                rates.input,
                rates.output,
                rates.cache_read,
                rates.cache_write,
                rates.source,
            ]
            path = self._file()
            if path is None:
                return
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
                tmp.write_bytes(msgspec.json.encode(table))
                tmp.replace(path)
            except OSError:
                pass  # a read-only home: pricing works, only slower to start


def _valid_entry(entry: list[Any]) -> bool:
    numbers = entry[:4]
    return (
        len(entry) == 5
        and all(type(v) is float and math.isfinite(v) and v >= 0 for v in numbers[:2])
        and all(v is None or (type(v) is float and math.isfinite(v) and v >= 0) for v in numbers[2:])
        and type(entry[4]) is str
    )


_CACHE_FORMAT = 2
_rates_cache = _RatesCache()
_book = _PriceBook()


def _genai_find(provider: str | None, model: str) -> tuple[Any, Any]:
    from genai_prices.data_snapshot import get_snapshot

    snapshot = get_snapshot()
    # A named provider is searched alone: another provider's price for a model of the same name
    # would be a guess (a proxy, a private deployment, a region may charge otherwise). Without a
    # provider, the model's own id decides.
    provider_id = _PROVIDER_IDS.get(provider, provider) if provider else None
    return snapshot.find_provider_model(model, None, provider_id, None)


def configure_prices(path: str | os.PathLike[str] | None) -> None:
    """Load a price override file (see :func:`load_price_overrides`); ``None`` removes overrides.

    Without a call, the ``CERT_PRICES`` environment variable names the file, if set.
    """
    _book.configure(path)


def _usage_counts(usage: Usage | Mapping[str, Any]) -> tuple[int, int, int, int] | str:
    if type(usage) is Usage:  # the connectors' case, checked in one expression
        inp, out, cread, cwrite = (
            usage.input_tokens,
            usage.output_tokens,
            usage.cache_read_input_tokens,
            usage.cache_creation_input_tokens,
        )
        reasoning = usage.reasoning_tokens
        if (
            type(inp) is type(out) is type(cread) is type(cwrite) is type(reasoning) is int
            and min(inp, out, cread, cwrite, reasoning) >= 0
            and cread + cwrite <= inp
        ):
            return inp, out, cread, cwrite
    # A Usage built in Python is not validated by msgspec (only decoding is): check both forms
    # field by field, to name the bad one.
    counts = []
    for name in _USAGE_FIELDS:
        value = getattr(usage, name) if isinstance(usage, Usage) else usage.get(name, 0)
        if value is None:
            value = 0
        if type(value) is not int or value < 0:
            return f"usage.{name} must be an integer >= 0, got {value!r}"
        counts.append(value)
    return _check_cache(counts[0], counts[1], counts[2], counts[3])


def _check_cache(inp: int, out: int, cread: int, cwrite: int) -> tuple[int, int, int, int] | str:
    if cread + cwrite > inp:
        return (
            f"usage is inconsistent: cache_read_input_tokens ({cread}) + cache_creation_input_tokens "
            f"({cwrite}) exceed input_tokens ({inp}), which must include them"
        )
    return inp, out, cread, cwrite


def _usd(value: float) -> float:
    """A cost to 12 decimal places (10^-12 USD), so sums of float rates print as decimals.

    This runs on every recorded call: one multiplication and one division instead of ``round``,
    which costs several times more. Both give the double nearest to a whole number of 10^-12 USD;
    where the scaled value sits within a rounding error of a half, they may pick neighbours.
    """
    if 0.0 <= value < 1e3:  # the scaled value then stays below 2**53, exact as an integer
        return math.floor(value * 1e12 + 0.5) / 1e12
    return round(value, 12)


def price_call(
    provider: str | None,
    model: str | None,
    usage: Usage | Mapping[str, Any],
    *,
    at: datetime | None = None,
) -> CallPrice:
    """Price one call. ``usage`` has the :class:`~cert_core.Usage` keys; ``at`` (default: now)
    selects date-dependent prices. Never raises for unknown models or bad usage: the result then
    has ``cost_usd=None`` and an ``error``."""
    if not model:
        return CallPrice(None, error="no model name: the call cannot be priced")
    counts = _usage_counts(usage)
    if isinstance(counts, str):
        return CallPrice(None, error=counts)
    inp, out, cread, cwrite = counts
    rates = _book.lookup(provider, model)
    if isinstance(rates, str):
        return CallPrice(None, error=rates)
    if rates is None:
        return _price_with_genai(provider, model, counts, at)
    if cread and rates.cache_read is None:
        return CallPrice(
            None, error=f"{rates.source} has no cache-read price but the call read {cread} cached tokens"
        )
    if cwrite and rates.cache_write is None:
        return CallPrice(
            None, error=f"{rates.source} has no cache-write price but the call wrote {cwrite} cached tokens"
        )
    input_cost = (inp - cread - cwrite) * rates.input
    if cread:
        input_cost += cread * rates.cache_read  # type: ignore[operator]
    if cwrite:
        input_cost += cwrite * rates.cache_write  # type: ignore[operator]
    output_cost = out * rates.output
    return CallPrice(
        cost_usd=_usd(input_cost + output_cost),
        input_cost_usd=_usd(input_cost),
        output_cost_usd=_usd(output_cost),
        source=rates.source,
    )


def _price_with_genai(
    provider: str | None, model: str, counts: tuple[int, int, int, int], at: datetime | None
) -> CallPrice:
    import genai_prices

    inp, out, cread, cwrite = counts
    provider_info, model_info = _genai_find(provider, model)
    try:
        calc = model_info.calc_price(
            genai_prices.Usage(
                input_tokens=inp, output_tokens=out, cache_read_tokens=cread, cache_write_tokens=cwrite
            ),
            provider_info,
            genai_request_timestamp=at or datetime.now(tz=timezone.utc),
        )
    except (ValueError, LookupError, ArithmeticError) as exc:
        return CallPrice(None, error=f"genai-prices could not price {model!r}: {exc}")
    return CallPrice(
        cost_usd=_usd(float(calc.total_price)),
        input_cost_usd=_usd(float(calc.input_price)),
        output_cost_usd=_usd(float(calc.output_price)),
        source=f"genai-prices {_book.genai_version()} ({provider_info.id}/{model_info.id})",
    )
