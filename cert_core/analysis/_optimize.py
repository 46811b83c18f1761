"""``cert optimize``: where the LLM bill could shrink, each suggestion with its evidence.

Three kinds of suggestion, none of them applied automatically:

* **model downgrade**: a function whose calls on an expensive model pass their accuracy checks
  nearly always (the Wilson 95% lower bound of the pass rate over its evaluated calls reaches
  ``min_pass_rate``) could try the provider's cheaper model; the saving is its tokens priced
  at that model. Validate it on the test suite first.
* **response cache**: the exact same input sent to the same model again and again; an
  exact-match cache would have answered all but the first.
* **long prompts**: the calls whose input is above the model's 90th percentile; trimming them
  to that length (retrieval top-k, history, boilerplate) would save the tokens above it.

Prices come from :func:`cert_core.price_call` (genai-prices and your overrides).
"""

from __future__ import annotations

import dataclasses
import re
from collections import defaultdict
from typing import Any

from .._pricing import price_call
from .._stats import wilson_interval
from ._traces import DailyGroup, TraceScan, in_period

__all__ = ["CHEAPER", "Recommendation", "optimize", "wilson_lower"]

#: The cheaper model tried for each expensive one (prefix of the model name, without a date).
CHEAPER: dict[str, dict[str, str]] = {
    "openai": {
        "gpt-4o": "gpt-4o-mini",
        "gpt-4-turbo": "gpt-4o-mini",
        "gpt-4.1": "gpt-4.1-mini",
        "gpt-4.1-mini": "gpt-4.1-nano",
        "gpt-5": "gpt-5-mini",
        "gpt-5-mini": "gpt-5-nano",
        "o1": "o3-mini",
        "o3": "o4-mini",
    },
    "anthropic": {
        "claude-opus-4": "claude-sonnet-4-0",
        "claude-sonnet-4": "claude-3-5-haiku-latest",
        "claude-3-7-sonnet": "claude-3-5-haiku-latest",
        "claude-3-5-sonnet": "claude-3-5-haiku-latest",
    },
}
_DATE = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{8}|latest|\d)$")


def wilson_lower(passed: int, n: int) -> float:
    """Lower bound of the two-sided 95% Wilson score interval (0 without evaluations)."""
    return wilson_interval(passed, n)[0] if n else 0.0


@dataclasses.dataclass(frozen=True)
class Recommendation:
    kind: str  # "model downgrade", "response cache", "long prompts"
    target: str  # what it is about: a function and model, a prompt, a model
    saving_usd: float | None  # over the analysed period; None when it cannot be priced
    suggestion: str
    evidence: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _cheaper(provider: str, model: str) -> str | None:
    table = CHEAPER.get(provider.split(".")[-1] if provider.startswith("azure") else provider, {})
    name = model
    for _ in range(3):  # claude-sonnet-4-20250514 -> claude-sonnet-4-2025... -> claude-sonnet-4
        if name in table:
            return table[name]
        stripped = _DATE.sub("", name)
        if stripped == name:
            break
        name = stripped
    for prefix in sorted(table, key=len, reverse=True):
        if model.startswith(prefix + "-") and not model.startswith(table[prefix]):
            return table[prefix]
    return None


def _per_token(provider: str, model: str) -> tuple[float | None, float | None]:
    """USD per input token and per output token, or None when unknown."""
    price = price_call(provider, model, {"input_tokens": 1_000_000, "output_tokens": 1_000_000})
    if price.input_cost_usd is None or price.output_cost_usd is None:
        return None, None
    return price.input_cost_usd / 1e6, price.output_cost_usd / 1e6


def _downgrades(groups: list[DailyGroup], min_pass_rate: float, min_evaluated: int) -> list[Recommendation]:
    by_target: dict[tuple[str, str, str], list[DailyGroup]] = defaultdict(list)
    for g in groups:
        by_target[(g.function, g.provider, g.model)].append(g)
    out = []
    for (function, provider, model), rows in by_target.items():
        cheaper = _cheaper(provider, model)
        evaluated = sum(r.evaluated for r in rows)
        passed = sum(r.passed for r in rows)
        if cheaper is None or evaluated < min_evaluated:
            continue
        lower = wilson_lower(passed, evaluated)
        if lower < min_pass_rate:
            continue
        cost = sum(r.cost_usd for r in rows)
        tokens_in = sum(r.input_tokens for r in rows)
        tokens_out = sum(r.output_tokens for r in rows)
        per_in, per_out = _per_token(provider, cheaper)
        saving = (
            None if per_in is None or per_out is None else cost - (tokens_in * per_in + tokens_out * per_out)
        )
        if saving is not None and saving <= 0:
            continue
        out.append(
            Recommendation(
                kind="model downgrade",
                target=f"{function} on {model}",
                saving_usd=None if saving is None else round(saving, 6),
                suggestion=f"try {cheaper} for {function}: its calls on {model} pass their checks "
                f"{passed / evaluated:.0%} of the time; re-run the test suite on {cheaper} before switching",
                evidence={
                    "calls": sum(r.calls for r in rows),
                    "evaluated": evaluated,
                    "passed": passed,
                    "pass_rate_wilson_lower_95": round(lower, 4),
                    "mean_confidence": round(sum(r.confidence_sum for r in rows) / evaluated, 4),
                    "cost_usd": round(cost, 6),
                    "cheaper_model": cheaper,
                    "cost_on_cheaper_model_usd": None if saving is None else round(cost - saving, 6),
                },
            )
        )
    return out


def optimize(
    scan: TraceScan,
    *,
    period_days: int | None = 30,
    min_pass_rate: float = 0.9,
    min_evaluated: int = 30,
    min_repeats: int = 3,
) -> list[Recommendation]:
    """Suggestions over the period ending on the newest day of ``scan`` (made with
    ``prompts=True`` for the cache and long-prompt ones), largest saving first."""
    groups = in_period(scan.groups, period_days)
    found = _downgrades(groups, min_pass_rate, min_evaluated)
    for r in scan.repeated:
        if r.calls < min_repeats:
            continue
        per_call = r.cost_usd / r.calls
        found.append(
            Recommendation(
                kind="response cache",
                target=f"{r.function} on {r.model}: {r.prompt_head[:60]}",
                saving_usd=round(per_call * (r.calls - 1), 6),
                suggestion=f"the same input went to {r.model} {r.calls} times; an exact-match response "
                "cache (or provider prompt caching, for a shared prefix) would have answered all but "
                "the first",
                evidence={
                    "calls": r.calls,
                    "cost_usd": round(r.cost_usd, 6),
                    "cost_per_call_usd": round(per_call, 8),
                    "input_md5": r.prompt_sha,
                    "first_seen": r.first_seen,
                    "last_seen": r.last_seen,
                },
            )
        )
    for lp in scan.long_prompts:
        if not lp.long_calls or not lp.input_tokens:
            continue
        per_in, _ = _per_token(lp.provider, lp.model)
        saving = None if per_in is None else lp.tokens_above_p90 * per_in
        found.append(
            Recommendation(
                kind="long prompts",
                target=f"{lp.model}",
                saving_usd=None if saving is None else round(saving, 6),
                suggestion=f"{lp.long_calls:,} calls to {lp.model} send more than "
                f"{lp.p90_input_tokens:,.0f} input tokens (the 90th percentile; the median is "
                f"{lp.median_input_tokens:,.0f}); trimming them to "
                "that length (fewer retrieved passages, shorter history) saves the tokens above it",
                evidence={
                    "calls": lp.calls,
                    "input_tokens": lp.input_tokens,
                    "long_calls": lp.long_calls,
                    "tokens_above_p90": lp.tokens_above_p90,
                    "share_of_input_tokens": round(lp.tokens_above_p90 / lp.input_tokens, 4),
                    "median_input_tokens": lp.median_input_tokens,
                    "p90_input_tokens": lp.p90_input_tokens,
                },
            )
        )
    found.sort(key=lambda r: -(r.saving_usd or 0.0))
    return found
