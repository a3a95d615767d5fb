"""Unit scales are exact: every scaled value is the double nearest to value × num / den (correctly rounded),
checked against ``fractions.Fraction`` — on ``Scale`` itself and through the mappings, for gauge values,
histogram bounds and sums, summary quantile values and sums, and exemplar values."""

from __future__ import annotations

import math
from fractions import Fraction
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from promotel.errors import MappingError
from promotel.exposition import parse_exposition
from promotel.mappings import load_mapping
from promotel.mappings.scale import Scale
from promotel.model import HistogramPoint, SummaryPoint

SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# The built-in tables' scales (percent → ratio, ms → s, MiB → By), the identity, powers of two, and rationals
# that need the general path (neither side 1).
SCALES = [Scale(1, 100), Scale(1, 1000), Scale(1_048_576, 1), Scale(1, 1), Scale(1, 1024), Scale(5, 2),
          Scale(3, 10), Scale(7, 1), Scale(1, 3), Scale(2**60 + 1, 3)]
finite = st.floats(allow_nan=False, allow_infinity=False)


def correctly_rounded(value: float, scale: Scale) -> float:
    """The double nearest to value × num / den (Fraction → float rounds once, to nearest even)."""
    exact = Fraction(value) * Fraction(scale.num, scale.den)
    try:
        result = float(exact)
    except OverflowError:
        result = math.copysign(math.inf, value)
    return math.copysign(result, value) if result == 0.0 else result


def same(a: float, b: float) -> bool:
    return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)


def test_the_issue_example() -> None:
    assert 95 * 0.01 == 0.9500000000000001                   # why a scale is not a float factor
    assert Scale.of(0.01).apply(95.0) == 0.95
    assert Scale.of(0.001).apply(0.3) == 0.3 / 1000
    assert Scale.of(1048576.0).apply(3.0) == 3 * 2**20


@pytest.mark.parametrize("value,want", [(0.01, Scale(1, 100)), (0.001, Scale(1, 1000)), (1048576.0, Scale(2**20, 1)),
                                        (1, Scale(1, 1)), (2.5, Scale(5, 2)), (Fraction(1, 3), Scale(1, 3))])
def test_a_scale_is_read_as_the_decimal_it_is_written_as(value: Any, want: Scale) -> None:
    assert Scale.of(value) == want


@pytest.mark.parametrize("value", [0, -1.0, math.inf, math.nan, "x", True])
def test_invalid_scales_are_refused(value: Any) -> None:
    with pytest.raises(ValueError):
        Scale.of(value)


@SETTINGS
@given(value=finite, scale=st.sampled_from(SCALES))
def test_apply_is_correctly_rounded(value: float, scale: Scale) -> None:
    assert same(scale.apply(value), correctly_rounded(value, scale)), (value, scale)


@SETTINGS
@given(value=finite, factor=st.floats(min_value=1e-12, max_value=1e12))
def test_any_configured_scale_is_correctly_rounded(value: float, factor: float) -> None:
    scale = Scale.of(factor)
    assert Fraction(scale.num, scale.den) == Fraction(repr(factor))
    assert same(scale.apply(value), correctly_rounded(value, scale)), (value, factor)


@pytest.mark.parametrize("scale", SCALES)
def test_non_finite_values_keep_their_kind_and_sign(scale: Scale) -> None:
    assert math.isnan(scale.apply(math.nan))
    assert scale.apply(math.inf) == math.inf and scale.apply(-math.inf) == -math.inf
    assert same(scale.apply(-0.0), -0.0) and same(scale.apply(0.0), 0.0)


def _source(**kw: Any) -> SimpleNamespace:
    base: dict[str, Any] = {"name": "s", "overrides": {}, "users": "keep", "pseudonymize_key": None,
                            "unmapped": "keep", "service_name": None}
    base.update(kw)
    return SimpleNamespace(**base)


def _map(mapping: str, text: str, **kw: Any) -> dict[str, Any]:
    result = load_mapping(mapping).bind(_source(**kw)).map(parse_exposition(text, None))
    return {m.name: m for m in result.metrics}


positive = st.floats(min_value=1e-300, max_value=1e300)


@SETTINGS
@given(value=finite)
def test_baseten_percent_and_mib_through_the_mapping(value: float) -> None:
    text = (f'baseten_gpu_utilization{{gpu="0"}} {value!r}\n'
            f'baseten_gpu_memory_used{{gpu="0"}} {value!r}\n')
    metrics = _map("baseten", text)
    assert same(metrics["hw.gpu.utilization"].points[0].value, correctly_rounded(value, Scale(1, 100)))
    assert same(metrics["hw.gpu.memory.usage"].points[0].value, correctly_rounded(value, Scale(2**20, 1)))


@SETTINGS
@given(bounds=st.lists(positive, min_size=1, max_size=4, unique=True), total=positive, example=positive)
def test_milliseconds_histogram_bounds_sums_and_exemplars(bounds: list[float], total: float, example: float) -> None:
    bounds = sorted(bounds)
    lines = ["# TYPE response_duration_ms histogram"]
    for i, b in enumerate(bounds):
        lines.append(f'response_duration_ms_bucket{{le="{b!r}"}} {i} # {{trace_id="ab"}} {example!r}')
    lines += [f'response_duration_ms_bucket{{le="+Inf"}} {len(bounds)}', f"response_duration_ms_count {len(bounds)}",
              f"response_duration_ms_sum {total!r}", "# EOF"]
    point = _map("sambanova", "\n".join(lines) + "\n")["sambanova.router.request.duration"].points[0]
    assert isinstance(point, HistogramPoint)
    ms = Scale(1, 1000)
    assert point.bounds == tuple(correctly_rounded(b, ms) for b in bounds)
    assert point.sum == correctly_rounded(total, ms)
    assert [e.value for e in point.exemplars] == [correctly_rounded(example, ms)] * len(bounds)


@SETTINGS
@given(values=st.lists(st.floats(min_value=0.0, max_value=1e300), min_size=3, max_size=3), total=finite)
def test_milliseconds_summary_quantile_values_and_sum(values: list[float], total: float) -> None:
    text = "".join(f'response_duration_ms{{quantile="{q}"}} {v!r}\n' for q, v in zip(("0.5", "0.9", "0.99"), values))
    text = "# TYPE response_duration_ms summary\n" + text + f"response_duration_ms_count 3\nresponse_duration_ms_sum {total!r}\n"
    point = _map("sambanova", text)["sambanova.router.request.duration"].points[0]
    assert isinstance(point, SummaryPoint)
    ms = Scale(1, 1000)
    assert [v for _, v in point.quantiles] == [correctly_rounded(v, ms) for v in values]
    assert same(point.sum, correctly_rounded(total, ms))


@SETTINGS
@given(value=finite, factor=st.sampled_from([2.5, 0.3, 1e-6, 60.0]))
def test_override_scales_on_counters_and_their_exemplars(value: float, factor: float) -> None:
    text = f'# TYPE custom counter\ncustom_total 1 # {{span_id="cd"}} {value!r}\ncustom_total 2\n# EOF\n'
    # (the second sample is a duplicate of the first: the first value is kept)
    metric = _map("passthrough", text, overrides={"custom": {"scale": factor}})["custom_total"]
    point = metric.points[0]
    scale = Scale.of(factor)
    assert point.value == correctly_rounded(1.0, scale)
    assert same(point.exemplars[0].value, correctly_rounded(value, scale))


def test_a_row_with_an_invalid_scale_is_a_mapping_error() -> None:
    from promotel.mappings.table import Instrument, Row, Table, check_table

    with pytest.raises(MappingError, match="invalid scale"):
        check_table(Table("t", (Row("a", "b", Instrument.GAUGE, "1", scale=-1.0),), ()))
