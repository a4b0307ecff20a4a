"""Statistical acceptance rule for checking simulations against theory (shared by tests/sim)."""

import numpy as np

SEEDS = tuple(range(10))


def check_against_theory(estimates, truth, *, max_rel_error=0.01, min_covered=None, label=""):
    """Over the seeds: mean relative error <= 1 % and the 95 % CI covers ``truth`` in at least
    90 % of the runs (9 of 10)."""
    values = np.array([e.value for e in estimates])
    if min_covered is None:
        min_covered = int(np.ceil(0.9 * len(values)))
    covered = sum(e.covers(truth) for e in estimates)
    rel_error = abs(values.mean() - truth) / abs(truth)
    detail = (f"{label}: theory {truth:.6g}, mean of {len(values)} seeds {values.mean():.6g} "
              f"(error {rel_error:.3%}), CI covers in {covered}/{len(values)}")
    assert rel_error <= max_rel_error, detail
    assert covered >= min_covered, detail
