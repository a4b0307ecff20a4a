"""Alerting on spend and on SLOs: seeded traces, three kinds of rules, and how well they do.

* Traces (:func:`spend_trace`, :func:`error_trace`): a cost rate in USD per hour with a diurnal
  swing and noise, or requests and errors per step, with incidents whose start and end are known —
  :class:`Runaway` (a scale-out nobody stops: the cost rate times ``factor``), :class:`ForgottenCanary`
  (a small extra cost from ``start_h`` to the end), :class:`ErrorBurst` (an error ratio for a while).
* Rules, evaluated at every step of the trace as Prometheus evaluates a rule group:
  :class:`ThresholdRule` (``cost_usd_per_h > threshold`` for ``for_s``), :class:`ForecastRule`
  (``predict_linear(spend_usd_total[lookback], horizon) > budget``, with Prometheus's least-squares
  ``predict_linear``), :class:`BurnRateRule` (the SRE workbook's multiwindow burn rate: the error
  ratio over a long AND a short window both above ``factor × (1 − slo)``) and
  :class:`MultiBurnRateRule` (any of several; :meth:`MultiBurnRateRule.sre_workbook` is the
  workbook's 14.4× over 1 h/5 min, 6× over 6 h/30 min, 1× over 3 d/6 h).
* :func:`evaluate` turns the firing steps into alert episodes (Prometheus' pending → firing →
  resolved with ``for``) and scores them against the incidents: precision (episodes that start
  during an incident, or within ``grace_s`` after it), recall (incidents with such an episode),
  detection time (first firing − incident start) and reset time (the end of that episode − the
  incident's end).

Theory the tests check: a step of error ratio ``r`` is caught by a burn-rate pair with long window
``L`` after ``L · factor · (1 − slo) / r`` (the workbook's detection time) once the short window is
full; a linear spend ``a·t`` is forecast over budget ``B`` at ``t = B/a − horizon``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd

from ._validate import check_fraction, check_nonnegative, check_positive

__all__ = [
    "Runaway", "ForgottenCanary", "ErrorBurst", "Trace", "spend_trace", "error_trace",
    "ThresholdRule", "ForecastRule", "BurnRateRule", "MultiBurnRateRule", "AlertEvaluation", "evaluate",
    "predict_linear", "SRE_WORKBOOK_WINDOWS",
]

# (long window s, short window s, burn-rate factor, severity): Google SRE Workbook, ch. 5, table 5-8.
SRE_WORKBOOK_WINDOWS = ((3600, 300, 14.4, "page"), (21600, 1800, 6.0, "page"), (259200, 21600, 1.0, "ticket"))


@dataclass(frozen=True)
class Runaway:
    """A scale-out nobody stops: the cost rate is ``factor`` times the baseline from ``start_h``
    for ``duration_h`` hours (then someone notices and scales back)."""

    start_h: float
    duration_h: float
    factor: float = 3.0

    def __post_init__(self):
        check_nonnegative("Runaway.start_h", self.start_h)
        check_positive("Runaway.duration_h", self.duration_h)
        check_positive("Runaway.factor", self.factor)


@dataclass(frozen=True)
class ForgottenCanary:
    """A canary left running: ``extra_usd_per_h`` more from ``start_h`` to the end of the trace."""

    start_h: float
    extra_usd_per_h: float

    def __post_init__(self):
        check_nonnegative("ForgottenCanary.start_h", self.start_h)
        check_positive("ForgottenCanary.extra_usd_per_h", self.extra_usd_per_h)


@dataclass(frozen=True)
class ErrorBurst:
    """An error ratio of ``error_ratio`` from ``start_h`` for ``duration_h`` hours."""

    start_h: float
    duration_h: float
    error_ratio: float

    def __post_init__(self):
        check_nonnegative("ErrorBurst.start_h", self.start_h)
        check_positive("ErrorBurst.duration_h", self.duration_h)
        check_fraction("ErrorBurst.error_ratio", self.error_ratio)


@dataclass(frozen=True)
class Trace:
    """A seeded trace: per step ``t_s`` (the step's end), the metric columns, and the incidents
    as (start_s, end_s, name). Spend traces have ``cost_usd_per_h`` and ``spend_usd_total``;
    error traces ``requests`` and ``errors``."""

    kind: str
    step_s: float
    frame: pd.DataFrame
    incidents: tuple

    @property
    def t_s(self) -> np.ndarray:
        return self.frame["t_s"].to_numpy()


def _steps(days: float, step_s: float) -> np.ndarray:
    check_positive("days", days)
    check_positive("step_s", step_s)
    n = int(round(days * 86400 / step_s))
    if n < 2:
        raise ValueError(f"days: got {days!r} with step_s={step_s!r}; valid: at least two steps")
    return (np.arange(n) + 1) * float(step_s)


def _diurnal(t_s: np.ndarray, amplitude: float, peak_hour: float) -> np.ndarray:
    return 1 + amplitude * np.cos(2 * np.pi * (t_s / 3600.0 - peak_hour) / 24.0)


def spend_trace(days: float = 7.0, step_s: float = 300.0, base_usd_per_h: float = 2.0,
                diurnal_amplitude: float = 0.3, peak_hour: float = 14.0, noise_cv: float = 0.05,
                incidents: Sequence = (), seed: int = 0) -> Trace:
    """A cost rate (USD/h) with a daily swing of ±``diurnal_amplitude`` peaking at ``peak_hour``,
    multiplicative normal noise of ``noise_cv``, and the incidents; ``spend_usd_total`` is its
    running sum (what a Prometheus counter of spend would hold)."""
    check_positive("base_usd_per_h", base_usd_per_h)
    check_fraction("diurnal_amplitude", diurnal_amplitude, closed_high=False)
    check_nonnegative("noise_cv", noise_cv)
    t = _steps(days, step_s)
    rng = np.random.default_rng(seed)
    base = base_usd_per_h * _diurnal(t, diurnal_amplitude, peak_hour)
    cost = base * np.clip(1 + noise_cv * rng.standard_normal(len(t)), 0.0, None)
    found = []
    for i, inc in enumerate(incidents):
        start = inc.start_h * 3600.0
        if isinstance(inc, Runaway):
            end = start + inc.duration_h * 3600.0
            on = (t > start) & (t <= end)
            cost = np.where(on, cost * inc.factor, cost)
            found.append((start, min(end, t[-1]), "runaway"))
        elif isinstance(inc, ForgottenCanary):
            on = t > start
            cost = np.where(on, cost + inc.extra_usd_per_h, cost)
            found.append((start, t[-1], "forgotten_canary"))
        else:
            raise ValueError(f"incidents[{i}]: got {inc!r}; valid: Runaway or ForgottenCanary for a spend trace")
        if start >= t[-1]:
            raise ValueError(f"incidents[{i}].start_h: got {inc.start_h!r}; valid: within the trace's {days} days")
    frame = pd.DataFrame({"t_s": t, "cost_usd_per_h": cost, "spend_usd_total": np.cumsum(cost * step_s / 3600.0)})
    return Trace("spend", float(step_s), frame, tuple(found))


def error_trace(days: float = 3.0, step_s: float = 30.0, rps: float = 20.0, base_error_ratio: float = 0.0002,
                diurnal_amplitude: float = 0.5, peak_hour: float = 14.0, incidents: Sequence = (),
                seed: int = 0) -> Trace:
    """Requests per step (Poisson around a diurnal mean of ``rps``) and errors among them
    (binomial at ``base_error_ratio``, or the burst's ratio during an :class:`ErrorBurst`)."""
    check_positive("rps", rps)
    check_fraction("base_error_ratio", base_error_ratio)
    check_fraction("diurnal_amplitude", diurnal_amplitude, closed_high=False)
    t = _steps(days, step_s)
    rng = np.random.default_rng(seed)
    requests = rng.poisson(rps * step_s * _diurnal(t, diurnal_amplitude, peak_hour))
    ratio = np.full(len(t), float(base_error_ratio))
    found = []
    for i, inc in enumerate(incidents):
        if not isinstance(inc, ErrorBurst):
            raise ValueError(f"incidents[{i}]: got {inc!r}; valid: ErrorBurst for an error trace")
        start, end = inc.start_h * 3600.0, (inc.start_h + inc.duration_h) * 3600.0
        if start >= t[-1]:
            raise ValueError(f"incidents[{i}].start_h: got {inc.start_h!r}; valid: within the trace's {days} days")
        ratio = np.where((t > start) & (t <= end), inc.error_ratio, ratio)
        found.append((start, min(end, t[-1]), "error_burst"))
    errors = rng.binomial(requests, ratio)
    frame = pd.DataFrame({"t_s": t, "requests": requests, "errors": errors})
    return Trace("errors", float(step_s), frame, tuple(found))


# ----- rules -------------------------------------------------------------------------------------
def _window_steps(name: str, window_s: float, step_s: float) -> int:
    check_positive(name, window_s)
    k = int(round(window_s / step_s))
    if k < 1:
        raise ValueError(f"{name}: got {window_s!r}; valid: at least one step of the trace ({step_s:g} s)")
    return k


def _rolling_sum(x: np.ndarray, k: int) -> np.ndarray:
    """Sum of the last k values at each step (fewer at the start: the data that exists)."""
    c = np.concatenate([[0.0], np.cumsum(x, dtype=float)])
    idx = np.arange(1, len(x) + 1)
    return c[idx] - c[np.maximum(idx - k, 0)]


def predict_linear(t_s: np.ndarray, y: np.ndarray, lookback_s: float, horizon_s: float) -> np.ndarray:
    """Prometheus' ``predict_linear(y[lookback], horizon)`` at every step: the least-squares line
    through the samples in (t − lookback, t], evaluated ``horizon_s`` after t (intercept at the
    evaluation time, as ``funcPredictLinear`` does). NaN where the window holds fewer than two."""
    t_s = np.asarray(t_s, dtype=float)
    y = np.asarray(y, dtype=float)
    step = float(t_s[1] - t_s[0])
    k = max(1, int(round(lookback_s / step)))   # samples in a left-open window of lookback_s
    n = _rolling_sum(np.ones_like(t_s), k)
    sx, sy = _rolling_sum(t_s, k), _rolling_sum(y, k)
    sxx, sxy = _rolling_sum(t_s * t_s, k), _rolling_sum(t_s * y, k)
    with np.errstate(invalid="ignore", divide="ignore"):
        # centre on the evaluation time for precision: x' = x - t
        cov = sxy - sx * sy / n
        var = sxx - sx * sx / n
        slope = cov / var
        mean_x, mean_y = sx / n, sy / n
        at_t = mean_y + slope * (t_s - mean_x)
        out = at_t + slope * horizon_s
    out[n < 2] = np.nan
    return out


@dataclass(frozen=True)
class ThresholdRule:
    """``metric > threshold`` held for ``for_s`` (Prometheus' ``for``)."""

    threshold: float
    for_s: float = 0.0
    metric: str = "cost_usd_per_h"

    def __post_init__(self):
        check_nonnegative("ThresholdRule.threshold", self.threshold)
        check_nonnegative("ThresholdRule.for_s", self.for_s)

    def condition(self, trace: Trace) -> np.ndarray:
        if self.metric not in trace.frame:
            raise ValueError(f"ThresholdRule.metric: got {self.metric!r}; valid: one of "
                             f"{[c for c in trace.frame if c != 't_s']}")
        return trace.frame[self.metric].to_numpy(dtype=float) > self.threshold

    def promql(self) -> str:
        return f"{self.metric} > {self.threshold:g}"


@dataclass(frozen=True)
class ForecastRule:
    """``predict_linear(spend_usd_total[lookback_s], horizon_s) > budget_usd`` for ``for_s``."""

    budget_usd: float
    horizon_s: float
    lookback_s: float = 6 * 3600.0
    for_s: float = 0.0

    def __post_init__(self):
        check_positive("ForecastRule.budget_usd", self.budget_usd)
        check_nonnegative("ForecastRule.horizon_s", self.horizon_s)
        check_positive("ForecastRule.lookback_s", self.lookback_s)
        check_nonnegative("ForecastRule.for_s", self.for_s)

    def condition(self, trace: Trace) -> np.ndarray:
        if trace.kind != "spend":
            raise ValueError("ForecastRule: got an error trace; valid: a spend trace (spend_usd_total)")
        _window_steps("ForecastRule.lookback_s", self.lookback_s, trace.step_s)
        pred = predict_linear(trace.t_s, trace.frame["spend_usd_total"].to_numpy(), self.lookback_s, self.horizon_s)
        return np.nan_to_num(pred, nan=-np.inf) > self.budget_usd

    def promql(self) -> str:
        return (f"predict_linear(spend_usd_total[{_dur(self.lookback_s)}], {self.horizon_s:g}) > "
                f"{self.budget_usd:g}")


@dataclass(frozen=True)
class BurnRateRule:
    """Error ratio over ``long_s`` AND over ``short_s`` both above ``factor × (1 − slo)``."""

    slo: float
    long_s: float = 3600.0
    short_s: float = 300.0
    factor: float = 14.4
    for_s: float = 0.0

    def __post_init__(self):
        if not (isinstance(self.slo, (int, float)) and 0 < self.slo < 1):
            raise ValueError(f"BurnRateRule.slo: got {self.slo!r}; valid: a fraction in (0, 1), e.g. 0.999")
        check_positive("BurnRateRule.long_s", self.long_s)
        check_positive("BurnRateRule.short_s", self.short_s)
        check_positive("BurnRateRule.factor", self.factor)
        check_nonnegative("BurnRateRule.for_s", self.for_s)
        if self.short_s > self.long_s:
            raise ValueError(f"BurnRateRule.short_s: got {self.short_s!r}; valid: at most long_s ({self.long_s!r})")

    @property
    def threshold(self) -> float:
        return self.factor * (1 - self.slo)

    def ratios(self, trace: Trace) -> tuple[np.ndarray, np.ndarray]:
        if trace.kind != "errors":
            raise ValueError("BurnRateRule: got a spend trace; valid: an error trace (requests, errors)")
        req = trace.frame["requests"].to_numpy(dtype=float)
        err = trace.frame["errors"].to_numpy(dtype=float)
        out = []
        for name, w in (("long_s", self.long_s), ("short_s", self.short_s)):
            k = _window_steps(f"BurnRateRule.{name}", w, trace.step_s)
            r, e = _rolling_sum(req, k), _rolling_sum(err, k)
            with np.errstate(invalid="ignore", divide="ignore"):
                out.append(np.where(r > 0, e / r, 0.0))
        return out[0], out[1]

    def condition(self, trace: Trace) -> np.ndarray:
        long_r, short_r = self.ratios(trace)
        return (long_r > self.threshold) & (short_r > self.threshold)

    def promql(self, errors: str = "http_requests_errors_total", total: str = "http_requests_total") -> str:
        def ratio(w):
            return f"(sum(rate({errors}[{_dur(w)}])) / sum(rate({total}[{_dur(w)}])))"
        return (f"{ratio(self.long_s)} > ({self.factor:g} * {1 - self.slo:.6g}) and "
                f"{ratio(self.short_s)} > ({self.factor:g} * {1 - self.slo:.6g})")


@dataclass(frozen=True)
class MultiBurnRateRule:
    """Any of several :class:`BurnRateRule` (one alert name, several window pairs)."""

    rules: tuple

    def __post_init__(self):
        rules = tuple(self.rules)
        if not rules or not all(isinstance(r, BurnRateRule) for r in rules):
            raise ValueError(f"MultiBurnRateRule.rules: got {self.rules!r}; valid: one or more BurnRateRule")
        object.__setattr__(self, "rules", rules)

    @classmethod
    def sre_workbook(cls, slo: float, severities: Sequence[str] = ("page", "ticket")) -> "MultiBurnRateRule":
        """The workbook's recommended set: 14.4× 1 h/5 min and 6× 6 h/30 min (page), 1× 3 d/6 h (ticket)."""
        return cls(tuple(BurnRateRule(slo, long_s=L, short_s=S, factor=f)
                         for L, S, f, sev in SRE_WORKBOOK_WINDOWS if sev in severities))

    @property
    def for_s(self) -> float:
        return 0.0

    def condition(self, trace: Trace) -> np.ndarray:
        out = np.zeros(len(trace.frame), dtype=bool)
        for r in self.rules:
            out |= r.condition(trace)
        return out

    def promql(self) -> str:
        return " or ".join(f"({r.promql()})" for r in self.rules)


def _dur(seconds: float) -> str:
    s = int(round(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s % size == 0:
            return f"{s // size}{unit}"
    return f"{s}s"


# ----- evaluation --------------------------------------------------------------------------------
@dataclass(frozen=True)
class AlertEvaluation:
    """Alert episodes and their score against a trace's incidents (times in seconds)."""

    episodes: tuple                     # (start_s, end_s) of each firing episode
    incidents: tuple                    # (start_s, end_s, name)
    true_positives: int
    false_positives: int
    detected: tuple                     # per incident: True/False
    detection_s: tuple                  # per incident: first firing − start (None if missed)
    reset_s: tuple                      # per incident: that episode's end − incident end (None if missed)
    firing_fraction: float

    @property
    def precision(self) -> float | None:
        n = self.true_positives + self.false_positives
        return self.true_positives / n if n else None

    @property
    def recall(self) -> float | None:
        return sum(self.detected) / len(self.detected) if self.detected else None

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame({"incident": [i[2] for i in self.incidents], "start_s": [i[0] for i in self.incidents],
                             "end_s": [i[1] for i in self.incidents], "detected": list(self.detected),
                             "detection_s": list(self.detection_s), "reset_s": list(self.reset_s)})


def _episodes(t: np.ndarray, cond: np.ndarray, for_s: float, step_s: float) -> list[tuple[float, float]]:
    """Prometheus' alert states on each evaluation: pending once the condition holds, firing when it
    has held for ``for_s``, resolved at the first evaluation where it does not hold."""
    episodes = []
    held_since = None
    firing_since = None
    for ti, c in zip(t, cond):
        if c:
            if held_since is None:
                held_since = ti
            if firing_since is None and ti - held_since >= for_s - 1e-9:
                firing_since = ti
        else:
            if firing_since is not None:
                episodes.append((float(firing_since), float(ti)))
            held_since = firing_since = None
    if firing_since is not None:
        episodes.append((float(firing_since), float(t[-1])))
    return episodes


def evaluate(rule, trace: Trace, grace_s: float = 0.0) -> AlertEvaluation:
    """Run ``rule`` over ``trace`` (one evaluation per step) and score it against the incidents.

    An episode is a true positive when it starts within an incident or within ``grace_s`` after
    its end; an incident is detected by the first such episode."""
    if not isinstance(trace, Trace):
        raise ValueError(f"trace: got {type(trace).__name__}; valid: a sim.alerts.Trace")
    if not hasattr(rule, "condition"):
        raise ValueError(f"rule: got {type(rule).__name__}; valid: ThresholdRule, ForecastRule, BurnRateRule, "
                         f"MultiBurnRateRule")
    check_nonnegative("grace_s", grace_s)
    cond = np.asarray(rule.condition(trace), dtype=bool)
    t = trace.t_s
    eps = _episodes(t, cond, float(getattr(rule, "for_s", 0.0)), trace.step_s)
    tp = 0
    for start, _ in eps:
        if any(a < start <= b + grace_s for a, b, _ in trace.incidents):
            tp += 1
    detected, detection, reset = [], [], []
    for a, b, _ in trace.incidents:
        hit = next(((s, e) for s, e in eps if a < s <= b + grace_s), None)
        detected.append(hit is not None)
        detection.append(None if hit is None else hit[0] - a)
        reset.append(None if hit is None else hit[1] - b)
    return AlertEvaluation(tuple(eps), tuple(trace.incidents), tp, len(eps) - tp, tuple(detected),
                           tuple(detection), tuple(reset), float(cond.mean()))
