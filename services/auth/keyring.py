"""The signing-key ring: a *current* key that signs, a *next* key already published in the JWKS,
and *retired* keys kept published until the tokens they signed have expired.

Rotation (``rotate(overlap=True)``) is the planned kind: the next key, which every verifier
could already fetch, starts signing; the old current key is retired (still published, so the
tokens it signed stay valid until they expire) and a new next key is made. No verifier ever sees a
token signed by a key it could not have fetched before.

``rotate(overlap=False)`` is the emergency kind (the current key leaked): a brand-new key signs at
once, and the old current key leaves the JWKS at once. Tokens it signed are refused by auth at
once and by every other verifier at its next JWKS refetch; tokens from the new key are refused by
a verifier until it refetches (at most every 5 s on an unknown ``kid``; see
``services.common.auth.KeySource``).

The ring lives in ``<state dir>/auth/keyring.json`` (private keys as PEM, mode 0600), written
atomically (temp file, then ``os.replace``) under an ``fcntl`` lock, so every auth replica of one
state folder shares it; each replica re-reads the file when it changes (one ``stat`` per use). The
current key is mirrored to ``jwt-signing-key.pem``, the file verifiers without a JWKS URL read.

Where the state folder is read-only (a Kubernetes Secret mount), the ring holds the mounted key
alone: no next key, and ``rotate`` raises ``RingReadOnly`` (rotate the Secret instead).
"""

from __future__ import annotations

import fcntl
import json
import os
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from services.common import auth


class RingReadOnly(Exception):
    """The key ring cannot be changed here (read-only state folder)."""


def _new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _pem(key) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def _load(pem: str):
    return serialization.load_pem_private_key(pem.encode(), password=None)


@dataclass
class _Entry:
    key: rsa.RSAPrivateKey
    kid: str
    retire_until: float | None = None      # retired keys: published until this Unix time

    @classmethod
    def of(cls, key, retire_until: float | None = None) -> "_Entry":
        return cls(key, auth.key_id(key.public_key()), retire_until)


@dataclass
class _State:
    current: _Entry
    next: _Entry | None
    retired: list[_Entry] = field(default_factory=list)
    rotations: int = 0


class KeyRing:
    """Current, next and retired signing keys of one state folder (see the module docstring)."""

    def __init__(self, state_dir: Path, retire_after_s: float, initial_key=None):
        if retire_after_s <= 0:
            raise ValueError(f"retire_after_s={retire_after_s!r} must be > 0 (the longest token lifetime)")
        self.dir = Path(state_dir) / "auth"
        self.path = self.dir / "keyring.json"
        self.retire_after_s = float(retire_after_s)
        self.read_only = False
        self._stamp: tuple[int, int] | None = None
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            with self._locked():
                if not self.path.exists():
                    current = initial_key or auth.load_or_create_signing_key(Path(state_dir))
                    self._write(_State(_Entry.of(current), _Entry.of(_new_key())))
        except OSError:
            # A read-only mount: the mounted key alone, published as the only key.
            self.read_only = True
            key = initial_key or auth.load_or_create_signing_key(Path(state_dir))
            self._state = _State(_Entry.of(key), None)
            return
        self._reload()

    # -- file --------------------------------------------------------------------------------

    @contextmanager
    def _locked(self):
        fd = os.open(self.dir / "keyring.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def _write(self, state: _State) -> None:
        doc = {"current": _pem(state.current.key), "next": _pem(state.next.key) if state.next else None,
               "retired": [{"pem": _pem(e.key), "retire_until": e.retire_until} for e in state.retired],
               "rotations": state.rotations}
        tmp = self.path.with_name(f".keyring.{os.getpid()}.{uuid.uuid4().hex}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(doc, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        # Mirror the current key for verifiers that read the key file (no JWKS URL).
        pem_path = auth.key_path(self.dir.parent)
        tmp = pem_path.with_name(f".{pem_path.name}.{os.getpid()}.{uuid.uuid4().hex}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(doc["current"])
        os.replace(tmp, pem_path)

    def _reload(self) -> None:
        if self.read_only:
            return
        st = self.path.stat()
        stamp = (st.st_mtime_ns, st.st_ino)
        if stamp == self._stamp:
            return
        doc = json.loads(self.path.read_text())
        self._state = _State(
            current=_Entry.of(_load(doc["current"])),
            next=_Entry.of(_load(doc["next"])) if doc.get("next") else None,
            retired=[_Entry.of(_load(r["pem"]), r["retire_until"]) for r in doc.get("retired", [])],
            rotations=int(doc.get("rotations", 0)))
        self._stamp = stamp

    # -- use ---------------------------------------------------------------------------------

    def signing(self) -> tuple[rsa.RSAPrivateKey, str]:
        """The key that signs now and its ``kid``."""
        self._reload()
        return self._state.current.key, self._state.current.kid

    def published(self, now: float | None = None) -> list[_Entry]:
        """Current, next, and retired keys whose tokens may still be unexpired."""
        self._reload()
        now = time.time() if now is None else now
        s = self._state
        return [s.current, *([s.next] if s.next else []),
                *[e for e in s.retired if e.retire_until is None or e.retire_until > now]]

    def jwks(self) -> dict:
        return {"keys": [auth.jwks_for(e.key.public_key())["keys"][0] for e in self.published()]}

    def public_key(self, kid: str):
        """The public key ``kid`` if it is published now, else None."""
        for entry in self.published():
            if entry.kid == kid:
                return entry.key.public_key()
        return None

    def describe(self) -> dict:
        self._reload()
        s = self._state
        now = time.time()
        return {"current_kid": s.current.kid, "next_kid": s.next.kid if s.next else None,
                "retired_kids": [e.kid for e in s.retired if e.retire_until is None or e.retire_until > now],
                "published_kids": [e.kid for e in self.published(now)], "rotations": s.rotations,
                "read_only": self.read_only}

    def rotate(self, overlap: bool) -> dict:
        """Rotate (see the module docstring); returns ``describe()`` after it."""
        if self.read_only:
            raise RingReadOnly("the signing key is mounted read-only here (a Kubernetes Secret): "
                               "rotate the Secret auth-signing-key instead")
        with self._locked():
            self._stamp = None
            self._reload()
            s = self._state
            now = time.time()
            retired = [e for e in s.retired if e.retire_until is None or e.retire_until > now]
            if overlap:
                old = _Entry(s.current.key, s.current.kid, now + self.retire_after_s)
                new = _State(current=s.next or _Entry.of(_new_key()), next=_Entry.of(_new_key()),
                             retired=[old, *retired], rotations=s.rotations + 1)
            else:
                new = _State(current=_Entry.of(_new_key()), next=s.next, retired=retired,
                             rotations=s.rotations + 1)
            self._write(new)
            self._stamp = None
            self._reload()
        return self.describe()


class RingKeySource:
    """A ``KeySource`` for the process that holds the ring: published keys only, read at once."""

    def __init__(self, ring: KeyRing):
        self.ring = ring

    async def get(self, kid: str):
        key = self.ring.public_key(kid)
        if key is None:
            raise auth.InvalidToken("token signed by an unknown key")
        return key
