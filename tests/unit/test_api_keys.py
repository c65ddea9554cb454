"""API keys are stored as sha256 digests only, verified in constant time, and picked up while running."""

import hashlib
import json
import os
import stat

import pytest

import infra.api_keys as api_keys
from infra.api_keys import ApiKeyStore, hash_key


def test_create_returns_a_prefixed_key_and_the_file_holds_only_its_digest(settings):
    key = ApiKeyStore(settings).create("shop")
    assert key.startswith("tk_") and len(key) > 40
    text = settings.api_keys_file.read_text()
    assert key not in text and key[3:] not in text
    [stored] = json.loads(text)["keys"]
    assert stored["name"] == "shop"
    assert stored["sha256"] == hashlib.sha256(key.encode()).hexdigest()
    assert stored["created_at"]
    assert stat.S_IMODE(os.stat(settings.api_keys_file).st_mode) == 0o600


def test_verify_returns_the_key_name_or_none(settings):
    store = ApiKeyStore(settings)
    shop, crm = store.create("shop"), store.create("crm")
    assert store.verify(shop) == "shop"
    assert store.verify(crm) == "crm"
    assert store.verify(shop + "x") is None
    assert store.verify("") is None


def test_keys_are_random(settings):
    store = ApiKeyStore(settings)
    assert store.create("a") != store.create("b")


def test_verify_compares_against_every_stored_digest_whichever_matches(settings, monkeypatch):
    store = ApiKeyStore(settings)
    keys = [store.create(f"k{i}") for i in range(4)]
    calls = []
    real = api_keys.hmac.compare_digest

    def counting(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(api_keys.hmac, "compare_digest", counting)
    for key in (keys[0], keys[3], "tk_wrong"):
        calls.clear()
        store.verify(key)
        assert len(calls) == 4  # no early exit on the first match
        assert {a for a, _ in calls} == {hash_key(k) for k in keys}


def test_a_key_created_by_another_process_is_accepted_without_restart(settings):
    running = ApiKeyStore(settings)
    assert running.verify("tk_anything") is None  # loads the (missing) file
    key = ApiKeyStore(settings).create("late")  # e.g. `tidings keys create` in another process
    assert running.verify(key) == "late"


def test_revoke_removes_the_key_for_running_stores_too(settings):
    running = ApiKeyStore(settings)
    key = running.create("shop")
    assert running.verify(key) == "shop"
    assert ApiKeyStore(settings).revoke("shop") is True
    assert running.verify(key) is None
    assert running.revoke("shop") is False


def test_list_shows_names_and_digests_never_keys(settings):
    store = ApiKeyStore(settings)
    key = store.create("shop")
    [listed] = store.list()
    assert listed["name"] == "shop" and listed["sha256"] == hash_key(key) and listed["created_at"]
    assert key not in repr(listed)


def test_digests_from_settings_are_accepted(settings):
    key = "tk_from-the-environment"
    configured = settings.model_copy(update={"api_key_hashes": f" {hash_key(key).upper()} , "})
    store = ApiKeyStore(configured)
    assert store.verify(key) == f"env:{hash_key(key)[:8]}"
    assert store.verify("tk_other") is None


def test_a_malformed_digest_in_settings_is_refused_by_name(settings):
    with pytest.raises(ValueError, match="not a sha256 hex digest"):
        ApiKeyStore(settings.model_copy(update={"api_key_hashes": "abc123"}))


@pytest.mark.parametrize("name", ["", "has space", "x" * 65, "-leading"])
def test_bad_key_names_are_refused(settings, name):
    with pytest.raises(ValueError, match="invalid key name"):
        ApiKeyStore(settings).create(name)


def test_a_duplicate_name_is_refused(settings):
    store = ApiKeyStore(settings)
    store.create("shop")
    with pytest.raises(ValueError, match="already exists"):
        store.create("shop")


def test_a_corrupt_key_file_is_named(settings):
    settings.api_keys_file.parent.mkdir(parents=True)
    settings.api_keys_file.write_text("{not json")
    with pytest.raises(ValueError, match="not a valid API key file"):
        ApiKeyStore(settings).verify("tk_x")
