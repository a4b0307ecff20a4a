"""Act as a second local OS user (`nobody`) against a live CloudMart, with the standard library only.

`as_nobody(steps)` runs ATTACKER (below) in `/usr/bin/python3 -I -S` as uid/gid of `nobody` (a
setuid in the child, so it needs root, as CI has); each step is a dict, each result a dict, all as
JSON on the pipes. The attacker knows what any local user can learn from `ps` and the port
numbers: the gateway's URL, the servers' ports, the state folder's path. It has no credentials
beyond the course's public demo password.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess

ATTACKER = r'''
import json, os, socket, sys, urllib.request, urllib.error

def redis(port, *args, user=None, password=None):
    def enc(parts):
        out = b"*%d\r\n" % len(parts)
        for p in parts:
            p = p.encode() if isinstance(p, str) else p
            out += b"$%d\r\n%s\r\n" % (len(p), p)
        return out
    with socket.create_connection(("127.0.0.1", port), timeout=3) as s:
        if user is not None:
            s.sendall(enc(["AUTH", user, password]))
            auth = s.recv(4096).decode(errors="replace").strip()
            if not auth.startswith("+OK"):
                return {"reply": auth}
        s.sendall(enc(list(args)))
        return {"reply": s.recv(4096).decode(errors="replace").strip()}

def nats(port, lines, user=None, password=None):
    with socket.create_connection(("127.0.0.1", port), timeout=3) as s:
        info = s.recv(65536).decode(errors="replace")
        connect = {"verbose": False, "pedantic": False, "name": "nobody"}
        if user is not None:
            connect.update(user=user, **{"pass": password})
        s.sendall(("CONNECT " + json.dumps(connect) + "\r\n" + "".join(l + "\r\n" for l in lines) + "PING\r\n").encode())
        got = b""
        try:
            while b"PONG" not in got and b"-ERR" not in got:
                chunk = s.recv(65536)
                if not chunk:
                    break
                got += chunk
        except socket.timeout:
            pass
        return {"auth_required": '"auth_required":true' in info.replace(" ", ""), "reply": got.decode(errors="replace")[:2000]}

def http(method, url, headers=None, body=None, form=None):
    data = None
    headers = dict(headers or {})
    if form is not None:
        data = urllib.parse.urlencode(form).encode()
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    elif body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return {"status": resp.status, "body": resp.read(65536).decode(errors="replace")}
    except urllib.error.HTTPError as exc:
        return {"status": exc.code, "body": exc.read(65536).decode(errors="replace")}
    except OSError as exc:
        return {"status": 0, "error": type(exc).__name__ + ": " + str(exc)[:200]}

def read(path):
    try:
        with open(path, "rb") as fh:
            return {"outcome": "read", "bytes": len(fh.read())}
    except PermissionError:
        return {"outcome": "denied"}
    except FileNotFoundError:
        return {"outcome": "missing"}
    except IsADirectoryError:
        return {"outcome": "directory"}

def listdir(path):
    try:
        return {"outcome": "listed", "names": sorted(os.listdir(path))}
    except PermissionError:
        return {"outcome": "denied"}

import urllib.parse
results = []
for step in json.load(sys.stdin):
    kind = step.pop("do")
    try:
        out = {"redis": lambda: redis(step["port"], *step["args"], user=step.get("user"), password=step.get("password")),
               "nats": lambda: nats(step["port"], step.get("lines", []), user=step.get("user"), password=step.get("password")),
               "http": lambda: http(step["method"], step["url"], step.get("headers"), step.get("body"), step.get("form")),
               "read": lambda: read(step["path"]),
               "listdir": lambda: listdir(step["path"])}[kind]()
    except OSError as exc:
        out = {"error": type(exc).__name__ + ": " + str(exc)[:200]}
    out["uid"] = os.getuid()
    results.append(out)
json.dump(results, sys.stdout)
'''


def second_user() -> str | None:
    """Why no second OS user can be acted as here (None when one can)."""
    if os.geteuid() != 0:
        return "acting as a second OS user needs root (setuid to nobody), as in CI; this runs as uid %d" % os.geteuid()
    try:
        pwd.getpwnam("nobody")
    except KeyError:
        return "this machine has no user `nobody` to act as"
    if not python_for_nobody():
        return "no system python3 that the user nobody may run"
    return None


def python_for_nobody() -> str | None:
    for candidate in ("/usr/bin/python3", "/usr/local/bin/python3", shutil.which("python3")):
        if candidate and os.path.exists(candidate) and os.stat(candidate).st_mode & 0o001:
            return candidate
    return None


def as_nobody(steps: list[dict], timeout_s: float = 60) -> list[dict]:
    """Run `steps` as the OS user nobody; one result per step."""
    nobody = pwd.getpwnam("nobody")
    proc = subprocess.run([python_for_nobody(), "-I", "-S", "-c", ATTACKER], input=json.dumps(steps), capture_output=True,
                          text=True, timeout=timeout_s, cwd="/", env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
                          user=nobody.pw_uid, group=nobody.pw_gid, extra_groups=[])
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)
    assert len(results) == len(steps) and all(r["uid"] == nobody.pw_uid for r in results), results
    return results
