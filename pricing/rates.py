"""Per-token rates: one price block of the catalog, normalised once at load.

The file states rates in USD per million tokens (fees in USD per request or per call); here
they become per-token Decimals with every fallback already applied, so pricing a call is a
handful of multiplications and nothing is decided at request time:

- a missing cache read or cache write rate is the input rate; a missing 1-hour write rate is
  the 5-minute write rate; audio defaults to the text rate of its side; an explicit 0 is a
  real price;
- reasoning has no rate of its own unless the block gives one (``None``: priced as output);
- a self-hosted model states ``gpu_hour_usd`` and measured throughput instead of rates.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from decimal import ROUND_CEILING, Decimal

from pricing.errors import PricingError
from pricing.values import as_decimal, as_int, as_mapping

__all__ = ["FEE_KEYS", "TOKEN_KEYS", "RateTable", "Rates", "parse_block", "parse_rates"]

TOKEN_KEYS = (
    "input",
    "cached_input",
    "cache_write",
    "cache_write_1h",
    "output",
    "reasoning",
    "audio_input",
    "audio_output",
)
FEE_KEYS = ("per_request", "web_search")
SELF_HOSTED_KEYS = frozenset(
    {"gpu_hour_usd", "gpus", "input_tokens_per_hour", "output_tokens_per_hour"}
)
BLOCK_KEYS = frozenset({*TOKEN_KEYS, *FEE_KEYS, "self_hosted", "long_context"})
TIER_KEYS = BLOCK_KEYS | {"multiplier"}

# Where a rate not given comes from (the input rate, the 5-minute write rate, ...).
_FALLBACK = {
    "cached_input": "input",
    "cache_write": "input",
    "cache_write_1h": "cache_write",
    "audio_input": "input",
    "audio_output": "output",
}
# Self-hosted rates are a division (USD per hour / tokens per hour) that need not terminate;
# they are rounded up once, at load, to 1e-18 USD per token, far below any billable amount.
_SELF_HOSTED_QUANTUM = Decimal("1e-18")


@dataclass(frozen=True, slots=True)
class Rates:
    """USD per token for each token kind, and USD per request / per web-search call."""

    input: Decimal
    cached_input: Decimal
    cache_write: Decimal
    cache_write_1h: Decimal
    output: Decimal
    reasoning: Decimal | None
    audio_input: Decimal
    audio_output: Decimal
    per_request: Decimal = Decimal(0)
    web_search: Decimal = Decimal(0)
    # Which token rates the file stated (the rest are fallbacks), for refining blocks.
    explicit: frozenset[str] = field(default=frozenset(), compare=False, repr=False)

    def scaled(self, factor: Decimal) -> Rates:
        """Every rate and fee times ``factor`` (a service-tier multiplier)."""
        reasoning = None if self.reasoning is None else self.reasoning * factor
        return Rates(
            input=self.input * factor,
            cached_input=self.cached_input * factor,
            cache_write=self.cache_write * factor,
            cache_write_1h=self.cache_write_1h * factor,
            output=self.output * factor,
            reasoning=reasoning,
            audio_input=self.audio_input * factor,
            audio_output=self.audio_output * factor,
            per_request=self.per_request * factor,
            web_search=self.web_search * factor,
            explicit=self.explicit,
        )

    @property
    def highest_input(self) -> Decimal:
        """The dearest rate any input token can be billed at (for worst-case reservations)."""
        return max(
            self.input, self.cached_input, self.cache_write, self.cache_write_1h, self.audio_input
        )

    @property
    def highest_output(self) -> Decimal:
        """The dearest rate any output token can be billed at."""
        return max(self.output, self.reasoning or Decimal(0), self.audio_output)


@dataclass(frozen=True, slots=True)
class RateTable:
    """The rates of one service tier: a base and long-context steps (``above`` ascending).

    Above a step's threshold of input tokens every token kind of the call moves to that
    step's rates (how Gemini and OpenAI bill long prompts).
    """

    base: Rates
    long_context: tuple[tuple[int, Rates], ...] = ()

    def for_input(self, input_tokens: int) -> tuple[Rates, int | None]:
        """The rates for a call with this many input tokens, and the threshold crossed."""
        chosen, crossed = self.base, None
        for above, rates in self.long_context:
            if input_tokens > above:
                chosen, crossed = rates, above
        return chosen, crossed

    def scaled(self, factor: Decimal) -> RateTable:
        """The whole table times ``factor``."""
        steps = tuple((above, rates.scaled(factor)) for above, rates in self.long_context)
        return RateTable(self.base.scaled(factor), steps)


def _per_token(raw: Mapping[str, object], key: str, where: str) -> Decimal | None:
    if key not in raw or raw[key] is None:
        return None
    per_million = as_decimal(raw[key], f"{where}: field {key!r}")
    return per_million.scaleb(-6)  # exact: only the exponent moves


def _self_hosted(raw: object, where: str) -> dict[str, Decimal]:
    spec = as_mapping(raw, f"{where}: field 'self_hosted'")
    unknown = set(spec) - SELF_HOSTED_KEYS
    if unknown:
        raise PricingError(f"{where}: unknown self_hosted keys {sorted(unknown)}")
    for key in ("gpu_hour_usd", "input_tokens_per_hour", "output_tokens_per_hour"):
        if key not in spec:
            raise PricingError(f"{where}: self_hosted needs {key!r}")
    hourly = as_decimal(spec["gpu_hour_usd"], f"{where}: self_hosted.gpu_hour_usd")
    hourly *= as_int(spec.get("gpus", 1), f"{where}: self_hosted.gpus")
    rates = {}
    for side in ("input", "output"):
        throughput = as_int(
            spec[f"{side}_tokens_per_hour"], f"{where}: self_hosted.{side}_tokens_per_hour"
        )
        if throughput == 0:
            raise PricingError(f"{where}: self_hosted.{side}_tokens_per_hour must be above 0")
        rates[side] = (hourly / throughput).quantize(_SELF_HOSTED_QUANTUM, rounding=ROUND_CEILING)
    return rates


def parse_rates(raw: Mapping[str, object], where: str, *, inherit: Rates | None = None) -> Rates:
    """Rates from one raw block; missing keys come from ``inherit`` or the fallback rules.

    ``inherit`` is the block being refined (a long-context step or a service tier inherits
    from the standard base), so such a block only lists what differs. Only rates the base
    stated are inherited; a base rate that was itself a fallback is derived again from the
    refined block (a step's audio input follows the step's input).
    """
    given = {key: _per_token(raw, key, where) for key in TOKEN_KEYS}
    if "self_hosted" in raw:
        if given["input"] is not None or given["output"] is not None:
            raise PricingError(f"{where}: give either self_hosted or input/output rates, not both")
        given.update(_self_hosted(raw["self_hosted"], where))
    explicit = {key for key, value in given.items() if value is not None}
    if inherit is None:
        for key in ("input", "output"):
            if given[key] is None:
                raise PricingError(f"{where}: missing rate {key!r}")
    values: dict[str, Decimal | None] = {}
    for key in TOKEN_KEYS:  # ordered so that a fallback's source is always set first
        if given[key] is not None:
            values[key] = given[key]
        elif inherit is not None and (key in inherit.explicit or key in ("input", "output")):
            values[key] = getattr(inherit, key)
            explicit.add(key)
        else:
            values[key] = values[_FALLBACK[key]] if key in _FALLBACK else None
    fees = {key: getattr(inherit, key) for key in FEE_KEYS} if inherit is not None else {}
    fees.update(
        {
            key: as_decimal(raw[key], f"{where}: field {key!r}")
            for key in FEE_KEYS
            if raw.get(key) is not None
        }
    )
    return Rates(**values, **fees, explicit=frozenset(explicit))  # type: ignore[arg-type]


def _steps(raw: object, where: str, base: Rates) -> tuple[tuple[int, Rates], ...]:
    if not isinstance(raw, list):
        raise PricingError(f"{where}: long_context must be a list of {{above: N, ...rates}}")
    steps: list[tuple[int, Rates]] = []
    for item in raw:
        step = as_mapping(item, f"{where}: long_context entry")
        if "above" not in step:
            raise PricingError(f"{where}: long_context entry needs 'above' (input tokens)")
        above = as_int(step["above"], f"{where}: long_context.above")
        unknown = set(step) - (set(TOKEN_KEYS) | set(FEE_KEYS) | {"above"})
        if unknown:
            raise PricingError(f"{where}: unknown long_context keys {sorted(unknown)}")
        steps.append((above, parse_rates(step, f"{where} above {above}", inherit=base)))
    thresholds = [above for above, _ in steps]
    if len(set(thresholds)) != len(thresholds):
        raise PricingError(f"{where}: long_context thresholds repeat: {thresholds}")
    return tuple(sorted(steps, key=lambda step: step[0]))


def parse_block(
    raw: Mapping[str, object], where: str, *, inherit: RateTable | None = None
) -> RateTable:
    """A rate table (base + long-context steps) from one raw block.

    With ``inherit`` (a service tier refining the standard table), a ``multiplier`` scales
    the inherited table first and explicit keys then override; long-context steps not
    restated are inherited, scaled the same way.
    """
    allowed = TIER_KEYS if inherit is not None else BLOCK_KEYS
    unknown = set(raw) - allowed
    if unknown:
        raise PricingError(f"{where}: unknown keys {sorted(unknown)}")
    if inherit is None:
        base = parse_rates(raw, where)
        steps = _steps(raw["long_context"], where, base) if "long_context" in raw else ()
        return RateTable(base, steps)
    factor = as_decimal(raw.get("multiplier", 1), f"{where}: field 'multiplier'")
    start = inherit.scaled(factor) if factor != 1 else inherit
    base = parse_rates(raw, where, inherit=start.base)
    if "long_context" in raw:
        return RateTable(base, _steps(raw["long_context"], where, base))
    return replace(start, base=base)
