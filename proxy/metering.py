"""From a finished call to its ledger row: fill in missing usage, price it, record it.

The provider's reported usage is the truth. When there is none (a stream cut short, a client
that hung up, a server that reports nothing) the proxy counts with tiktoken, off the event
loop, and says so in ``usage_source``: ``counted`` for a complete response we counted
ourselves, ``estimated`` for a partial one.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from pricing import Catalog, PricedCall
from pricing.usage import Usage
from proxy.auth import Identity
from proxy.ledger import LedgerWriter
from proxy.providers.base import CallInfo, ResponseInfo, StreamMeter
from proxy.providers.mock import priced_model
from proxy.telemetry import Telemetry
from proxy.tokens import Tokenizer

__all__ = ["CallRecord", "Metering"]

log = logging.getLogger("spendgate.metering")


@dataclass(slots=True)
class CallRecord:
    """Everything known about one call, filled in as it progresses."""

    request_id: str
    started_at: datetime
    identity: Identity
    provider: str
    endpoint: str
    model_requested: str | None = None
    priced_model: str | None = None  # the model name to look up in the catalog
    project: str | None = None
    end_user: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    stream: bool = False
    status_code: int = 0
    outcome: str = "ok"
    error_type: str | None = None
    reached_provider: bool = False
    mock: bool = False  # served by the built-in mock: priced as the model after "mock-"
    info: ResponseInfo = field(default_factory=ResponseInfo)
    usage_source: str = "none"
    latency_ms: float | None = None
    ttft_ms: float | None = None
    upstream_request_id: str | None = None
    trace_id: str | None = None
    span_id: str | None = None
    operation: str = ""  # OTel gen_ai.operation.name
    provider_kind: str = ""
    budget_outcome: str = "none"  # none | admitted | blocked | rate_limited | unavailable
    overhead_s: float | None = None  # time in the proxy, excluding waiting on the upstream
    upstream_wait_s: float = 0.0  # time spent awaiting the upstream's headers and chunks
    span: Any = None  # the call's OpenTelemetry span while it is open


_COLUMNS = {
    "cost_input_usd": ("input",),
    "cost_cached_input_usd": ("cached_input",),
    "cost_cache_write_usd": ("cache_write", "cache_write_1h"),
    "cost_output_usd": ("output", "reasoning"),
    "cost_other_usd": ("audio_input", "audio_output", "request_fees"),
}


def _breakdown_columns(priced: PricedCall | None) -> dict[str, Any]:
    """The ledger's breakdown columns: list-price items, which sum to ``list_cost_usd``."""
    if priced is None:
        return dict.fromkeys(_COLUMNS)
    b = priced.breakdown
    out: dict[str, Decimal | None] = {
        col: sum((b.get(k, Decimal(0)) for k in keys), Decimal(0)) for col, keys in _COLUMNS.items()
    }
    known = {k for keys in _COLUMNS.values() for k in keys}
    extra = sum((v for k, v in b.items() if k not in known), Decimal(0))
    out["cost_other_usd"] = (out["cost_other_usd"] or Decimal(0)) + extra
    return out


class Metering:
    def __init__(
        self,
        catalog: Catalog,
        tokenizer: Tokenizer,
        ledger: LedgerWriter,
        telemetry: Telemetry | None = None,
    ) -> None:
        self.catalog = catalog
        self.tokenizer = tokenizer
        self.ledger = ledger
        self.telemetry = telemetry

    def price(self, rec: CallRecord, usage: Usage | None) -> PricedCall | None:
        """Price by the model that answered (a dated snapshot can differ in price from its
        alias), falling back to the model requested."""
        if usage is None or rec.priced_model is None:
            return None
        model = rec.priced_model
        served = rec.info.model
        if served and rec.mock:
            served = priced_model(served)
        if served and served != model and self.catalog.resolve(served, rec.started_at):
            model = served
        return self.catalog.price(
            model,
            usage,
            at=rec.started_at,
            team=rec.identity.team,
            service_tier=rec.info.service_tier,
        )

    async def complete_usage(
        self, rec: CallRecord, call: CallInfo | None, meter: StreamMeter | None
    ) -> Usage | None:
        """The call's usage: the provider's, else counted from the request and what streamed."""
        usage = rec.info.usage
        if usage is not None:
            rec.usage_source = "provider"
            return usage
        if not rec.reached_provider or call is None:
            return None
        if rec.outcome == "upstream_error" and not 200 <= rec.status_code < 300:
            return None  # the provider refused the call: nothing was generated or billed
        model = rec.priced_model or call.model
        text = meter.streamed_text() if meter is not None else ""
        # A stream cut before its final count may have reported its input already (Anthropic's
        # message_start, Gemini's prompt-only metadata): that stays exact, only output is counted.
        partial = rec.info.partial_usage
        if partial is not None and partial.input_tokens is None:
            partial = None
        try:
            if partial is not None:
                input_tokens = 0  # kept from ``partial``
                output_tokens = await asyncio.to_thread(self._count_text, model, text)
            else:
                input_tokens, output_tokens = await asyncio.to_thread(
                    self._count, call, model, text
                )
        except Exception:  # counting must never lose the row
            log.exception("could not count tokens for %s", rec.request_id)
            return None
        complete = rec.outcome == "ok"
        rec.usage_source = "counted" if complete else "estimated"
        if partial is not None:
            # never below what the provider had counted so far (message_start's output_tokens)
            return replace(partial, output_tokens=max(output_tokens, partial.output_tokens or 0))
        has_output = call.endpoint != "embeddings"
        return Usage(input_tokens=input_tokens, output_tokens=output_tokens if has_output else None)

    def _count(self, call: CallInfo, model: str, text: str) -> tuple[int, int]:
        prompt = self.tokenizer.count_request(call.endpoint, model, call.body)
        return prompt, self._count_text(model, text)

    def _count_text(self, model: str, text: str) -> int:
        return self.tokenizer.count(model, text) if text else 0

    def record(self, rec: CallRecord, usage: Usage | None, priced: PricedCall | None) -> None:
        """Hand the row to the ledger writer; never blocks, safe in any finally block."""
        ended = datetime.now(UTC)
        if self.telemetry is not None:
            try:
                self.telemetry.finish(rec, usage, priced, rec.budget_outcome)
            except Exception:  # telemetry must never cost a ledger row
                log.exception("telemetry failed for %s", rec.request_id)
        unpriced = usage is not None and priced is None and rec.priced_model is not None
        list_cost: Decimal | None
        cost: Decimal | None
        if priced is not None:
            list_cost, cost = priced.list_cost, priced.cost
        elif usage is None or not rec.reached_provider:
            list_cost = cost = Decimal(0)  # nothing generated, nothing billed
        else:
            list_cost = cost = None  # unpriced: NULL, never a silent $0
        if unpriced:
            log.warning(
                "no price for model %r (request %s); recorded unpriced",
                rec.priced_model,
                rec.request_id,
            )
        u = usage or Usage()
        row = dict(
            request_id=rec.request_id,
            started_at=rec.started_at,
            ended_at=ended,
            team=rec.identity.team,
            project=rec.project,
            key_id=rec.identity.key_id,
            end_user=rec.end_user,
            tags=rec.tags,
            provider=rec.provider,
            endpoint=rec.endpoint,
            model_requested=rec.model_requested,
            model_served=rec.info.model,
            stream=rec.stream,
            status_code=rec.status_code,
            outcome=rec.outcome,
            error_type=rec.error_type,
            input_tokens=u.input_tokens,
            cached_input_tokens=u.cached_input_tokens,
            cache_write_tokens=u.cache_write_tokens,
            cache_write_1h_tokens=u.cache_write_1h_tokens,
            audio_input_tokens=u.audio_input_tokens,
            audio_output_tokens=u.audio_output_tokens,
            output_tokens=u.output_tokens,
            reasoning_tokens=u.reasoning_tokens,
            usage_source=rec.usage_source,
            list_cost_usd=list_cost,
            cost_usd=cost,
            **_breakdown_columns(priced),
            price_version=priced.price_version if priced is not None else None,
            rate_card=priced.rate_card if priced is not None else None,
            unpriced=unpriced,
            latency_ms=round(rec.latency_ms or 0),
            ttft_ms=round(rec.ttft_ms) if rec.ttft_ms is not None else None,
            trace_id=rec.trace_id,
            span_id=rec.span_id,
            upstream_request_id=rec.upstream_request_id,
        )
        try:
            self.ledger.submit(row)
        except (TypeError, ValueError):  # a bug of ours; say so loudly, with what we know
            log.exception("ledger row refused: %r", row)
