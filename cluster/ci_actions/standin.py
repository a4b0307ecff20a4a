"""Local stand-ins of actions/cache, actions/upload-artifact, actions/download-artifact and
actions/setup-python, run by act on the host through the node shims next to this file.

Standalone on purpose (act copies each action folder away from the repository): only the
standard library, and everything it needs comes from the step's environment, as GitHub gives
it (`INPUT_*`, `GITHUB_OUTPUT`, `GITHUB_STATE`, `STATE_*`, `GITHUB_WORKSPACE`, `GITHUB_REF`)
plus the stores chosen by `cluster.ci.run_workflow` (`CLOUDMART_CI_CACHE_DIR`,
`CLOUDMART_CI_ARTIFACT_DIR`).

Cache semantics follow GitHub's "Cache key matching" documentation: the keys tried are the
primary key and then each `restore-keys` line, in order; for each, an exact match first and then
the most recently created entry whose key starts with it; `cache-hit` is 'true' only for an exact
match of the primary key. Entries are searched in the run's own ref, then the PR's base branch,
then the default branch. A key is immutable: saving an existing key (same paths) is a warning and
keeps the old entry. The post step saves only when the job succeeded and the primary key missed.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path


def _input(name: str, default: str = "") -> str:
    return os.environ.get(f"INPUT_{name.upper().replace(' ', '_')}", default).strip()


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def _write(var: str, key: str, value: str) -> None:
    target = os.environ.get(var)
    if target:
        with open(target, "a", encoding="utf-8") as fh:
            fh.write(f"{key}={value}\n")


def _output(key: str, value: str) -> None:
    _write("GITHUB_OUTPUT", key, value)


def _fail(message: str) -> int:
    print(f"::error::{message}")
    return 1


def _workspace() -> Path:
    return Path(os.environ.get("GITHUB_WORKSPACE") or os.getcwd())


def _store(var: str) -> Path:
    where = os.environ.get(var)
    if not where:
        raise SystemExit(_fail(f"{var} is unset: stand-in actions run only through cluster.ci.run_workflow"))
    path = Path(where)
    path.mkdir(parents=True, exist_ok=True)
    return path


# --- cache -------------------------------------------------------------------------------------

def _cache_version(paths: list[str]) -> str:
    """GitHub's cache version hashes the paths and the compression method: other paths, other entry."""
    return hashlib.sha256(("|".join(paths) + "|copy").encode()).hexdigest()[:16]


def _scopes() -> list[str]:
    refs = [os.environ.get("GITHUB_REF", "")]
    base = os.environ.get("GITHUB_BASE_REF")
    if base:
        refs.append(f"refs/heads/{base}")
    refs.append(f"refs/heads/{os.environ.get('CLOUDMART_CI_DEFAULT_BRANCH', 'main')}")
    return [r for i, r in enumerate(refs) if r and r not in refs[:i]]


def _entries(root: Path) -> list[dict]:
    out = []
    for meta in root.glob("*/meta.json"):
        try:
            out.append(json.loads(meta.read_text()) | {"dir": str(meta.parent)})
        except (OSError, ValueError):
            continue
    return out


def find_entry(root: Path, keys: list[str], version: str, scopes: list[str]) -> dict | None:
    """The entry GitHub would restore: per key in order, per scope, exact then newest prefix match."""
    entries = [e for e in _entries(root) if e["version"] == version]
    for key in keys:
        for scope in scopes:
            in_scope = [e for e in entries if e["ref"] == scope]
            exact = [e for e in in_scope if e["key"] == key]
            if exact:
                return exact[0]
            prefixed = sorted((e for e in in_scope if e["key"].startswith(key)), key=lambda e: e["created_ns"])
            if prefixed:
                return prefixed[-1]
    return None


def _resolve(paths: list[str]) -> list[tuple[str, Path]]:
    ws = _workspace()
    found = []
    for pattern in paths:
        full = os.path.expanduser(pattern)
        full = full if os.path.isabs(full) else str(ws / full)
        for match in sorted(glob.glob(full, recursive=True)) or []:
            found.append((os.path.relpath(match, ws), Path(match)))
    return found


def _copy_in(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if src.is_dir():
        shutil.copytree(src, dst, symlinks=True, dirs_exist_ok=True)
    else:
        shutil.copy2(src, dst)


def cache_restore() -> int:
    paths, key = _lines(_input("path")), _input("key")
    if not paths or not key:
        return _fail("Input required and not supplied: path and key")
    if len(key) > 512 or "," in key:
        return _fail(f"Key Validation Error: {key[:60]}... cannot contain commas or exceed 512 characters.")
    restore_keys = _lines(_input("restore-keys"))
    version = _cache_version(paths)
    _write("GITHUB_STATE", "CACHE_KEY", key)
    _output("cache-primary-key", key)
    entry = find_entry(_store("CLOUDMART_CI_CACHE_DIR"), [key, *restore_keys], version, _scopes())
    if entry is None:
        _output("cache-hit", "false")
        if _input("fail-on-cache-miss") == "true":
            return _fail(f"Failed to restore cache entry. Exiting as fail-on-cache-miss is set. Input key: {key}")
        print(f"Cache not found for input keys: {', '.join([key, *restore_keys])}")
        return 0
    hit = entry["key"] == key
    _output("cache-hit", "true" if hit else "false")
    _output("cache-matched-key", entry["key"])
    _write("GITHUB_STATE", "CACHE_RESULT", entry["key"])
    if _input("lookup-only") != "true":
        ws = _workspace()
        for i, rel in enumerate(entry["files"]):
            _copy_in(Path(entry["dir"]) / "files" / str(i), (ws / rel).resolve())
    print(f"Cache restored from key: {entry['key']}")
    return 0


def _save(key: str, paths: list[str]) -> int:
    root = _store("CLOUDMART_CI_CACHE_DIR")
    version = _cache_version(paths)
    ref = os.environ.get("GITHUB_REF", "")
    entry_dir = root / hashlib.sha256(f"{ref}|{version}|{key}".encode()).hexdigest()[:24]
    if entry_dir.exists():
        print(f"::warning::Failed to save: Unable to reserve cache with key {key}, another job may be creating this cache.")
        return 0
    found = _resolve(paths)
    if not found:
        print("::warning::Path Validation Error: Path(s) specified in the action for caching do(es) not exist, hence no cache is being saved.")
        return 0
    tmp = Path(tempfile.mkdtemp(prefix=".saving-", dir=root))
    for i, (_, src) in enumerate(found):
        _copy_in(src, tmp / "files" / str(i))
    meta = {"key": key, "version": version, "ref": ref, "created_ns": time.time_ns(), "files": [rel for rel, _ in found]}
    (tmp / "meta.json").write_text(json.dumps(meta))
    try:
        tmp.rename(entry_dir)
    except OSError:  # another job saved the same key first: keys are immutable
        shutil.rmtree(tmp, ignore_errors=True)
        print(f"::warning::Failed to save: Unable to reserve cache with key {key}, another job may be creating this cache.")
        return 0
    print(f"Cache saved with key: {key}")
    return 0


def cache_post_save() -> int:
    key = os.environ.get("STATE_CACHE_KEY", "")
    if not key:
        print("::warning::Key is not specified.")
        return 0
    if os.environ.get("STATE_CACHE_RESULT") == key:
        print(f"Cache hit occurred on the primary key {key}, not saving cache.")
        return 0
    return _save(key, _lines(_input("path")))


def cache_save() -> int:
    paths, key = _lines(_input("path")), _input("key")
    if not paths or not key:
        return _fail("Input required and not supplied: path and key")
    return _save(key, paths)


# --- artifacts -----------------------------------------------------------------------------------

def _run_artifacts() -> Path:
    run = os.environ.get("GITHUB_RUN_ID", "0")
    path = _store("CLOUDMART_CI_ARTIFACT_DIR") / run
    path.mkdir(parents=True, exist_ok=True)
    return path


def upload_artifact() -> int:
    name = _input("name") or "artifact"
    if any(c in name for c in '":<>|*?\\/\r\n'):
        return _fail(f"The artifact name is not valid: {name}. Contains the following character: one of \" : < > | * ? \\ /")
    store = _run_artifacts()
    target = store / name
    if target.exists():
        if _input("overwrite") != "true":
            return _fail(f"Failed to CreateArtifact: an artifact with this name already exists on the workflow run: {name}")
        shutil.rmtree(target)
    hidden = _input("include-hidden-files") == "true"
    found = [(rel, src) for rel, src in _resolve(_lines(_input("path")))
             if hidden or not any(part.startswith(".") and part not in (".", "..") for part in Path(rel).parts)]
    if not found:
        mode = _input("if-no-files-found") or "warn"
        message = f"No files were found with the provided path: {_input('path')}. No artifacts will be uploaded."
        if mode == "error":
            return _fail(message)
        if mode == "warn":
            print(f"::warning::{message}")
        return 0
    tmp = Path(tempfile.mkdtemp(prefix=".uploading-", dir=store))
    # like upload-artifact: one path keeps only its base name; several keep their common root
    common = os.path.commonpath([str(src) for _, src in found])
    base = common if (len(found) > 1 or Path(common).is_dir()) else str(Path(common).parent)
    for _, src in found:
        _copy_in(src, tmp / os.path.relpath(src, base))
    tmp.rename(target)
    ids = sorted(store.parent.glob("*/*"))
    _output("artifact-id", str(len(ids)))
    _output("artifact-url", target.as_uri())
    print(f"Artifact {name} has been successfully uploaded! Final size is {sum(f.stat().st_size for f in target.rglob('*') if f.is_file())} bytes.")
    return 0


def download_artifact() -> int:
    store = _run_artifacts()
    name = _input("name")
    dest = Path(_input("path") or ".")
    dest = dest if dest.is_absolute() else _workspace() / dest
    if name:
        src = store / name
        if not src.is_dir():
            return _fail(f"Unable to download artifact(s): Artifact not found for name: {name}")
        _copy_in(src, dest)
    else:
        for src in sorted(p for p in store.iterdir() if not p.name.startswith(".")):
            _copy_in(src, dest / src.name)
    _output("download-path", str(dest))
    return 0


# --- setup-python --------------------------------------------------------------------------------

def setup_python() -> int:
    import subprocess

    wanted = _input("python-version")
    candidates = [f"python{wanted}"] if wanted.count(".") == 1 else []
    candidates += [f"python{wanted.split('.')[0]}" if wanted else "python3", "python3"]
    for name in candidates:
        exe = shutil.which(name)
        if not exe:
            continue
        full = subprocess.run([exe, "-c", "import sys; print('.'.join(map(str, sys.version_info[:3])))"],
                              capture_output=True, text=True, timeout=30).stdout.strip()
        if not wanted or full == wanted or full.startswith(wanted + "."):
            bindir = Path(tempfile.mkdtemp(prefix="setup-python-"))
            for link in ("python", "python3"):
                (bindir / link).symlink_to(exe)
            with open(os.environ["GITHUB_PATH"], "a", encoding="utf-8") as fh:
                fh.write(f"{bindir}\n")
            _output("python-version", full)
            _output("python-path", exe)
            if _input("cache"):
                print(f"::warning::cache: {_input('cache')} is not supported by the stand-in; use actions/cache")
            print(f"Successfully set up Python ({full}) from the host: {exe}")
            return 0
    return _fail(f"The version '{wanted}' with architecture 'x64' was not found on this host (the stand-in downloads nothing).")


COMMANDS = {
    "cache-restore": cache_restore, "cache-post-save": cache_post_save, "cache-save": cache_save,
    "upload-artifact": upload_artifact, "download-artifact": download_artifact, "setup-python": setup_python,
}

if __name__ == "__main__":
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    if command not in COMMANDS:
        sys.exit(_fail(f"unknown stand-in command {command!r}; valid: {', '.join(COMMANDS)}"))
    sys.exit(COMMANDS[command]())
