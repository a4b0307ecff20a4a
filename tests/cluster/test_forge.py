"""cluster.forge: a scripted team on a real scratch git repository; conflicts are git's own."""

from __future__ import annotations

import subprocess

import pytest

from cluster import forge


def test_long_lived_branches_conflict_more_than_short_ones():
    sizes = forge.ChangeSizes((1, 2, 3), "history", 3)
    short = forge.simulate_team(1.0, devs=4, branches=20, sizes=sizes, seed=3)
    long = forge.simulate_team(12.0, devs=4, branches=20, sizes=sizes, seed=3)
    assert len(short.merges) == len(long.merges) == 20
    assert long.conflict_rate > short.conflict_rate
    lo, hi = long.conflict_interval()
    assert lo <= long.conflict_rate <= hi
    # the overlap each branch had with the others grows with its age (the sim's hazard input)
    assert long.merges["overlap_h"].mean() > 5 * short.merges["overlap_h"].mean()


def test_the_merges_are_real_git_merges(tmp_path):
    run = forge.simulate_team(6.0, devs=3, branches=8, sizes=forge.ChangeSizes((2,), "history", 1), seed=1, workdir=tmp_path)
    repo = tmp_path / "cloudmart.git"
    git = ["git", "-C", str(repo)]
    log = subprocess.run([*git, "log", "--merges", "--format=%s", "main"], capture_output=True, text=True).stdout
    assert len(log.splitlines()) == 8
    assert log.count("(resolved)") == run.conflicts
    assert subprocess.run([*git, "fsck", "--strict"], capture_output=True).returncode == 0
    markers = subprocess.run([*git, "grep", "-c", "^<<<<<<<", "main"], capture_output=True, text=True)
    assert markers.returncode == 1 and markers.stdout == ""     # every conflict was resolved, no marker left
    # a conflict is git's verdict: re-merging a conflicted merge's parents with git itself conflicts again
    resolved = subprocess.run([*git, "log", "--merges", "--grep=(resolved)", "--format=%P", "main"], capture_output=True, text=True).stdout.split()
    if resolved:
        again = subprocess.run([*git, "merge-tree", "--write-tree", resolved[0], resolved[1]], capture_output=True)
        assert again.returncode == 1


def test_resolving_takes_the_branch_side_of_each_hunk():
    text = "a\n<<<<<<< main\nx: 1\n=======\nx: 2\n>>>>>>> dev\nb\n"
    assert forge._take_theirs(text) == "a\nx: 2\nb\n"


def test_change_sizes_come_from_the_history_or_say_they_do_not(tmp_path):
    full = forge.change_sizes()
    assert full.source in ("history", "fallback")
    if full.source == "history":
        assert len(full.lines) >= forge.MIN_HISTORY and max(full.lines) <= forge.MAX_EDIT_LINES
    shallow = tmp_path / "shallow"
    subprocess.run(["git", "clone", "-q", "--depth", "1", f"file://{forge.REPO_ROOT}", str(shallow)], check=True, capture_output=True)
    sizes = forge.change_sizes(shallow)
    assert sizes.source == "fallback" and sizes.lines == forge.FALLBACK_SIZES and sizes.commits <= 1


@pytest.mark.parametrize("kwargs, message", [
    ({"branch_age_h": 0}, "branch_age_h"), ({"branch_age_h": 1, "devs": 1}, "devs"),
    ({"branch_age_h": 1, "branches": 0}, "branches"), ({"branch_age_h": 1, "edits_per_h": 0}, "edits_per_h"),
])
def test_bad_input_names_the_valid_range(kwargs, message):
    with pytest.raises(ValueError, match=message):
        forge.simulate_team(**kwargs)
