"""`cloudmart scan`: a real run of the fast scanners on CloudMart itself into scan-report.json, the
Gatekeeper step on known-bad objects, the project's semgrep rules on planted mistakes, and bad
arguments as one-line errors. (The full scan, with checkov and the rendered overlays, is the
`cloudmart scan` CI runs; it takes minutes, so it is not repeated here.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cluster import scan

ROOT = Path(__file__).resolve().parents[2]
BAD = ROOT / "tests" / "kind" / "bad_manifests"
FAST = "zizmor,hadolint,actionlint"


def cloudmart(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cluster.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope="module")
def fast_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("scan") / "scan-report.json"
    proc = cloudmart("scan", "--only", FAST, "--out", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(out.read_text()), proc.stdout


def test_report_has_every_tool_with_time_and_findings(fast_report, in_ci):
    report, stdout = fast_report
    tools = {t["tool"]: t for t in report["tools"]}
    assert list(tools) == FAST.split(",")
    for name, t in tools.items():
        if t["status"] == "missing" and not in_ci:
            pytest.skip(f"{name} is not installed here: {t['note']}")
        assert t["status"] == "ok", t
        assert t["seconds"] > 0 and t["count"] == len(t["findings"]) and t["command"]
        assert f"{name}" in stdout
    assert report["totals"]["findings"] == sum(t["count"] for t in tools.values())


def test_our_ci_pins_every_action_and_zizmor_would_say_if_not(fast_report, tmp_path):
    """The project's workflows pin third-party actions by commit SHA: zizmor finds no unpinned-uses.
    Put one tag back in a copy and zizmor reports it (high), with the `uses:` line."""
    report, _ = fast_report
    (z,) = [t for t in report["tools"] if t["tool"] == "zizmor"]
    if z["status"] == "missing":
        pytest.skip(z["note"])
    assert not [f for f in z["findings"] if f["rule"] == "unpinned-uses"], z["findings"]
    # The checkouts keep no credentials (persist-credentials: false), so `artipacked` is gone.
    assert not [f for f in z["findings"] if f["rule"] == "artipacked"]
    text = (ROOT / ".github/workflows/ci.yml").read_text()
    pinned = [line for line in text.splitlines() if "uses: actions/checkout@" in line]
    assert pinned and all("@" in line and len(line.split("@")[1].split()[0]) == 40 for line in pinned)
    wf = tmp_path / ".github" / "workflows" / "ci.yml"
    wf.parent.mkdir(parents=True)
    wf.write_text(text.replace(pinned[0].split("uses: ")[1], "actions/checkout@v5", 1))
    proc = subprocess.run([scan._exe("zizmor") or "zizmor", "--offline", "--format", "json", str(wf)],
                          capture_output=True, text=True, timeout=120)
    found = [f for f in json.loads(proc.stdout or "[]") if f["ident"] == "unpinned-uses"]
    assert len(found) == 1 and found[0]["determinations"]["severity"] == "High", proc.stdout[-2000:]


def test_gatekeeper_step_reports_violations_of_bad_objects():
    objects = [d for p in sorted(BAD.glob("*.yaml")) for d in yaml.safe_load_all(p.read_text()) if d]
    result = scan.tool_gatekeeper({"rendered": {"bad": objects}})
    expected = sum(1 for p in BAD.glob("*.yaml") for line in p.read_text().splitlines() if line.startswith("# expect: "))
    assert result.count - sum(f.rule == "suite" for f in result.findings) == expected
    assert {f.rule for f in result.findings} >= {"cloudmart-no-privileged", "cloudmart-allowed-repos"}
    assert not [f for f in result.findings if f.rule == "suite"]           # the policies' own suite passes
    clean = scan.tool_gatekeeper({"rendered": {"ok": [yaml.safe_load(
        (ROOT / "cluster/manifests/components/gatekeeper/samples/good-deployment.yaml").read_text())]}})
    assert clean.count == 0 and clean.extra["suite_cases"] == 14


def test_a_missing_tool_is_reported_missing_not_clean(tmp_path, monkeypatch):
    monkeypatch.setattr(scan, "_exe", lambda name: None)
    report = scan.scan(["hadolint"], tmp_path / "r.json")
    (t,) = report["tools"]
    assert t["status"] == "missing" and "not installed" in t["note"] and t["count"] == 0
    assert report["totals"]["missing"] == ["hadolint"]


def test_semgrep_project_rules_catch_planted_mistakes(tmp_path):
    exe = scan.SEMGREP if scan.SEMGREP.exists() else scan._exe("semgrep")
    if not exe:
        pytest.skip("semgrep is not installed (`make install` creates .venv-semgrep)")
    planted = tmp_path / "planted.py"
    planted.write_text("import jwt, httpx, subprocess\n"
                       "def f(t, cmd):\n"
                       "    claims = jwt.decode(t, options={'verify_signature': False})\n"
                       "    httpx.get('https://x', verify=False)\n"
                       "    subprocess.run(cmd, shell=True)\n"
                       "    return jwt.decode(t, 'k', algorithms=['RS256'])\n")
    proc = subprocess.run([str(exe), "scan", "--metrics", "off", "--disable-version-check", "--config",
                           str(scan.SEMGREP_RULES), "--json", "-j", "1", "--quiet", str(planted)],
                          capture_output=True, text=True, timeout=300)
    hits = sorted((r["check_id"].rsplit(".", 1)[-1], r["start"]["line"]) for r in json.loads(proc.stdout)["results"])
    assert hits == [("jwt-decode-without-verification", 3), ("subprocess-shell-true", 5),
                    ("tls-verification-disabled", 4)]


def test_bad_arguments_are_one_line_errors(tmp_path):
    with pytest.raises(ValueError, match="valid: gatekeeper"):
        scan.scan(["trivy"], tmp_path / "r.json")
    proc = cloudmart("scan", "--only", "trivy", "--out", str(tmp_path / "r.json"))
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1 and "unknown tool(s) trivy" in proc.stderr
    proc = cloudmart("scan", "--skip", "nope", "--out", str(tmp_path / "r.json"))
    assert proc.returncode == 1 and "--skip: unknown tool(s) nope" in proc.stderr
    assert not (tmp_path / "r.json").exists()
