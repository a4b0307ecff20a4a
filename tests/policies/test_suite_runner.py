"""The gator-format suite runner (``python -m cluster.policies.suite``): CloudMart's own suite passes
for the right reasons, a wrong expectation fails with gator's wording, and every kind of bad input
(Rego that does not compile, a constraint for another template, a case missing a field, ...) is a
clear one-line failure, never a traceback."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from cluster.policies import suite
from cluster.policies.gatekeeper import GATEKEEPER_DIR

ROOT = Path(__file__).resolve().parents[2]
PROJECT_SUITE = GATEKEEPER_DIR / "suite.yaml"

TEMPLATE = """\
apiVersion: templates.gatekeeper.sh/v1
kind: ConstraintTemplate
metadata: {name: maxreplicas}
spec:
  crd:
    spec:
      names: {kind: MaxReplicas}
      validation:
        openAPIV3Schema:
          type: object
          required: [max]
          properties:
            max: {type: integer, minimum: 1}
  targets:
    - target: admission.k8s.gatekeeper.sh
      code:
        - engine: Rego
          source:
            version: "v1"
            rego: |
              package maxreplicas

              import rego.v1

              violation contains {"msg": msg} if {
                n := input.review.object.spec.replicas
                n > input.parameters.max
                msg := sprintf("%v <%v> asks for %v replicas; at most %v", [input.review.object.kind, input.review.object.metadata.name, n, input.parameters.max])
              }
"""

CONSTRAINT = """\
apiVersion: constraints.gatekeeper.sh/v1beta1
kind: MaxReplicas
metadata: {name: max-three}
spec:
  match:
    kinds: [{apiGroups: ["apps"], kinds: ["Deployment"]}]
  parameters: {max: 3}
"""


def deployment(name: str, replicas: int) -> str:
    return yaml.safe_dump({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
                           "spec": {"replicas": replicas}})


def write_suite(tmp_path: Path, cases: list | None = None, *, template: str = TEMPLATE, constraint: str = CONSTRAINT,
                test_extra: dict | None = None) -> Path:
    (tmp_path / "template.yaml").write_text(template)
    (tmp_path / "constraint.yaml").write_text(constraint)
    (tmp_path / "small.yaml").write_text(deployment("small", 2))
    (tmp_path / "big.yaml").write_text(deployment("big", 9))
    if cases is None:
        cases = [{"name": "small", "object": "small.yaml", "assertions": [{"violations": "no"}]},
                 {"name": "big", "object": "big.yaml", "assertions": [{"violations": 1, "message": "at most 3"}]}]
    test = {"name": "max-replicas", "template": "template.yaml", "constraint": "constraint.yaml", "cases": cases,
            **(test_extra or {})}
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump({"apiVersion": suite.SUITE_API, "kind": "Suite", "tests": [test]}))
    return path


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cluster.policies.suite", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)


# -- CloudMart's own suite ----------------------------------------------------------------------

def test_project_suite_passes_and_its_cases_see_real_violations():
    result = suite.run_suite(PROJECT_SUITE)
    assert result.passed, result.failures()
    cases = {(t.name, c.name): c for t in result.tests for c in t.cases}
    assert len(cases) == 14 and not any(c.skipped for c in cases.values())
    assert cases[("container-limits", "no-limits")].messages == [
        "container <app> in Deployment <catalog> has no cpu limit",
        "container <app> in Deployment <catalog> has no memory limit"]
    assert cases[("disallowed-tags", "cronjob-latest")].messages      # the CronJob's nested pod spec is seen
    assert cases[("no-privileged", "other-namespace-not-matched")].messages == []
    assert cases[("team-label", "pods-only")].messages == [
        'Deployment <catalog> is missing required labels: {"cloudmart.io/team"}']
    assert all(c.messages == [] for (t, name), c in cases.items() if "good" in name or name in ("labelled", "pinned"))


def test_a_wrong_expectation_in_the_project_suite_fails(tmp_path):
    copy = tmp_path / "gatekeeper"
    shutil.copytree(GATEKEEPER_DIR, copy)
    doc = yaml.safe_load((copy / "suite.yaml").read_text())
    doc["tests"][5]["cases"][1]["assertions"][0]["violations"] = 1          # no-limits really has 2
    (copy / "suite.yaml").write_text(yaml.safe_dump(doc))
    result = suite.run_suite(copy / "suite.yaml")
    assert not result.passed
    (line,) = result.failures()
    assert "container-limits/no-limits: got 2 violations but want exactly 1" in line


def test_cli_ok_fail_and_unreadable(tmp_path):
    ok = cli(str(PROJECT_SUITE))
    assert ok.returncode == 0 and ok.stdout.startswith("ok\t"), ok.stdout + ok.stderr
    path = write_suite(tmp_path, [{"name": "big", "object": "big.yaml", "assertions": [{"violations": "no"}]}])
    failed = cli(str(path))
    assert failed.returncode == 1
    assert "--- FAIL:" in failed.stdout and "max-replicas/big: got 1 violations but want none" in failed.stdout
    missing = cli(str(tmp_path / "nope.yaml"))
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1 and "no such file" in missing.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "x.yaml").write_text("kind: ConfigMap\n")
    nothing = cli(str(empty) + "/...")
    assert nothing.returncode == 2 and "no Suite" in nothing.stderr


def test_folder_walk_finds_suites_and_ignores_other_files(tmp_path):
    write_suite(tmp_path / "a" if (tmp_path / "a").mkdir() is None else tmp_path)
    (tmp_path / "a" / "notes.yaml").write_text("kind: ConfigMap\n")
    (tmp_path / "a" / "broken.yaml").write_text(": : :\n")
    assert suite.find_suites(str(tmp_path) + "/...") == [tmp_path / "a" / "suite.yaml"]
    assert suite.find_suites(str(tmp_path)) == []                 # not recursive without /...


# -- semantics ----------------------------------------------------------------------------------

def test_parameters_come_from_the_constraint_not_the_rego(tmp_path):
    loose = CONSTRAINT.replace("max: 3", "max: 10")
    result = suite.run_suite(write_suite(tmp_path, constraint=loose))
    assert not result.passed
    assert "got 0 violations containing 'at most 3' but want exactly 1" in result.failures()[0]


@pytest.mark.parametrize("violations, passes", [("yes", True), ("no", False), (True, True), (False, False),
                                                (1, True), (0, False), (2, False)])
def test_violation_counts_and_yaml_booleans(tmp_path, violations, passes):
    path = write_suite(tmp_path, [{"name": "big", "object": "big.yaml", "assertions": [{"violations": violations}]}])
    if violations in ("yes", "no"):                               # written unquoted, as people do
        path.write_text(path.read_text().replace(f"violations: '{violations}'", f"violations: {violations}"))
    assert suite.run_suite(path).passed is passes


def test_message_defaults_to_yes_and_regex_search():
    assert suite.check_assertions([{"message": "replicas;"}], ["Deployment <big> asks for 9 replicas; at most 3"]) is None
    assert "want at least 1" in suite.check_assertions([{"message": "^at most"}], ["x at most 3"])
    assert suite.check_assertions([{"violations": "yes"}, {"violations": "no", "message": "foobar"}], ["a"]) is None


def test_invalid_constraint_tests(tmp_path):
    bad = CONSTRAINT.replace("max: 3", "max: many")
    ok = suite.run_suite(write_suite(tmp_path, [], constraint=bad, test_extra={"invalid": True}))
    assert ok.passed, ok.failures()
    wrong = suite.run_suite(write_suite(tmp_path, [], test_extra={"invalid": True}))
    assert not wrong.passed and "says invalid: true" in wrong.failures()[0]
    unflagged = suite.run_suite(write_suite(tmp_path, constraint=bad))
    assert not unflagged.passed and "parameter schema" in unflagged.failures()[0] and "max" in unflagged.failures()[0]


def test_admission_review_objects_carry_user_info(tmp_path):
    template = TEMPLATE.replace("n := input.review.object.spec.replicas", 'not startswith(input.review.userInfo.username, "system:")\n                n := input.review.object.spec.replicas')
    review = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
              "request": {"operation": "CREATE", "userInfo": {"username": "system:autoscaler"},
                          "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
                          "object": yaml.safe_load(deployment("big", 9))}}
    (tmp_path / "review.yaml").write_text(yaml.safe_dump(review))
    cases = [{"name": "system-user", "object": "review.yaml", "assertions": [{"violations": "no"}]},
             {"name": "plain", "object": "big.yaml", "assertions": [{"violations": 1}]}]
    result = suite.run_suite(write_suite(tmp_path, cases, template=template))
    assert result.passed, result.failures()


def test_run_filter_and_skip(tmp_path):
    cases = [{"name": "small", "object": "small.yaml", "assertions": [{"violations": "no"}]},
             {"name": "big", "object": "big.yaml", "assertions": [{"violations": "no"}]},   # would fail
             {"name": "skipped", "skip": True, "object": "big.yaml", "assertions": [{"violations": "no"}]}]
    path = write_suite(tmp_path, cases)
    assert not suite.run_suite(path).passed
    only_small = suite.run_suite(path, run="max-replicas/small")
    assert only_small.passed
    assert [(c.name, c.skipped) for c in only_small.tests[0].cases] == [("small", False), ("big", True), ("skipped", True)]
    assert suite.run_suite(path, run="no-such-test").tests[0].skipped
    assert "not a valid regular expression" in suite.run_suite(path, run="(").error


# -- bad input ----------------------------------------------------------------------------------

def test_rego_that_does_not_compile_fails_its_test(tmp_path):
    broken = TEMPLATE.replace("n > input.parameters.max", "n > > input.parameters.max")
    result = suite.run_suite(write_suite(tmp_path, template=broken))
    assert not result.passed and result.tests[0].cases == []
    assert "its Rego does not compile" in result.failures()[0]


def test_constraint_for_an_unknown_template(tmp_path):
    other = CONSTRAINT.replace("kind: MaxReplicas", "kind: MinReplicas")
    result = suite.run_suite(write_suite(tmp_path, constraint=other))
    assert not result.passed and "constraint for an unknown template" in result.failures()[0]
    assert "'MinReplicas'" in result.failures()[0] and "'MaxReplicas'" in result.failures()[0]


@pytest.mark.parametrize("case, fragment", [
    ({"name": "c", "assertions": [{"violations": "no"}]}, "must define object"),
    ({"name": "c", "object": "small.yaml"}, "assertions must be non-empty"),
    ({"name": "c", "object": "small.yaml", "assertions": []}, "assertions must be non-empty"),
    ({"name": "c", "object": "/etc/passwd", "assertions": [{"violations": "no"}]}, "absolute paths are not allowed"),
    ({"name": "c", "object": "gone.yaml", "assertions": [{"violations": "no"}]}, "no such file"),
    ({"name": "c", "object": "small.yaml", "assertions": [{"violations": "maybe"}]}, "non-negative integer"),
    ({"name": "c", "object": "small.yaml", "assertions": [{"violations": -1}]}, "non-negative integer"),
    ({"name": "c", "object": "small.yaml", "assertions": [{"message": "("}]}, "not a valid regular expression"),
    ({"name": "c", "object": "small.yaml", "assertions": [{"violation": "no"}]}, "unknown field(s) violation"),
    ({"name": "c", "object": "small.yaml", "inventory": ["x.yaml"], "assertions": [{"violations": "no"}]},
     "inventory"),
    ("just a string", "must be a mapping"),
])
def test_bad_case_is_a_clear_failure_and_others_still_run(tmp_path, case, fragment):
    good = {"name": "good", "object": "big.yaml", "assertions": [{"violations": 1}]}
    result = suite.run_suite(write_suite(tmp_path, [case, good]))
    assert not result.passed
    (line,) = result.failures()
    assert fragment in line, line
    assert result.tests[0].cases[1].passed                         # nothing else is lost


def test_object_file_with_two_objects_and_missing_template(tmp_path):
    path = write_suite(tmp_path, [{"name": "two", "object": "two.yaml", "assertions": [{"violations": "no"}]}])
    (tmp_path / "two.yaml").write_text(deployment("a", 1) + "---\n" + deployment("b", 1))
    assert "defines 2 objects" in suite.run_suite(path).failures()[0]
    doc = yaml.safe_load(path.read_text())
    del doc["tests"][0]["template"]
    path.write_text(yaml.safe_dump(doc))
    assert "missing template" in suite.run_suite(path).failures()[0]


@pytest.mark.parametrize("text, fragment", [
    ("kind: Suite\n", "not a Suite"),
    (f"apiVersion: {suite.SUITE_API}\nkind: Suite\n", "non-empty 'tests'"),
    (": : :", "not valid YAML"),
    ("", "defines no YAML objects"),
])
def test_bad_suite_files(tmp_path, text, fragment):
    path = tmp_path / "suite.yaml"
    path.write_text(text)
    result = suite.run_suite(path)
    assert not result.passed and fragment in result.error


def test_the_docstring_example_is_the_format_gator_documents():
    """The runner and the project suite use gator's own field names (Suite/tests/cases/assertions)."""
    doc = yaml.safe_load(PROJECT_SUITE.read_text())
    assert doc["apiVersion"] == "test.gatekeeper.sh/v1alpha1" and doc["kind"] == "Suite"
    fields = {k for t in doc["tests"] for k in t} | {k for t in doc["tests"] for c in t["cases"] for k in c}
    assert fields <= {"name", "template", "constraint", "cases", "object", "assertions", "invalid", "skip", "inventory"}
    assert textwrap.dedent(suite.__doc__).count("gator") >= 3
