"""Rate blocks: fallbacks, refinements, self-hosted rates and the errors that name the field."""

from __future__ import annotations

from decimal import Decimal

import pytest

from pricing import PricingError
from pricing.rates import parse_block, parse_rates

D = Decimal


def test_fallbacks_and_explicit_zero() -> None:
    rates = parse_rates({"input": 2, "output": 8, "cache_write": 0}, "m")
    assert rates.cached_input == rates.input == D("0.000002")
    assert rates.cache_write == rates.cache_write_1h == 0  # an explicit 0 is a price
    assert rates.audio_input == rates.input and rates.audio_output == rates.output
    assert rates.reasoning is None


def test_self_hosted_rounds_up_once() -> None:
    spec = {"gpu_hour_usd": 1, "input_tokens_per_hour": 3_000_000, "output_tokens_per_hour": 3}
    rates = parse_rates({"self_hosted": spec}, "m")
    # 1 / 3,000,000 = 0.000000333... rounded up at the 18th decimal
    assert rates.input == D("0.000000333333333334")
    assert rates.output == D("0.333333333333333334")


def test_tier_multiplier_and_overrides() -> None:
    standard = parse_block(
        {"input": 2, "output": 8, "long_context": [{"above": 100, "input": 4}]}, "m"
    )
    batch = parse_block({"multiplier": "0.5", "output": 3}, "m batch", inherit=standard)
    assert batch.base.input == D("0.000001") and batch.base.output == D("0.000003")
    assert batch.long_context[0][1].input == D("0.000002")  # inherited step, halved
    own = parse_block({"long_context": [{"above": 50, "input": 9}]}, "m", inherit=standard)
    assert [above for above, _ in own.long_context] == [50]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"output": 1}, "missing rate 'input'"),
        ({"input": 1, "output": -1}, "field 'output': negative"),
        ({"input": 1, "output": 1, "bogus": 1}, "unknown keys"),
        ({"input": 1, "output": 1, "long_context": {"above": 1}}, "must be a list"),
        ({"input": 1, "output": 1, "long_context": [{"input": 2}]}, "needs 'above'"),
        ({"input": 1, "output": 1, "long_context": [{"above": 1, "x": 2}]}, "unknown long_context"),
        (
            {"input": 1, "output": 1, "long_context": [{"above": 1}, {"above": 1}]},
            "thresholds repeat",
        ),
        ({"input": 1, "self_hosted": {}}, "not both"),
        ({"self_hosted": {"gpu_hour_usd": 1, "bogus": 1}}, "unknown self_hosted"),
        ({"self_hosted": {"gpu_hour_usd": 1}}, "needs 'input_tokens_per_hour'"),
        (
            {
                "self_hosted": {
                    "gpu_hour_usd": 1,
                    "input_tokens_per_hour": 0,
                    "output_tokens_per_hour": 1,
                }
            },
            "must be above 0",
        ),
    ],
)
def test_errors_name_the_model_and_field(raw: dict[str, object], message: str) -> None:
    with pytest.raises(PricingError, match=message) as caught:
        parse_block(raw, "gpt-x (2026-01-01)")
    assert str(caught.value).startswith("gpt-x")
