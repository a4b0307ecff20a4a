"""Run gator-format policy test suites (``suite.yaml``) offline, with regopy.

Usage: ``python -m cluster.policies.suite PATH [PATH ...] [--run REGEX] [--json]``. A PATH is a
suite file, a folder (every ``*.yaml``/``*.yml`` in it that declares a Suite), or ``DIR/...``
(the folder and all below it), as ``gator verify`` takes them.

The format is Gatekeeper's ``gator verify`` format (``apiVersion: test.gatekeeper.sh/v1alpha1``,
``kind: Suite``): a Suite lists Tests; a Test names a ConstraintTemplate file, a Constraint file and
Cases (or ``invalid: true``: the Constraint must fail the template's parameter schema); a Case names
one object file (a Kubernetes object or an ``AdmissionReview``) and assertions, each with
``violations`` (``yes``, ``no`` or a count, default ``yes``) and an optional ``message`` regular
expression; ``skip: true`` skips a suite, test or case. Paths are relative to the suite file and may
not be absolute. As in gator, a case without an object or without assertions is an error, a template
whose Rego does not compile fails its test, and a Constraint whose kind is not the template's is an
error. Files that do not declare a Suite are ignored when a folder is walked.

Differences from gator, said plainly: ``inventory`` (``data.inventory``) and ExpansionTemplates are
not supported (a case or test that uses them fails with that message); Rego runs in regopy
(rego-cpp), not OPA's Go engine; match semantics are those of ``cluster.policies.gatekeeper``;
``message`` is a Python regular expression (Go's RE2 syntax is nearly a subset); parameter schemas
are checked with JSON Schema (``openAPIV3Schema`` as Draft 7).

Exit status: 0 when every test passes, 1 when any fails or errs (each failure printed), 2 when no
suite could be read at all (a one-line error).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import regopy
import yaml

from cluster.policies.gatekeeper import TEMPLATE_KIND, Policy, template_rego

SUITE_API = "test.gatekeeper.sh/v1alpha1"


class SuiteError(ValueError):
    """The suite (or a file it names) is not valid: the message says where and why."""


@dataclass
class CaseResult:
    name: str
    passed: bool
    error: str | None = None
    skipped: bool = False
    messages: list[str] = field(default_factory=list)
    runtime_s: float = 0.0


@dataclass
class TestResult:
    name: str
    passed: bool
    error: str | None = None
    skipped: bool = False
    cases: list[CaseResult] = field(default_factory=list)
    runtime_s: float = 0.0


@dataclass
class SuiteResult:
    path: str
    passed: bool
    error: str | None = None
    skipped: bool = False
    tests: list[TestResult] = field(default_factory=list)
    runtime_s: float = 0.0

    def failures(self) -> list[str]:
        """One line per failed suite, test or case."""
        out = [f"{self.path}: {self.error}"] if self.error else []
        for t in self.tests:
            if t.error:
                out.append(f"{self.path}: {t.name}: {t.error}")
            out.extend(f"{self.path}: {t.name}/{c.name}: {c.error}" for c in t.cases if c.error)
        return out


# -- reading --------------------------------------------------------------------------------------

def _resolve(suite_dir: Path, rel: Any, what: str) -> Path:
    if not isinstance(rel, str) or not rel:
        raise SuiteError(f"missing {what}")
    if Path(rel).is_absolute():
        raise SuiteError(f"{what} {rel!r}: absolute paths are not allowed (paths are relative to the suite)")
    path = suite_dir / rel
    if not path.is_file():
        raise SuiteError(f"{what} {rel!r}: no such file next to the suite")
    return path


def _documents(path: Path) -> list[dict]:
    try:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    except (OSError, UnicodeDecodeError) as exc:
        raise SuiteError(f"cannot read {path.name}: {exc}") from None
    except yaml.YAMLError as exc:
        raise SuiteError(f"{path.name} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not docs:
        raise SuiteError(f"{path.name} defines no YAML objects")
    if not all(isinstance(d, dict) for d in docs):
        raise SuiteError(f"{path.name}: every document must be a mapping (a Kubernetes object)")
    return docs


def _one(path: Path, what: str) -> dict:
    docs = _documents(path)
    if len(docs) != 1:
        raise SuiteError(f"{what} {path.name} defines {len(docs)} objects; want exactly 1")
    return docs[0]


def is_suite(doc: Any) -> bool:
    return isinstance(doc, dict) and doc.get("kind") == "Suite" and doc.get("apiVersion") == SUITE_API


def find_suites(target: str) -> list[Path]:
    """Suite files named by one command-line PATH (file, folder, or ``folder/...``)."""
    recursive = target.endswith("/...") or target == "..."
    base = Path(target[:-4] if target.endswith("/...") else ("." if target == "..." else target))
    if base.is_file():
        return [base]
    if not base.is_dir():
        raise SuiteError(f"{target}: no such file or folder")
    pattern = "**/*" if recursive else "*"
    found = []
    for path in sorted(base.glob(pattern)):
        if path.suffix in (".yaml", ".yml") and path.is_file():
            try:
                docs = list(yaml.safe_load_all(path.read_text()))
            except (OSError, UnicodeDecodeError, yaml.YAMLError):
                continue                      # not a suite: gator ignores such files when walking
            if any(is_suite(d) for d in docs):
                found.append(path)
    return found


# -- evaluating -----------------------------------------------------------------------------------

@dataclass
class _Compiled:
    template: dict
    policy: Policy
    interpreter: regopy.Interpreter


def _compile(template_path: Path, constraint_path: Path) -> _Compiled:
    template = _one(template_path, "template")
    if template.get("kind") != TEMPLATE_KIND:
        raise SuiteError(f"template {template_path.name} is a {template.get('kind')!r}, not a ConstraintTemplate")
    try:
        name = template["metadata"]["name"]
        kind = template["spec"]["crd"]["spec"]["names"]["kind"]
        rego = template_rego(template)
    except (KeyError, TypeError, IndexError, ValueError) as exc:
        raise SuiteError(f"template {template_path.name} lacks metadata.name, spec.crd.spec.names.kind or "
                         f"its target's Rego ({exc})") from None
    constraint = _one(constraint_path, "constraint")
    if constraint.get("kind") != kind:
        raise SuiteError(f"constraint {constraint_path.name} is of kind {constraint.get('kind')!r}, but the "
                         f"template {name!r} defines kind {kind!r}: a constraint for an unknown template")
    interpreter = regopy.Interpreter()
    try:
        interpreter.add_module(name, rego)
        probe = interpreter.query(f"data.{name}.violation")
    except regopy.RegoError as exc:
        first = next((line.strip() for line in str(exc).splitlines() if "errormsg" in line), str(exc).splitlines()[0])
        raise SuiteError(f"template {name!r}: its Rego does not compile: {first}") from None
    if not probe.ok():
        raise SuiteError(f"template {name!r}: its Rego does not compile: {str(probe).strip()[:300]}")
    return _Compiled(template, Policy(name, constraint, rego), interpreter)


def _schema_errors(template: dict, constraint: dict) -> list[str]:
    schema = (template.get("spec", {}).get("crd", {}).get("spec", {}).get("validation", {}) or {}).get("openAPIV3Schema")
    if not schema:
        return []
    params = (constraint.get("spec") or {}).get("parameters", {})
    import jsonschema                               # slow to import: only when a schema is there

    validator = jsonschema.Draft7Validator(schema)
    return [f"parameters{''.join(f'[{p!r}]' for p in e.absolute_path)}: {e.message}"
            for e in validator.iter_errors(params)]


def _review(doc: dict) -> tuple[dict, dict]:
    """(the object the constraint's match sees, the ``input.review`` the Rego sees)."""
    if doc.get("kind") == "AdmissionReview" and str(doc.get("apiVersion", "")).startswith("admission.k8s.io/"):
        request = doc.get("request")
        if not isinstance(request, dict):
            raise SuiteError("AdmissionReview without a request")
        obj, old = request.get("object"), request.get("oldObject")
        if not isinstance(obj, dict) and not isinstance(old, dict):
            raise SuiteError('AdmissionRequest does not contain an "object" or "oldObject" to review')
        if request.get("operation") == "DELETE" and not isinstance(obj, dict):
            obj = old                                  # as Gatekeeper does on DELETE
        review = {k: v for k, v in request.items() if k not in ("object",)}
        review["object"] = obj
        review.setdefault("kind", {"kind": obj.get("kind")})
        return obj, review
    return doc, {"object": doc, "kind": {"kind": doc.get("kind")}, "operation": "CREATE"}


def _violations(compiled: _Compiled, doc: dict) -> list[str]:
    obj, review = _review(doc)
    if not compiled.policy.matches(obj):
        return []
    data = {"review": review, "parameters": (compiled.policy.constraint.get("spec") or {}).get("parameters", {})}
    compiled.interpreter.set_input_term(json.dumps(data))
    output = compiled.interpreter.query(f"data.{compiled.policy.template}.violation")
    if not output.ok():
        raise SuiteError(f"evaluation failed: {str(output).strip()[:300]}")
    result = json.loads(str(output))
    if not result.get("expressions"):
        return []
    values = result["expressions"][0]
    if not isinstance(values, list):
        raise SuiteError(f"violation is not a set of {{msg}} objects: {values!r}"[:300])
    return sorted(str(v.get("msg", "")) if isinstance(v, dict) else str(v) for v in values)


def _expected(assertion: Any, index: int) -> tuple[str | int, re.Pattern | None]:
    if not isinstance(assertion, dict):
        raise SuiteError(f"assertion {index + 1} must be a mapping with 'violations' and/or 'message'")
    unknown = set(assertion) - {"violations", "message"}
    if unknown:
        raise SuiteError(f"assertion {index + 1}: unknown field(s) {', '.join(sorted(unknown))}")
    want = assertion.get("violations", "yes")
    if want is True:                                   # YAML 1.1 reads a bare yes/no as a boolean
        want = "yes"
    elif want is False:
        want = "no"
    if not (want in ("yes", "no") or (isinstance(want, int) and want >= 0)):
        raise SuiteError(f'assertion {index + 1}: violations must be a non-negative integer, "yes" or "no", '
                         f"got {want!r}")
    message = assertion.get("message")
    if message in (None, ""):
        return want, None
    try:
        return want, re.compile(str(message))
    except re.error as exc:
        raise SuiteError(f"assertion {index + 1}: message {message!r} is not a valid regular expression: {exc}") from None


def check_assertions(assertions: Any, messages: list[str]) -> str | None:
    """None if every assertion holds for ``messages``, else why not (gator's wording)."""
    if not isinstance(assertions, list) or not assertions:
        raise SuiteError("assertions must be non-empty")
    for i, assertion in enumerate(assertions):
        want, pattern = _expected(assertion, i)
        matching = sum(1 for m in messages if pattern is None or pattern.search(m))
        about = f" containing {pattern.pattern!r}" if pattern else ""
        if want == "yes" and matching == 0:
            return f"got 0 violations{about} but want at least 1: got messages {messages}"
        if want == "no" and matching > 0:
            return f"got {matching} violations{about} but want none: got messages {messages}"
        if isinstance(want, int) and not isinstance(want, bool) and matching != want:
            return f"got {matching} violations{about} but want exactly {want}: got messages {messages}"
    return None


def _run_case(compiled: _Compiled, suite_dir: Path, case: Any, index: int) -> CaseResult:
    started = time.perf_counter()
    name = case.get("name", f"case {index + 1}") if isinstance(case, dict) else f"case {index + 1}"
    result = CaseResult(name=str(name), passed=False)
    try:
        if not isinstance(case, dict):
            raise SuiteError("a case must be a mapping with 'object' and 'assertions'")
        if case.get("skip") is True:
            return CaseResult(name=str(name), passed=True, skipped=True)
        if "object" not in case or not case["object"]:
            raise SuiteError("must define object")
        if not case.get("assertions"):
            raise SuiteError("assertions must be non-empty")
        if case.get("inventory"):
            raise SuiteError("inventory (data.inventory) is not supported by this runner")
        doc = _one(_resolve(suite_dir, case["object"], "object"), "object")
        result.messages = _violations(compiled, doc)
        result.error = check_assertions(case["assertions"], result.messages)
        result.passed = result.error is None
    except SuiteError as exc:
        result.error = str(exc)
    result.runtime_s = time.perf_counter() - started
    return result


def _run_test(suite_dir: Path, test: Any, index: int, run: re.Pattern | None) -> TestResult:
    started = time.perf_counter()
    name = str(test.get("name", f"test {index + 1}")) if isinstance(test, dict) else f"test {index + 1}"
    result = TestResult(name=name, passed=False)
    try:
        if not isinstance(test, dict):
            raise SuiteError("a test must be a mapping with template, constraint and cases")
        if test.get("skip") is True:
            return TestResult(name=name, passed=True, skipped=True)
        if test.get("expansion"):
            raise SuiteError("ExpansionTemplates are not supported by this runner")
        compiled = _compile(_resolve(suite_dir, test.get("template"), "template"),
                            _resolve(suite_dir, test.get("constraint"), "constraint"))
        schema_errors = _schema_errors(compiled.template, compiled.policy.constraint)
        if test.get("invalid") is True:
            if test.get("cases"):
                raise SuiteError("'invalid: true' and 'cases' are mutually exclusive")
            if not schema_errors:
                raise SuiteError("the constraint is valid for the template, but the test says invalid: true")
            result.passed = True
            return result
        if schema_errors:
            raise SuiteError(f"constraint does not fit the template's parameter schema: {schema_errors[0]}")
        cases = test.get("cases")
        if not isinstance(cases, list) or not cases:
            raise SuiteError("a test needs a non-empty 'cases' list (or 'invalid: true')")
        for i, case in enumerate(cases):
            case_name = case.get("name", f"case {i + 1}") if isinstance(case, dict) else f"case {i + 1}"
            if run is not None and not (run.search(name) or run.search(f"{name}/{case_name}")):
                result.cases.append(CaseResult(name=str(case_name), passed=True, skipped=True))
                continue
            result.cases.append(_run_case(compiled, suite_dir, case, i))
        result.passed = all(c.passed for c in result.cases)
    except SuiteError as exc:
        result.error = str(exc)
    finally:
        result.runtime_s = time.perf_counter() - started
    return result


def _test_selected(pattern: re.Pattern, test: Any, index: int) -> bool:
    """gator's --run: the test's name, or "test/case" of one of its cases, matches."""
    if not isinstance(test, dict):
        return True                                   # let the test report its own error
    name = str(test.get("name", f"test {index + 1}"))
    cases = test.get("cases") if isinstance(test.get("cases"), list) else []
    return bool(pattern.search(name)) or any(
        pattern.search(f"{name}/{c.get('name', '')}") for c in cases if isinstance(c, dict))


def run_suite(path: Path | str, run: str | None = None) -> SuiteResult:
    """Run every test of one suite file. Never raises for a bad suite: its error is in the result."""
    path = Path(path)
    started = time.perf_counter()
    result = SuiteResult(path=str(path), passed=False)
    try:
        pattern = re.compile(run) if run else None
    except re.error as exc:
        result.error = f"--run {run!r} is not a valid regular expression: {exc}"
        return result
    try:
        docs = _documents(path)
        suites = [d for d in docs if is_suite(d)]
        if not suites:
            raise SuiteError(f"not a Suite: declare apiVersion: {SUITE_API} and kind: Suite")
        suite = suites[0]
        if suite.get("skip") is True:
            return SuiteResult(path=str(path), passed=True, skipped=True)
        tests = suite.get("tests")
        if not isinstance(tests, list) or not tests:
            raise SuiteError("a Suite needs a non-empty 'tests' list")
        for i, test in enumerate(tests):
            if pattern is not None and not _test_selected(pattern, test, i):
                name = test.get("name", f"test {i + 1}") if isinstance(test, dict) else f"test {i + 1}"
                result.tests.append(TestResult(name=str(name), passed=True, skipped=True))
                continue
            result.tests.append(_run_test(path.parent, test, i, pattern))
        result.passed = all(t.passed for t in result.tests)
    except SuiteError as exc:
        result.error = str(exc)
    result.runtime_s = time.perf_counter() - started
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cluster.policies.suite",
                                     description="Run gator-format suite.yaml tests offline (regopy).")
    parser.add_argument("paths", nargs="+", help="suite file, folder, or folder/... (recursive)")
    parser.add_argument("--run", help="only tests or test/case names matching this regular expression")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    suites: list[Path] = []
    try:
        for target in args.paths:
            suites.extend(find_suites(target))
    except SuiteError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not suites:
        print(f"error: no Suite (apiVersion: {SUITE_API}, kind: Suite) under {' '.join(args.paths)}", file=sys.stderr)
        return 2
    results = [run_suite(p, args.run) for p in suites]
    if args.json:
        print(json.dumps([asdict(r) for r in results], indent=2))
    else:
        for r in results:
            if r.passed:
                state = "skip" if r.skipped else "ok"
                print(f"{state}\t{r.path}\t{r.runtime_s:.3f}s")
            else:
                for line in r.failures():
                    print(f"--- FAIL: {line}")
                print(f"FAIL\t{r.path}\t{r.runtime_s:.3f}s")
    return 0 if all(r.passed for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
