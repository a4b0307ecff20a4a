"""Re-running `up` on an existing cluster: a gateway switch is refused with what to do, and a
rebuilt image reaches the pods (the deployed tag follows the image's content)."""

from __future__ import annotations

import pytest

from cluster import kind_target as kt


def test_same_gateway_and_port_reuse_the_cluster():
    kt.check_reuse(None, "istio", 8080)
    kt.check_reuse({"gateway": "istio", "components": [], "port": 8080}, "istio", 8080)


@pytest.mark.parametrize("saved,gateway,port,message", [
    ({"gateway": "kong", "port": 8080}, "istio", 8080, "runs the kong gateway; switching to istio"),
    ({"gateway": "istio", "port": 8080}, "kong", 8080, "cloudmart down --target kind"),
    ({"gateway": "kong", "port": 8080}, "kong", 18083, "maps the gateway to port 8080, not 18083"),
])
def test_a_changed_gateway_or_port_needs_down_first(saved, gateway, port, message):
    with pytest.raises(kt.KindError, match=message):
        kt.check_reuse(saved, gateway, port)


def test_up_refuses_a_gateway_switch_before_changing_anything(monkeypatch, tmp_path):
    monkeypatch.setenv("CLOUDMART_STATE_DIR", str(tmp_path))
    (tmp_path / "kind").mkdir()
    (tmp_path / "kind" / "target.json").write_text('{"gateway": "kong", "components": [], "port": 8080}')
    ran = []
    monkeypatch.setattr(kt, "check_prerequisites", lambda *a, **k: None)
    monkeypatch.setattr(kt, "cluster_exists", lambda: True)
    monkeypatch.setattr(kt, "_run", lambda cmd, **kw: ran.append(cmd))
    with pytest.raises(kt.KindError, match="switching to istio"):
        kt.up("istio", [], port=8080)
    assert ran == []


def test_content_tag_follows_the_image_id():
    a = kt.content_tag("sha256:" + "ab" * 32)
    b = kt.content_tag("sha256:" + "cd" * 32)
    assert a == "0.1.0-" + "ab" * 6 and a != b
    with pytest.raises(kt.KindError, match="image ID"):
        kt.content_tag("not-an-id")


def test_the_overlay_deploys_the_content_tag(tmp_path):
    tag = kt.content_tag("sha256:" + "0123456789abcdef" * 4)
    objects = kt.render(kt.write_overlay(tmp_path / "o", "kong", [], image_tag=tag))
    images = {c["image"] for o in objects if o["kind"] == "Deployment"
              and o["metadata"]["labels"].get("app.kubernetes.io/component") == "service"
              for c in o["spec"]["template"]["spec"]["containers"]}
    assert images == {f"ghcr.io/cloudmart-course/cloudmart:{tag}"}
    from cluster.policies import gatekeeper
    assert gatekeeper.load_policies().evaluate(objects) == []


def test_plan_loads_the_content_tagged_image():
    cmds = [" ".join(c) for c in kt.plan("kong", [], port=18080)]
    build = next(i for i, c in enumerate(cmds) if c.startswith("docker build"))
    inspect = next(i for i, c in enumerate(cmds) if c.startswith("docker image inspect"))
    load = next(i for i, c in enumerate(cmds) if c.startswith("kind load docker-image"))
    assert build < inspect < load and "<image id>" in cmds[load]


def test_the_kind_node_image_is_pinned_by_digest():
    config = kt.kind_config(8080)
    (node,) = config["nodes"]
    name, _, digest = node["image"].partition("@")
    assert name == "kindest/node:v1.33.4" and digest.startswith("sha256:") and len(digest) == 7 + 64
