"""The README's resource budget is what `up` really installs (rendered overlays and Helm values)."""

from __future__ import annotations

import pytest

from cluster import kind_target as kt
from kind_manifests import ROOT

ALL = list(kt.COMPONENTS)


@pytest.fixture(scope="module")
def budgets(rendered):
    return {(g, bool(c)): {r["part"]: r for r in kt.resource_budget(g, c, rendered[f"{g}-all" if c else g])}
            for g in kt.GATEWAYS for c in ([], ALL)}


def test_readme_states_the_budget_of_what_is_installed(rendered):
    readme = (ROOT / "README.md").read_text()
    for gateway, components, overlay in (("kong", [], "kong"), ("istio", ALL, "istio-all")):
        table = kt.budget_table(gateway, components, rendered[overlay])
        assert table in readme, f"README.md lacks the current budget of {gateway} {components}:\n{table}"


def test_the_mesh_adds_one_sidecar_per_cloudmart_pod(budgets):
    from istio_injection import load_values

    proxy = kt._resources(load_values()["global"]["proxy"]["resources"])
    kong, istio = budgets[("kong", False)]["cloudmart"], budgets[("istio", False)]["cloudmart"]
    assert kong["pods"] == istio["pods"] == 11
    assert istio["cpu"] == pytest.approx(kong["cpu"] + 11 * proxy["cpu"])
    assert istio["memory"] == pytest.approx(kong["memory"] + 11 * proxy["memory"])


def test_components_are_counted_from_their_helm_values(budgets):
    full = budgets[("istio", True)]
    assert full["gatekeeper"]["pods"] == 2 and full["argocd"]["pods"] == 5
    assert full["total"]["pods"] == sum(r["pods"] for k, r in full.items() if k != "total")
    assert full["total"]["cpu"] < 2.0, "the full istio choice must fit a 4-CPU runner next to kind's control plane"


def test_units_parse_like_kubernetes_quantities():
    assert kt._cpu("250m") == 0.25 and kt._cpu("1") == 1.0 and kt._cpu(2) == 2.0
    assert kt._mib("1Gi") == 1024 and kt._mib("64Mi") == 64 and kt._mib("512Ki") == 0.5
