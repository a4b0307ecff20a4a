"""``cloudmart scan``: the project's security and compliance scanners on CloudMart itself, offline,
into one ``scan-report.json`` with the findings and the wall time of each tool.

Tools (each skipped with status ``missing`` when it is not installed, never silently passed):

* ``gatekeeper``: CloudMart's Gatekeeper policies (regopy) on every rendered overlay
  (``kubectl kustomize``), and the policies' own ``suite.yaml``;
* ``checkov``: Kubernetes checks on the rendered overlays (its own virtualenv, ``.venv-checkov``);
* ``zizmor --offline``: GitHub Actions security findings in ``.github/workflows``;
* ``actionlint``: workflow correctness;
* ``hadolint``: the Dockerfile;
* ``bandit``: Python security lint of ``services`` and ``cluster``;
* ``semgrep`` (its own virtualenv, ``.venv-semgrep``): the project's own rules only (``cluster/scan_rules/semgrep.yml``, ``--metrics off``:
  registry rule packs need the network);
* ``sbom``: a CycloneDX SBOM of the Python environment (``cyclonedx-py environment``), written
  next to the report; its finding count is 0 by definition, its component count is reported.

Exit status: 0 when every tool ran (findings or not), 1 when a tool failed to run, 2 on bad
arguments. Findings do not fail the command: the report is the product; CI decides what blocks.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
MANIFESTS = ROOT / "cluster" / "manifests"
SEMGREP_RULES = ROOT / "cluster" / "scan_rules" / "semgrep.yml"
CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"
SEMGREP = ROOT / ".venv-semgrep" / "bin" / "semgrep"        # own virtualenv: it pins old OpenTelemetry
TOOL_TIMEOUT_S = 900


@dataclass
class Finding:
    rule: str
    severity: str
    location: str
    message: str


@dataclass
class ToolResult:
    tool: str
    status: str                       # "ok" (ran), "missing" (not installed), "error" (could not run)
    seconds: float = 0.0
    command: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    note: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def count(self) -> int:
        return len(self.findings)


def _exe(name: str) -> str | None:
    beside = Path(sys.executable).with_name(name)
    return str(beside) if beside.exists() else shutil.which(name)


def _run(cmd: list[str], cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=TOOL_TIMEOUT_S)


class ToolMissing(Exception):
    pass


class ToolFailed(Exception):
    pass


def _need(name: str) -> str:
    found = _exe(name)
    if not found:
        raise ToolMissing(f"{name} is not installed (pip install it; see pyproject.toml)")
    return found


def _json_out(proc: subprocess.CompletedProcess, tool: str, ok_codes: tuple[int, ...]):
    if proc.returncode not in ok_codes:
        raise ToolFailed(f"{tool} exited {proc.returncode}: {(proc.stderr or proc.stdout).strip()[-400:]}")
    try:
        return json.loads(proc.stdout) if proc.stdout.strip() else None
    except json.JSONDecodeError as exc:
        raise ToolFailed(f"{tool} printed no JSON ({exc}): {proc.stdout[:200]!r}") from None


# -- rendering --------------------------------------------------------------------------------

def render_overlays() -> dict[str, list[dict]]:
    """``base`` and every overlay, rendered with ``kubectl kustomize``."""
    import yaml

    kubectl = _need("kubectl")
    targets = {"base": MANIFESTS / "base"}
    for k in sorted((MANIFESTS / "overlays").glob("*/kustomization.yaml")):
        targets[k.parent.name] = k.parent
    out = {}
    for name, path in targets.items():
        proc = _run([kubectl, "kustomize", str(path)])
        if proc.returncode != 0:
            raise ToolFailed(f"kubectl kustomize {path.relative_to(ROOT)}: {proc.stderr.strip()[:300]}")
        out[name] = [d for d in yaml.safe_load_all(proc.stdout) if d]
    return out


# -- tools ------------------------------------------------------------------------------------

def tool_gatekeeper(ctx: dict) -> ToolResult:
    from cluster.policies import gatekeeper, suite

    result = ToolResult("gatekeeper", "ok", command=["cluster.policies.gatekeeper", "<rendered overlays>",
                                                     "cluster.policies.suite", "suite.yaml"])
    policies = gatekeeper.load_policies()
    checked = 0
    for overlay, objects in ctx["rendered"].items():
        checked += len(objects)
        for v in policies.evaluate(objects):
            result.findings.append(Finding(v.constraint, "high", f"{overlay}: {v.kind} {v.namespace or ''}/{v.name}",
                                           v.msg))
    suite_result = suite.run_suite(gatekeeper.GATEKEEPER_DIR / "suite.yaml")
    for line in suite_result.failures():
        result.findings.append(Finding("suite", "high", "gatekeeper/suite.yaml", line))
    result.extra = {"objects_checked": checked, "overlays": sorted(ctx["rendered"]),
                    "suite_cases": sum(len(t.cases) for t in suite_result.tests)}
    return result


def tool_checkov(ctx: dict) -> ToolResult:
    if not CHECKOV.exists():
        raise ToolMissing(f"{CHECKOV.relative_to(ROOT)} is missing (`make install` creates checkov's virtualenv)")
    cmd = [str(CHECKOV), "--skip-download", "--framework", "kubernetes", "--directory", str(ctx["rendered_dir"]),
           "--output", "json", "--compact", "--quiet"]
    report = _json_out(_run(cmd, cwd=ctx["rendered_dir"]), "checkov", (0, 1))
    reports = report if isinstance(report, list) else [report or {}]
    result = ToolResult("checkov", "ok", command=cmd)
    passed = 0
    for r in reports:
        passed += r.get("summary", {}).get("passed", 0)
        for f in r.get("results", {}).get("failed_checks", []):
            result.findings.append(Finding(f["check_id"], (f.get("severity") or "medium").lower(),
                                           f"{f.get('file_path', '')}: {f.get('resource', '')}", f.get("check_name", "")))
    result.extra = {"passed_checks": passed}
    return result


def tool_zizmor(ctx: dict) -> ToolResult:
    cmd = [_need("zizmor"), "--offline", "--format", "json", "--no-progress", ".github/workflows"]
    proc = _run(cmd)
    # zizmor exits 0 when clean and 10-14 by the highest finding severity.
    items = _json_out(proc, "zizmor", (0, 10, 11, 12, 13, 14)) or []
    result = ToolResult("zizmor", "ok", command=cmd)
    for item in items:
        loc = ""
        locations = item.get("locations") or []
        if locations:
            sym = locations[0].get("symbolic", {})
            key = sym.get("key", {})
            local = key.get("Local", {}) if isinstance(key, dict) else {}
            path = local.get("verbatim_path") or local.get("given_path")
            row = locations[0].get("concrete", {}).get("location", {}).get("start_point", {}).get("row")
            loc = f"{path or ''}:{row + 1 if isinstance(row, int) else ''}"      # zizmor's rows count from 0
        result.findings.append(Finding(item.get("ident", "?"), str(item.get("determinations", {}).get("severity", "?")).lower(),
                                       loc, item.get("desc", "")))
    return result


def tool_actionlint(ctx: dict) -> ToolResult:
    workflows = sorted(str(p.relative_to(ROOT)) for p in (ROOT / ".github" / "workflows").glob("*.y*ml"))
    cmd = [_need("actionlint"), "-format", "{{json .}}", *workflows]
    items = _json_out(_run(cmd), "actionlint", (0, 1)) or []
    result = ToolResult("actionlint", "ok", command=cmd)
    for item in items:
        result.findings.append(Finding(item.get("kind", "?"), "medium", f"{item.get('filepath')}:{item.get('line')}",
                                       item.get("message", "")))
    return result


def tool_hadolint(ctx: dict) -> ToolResult:
    cmd = [_need("hadolint"), "-f", "json", "--no-fail", "Dockerfile"]
    items = _json_out(_run(cmd), "hadolint", (0, 1)) or []
    result = ToolResult("hadolint", "ok", command=cmd)
    for item in items:
        result.findings.append(Finding(item.get("code", "?"), item.get("level", "?"), f"{item.get('file')}:{item.get('line')}",
                                       item.get("message", "")))
    return result


def tool_bandit(ctx: dict) -> ToolResult:
    cmd = [_need("bandit"), "-q", "-r", "services", "cluster", "-f", "json", "-x", "cluster/manifests"]
    report = _json_out(_run(cmd), "bandit", (0, 1)) or {}
    result = ToolResult("bandit", "ok", command=cmd)
    for item in report.get("results", []):
        result.findings.append(Finding(item.get("test_id", "?"), item.get("issue_severity", "?").lower(),
                                       f"{item.get('filename')}:{item.get('line_number')}", item.get("issue_text", "")))
    errors = report.get("errors") or []
    if errors:
        result.note = f"{len(errors)} file(s) bandit could not parse"
    return result


def tool_semgrep(ctx: dict) -> ToolResult:
    exe = str(SEMGREP) if SEMGREP.exists() else _exe("semgrep")
    if not exe:
        raise ToolMissing(f"{SEMGREP.relative_to(ROOT)} is missing (`make install` creates semgrep's virtualenv)")
    cmd = [exe, "scan", "--metrics", "off", "--disable-version-check", "--config",
           str(SEMGREP_RULES.relative_to(ROOT)), "--json", "-j", "1", "--quiet", "services", "cluster"]
    report = _json_out(_run(cmd), "semgrep", (0, 1)) or {}
    result = ToolResult("semgrep", "ok", command=cmd)
    for item in report.get("results", []):
        extra = item.get("extra", {})
        result.findings.append(Finding(item.get("check_id", "?").rsplit(".", 1)[-1], extra.get("severity", "?").lower(),
                                       f"{item.get('path')}:{item.get('start', {}).get('line')}", extra.get("message", "")))
    fatal = [e for e in report.get("errors", []) if e.get("level") == "error"]
    if fatal:                                       # a rule file semgrep cannot read scans nothing
        raise ToolFailed(f"semgrep: {' '.join(str(fatal[0].get('message', fatal[0])).split())[:300]}")
    if report.get("errors"):
        result.note = f"{len(report['errors'])} semgrep warning(s): {str(report['errors'][0])[:200]}"
    return result


def tool_sbom(ctx: dict) -> ToolResult:
    out = ctx["out_dir"] / "sbom.cdx.json"
    cmd = [_need("cyclonedx-py"), "environment", sys.executable, "--output-format", "JSON", "-o", str(out)]
    proc = _run(cmd)
    if proc.returncode != 0 or not out.exists():
        raise ToolFailed(f"cyclonedx-py exited {proc.returncode}: {proc.stderr.strip()[-300:]}")
    doc = json.loads(out.read_text())
    return ToolResult("sbom", "ok", command=cmd, extra={
        "file": out.name, "spec_version": doc.get("specVersion"), "components": len(doc.get("components", []))})


TOOLS: dict[str, Callable[[dict], ToolResult]] = {
    "gatekeeper": tool_gatekeeper, "checkov": tool_checkov, "zizmor": tool_zizmor, "actionlint": tool_actionlint,
    "hadolint": tool_hadolint, "bandit": tool_bandit, "semgrep": tool_semgrep, "sbom": tool_sbom,
}


def scan(tools: list[str] | None = None, out: Path | str = "scan-report.json") -> dict:
    """Run the scanners (all by default) and write the report; returns it."""
    names = list(TOOLS) if tools is None else tools
    unknown = [n for n in names if n not in TOOLS]
    if unknown or not names:
        raise ValueError(f"unknown tool(s) {', '.join(unknown) or '(none given)'}; valid: {', '.join(TOOLS)}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    ctx: dict = {"out_dir": out.parent}
    results: list[ToolResult] = []
    with tempfile.TemporaryDirectory(prefix="cloudmart-scan-") as tmp:
        if {"gatekeeper", "checkov"} & set(names):
            started = time.perf_counter()
            try:
                ctx["rendered"] = render_overlays()
                import yaml

                ctx["rendered_dir"] = Path(tmp)
                for name, objects in ctx["rendered"].items():
                    (Path(tmp) / f"{name}.yaml").write_text(yaml.safe_dump_all(objects, sort_keys=False))
            except (ToolMissing, ToolFailed, subprocess.TimeoutExpired) as exc:
                ctx["render_error"] = str(exc)
            ctx["render_seconds"] = round(time.perf_counter() - started, 3)
        for name in names:
            started = time.perf_counter()
            try:
                if name in ("gatekeeper", "checkov") and "render_error" in ctx:
                    raise ToolFailed(f"cannot render the overlays: {ctx['render_error']}")
                result = TOOLS[name](ctx)
            except ToolMissing as exc:
                result = ToolResult(name, "missing", note=str(exc))
            except (ToolFailed, subprocess.TimeoutExpired, OSError, ValueError, KeyError) as exc:
                result = ToolResult(name, "error", note=" ".join(str(exc).split())[:500])
            result.seconds = round(time.perf_counter() - started, 3)
            results.append(result)
    report = {
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "render_seconds": ctx.get("render_seconds"),
        "tools": [{**asdict(r), "count": r.count} for r in results],
        "totals": {"findings": sum(r.count for r in results),
                   "by_tool": {r.tool: r.count for r in results},
                   "seconds": round(sum(r.seconds for r in results) + (ctx.get("render_seconds") or 0), 3),
                   "missing": [r.tool for r in results if r.status == "missing"],
                   "errors": [r.tool for r in results if r.status == "error"]},
    }
    out.write_text(json.dumps(report, indent=2) + "\n")
    return report


# -- CLI (registered in cluster/cli.py) --------------------------------------------------------

def add_parser(sub) -> None:
    p = sub.add_parser("scan", help="run the security and compliance scanners into scan-report.json")
    p.add_argument("--out", default="scan-report.json", help="report path (default: scan-report.json)")
    p.add_argument("--only", default=None, help=f"comma-separated subset of: {','.join(TOOLS)}")
    p.add_argument("--skip", default="", help="comma-separated tools to leave out")


def run_command(args) -> int:
    names = [n.strip() for n in (args.only.split(",") if args.only else list(TOOLS)) if n.strip()]
    skip = {n.strip() for n in args.skip.split(",") if n.strip()}
    unknown = sorted(skip - set(TOOLS))
    if unknown:
        raise ValueError(f"--skip: unknown tool(s) {', '.join(unknown)}; valid: {', '.join(TOOLS)}")
    report = scan([n for n in names if n not in skip], args.out)
    for t in report["tools"]:
        detail = f"{t['count']} finding(s)" if t["status"] == "ok" else t["note"]
        print(f"{t['tool']:<11} {t['status']:<8} {t['seconds']:>7.2f} s  {detail}")
    print(f"report: {args.out} ({report['totals']['findings']} findings)")
    return 1 if report["totals"]["errors"] else 0
