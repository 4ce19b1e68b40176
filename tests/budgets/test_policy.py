from __future__ import annotations

from decimal import Decimal

import pytest

from budgets import (
    BudgetConfigError,
    Mode,
    Period,
    Scope,
    Subject,
    parse_policies,
    parse_rate_limits,
)


def test_parses_the_documented_examples() -> None:
    team, key = parse_policies(
        [
            {"scope": "team", "match": "search", "period": "month", "limit_usd": 500,
             "mode": "hard", "alert_at": [0.5, 0.8, 1.0]},
            {"scope": "key", "period": "day", "limit_tokens": 2000000, "mode": "soft"},
        ]
    )  # fmt: skip
    assert (team.scope, team.period, team.limit_usd, team.mode) == (
        Scope.TEAM,
        Period.MONTH,
        Decimal(500),
        Mode.HARD,
    )
    assert team.alert_at == (Decimal("0.5"), Decimal("0.8"), Decimal("1.0"))
    assert (key.limit_tokens, key.mode, key.match) == (2_000_000, Mode.SOFT, None)
    # limit_usd from a YAML float is read through str(), so 0.1 stays 0.1
    (small,) = parse_policies([{"scope": "global", "period": "day", "limit_usd": 0.1}])
    assert small.limit_usd == Decimal("0.1")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"scope": "team", "period": "fortnight", "limit_usd": 1},
         "budgets[1].period: must be one of hour, day, week, month, lifetime"),
        ({"scope": "org", "period": "day", "limit_usd": 1}, "budgets[1].scope: must be one of"),
        ({"scope": "team", "period": "day"}, "budgets[1].limit_usd: one of limit_usd"),
        ({"scope": "team", "period": "day", "limit_usd": -1}, "budgets[1].limit_usd: must be"),
        ({"scope": "team", "period": "day", "limit_usd": "lots"}, "budgets[1].limit_usd: must"),
        ({"scope": "team", "period": "day", "limit_tokens": 1.5}, "budgets[1].limit_tokens"),
        ({"scope": "team", "period": "day", "limit_usd": 1, "mode": "block"}, "budgets[1].mode"),
        ({"scope": "team", "period": "day", "limit_usd": 1, "alert_at": [0.5, 0]},
         "budgets[1].alert_at[1]: must be > 0"),
        ({"scope": "team", "period": "day", "limit_usd": 1, "limt": 2}, "budgets[1].limt: unknown"),
        ({"scope": "global", "match": "x", "period": "day", "limit_usd": 1},
         "budgets[1].match: must be absent"),
        ({"scope": "tag", "match": "env", "period": "day", "limit_usd": 1},
         "budgets[1].match: scope tag needs"),
        ("team", "budgets[1]: must be a mapping"),
    ],
)  # fmt: skip
def test_errors_name_the_item_and_key(raw: object, message: str) -> None:
    ok = {"scope": "global", "period": "day", "limit_usd": 1}
    with pytest.raises(BudgetConfigError) as caught:
        parse_policies([ok, raw])
    assert str(caught.value).startswith(message)


def test_rate_limits() -> None:
    team, model = parse_rate_limits(
        [
            {"scope": "team", "match": "search", "rpm": 600, "tpm": 1_000_000},
            {"scope": "model", "match": "gpt-4o*", "tpm": 30_000},
        ]
    )
    assert (team.rpm, team.tpm, model.rpm) == (600, 1_000_000, None)
    assert model.value_for(Subject(model="gpt-4o-mini")) == "gpt-4o-mini"
    assert model.value_for(Subject(model="o3")) is None
    with pytest.raises(BudgetConfigError, match=r"rate_limits\[0\].rpm: must be an integer >= 1"):
        parse_rate_limits([{"scope": "key", "rpm": 0}])
    with pytest.raises(BudgetConfigError, match=r"rate_limits\[0\].rpm: one of rpm, tpm"):
        parse_rate_limits([{"scope": "key"}])


def test_which_subjects_a_policy_applies_to() -> None:
    tag, per_key, user = parse_policies(
        [
            {"scope": "tag", "match": "env=prod", "period": "day", "limit_usd": 1},
            {"scope": "key", "period": "day", "limit_usd": 1},
            {"scope": "end-user", "period": "day", "limit_usd": 1},
        ]
    )
    assert tag.value_for(Subject(tags={"env": "prod"})) == "env=prod"
    assert tag.value_for(Subject(tags={"env": "dev"})) is None
    assert per_key.value_for(Subject(key_id="k1")) == "k1"
    assert per_key.value_for(Subject()) is None
    assert user.scope is Scope.END_USER and user.value_for(Subject(end_user="u")) == "u"
