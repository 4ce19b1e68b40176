"""The pre-aggregated per-call metrics, read back through the OTel SDK's own readers."""

from __future__ import annotations

from decimal import Decimal

from opentelemetry.sdk.metrics import Counter, Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    InMemoryMetricReader,
)
from opentelemetry.sdk.resources import Resource

from proxy.callmetrics import CallMetrics, CounterSpec, HistogramSpec, observe

H = HistogramSpec("h", "s", "a histogram", [1.0, 10.0])
C = CounterSpec("c", "USD", "a counter")


def _setup(limit: int = 2000) -> tuple[CallMetrics, InMemoryMetricReader, InMemoryMetricReader]:
    cumulative = InMemoryMetricReader()
    delta = InMemoryMetricReader(
        preferred_temporality={
            Histogram: AggregationTemporality.DELTA,
            Counter: AggregationTemporality.DELTA,
        }
    )
    MeterProvider(metric_readers=[cumulative, delta])
    metrics = CallMetrics([H], [C], limit=limit)
    for reader in (cumulative, delta):
        metrics.attach(reader, Resource.create({}))
    return metrics, cumulative, delta


def _points(reader: InMemoryMetricReader) -> dict[str, list[object]]:
    data = reader.get_metrics_data()
    if data is None:  # the SDK's own answer when nothing was recorded
        return {}
    return {
        m.name: list(m.data.data_points)
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
    }


def test_histogram_and_counter_cumulative_and_delta() -> None:
    metrics, cumulative, delta = _setup()
    hp = metrics.hist["h"].point((("k", "a"),))
    cp = metrics.counters["c"].point((("k", "a"),))
    for v in (0.5, 1.0, 5.0, 50.0):
        observe(hp, metrics.hist["h"].bounds, v)
    cp.value += Decimal("0.1")
    cp.value += Decimal("0.2")

    (h,) = _points(cumulative)["h"]
    assert h.bucket_counts == [2, 1, 1]  # (-inf,1] (1,10] (10,inf): 1.0 goes in the first
    assert (h.count, h.sum, h.min, h.max) == (4, 56.5, 0.5, 50.0)
    assert dict(h.attributes) == {"k": "a"}
    (c,) = _points(cumulative)["c"]
    assert c.value == 0.3

    (d,) = _points(delta)["h"]
    assert d.bucket_counts == [2, 1, 1] and d.count == 4
    # a second window: only what is new, with that window's min and max
    observe(hp, metrics.hist["h"].bounds, 3.0)
    (d,) = _points(delta)["h"]
    assert (d.count, d.sum, d.min, d.max, list(d.bucket_counts)) == (1, 3.0, 3.0, 3.0, [0, 1, 0])
    assert "c" not in _points(delta)  # nothing added since the last collection
    (h,) = _points(cumulative)["h"]
    assert h.count == 5 and h.min == 0.5


def test_untouched_points_are_not_exported() -> None:
    metrics, cumulative, _ = _setup()
    metrics.hist["h"].point((("k", "a"),))
    metrics.counters["c"].point((("k", "a"),))
    assert _points(cumulative) == {}


def test_cardinality_is_bounded_with_an_overflow_series() -> None:
    metrics, cumulative, _ = _setup(limit=3)
    for i in range(10):
        metrics.counters["c"].point((("model", f"m{i}"),)).value += 1
    points = _points(cumulative)["c"]
    assert len(points) == 4
    overflow = [p for p in points if dict(p.attributes) == {"otel.metric.overflow": True}]
    assert overflow[0].value == 7
    assert sum(p.value for p in points) == 10


def test_sdk_instruments_of_the_same_scope_share_one_scope() -> None:
    """OTLP encoders keep one scope per name: ours merges into the SDK's, never beside it."""
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    provider.get_meter("spendgate").create_counter("sdk.counter").add(1)
    metrics = CallMetrics([H], [C])
    metrics.attach(reader, Resource.create({}))
    metrics.counters["c"].point(()).value += 1
    data = reader.get_metrics_data()
    assert data is not None
    (rm,) = data.resource_metrics
    (scope,) = rm.scope_metrics
    assert scope.scope.name == "spendgate"
    assert {m.name for m in scope.metrics} == {"sdk.counter", "c"}
