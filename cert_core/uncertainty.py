"""How unsure a model was of its own answer, from the token log probabilities it returned.

A provider that returns logprobs (OpenAI with ``logprobs=True``, optionally ``top_logprobs=k``)
gives, for each generated token, the natural log of the probability of the token it chose and
of the ``k`` most likely tokens at that position. From ``n`` chosen-token logprobs ``l_1..l_n``:

- ``mean_logprob = (l_1 + ... + l_n) / n`` (summed with :func:`math.fsum`);
- ``perplexity = exp(-mean_logprob)``: 1 when every token was certain, ``V`` when the model chose
  uniformly among ``V`` tokens at every step;
- per token with top logprobs ``t_1..t_k``, the entropy in nats of the top-k distribution
  renormalised over those ``k`` tokens, ``H = -sum(p_i * log p_i)`` with
  ``p_i = exp(t_i - logsumexp(t))``, computed as ``log(S) - sum(w_i * d_i) / S`` with
  ``d_i = t_i - max(t)``, ``w_i = exp(d_i)``, ``S = sum(w_i)`` (log-sum-exp: nothing overflows,
  ``S >= 1``, and ``log(S)`` is taken as ``log1p(S - 1)``); 0 when ``k = 1``, at most
  ``log(k)``. ``mean_entropy`` is the mean over the tokens that carry top logprobs, and
  ``None`` when none does (no ``top_logprobs`` requested).

Only what was measured is stated: no logprobs gives no :class:`Uncertainty` at all, never zeros.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from itertools import repeat
from operator import mul, sub
from typing import Annotated, Final

import msgspec

__all__ = ["LOGPROB_FLOOR", "Uncertainty", "logprob_stats", "top_k_entropy"]

#: OpenAI's logprob for a token outside its top 20 ("very unlikely"). Lower values, ``-inf``
#: included, are read as this, so that the statistics stay finite and can be written as JSON.
LOGPROB_FLOOR: Final = -9999.0

# exp(x) overflows a float above this; a larger perplexity is written as the largest float.
_MAX_EXP = math.log(sys.float_info.max)


class Uncertainty(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, gc=False):
    """Token-level uncertainty of one LLM call: the ``uncertainty`` field of a trace record.

    ``tokens``: how many generated tokens carried a logprob; ``mean_logprob`` (<= 0, nats) and
    ``perplexity`` (>= 1; saturates at the largest float, 1.8e308, where ``exp`` would
    overflow); ``mean_entropy``: mean top-k entropy in nats, ``None`` when no top logprobs were
    returned; ``top_k``: the most top logprobs any token carried (the ``k`` asked for), ``None``
    likewise; ``source``: where the numbers come from, e.g. ``"openai.logprobs"``.
    """

    tokens: Annotated[int, msgspec.Meta(ge=1)]
    mean_logprob: Annotated[float, msgspec.Meta(le=0)]
    perplexity: Annotated[float, msgspec.Meta(ge=1)]
    mean_entropy: Annotated[float, msgspec.Meta(ge=0)] | None
    top_k: Annotated[int, msgspec.Meta(ge=1)] | None
    source: str


def _clamped(value: float) -> float:
    if value != value:
        raise ValueError("a token logprob is NaN")
    if value > 0.0:
        if value == math.inf:
            raise ValueError("a token logprob is +inf")
        return 0.0  # rounding noise around probability 1
    return value if value >= LOGPROB_FLOOR else LOGPROB_FLOOR


def top_k_entropy(top_logprobs: Sequence[float]) -> float:
    """Entropy in nats of the distribution over ``top_logprobs`` renormalised to sum to 1.

    ``top_logprobs`` must not be empty. 0 for a single token, ``log(k)`` for ``k`` equal ones.
    Raises ``ValueError`` for NaN or ``+inf``.
    """
    if min(top_logprobs) < LOGPROB_FLOOR:  # -inf would give 0 * -inf below
        top_logprobs = [x if x >= LOGPROB_FLOOR else LOGPROB_FLOOR for x in top_logprobs]
    high = max(top_logprobs)
    shifted = list(map(sub, top_logprobs, repeat(high, len(top_logprobs))))
    weights = list(map(math.exp, shifted))
    # sum(weights) = 1 + rest (the largest term is exp(0)); fsum rounds rest once, and log1p
    # keeps the tiny entropy of a near-certain token that log(1 + rest) would round away.
    rest = math.fsum([*weights, -1.0])
    entropy = math.log1p(rest) - math.fsum(map(mul, weights, shifted)) / (1.0 + rest)
    if entropy != entropy:
        raise ValueError(f"top logprobs {list(top_logprobs)!r} hold NaN or +inf")
    return entropy if entropy > 0.0 else 0.0  # -1e-17 is rounding, not information


def logprob_stats(
    logprobs: Sequence[float],
    top_logprobs: Sequence[Sequence[float]] = (),
    *,
    source: str = "openai.logprobs",
) -> Uncertainty | None:
    """The :class:`Uncertainty` of a generated text, or ``None`` when no token carried a logprob.

    ``logprobs``: the chosen tokens' logprobs, in nats. ``top_logprobs``: per token, the logprobs
    of the most likely tokens at that position (an empty sequence where none were returned).
    Logprobs above 0 are read as 0 (rounding) and those below :data:`LOGPROB_FLOOR` as the
    floor; NaN and ``+inf`` raise ``ValueError``.
    """
    count = len(logprobs)
    if not count:
        return None
    if not (min(logprobs) >= LOGPROB_FLOOR and max(logprobs) <= 0.0):  # also when min/max is NaN
        logprobs = [_clamped(x) for x in logprobs]
    total = math.fsum(logprobs)
    if total != total:
        raise ValueError("a token logprob is NaN")
    mean = total / count
    entropies = [top_k_entropy(top) for top in top_logprobs if top]
    top_k = max(map(len, top_logprobs), default=0)
    return Uncertainty(
        tokens=count,
        mean_logprob=mean if mean < 0.0 else 0.0,  # not -0.0
        perplexity=math.exp(-mean) if -mean < _MAX_EXP else sys.float_info.max,
        mean_entropy=math.fsum(entropies) / len(entropies) if entropies else None,
        top_k=top_k or None,
        source=source,
    )
