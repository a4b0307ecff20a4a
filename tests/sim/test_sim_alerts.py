"""sim.alerts against hand calculations: burn-rate detection and reset times (SRE workbook), the
threshold rule's `for`, predict_linear against a least-squares fit, precision and recall."""

from __future__ import annotations

import numpy as np
import pytest

from sim import alerts
from sim.alerts import (BurnRateRule, ErrorBurst, ForecastRule, ForgottenCanary, MultiBurnRateRule, Runaway,
                        ThresholdRule, error_trace, evaluate, predict_linear, spend_trace)


def test_workbook_detection_time_for_a_total_outage():
    """SRE workbook: at 100 % errors a 99.9 % SLO's 14.4x/1 h alert fires after
    1 h x 14.4 x 0.001 / 1.0 = 51.84 s (0.864 min)."""
    # the outage starts after more than an hour of traffic, so the 1 h window is full
    trace = error_trace(days=3 / 24, step_s=1, rps=50, base_error_ratio=0, diurnal_amplitude=0,
                        incidents=[ErrorBurst(start_h=1.5, duration_h=0.5, error_ratio=1.0)], seed=1)
    ev = evaluate(BurnRateRule(0.999, 3600, 300, 14.4), trace)
    assert ev.detected == (True,)
    assert ev.detection_s[0] == pytest.approx(51.84, abs=2.0)   # ±2 one-second steps: Poisson counts


def test_burn_rate_detection_and_reset_times_by_hand():
    """10 % errors for 1 h: the 1 h window passes 0.0144 after 3600 x 0.0144 / 0.1 = 518.4 s; after
    the burst the 5 min window drops below it once 300 x (1 - 0.0144/0.1) = 256.8 s have passed."""
    trace = error_trace(days=0.5, step_s=10, rps=200, base_error_ratio=0, diurnal_amplitude=0,
                        incidents=[ErrorBurst(start_h=4, duration_h=1, error_ratio=0.1)], seed=3)
    ev = evaluate(BurnRateRule(0.999, 3600, 300, 14.4), trace)
    assert ev.detected == (True,) and ev.false_positives == 0
    assert ev.detection_s[0] == pytest.approx(518.4, abs=20)
    assert ev.reset_s[0] == pytest.approx(256.8, abs=20)
    assert ev.precision == 1.0 and ev.recall == 1.0


def test_slow_burn_needs_the_ticket_window():
    """2x the error budget from day 2 on: the page pairs (14.4x, 6x) never fire; the 1x 3 d / 6 h
    ticket pair does, once its 3 d window is over 0.001."""
    trace = error_trace(days=3, step_s=60, rps=50, base_error_ratio=0.0, diurnal_amplitude=0,
                        incidents=[ErrorBurst(start_h=24, duration_h=48, error_ratio=0.002)], seed=2)
    page = evaluate(MultiBurnRateRule.sre_workbook(0.999, severities=("page",)), trace)
    every = evaluate(MultiBurnRateRule.sre_workbook(0.999), trace)
    assert page.detected == (False,) and not page.episodes
    assert every.detected == (True,)
    # the 3 d window holds the day of zeros before it: 0.002 d / (24 h + d) > 0.001 once d > 24 h (the
    # 6 h window is above 0.001 within the first hour); sampling noise moves that by well under 2 h
    assert every.detection_s[0] == pytest.approx(24 * 3600, abs=2 * 3600)


def test_threshold_rule_with_for_by_hand():
    """A runaway (x3 on a flat 2 USD/h, no noise) over a 4 USD/h threshold with for 10 min: the
    condition holds from the first step inside the incident, fires 10 min later, and resolves at the
    first step after it."""
    step = 300
    trace = spend_trace(days=2, step_s=step, base_usd_per_h=2.0, diurnal_amplitude=0, noise_cv=0,
                        incidents=[Runaway(start_h=10, duration_h=5, factor=3)], seed=0)
    ev = evaluate(ThresholdRule(4.0, for_s=600), trace)
    assert ev.episodes == ((10 * 3600 + step + 600, 15 * 3600 + step),)
    assert ev.detection_s == (step + 600,) and ev.reset_s == (step,)


def test_forecast_fires_when_the_line_crosses_the_budget():
    """Spend 2 USD/h exactly: predict_linear(spend[6h], 24 h) > 100 USD once 2 (t + 24 h) > 100,
    i.e. t > 26 h."""
    trace = spend_trace(days=3, step_s=600, base_usd_per_h=2.0, diurnal_amplitude=0, noise_cv=0, seed=0)
    ev = evaluate(ForecastRule(budget_usd=100, horizon_s=86400, lookback_s=6 * 3600), trace)
    assert len(ev.episodes) == 1 and ev.false_positives == 1     # no incident: a true forecast, but no incident
    assert ev.episodes[0][0] == pytest.approx(26 * 3600, abs=600)


def test_predict_linear_is_least_squares_at_the_evaluation_time():
    rng = np.random.default_rng(0)
    t = np.arange(1, 101) * 15.0
    y = 3 + 0.2 * t + rng.normal(0, 5, len(t))
    pred = predict_linear(t, y, lookback_s=300, horizon_s=600)
    i = 60
    window = slice(i - 19, i + 1)   # 20 samples in (t - 300, t]
    slope, intercept = np.polyfit(t[window], y[window], 1)
    assert pred[i] == pytest.approx(intercept + slope * (t[i] + 600), rel=1e-9)
    assert np.isnan(pred[0])


def test_precision_and_recall_of_extreme_rules():
    """'Alert on everything' catches every incident with poor precision; 'never' catches none."""
    trace = spend_trace(days=7, step_s=600, incidents=[Runaway(40, 4, 3.0), ForgottenCanary(120, 0.6)], seed=5)
    everything = evaluate(ThresholdRule(0.0), trace)
    never = evaluate(ThresholdRule(1e6), trace)
    assert everything.firing_fraction == 1.0 and everything.recall == 0.0   # it never *starts* during one
    assert never.recall == 0.0 and never.precision is None
    tuned = evaluate(ThresholdRule(4.5, for_s=1800), trace)
    assert tuned.detected == (True, False)          # catches the runaway, not the small canary
    assert tuned.precision == 1.0
    noisy = evaluate(ThresholdRule(2.55), trace)     # just under the diurnal peak (2.6): fires daily
    assert noisy.false_positives >= 5 and noisy.precision < 0.5


def test_traces_are_seeded():
    a = spend_trace(days=1, seed=4).frame
    b = spend_trace(days=1, seed=4).frame
    c = spend_trace(days=1, seed=5).frame
    assert a.equals(b) and not a.equals(c)


def test_bad_input_names_the_parameter():
    with pytest.raises(ValueError, match="slo"):
        BurnRateRule(1.5)
    with pytest.raises(ValueError, match="short_s"):
        BurnRateRule(0.999, long_s=300, short_s=3600)
    with pytest.raises(ValueError, match="budget_usd"):
        ForecastRule(budget_usd=-1, horizon_s=3600)
    with pytest.raises(ValueError, match="threshold"):
        ThresholdRule(-2)
    with pytest.raises(ValueError, match="spend trace"):
        evaluate(ForecastRule(10, 3600), error_trace(days=0.1))
    with pytest.raises(ValueError, match="error trace"):
        evaluate(BurnRateRule(0.99), spend_trace(days=1))
    with pytest.raises(ValueError, match="Runaway or ForgottenCanary"):
        spend_trace(incidents=[ErrorBurst(1, 1, 0.5)])
    with pytest.raises(ValueError, match="start_h"):
        spend_trace(days=1, incidents=[Runaway(48, 1)])
    with pytest.raises(ValueError, match="metric"):
        evaluate(ThresholdRule(1, metric="errors"), spend_trace(days=1))
    with pytest.raises(ValueError, match="rule"):
        evaluate("cost > 3", spend_trace(days=1))
    with pytest.raises(ValueError, match="MultiBurnRateRule.rules"):
        MultiBurnRateRule(())


def test_promql_text_of_the_rules():
    assert ThresholdRule(4.5).promql() == "cost_usd_per_h > 4.5"
    assert ForecastRule(100, 86400).promql() == "predict_linear(spend_usd_total[6h], 86400) > 100"
    text = BurnRateRule(0.999).promql()
    assert "[1h]" in text and "[5m]" in text and "14.4 * 0.001" in text
    assert len(alerts.SRE_WORKBOOK_WINDOWS) == 3
