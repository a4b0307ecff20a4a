"""The context map of notebook 02 agrees with the services' code: routes and event subjects."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import yaml
from fastapi.routing import APIRoute

ROOT = Path(__file__).resolve().parents[2]
DAY1 = ROOT / "notebooks" / "day1-microservices"
CONTEXT_MAP = yaml.safe_load((DAY1 / "context-map.yaml").read_text())
DOMAIN_MODEL = yaml.safe_load((DAY1 / "domain-model.yaml").read_text())
CONTEXTS = CONTEXT_MAP["contexts"]
# The services are the Deployments of the kustomize base that run a service package.
SERVICE_PACKAGES = sorted(p.parent.name for p in (ROOT / "cluster" / "manifests" / "base").glob("*/deployment.yaml")
                          if (ROOT / "services" / p.parent.name / "api.py").exists())


def _events_module(name: str):
    try:
        return importlib.import_module(f"services.{name}.events")
    except ModuleNotFoundError as exc:
        if exc.name != f"services.{name}.events":
            raise
        return None


def _subjects(value) -> set[str]:
    """PUBLISHES/CONSUMES are a list of subjects or a {stream: [subjects]} mapping."""
    if value is None:
        return set()
    if isinstance(value, dict):
        return {s for subjects in value.values() for s in subjects}
    return set(value)


def _routes(name: str) -> list[tuple[str, str]]:
    router = importlib.import_module(f"services.{name}.api").router
    return [(method, route.path) for route in router.routes if isinstance(route, APIRoute)
            for method in route.methods]


def _internal_routes(name: str) -> list[tuple[str, str]]:
    """Routes a service serves to other services only (`/internal/...`, not behind the gateway)."""
    internal = getattr(importlib.import_module(f"services.{name}.api"), "internal", None)
    return [(method, route.path) for route in (internal.routes if internal else []) if isinstance(route, APIRoute)
            for method in route.methods]


def test_one_context_per_service():
    assert sorted(CONTEXTS) == SERVICE_PACKAGES


@pytest.mark.parametrize("name", sorted(CONTEXTS))
def test_route_prefix_matches_the_router(name):
    router = importlib.import_module(f"services.{name}.api").router
    assert router.prefix == CONTEXTS[name]["route_prefix"]
    paths = [path for _, path in _routes(name)]
    assert paths, f"{name} serves no routes"
    assert all(p.startswith(CONTEXTS[name]["route_prefix"]) for p in paths)


@pytest.mark.parametrize("name", sorted(CONTEXTS))
def test_published_and_consumed_subjects_match_the_code(name):
    events = _events_module(name)
    published = _subjects(getattr(events, "PUBLISHES", None))
    consumed = _subjects(getattr(events, "CONSUMES", None))
    assert set(CONTEXTS[name]["publishes"]) == published
    assert set(CONTEXTS[name]["consumes"]) == consumed
    # A context publishes only under its own subject prefix (its stream).
    assert all(s.split(".")[0] in (name + "s", name) for s in published), published


def test_every_consumed_subject_has_a_publisher():
    published = {s for ctx in CONTEXTS.values() for s in ctx["publishes"]}
    for name, ctx in CONTEXTS.items():
        orphans = set(ctx["consumes"]) - published
        assert not orphans, f"{name} consumes {sorted(orphans)} which no context publishes"


@pytest.mark.parametrize("rel", CONTEXT_MAP["relationships"],
                         ids=lambda r: f"{r['upstream']}->{r['downstream']}")
def test_relationship_is_backed_by_an_event_or_a_route(rel):
    external = CONTEXT_MAP.get("external", {})
    assert rel["downstream"] in CONTEXTS, rel
    if rel["upstream"] in external:  # a system outside CloudMart: its stand-in offers the call
        system = external[rel["upstream"]]
        assert system["used_by"] == rel["downstream"], rel
        stand_in = importlib.import_module(system["code"])
        for via in rel["via"]:
            assert callable(getattr(stand_in, via, None)), f"{system['code']} has no {via}()"
        # the downstream really calls it (the anti-corruption layer is in its code)
        source = "".join(f.read_text() for f in (ROOT / "services" / rel["downstream"]).glob("*.py"))
        assert system["code"].rsplit(".", 1)[1] + "." in source, rel
        return
    up, down = CONTEXTS[rel["upstream"]], CONTEXTS[rel["downstream"]]
    for via in rel["via"]:
        if " " in via:  # an HTTP call the upstream serves
            method, path = via.split(" ", 1)
            assert (method, path) in _routes(rel["upstream"]) + _internal_routes(rel["upstream"]), \
                f"{rel['upstream']} does not serve {via}"
        else:
            assert via in up["publishes"], f"{rel['upstream']} does not publish {via}"
            assert via in down["consumes"], f"{rel['downstream']} does not consume {via}"


def test_relationship_directions_follow_the_patterns():
    """Customer-supplier: the downstream (customer) consumes what the upstream supplies; the
    order is the customer of inventory's reservations and payment's authorisations. The
    anti-corruption layer sits in the downstream, in front of a model it does not control."""
    by_pair = {(r["upstream"], r["downstream"]): r["pattern"] for r in CONTEXT_MAP["relationships"]}
    assert by_pair[("inventory", "order")] == "customer-supplier"
    assert by_pair[("payment", "order")] == "customer-supplier"
    acl = [r for r in CONTEXT_MAP["relationships"] if r["pattern"] == "anti-corruption-layer"]
    assert acl and all(r["upstream"] in CONTEXT_MAP.get("external", {}) for r in acl), acl


def test_credentials_live_where_the_code_keeps_them():
    """The user service stores password hashes (its `credentials` table); auth only asks it."""
    models = (ROOT / "services" / "user" / "models.py").read_text()
    assert "credentials" in models
    assert "Credential" in CONTEXTS["user"]["owns"] and "Credential" not in CONTEXTS["auth"]["owns"]


def test_every_domain_entity_has_exactly_one_owner():
    owners: dict[str, list[str]] = {}
    for name, ctx in CONTEXTS.items():
        for entity in ctx["owns"]:
            owners.setdefault(entity, []).append(name)
    assert sorted(owners) == sorted(DOMAIN_MODEL["entities"])
    assert all(len(o) == 1 for o in owners.values()), {e: o for e, o in owners.items() if len(o) > 1}


def test_domain_model_operations_touch_known_entities():
    entities = set(DOMAIN_MODEL["entities"])
    for operation, touched in DOMAIN_MODEL["operations"].items():
        assert set(touched) <= entities, operation
        assert set(touched.values()) <= {"r", "w"}, operation


def test_graded_domain_model_is_the_one_the_notebook_teaches():
    graded = yaml.safe_load((ROOT / "grading" / "day1_domain.yaml").read_text())
    assert graded["entities"] == DOMAIN_MODEL["entities"]
    assert graded["operations"] == DOMAIN_MODEL["operations"]
    assert graded["extension"] == DOMAIN_MODEL["extension"]


def test_new_requirements_are_not_in_the_map_yet():
    """The exercise's new entities are CloudMart's future, owned by no service; their
    operations touch only known entities."""
    new = set(DOMAIN_MODEL["extension"]["entities"])
    owned = {e for ctx in CONTEXTS.values() for e in ctx["owns"]}
    assert new and not new & owned and not new & set(DOMAIN_MODEL["entities"])
    known = new | set(DOMAIN_MODEL["entities"])
    for operation, touched in DOMAIN_MODEL["extension"]["operations"].items():
        assert set(touched) <= known and set(touched) & new, operation
        assert set(touched.values()) <= {"r", "w"}, operation
        assert operation not in DOMAIN_MODEL["operations"], operation
