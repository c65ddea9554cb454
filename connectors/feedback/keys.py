"""The keys that sign click and open-pixel tokens: the same rotating key file as the consent links
(`infra/token_keys.py`, `<data_dir>/token-keys.json`), so one `rotate` covers every link in an email."""

from __future__ import annotations

from domain.tracking import Signer
from infra.settings import Settings
from infra.token_keys import load_token_keys


def tracking_signer(settings: Settings) -> Signer:
    keys = load_token_keys(settings)
    return Signer(dict(keys.keys), keys.current_id)
