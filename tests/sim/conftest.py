"""Settings for the sim tests. Shared helpers live in ``sim_checks.py`` (imported by that name,
since every test area has its own ``conftest`` module)."""

import matplotlib

matplotlib.use("Agg")  # plots and widgets are drawn off-screen in tests
