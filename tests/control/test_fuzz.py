"""Fuzz the apply path: generated objects (mutations of CloudMart's manifests) and generated text
never crash it, and a refused apply leaves the store byte for byte as it was."""

from __future__ import annotations

import copy
import json

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from cluster.control import ApplyError, ControlPlane
from cluster.control.objects import key_of, normalise
from control_helpers import base_object

SEEDS = [("Deployment", "product"), ("Deployment", "order"), ("Service", "product"), ("HTTPRoute", "product"),
         ("HorizontalPodAutoscaler", None), ("ConfigMap", None)]

values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-5, 10**10), st.floats(allow_nan=False, width=32),
              st.text(max_size=12), st.sampled_from(["25%", "0", "-1", "v2", "product", "Deployment", "apps/v1"])),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=6)


def paths(node, prefix=()):
    """Every path into a JSON-like tree."""
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from paths(v, prefix + (i,))


@st.composite
def mutated(draw, base_objects):
    kind, name = draw(st.sampled_from(SEEDS))
    if name is None:
        obj = copy.deepcopy(next(o for o in base_objects if o["kind"] == kind)) if any(
            o["kind"] == kind for o in base_objects) else {"apiVersion": "v1", "kind": kind, "metadata": {"name": "x"}}
    else:
        obj = base_object(base_objects, kind, name)
    for _ in range(draw(st.integers(0, 3))):
        all_paths = list(paths(obj))
        path = draw(st.sampled_from(all_paths))
        action = draw(st.sampled_from(["set", "delete", "add"]))
        if not path:
            continue
        parent = obj
        for part in path[:-1]:
            parent = parent[part]
        last = path[-1]
        if action == "delete":
            del parent[last]
        elif action == "set":
            parent[last] = draw(values)
        elif isinstance(parent[last], dict):
            parent[last][draw(st.text(min_size=1, max_size=8))] = draw(values)
    return obj


def _check(plane: ControlPlane, batch) -> None:
    before = plane.store.path.read_bytes() if plane.store.path.exists() else None
    try:
        result = plane.apply(batch)
    except ApplyError as exc:
        assert str(exc) and "\n" not in str(exc)
        after = plane.store.path.read_bytes() if plane.store.path.exists() else None
        assert after == before, "a refused apply changed the store"
        event(f"refused ({exc.status})")
        return
    event("admitted")
    desired = plane.desired()
    for obj in batch if isinstance(batch, list) else [batch]:
        assert desired[key_of(obj)] == json.loads(json.dumps(normalise(obj))), "an admitted object was not stored"
    assert result.ok


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(data=st.data())
def test_generated_objects_never_crash_and_never_half_apply(tmp_path_factory, base_objects, crd_schemas, data):
    plane = ControlPlane(tmp_path_factory.mktemp("fuzz"), base_objects, crd_schemas=crd_schemas)
    for _ in range(data.draw(st.integers(1, 3))):
        batch = data.draw(st.lists(mutated(base_objects), min_size=1, max_size=3))
        _check(plane, batch)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.one_of(st.text(max_size=200),
                      st.lists(st.sampled_from(["apiVersion: v1", "kind: ConfigMap", "metadata:", "  name: x",
                                                "---", "- a", "data: {k: v}", "spec: [", "  replicas: -1", ":"]),
                               max_size=8).map("\n".join)))
def test_generated_text_never_crashes(tmp_path_factory, base_objects, crd_schemas, text):
    plane = ControlPlane(tmp_path_factory.mktemp("fuzz"), base_objects, crd_schemas=crd_schemas)
    try:
        plane.apply(text)
    except ApplyError as exc:
        assert "\n" not in str(exc)
        assert not plane.store.path.exists()
