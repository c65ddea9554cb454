"""HMAC keys for links in emails, in `<data_dir>/token-keys.json` (mode 0600).

The newest key signs; every key in the file verifies, so links signed before a rotation keep
working until they expire. `rotate` adds a key; `retire` drops an old one once its links expired.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from infra.settings import Settings


@dataclass(frozen=True)
class TokenKeys:
    current_id: str
    keys: dict[str, bytes]

    @property
    def current(self) -> bytes:
        return self.keys[self.current_id]


def keys_file(settings: Settings) -> Path:
    return settings.data_dir / "token-keys.json"


def _write(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(data, out, indent=2)
    os.replace(tmp, path)


def _new_key(data: dict) -> dict:
    key_id = f"k{len(data.get('keys', {})) + 1}-{secrets.token_hex(3)}"
    data.setdefault("keys", {})[key_id] = {
        "secret": secrets.token_hex(32),
        "created_at": datetime.now(timezone.utc).isoformat(),
    }
    data["current"] = key_id
    return data


def load_token_keys(settings: Settings) -> TokenKeys:
    path = keys_file(settings)
    if not path.exists():
        _write(path, _new_key({}))
    data = json.loads(path.read_text())
    return TokenKeys(data["current"], {k: bytes.fromhex(v["secret"]) for k, v in data["keys"].items()})


def rotate(settings: Settings) -> TokenKeys:
    path = keys_file(settings)
    data = json.loads(path.read_text()) if path.exists() else {}
    _write(path, _new_key(data))
    return load_token_keys(settings)


def retire(settings: Settings, key_id: str) -> None:
    path = keys_file(settings)
    data = json.loads(path.read_text())
    if key_id == data["current"]:
        raise ValueError("key_id: the current signing key cannot be retired; rotate first")
    data["keys"].pop(key_id, None)
    _write(path, data)
