"""Gatekeeper's policies, evaluated offline with regopy from the ConstraintTemplates' own Rego:
every rendered object passes, and each deliberately bad manifest is rejected with its message."""

from __future__ import annotations

from pathlib import Path

import pytest

from cluster.policies import gatekeeper
from kind_manifests import OVERLAYS

BAD = sorted((Path(__file__).parent / "bad_manifests").glob("*.yaml"))


@pytest.fixture(scope="module")
def policies():
    return gatekeeper.load_policies()


def test_every_template_has_a_constraint_and_rego_v1(policies):
    templates, constraints = gatekeeper.split_policy_objects(
        gatekeeper.load_yaml_documents(sorted(gatekeeper.GATEKEEPER_DIR.rglob("*.yaml"))))
    # Five templates; six constraints, since required-labels is used twice (the names and the
    # Day 5 showback team label), as one Gatekeeper template can back several constraints.
    assert len(templates) == 5 and len(constraints) == 6
    assert sorted(c["metadata"]["name"] for c in constraints if c["kind"] == "CloudMartRequiredLabels") == \
        ["cloudmart-required-labels", "cloudmart-team-label"]
    assert {p.template for p in policies.policies} == {t["metadata"]["name"] for t in templates}
    for t in templates:
        # Rego v1 syntax is declared as v1 (`code:` engine Rego, source.version "v1"), the form
        # Gatekeeper documents for it; the legacy `rego:` field is Rego v0.
        (target,) = t["spec"]["targets"]
        assert "rego" not in target, t["metadata"]["name"]
        (code,) = [c for c in target["code"] if c["engine"] == "Rego"]
        assert code["source"]["version"] == "v1"
        rego = gatekeeper.template_rego(t)
        assert rego == code["source"]["rego"] and "violation contains" in rego


@pytest.mark.parametrize("overlay", ["base", *OVERLAYS])
def test_rendered_objects_pass_every_policy(rendered, policies, overlay):
    objects = rendered[overlay]
    checked = [o for o in objects if any(p.matches(o) for p in policies.policies)]
    assert len(checked) > 20, "the policies must actually match CloudMart's objects"
    assert [str(v) for v in policies.evaluate(objects)] == []


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_bad_manifest_is_rejected_with_the_expected_messages(policies, path):
    expected = sorted(line.removeprefix("# expect: ").strip() for line in path.read_text().splitlines()
                      if line.startswith("# expect: "))
    assert expected, f"{path.name} states no expected message"
    violations = policies.evaluate(gatekeeper.load_yaml_documents([path]))
    got = sorted(f"[{v.constraint}] {v.msg}" for v in violations)
    # Each expected message is a prefix of exactly one violation, and no violation is unexpected.
    assert len(got) == len(expected), got
    for message in expected:
        assert sum(g.startswith(message) for g in got) == 1, (message, got)


def test_pod_fields_outside_the_namespaces_are_not_judged(policies):
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x", "namespace": "kube-system"},
           "spec": {"hostNetwork": True, "containers": [{"name": "c", "image": "busybox"}]}}
    assert policies.evaluate([pod]) == []
    pod["metadata"]["namespace"] = "cloudmart"
    assert len(policies.evaluate([pod])) >= 4    # tag, repo, limits, host network


def test_cli_reports_violations_and_exit_code(tmp_path, capsys):
    good = tmp_path / "ok.yaml"
    good.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x, namespace: cloudmart}\n")
    assert gatekeeper.main([str(good)]) == 0
    assert gatekeeper.main([str(BAD[0])]) == 1
    assert "[cloudmart-" in capsys.readouterr().out
    assert gatekeeper.main([str(tmp_path / "missing.yaml")]) == 2
