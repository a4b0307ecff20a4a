"""A scripted team on a scratch git repository: real branches, real merges, real conflicts.

    from cluster import forge
    sizes = forge.change_sizes()                   # lines per file edit, from `git log --numstat`
    run = forge.simulate_team(branch_age_h=8, devs=6, seed=1, sizes=sizes)
    run.conflict_rate, run.merges                  # one row per merged branch

Every developer works on one branch at a time, opened from the tip of ``main`` and merged back
after ``branch_age_h`` hours by git's own merge (``git merge-tree --write-tree``, the merge-ort
machinery of ``git merge``; commits are written with dulwich into a bare repository). While the branch is open the developer
edits CloudMart's real manifests (copies of ``cluster/manifests/base`` service Deployments) at
``edits_per_h`` file edits an hour, each edit rewriting a run of consecutive value lines whose
length is drawn from ``sizes``. A merge that git cannot finish is a conflict: it is counted, then
resolved hunk by hunk for the branch (as ``-X theirs``) so the next merges start from a real tip. Time is
scripted (hours are events in order, not wall time); every merge and conflict is git's own.

``change_sizes`` reads the course repository's own history. A shallow or fresh clone has too
little of it; then the fallback distribution is used and ``source`` says so.
"""

from __future__ import annotations

import heapq
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

REPO_ROOT = Path(__file__).resolve().parents[1]
SERVICES = ("auth", "inventory", "notification", "order", "payment", "product", "user")
MANIFESTS = tuple(f"cluster/manifests/base/{s}/deployment.yaml" for s in SERVICES)
FALLBACK_SIZES = (1, 1, 1, 2, 2, 3, 4, 6)  # lines per file edit when the history is too short
MIN_HISTORY = 20
MAX_EDIT_LINES = 20


@dataclass(frozen=True)
class ChangeSizes:
    """Lines changed per file edit: the samples, where they came from, how many commits were read."""

    lines: tuple[int, ...]
    source: str          # "history" or "fallback"
    commits: int

    @property
    def mean(self) -> float:
        return float(np.mean(self.lines))


def change_sizes(repo: str | Path = REPO_ROOT, path: str = "cluster/manifests") -> ChangeSizes:
    """Lines per file edit from ``git log --numstat --diff-filter=M`` over ``path``: edits of files
    that existed (creations are no edits), the larger of added and deleted, capped at 20 so one
    bulk rewrite does not dominate; the fallback when fewer than 20 edits are in the history."""
    proc = subprocess.run(["git", "-C", str(repo), "log", "--numstat", "--diff-filter=M", "--format=@%H", "--", path],
                          capture_output=True, text=True, timeout=60)
    commits, lines = 0, []
    for row in proc.stdout.splitlines() if proc.returncode == 0 else []:
        if row.startswith("@"):
            commits += 1
            continue
        parts = row.split("\t")
        if len(parts) == 3 and parts[0].isdigit() and parts[1].isdigit():   # "-" marks a binary file
            changed = max(int(parts[0]), int(parts[1]))
            if changed:
                lines.append(min(changed, MAX_EDIT_LINES))
    if len(lines) < MIN_HISTORY:
        return ChangeSizes(FALLBACK_SIZES, "fallback", commits)
    return ChangeSizes(tuple(lines), "history", commits)


@dataclass
class TeamRun:
    """The merges of one scripted team: one row per branch (opened_h, merged_h, overlap_h, conflict)."""

    merges: pd.DataFrame
    branch_age_h: float
    devs: int

    @property
    def conflict_rate(self) -> float:
        return float(self.merges["conflict"].mean()) if len(self.merges) else float("nan")

    @property
    def conflicts(self) -> int:
        return int(self.merges["conflict"].sum())

    def conflict_interval(self, z: float = 1.96) -> tuple[float, float]:
        """Wilson score interval of the conflict rate."""
        n = len(self.merges)
        if not n:
            return (float("nan"), float("nan"))
        p = self.conflict_rate
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
        return (max(0.0, centre - half), min(1.0, centre + half))


def _git(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(repo), "-c", "merge.conflictStyle=merge", *args],
                          capture_output=True, text=True, timeout=60)


def _take_theirs(text: str) -> str:
    """Resolve git's conflict markers hunk by hunk in favour of the merged branch (`-X theirs`)."""
    out, side = [], None
    for line in text.splitlines(keepends=True):
        if line.startswith("<<<<<<< "):
            side = "ours"
        elif line.startswith("=======") and side == "ours":
            side = "theirs"
        elif line.startswith(">>>>>>> ") and side == "theirs":
            side = None
        elif side != "ours":
            out.append(line)
    return "".join(out)


def _value_lines(text: str) -> list[int]:
    """Indices of lines a change would edit: `key: value` lines (not comments, not bare keys)."""
    out = []
    for i, line in enumerate(text.splitlines()):
        s = line.strip()
        if s and not s.startswith("#") and ":" in s and not s.endswith(":"):
            out.append(i)
    return out


def _edit(text: str, rng: np.random.Generator, n_lines: int, tag: str) -> str:
    """Rewrite ``n_lines`` consecutive value lines from a random one: the value gets the change's tag."""
    lines = text.splitlines()
    candidates = _value_lines(text)
    start = int(rng.integers(len(candidates)))
    for idx in candidates[start:start + n_lines]:
        lines[idx] = f"{lines[idx]}  # {tag}"
    return "\n".join(lines) + "\n"


def simulate_team(branch_age_h: float, devs: int = 6, branches: int = 60, edits_per_h: float = 0.5,
                  sizes: ChangeSizes | None = None, seed: int = 0, workdir: str | Path | None = None) -> TeamRun:
    """Script ``devs`` developers who each open a branch, edit manifests for ``branch_age_h`` hours
    and merge it, until ``branches`` branches are merged; return every merge with git's verdict.

    ``workdir``: where the scratch repository is made (default: a temporary folder, removed after).
    """
    if not (isinstance(devs, int) and devs >= 2):
        raise ValueError(f"devs: got {devs!r}; valid: an int >= 2 (conflicts need two people)")
    if not (isinstance(branches, int) and 1 <= branches <= 400):
        raise ValueError(f"branches: got {branches!r}; valid: an int in [1, 400]")
    if not branch_age_h > 0:
        raise ValueError(f"branch_age_h: got {branch_age_h!r}; valid: > 0")
    if not edits_per_h > 0:
        raise ValueError(f"edits_per_h: got {edits_per_h!r}; valid: > 0")
    from dulwich.index import commit_tree
    from dulwich.object_store import tree_lookup_path
    from dulwich.objects import Blob, Commit
    from dulwich.repo import Repo

    sizes = sizes or change_sizes()
    rng = np.random.default_rng(seed)
    own_tmp = workdir is None
    root = Path(tempfile.mkdtemp(prefix="cloudmart-team-")) if own_tmp else Path(workdir)
    try:
        path = root / "cloudmart.git"
        if path.exists():
            raise ValueError(f"workdir: {path} exists; valid: a folder without a `cloudmart.git` repository")
        path.mkdir(parents=True)
        repo = Repo.init_bare(str(path))
        store = repo.object_store

        def read(tree: bytes) -> dict[str, str]:
            return {rel: store[tree_lookup_path(store.__getitem__, tree, rel.encode())[1]].data.decode() for rel in MANIFESTS}

        def commit(files: dict[str, str], parents: list[bytes], hour: float, message: str) -> bytes:
            entries = []
            for rel in MANIFESTS:
                blob = Blob.from_string(files[rel].encode())
                if blob.id not in store:
                    store.add_object(blob)
                entries.append((rel.encode(), blob.id, 0o100644))
            c = Commit()
            c.tree = commit_tree(store, entries)
            c.parents = parents
            c.author = c.committer = b"CloudMart team <team@cloudmart.example>"
            c.author_time = c.commit_time = 1767225600 + int(hour * 3600)   # scripted hours from 2026-01-01
            c.author_timezone = c.commit_timezone = 0
            c.message = message.encode()
            store.add_object(c)
            return c.id

        contents: dict[bytes, dict[str, str]] = {}     # files of each tip of main, kept in memory
        first = {rel: (REPO_ROOT / rel).read_text() for rel in MANIFESTS}
        tip = commit(first, [], 0.0, "CloudMart manifests")
        contents[tip] = first
        heap = []   # (merge hour, dev, opened hour, base commit): one open branch per developer, staggered
        for d in range(devs):
            opened = float(rng.uniform(0, branch_age_h))
            heapq.heappush(heap, (opened + branch_age_h, d, opened, tip))
        rows, n = [], 0
        while n < branches:
            merged, d, opened, base = heapq.heappop(heap)
            files = dict(contents[base])
            edits = max(1, int(rng.poisson(edits_per_h * branch_age_h)))
            for e in range(edits):
                rel = MANIFESTS[int(rng.integers(len(MANIFESTS)))]
                files[rel] = _edit(files[rel], rng, int(rng.choice(sizes.lines)), f"dev{d}-b{n}-e{e}")
            branch = commit(files, [base], merged, f"dev{d}: branch {n}")
            merge = _git(path, "merge-tree", "--write-tree", tip.decode(), branch.decode())
            if merge.returncode not in (0, 1):
                raise RuntimeError(f"git merge-tree: {merge.stderr.strip()}")
            conflict = merge.returncode == 1          # git could not merge it cleanly
            result = read(merge.stdout.split()[0].encode())
            if conflict:
                result = {rel: _take_theirs(text) for rel, text in result.items()}
            tip = commit(result, [tip, branch], merged, f"merge branch {n}" + (" (resolved)" if conflict else ""))
            contents[tip] = result
            overlap = sum(max(0.0, min(merged, m) - max(opened, o)) for m, _, o, _ in heap)
            rows.append({"branch": n, "dev": d, "opened_h": opened, "merged_h": merged, "edits": edits,
                         "overlap_h": overlap, "conflict": conflict})
            n += 1
            heapq.heappush(heap, (merged + branch_age_h, d, merged, tip))
        repo.refs[b"refs/heads/main"] = tip
        return TeamRun(pd.DataFrame(rows), float(branch_age_h), devs)
    finally:
        if own_tmp:
            shutil.rmtree(root, ignore_errors=True)
