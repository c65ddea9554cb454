"""API keys for the ingest API, stored only as sha256 digests.

The plaintext is shown once by `create` and never written anywhere. Keys live in
`settings.api_keys_file` (JSON) plus any digests given in `TIDINGS_API_KEY_HASHES`. The file is
re-read when its modification time changes, so `tidings keys create` works on a running API.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import threading
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from infra.settings import Settings

KEY_PREFIX = "tk_"
KEY_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@:\-]{0,63}$")
_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class ApiKey:
    name: str
    sha256: str
    created_at: str


class ApiKeyStore:
    def __init__(self, settings: Settings) -> None:
        self._path: Path = settings.api_keys_file
        self._env_keys = _env_keys(settings.api_key_hashes)
        self._lock = threading.Lock()
        self._loaded_stamp: tuple[int, int] | None = None
        self._file_keys: list[ApiKey] = []

    def create(self, name: str) -> str:
        """A new key named `name`; returns the plaintext, which is not stored and cannot be shown again."""
        if not KEY_NAME_PATTERN.match(name):
            raise ValueError(f"invalid key name {name!r}: use 1-64 letters, digits, '_', '.', '@', ':' or '-'")
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        with self._lock:
            keys = self._read_file()
            if any(existing.name == name for existing in keys):
                raise ValueError(f"a key named {name!r} already exists; revoke it first or pick another name")
            created_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
            self._write_file([*keys, ApiKey(name=name, sha256=hash_key(key), created_at=created_at)])
        return key

    def verify(self, key: str) -> str | None:
        """The name of the key, or None. Compares against every stored digest in constant time."""
        digest = hash_key(key)
        match: str | None = None
        for stored in [*self._current_file_keys(), *self._env_keys]:
            # No early exit: the time taken does not tell which (or whether a) key matched.
            if hmac.compare_digest(stored.sha256, digest) and match is None:
                match = stored.name
        return match

    def list(self) -> list[dict[str, str]]:
        """Every accepted key as `{name, sha256, created_at}` (keys from settings have no created_at)."""
        return [asdict(key) for key in [*self._current_file_keys(), *self._env_keys]]

    def revoke(self, name: str) -> bool:
        """Remove the key named `name` from the file; False when there was none."""
        with self._lock:
            keys = self._read_file()
            kept = [key for key in keys if key.name != name]
            if len(kept) == len(keys):
                return False
            self._write_file(kept)
            return True

    def _current_file_keys(self) -> list[ApiKey]:
        stamp = _stamp(self._path)
        with self._lock:
            if stamp != self._loaded_stamp:
                self._file_keys = self._read_file()
                self._loaded_stamp = stamp
            return self._file_keys

    def _read_file(self) -> list[ApiKey]:
        if not self._path.exists():
            return []
        try:
            raw = json.loads(self._path.read_text())
            return [ApiKey(name=k["name"], sha256=k["sha256"], created_at=k["created_at"]) for k in raw["keys"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{self._path} is not a valid API key file: {exc}") from exc

    def _write_file(self, keys: list[ApiKey]) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._path.with_name(self._path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump({"keys": [asdict(key) for key in keys]}, handle, indent=2)
        os.replace(tmp, self._path)  # readers see the old or the new file, never half of one


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return (stat.st_mtime_ns, stat.st_size)


def _env_keys(api_key_hashes: str) -> list[ApiKey]:
    keys = []
    for raw in api_key_hashes.split(","):
        digest = raw.strip().lower()
        if not digest:
            continue
        if not _SHA256_HEX.match(digest):
            raise ValueError(f"TIDINGS_API_KEY_HASHES: {raw.strip()!r} is not a sha256 hex digest (64 hex characters)")
        keys.append(ApiKey(name=f"env:{digest[:8]}", sha256=digest, created_at=""))
    return keys
