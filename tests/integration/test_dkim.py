"""DKIM signatures made by connectors.dkim, verified by dkimpy against a DNS stub."""

from __future__ import annotations

import base64
from datetime import datetime, timezone
from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from connectors.dkim import DkimError, DkimSigner, signer_from_settings
from domain.messages import build_message
from domain.templates import RenderedEmail

pytestmark = pytest.mark.integration

DOMAIN = "news.tidings.test"
NOW = datetime(2026, 11, 2, 9, 30, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def pem(key) -> bytes:  # type: ignore[no-untyped-def]
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def dns_for(key, selector: str = "s1"):  # type: ignore[no-untyped-def]
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(der)

    def lookup(name: bytes, timeout: int = 5) -> bytes | None:
        return record if name == f"{selector}._domainkey.{DOMAIN}.".encode() else None

    return lookup


def message() -> bytes:
    rendered = RenderedEmail(subject="Your  cart ✓", preheader="p", html="<p>Hi   there</p>\n", text="Hi   there \n")
    return build_message(
        rendered, intent_id="i-1", mail_from=f"Demo <hello@{DOMAIN}>", to="ada@example.com",
        sending_domain=DOMAIN, date=NOW, unsubscribe_url="https://t.test/t/u/abc",
        unsubscribe_mailto=f"mailto:unsub@{DOMAIN}?subject=i-1", list_id=f"j.{DOMAIN}", feedback_id="s:j:t:tidings",
    )


def test_signature_verifies_with_dkimpy_and_covers_the_unsubscribe_headers(key) -> None:  # type: ignore[no-untyped-def]
    signed = DkimSigner(domain=DOMAIN, selector="s1", private_key_pem=pem(key)).sign(message(), NOW)
    assert dkim.verify(signed, dnsfunc=dns_for(key))
    header = signed.split(b"\r\n\r\n", 1)[0].decode()
    signed_list = header.split("h=", 1)[1].split(";", 1)[0]
    for name in ("from", "to", "subject", "date", "message-id", "list-unsubscribe", "list-unsubscribe-post"):
        assert name in signed_list.split(":")


@pytest.mark.parametrize(
    "tamper",
    [
        lambda m: m.replace(b"https://t.test/t/u/abc", b"https://evil.test/u/abc"),
        lambda m: m.replace(b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n", b""),
        lambda m: m.replace(b"Hi   there", b"Hi   th3re"),
        lambda m: m.replace(b"Subject:", b"From: eve@evil.test\r\nSubject:", 1),
    ],
    ids=["unsubscribe-url", "unsubscribe-post-removed", "body", "second-from-added"],
)
def test_tampering_breaks_the_signature(key, tamper) -> None:  # type: ignore[no-untyped-def]
    signed = DkimSigner(domain=DOMAIN, selector="s1", private_key_pem=pem(key)).sign(message(), NOW)
    assert not dkim.verify(tamper(signed), dnsfunc=dns_for(key))


def test_a_different_key_in_dns_fails(key) -> None:  # type: ignore[no-untyped-def]
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    signed = DkimSigner(domain=DOMAIN, selector="s1", private_key_pem=pem(key)).sign(message(), NOW)
    assert not dkim.verify(signed, dnsfunc=dns_for(other))


def test_bad_keys_and_settings_are_clear_errors(tmp_path: Path, settings) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(DkimError, match="PEM"):
        DkimSigner(domain=DOMAIN, selector="s1", private_key_pem=b"not a key")
    with pytest.raises(DkimError, match="only RSA"):
        DkimSigner(domain=DOMAIN, selector="s1", private_key_pem=pem(ec.generate_private_key(ec.SECP256R1())))
    with pytest.raises(DkimError, match="selector"):
        DkimSigner(domain=DOMAIN, selector="s1; x=y", private_key_pem=pem(rsa.generate_private_key(65537, 1024)))
    with pytest.raises(DkimError, match="key file"):
        DkimSigner.from_file(tmp_path / "missing.pem", domain=DOMAIN, selector="s1")
    assert signer_from_settings(settings, DOMAIN) is None
    with pytest.raises(DkimError, match="both"):
        signer_from_settings(settings.model_copy(update={"dkim_selector": "s1"}), DOMAIN)


def test_the_senders_composed_message_verifies(key, settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from domain.events import SendIntent
    from domain.templates import compile_template, parse_template
    from infra.token_keys import load_token_keys
    from processors.sender import Composer

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    template = compile_template(parse_template(
        'id: t\nsubject: "Hi {{ subscriber.first_name }} ✓"\nhtml: "<p>Hi</p><a href=\\"https://shop.test/\\">x</a>"\n', "t.yaml"))
    intent = SendIntent(intent_id="i-1", subscriber_id="s-1", journey_id="j", journey_version=1, step_id="s",
                        template_id="t", to="ada@example.com", variables={"subscriber": {"first_name": "Zoë"}},
                        trigger_event_id="e", created_at=NOW)
    signer = DkimSigner(domain=DOMAIN, selector="s1", private_key_pem=pem(key))
    prepared = Composer(settings.model_copy(update={"mail_from": f"Demo <hello@{DOMAIN}>"}), load_token_keys(settings),
                        signer, DOMAIN).compose(intent, template, 1, NOW)
    assert prepared.message.startswith(b"DKIM-Signature:")
    assert dkim.verify(prepared.message, dnsfunc=dns_for(key))


class _Collect:
    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def update(self, data: bytes) -> None:
        self.parts.append(data)


@pytest.mark.parametrize("extra", [b"", b"X-Extra:  a \r\n\tb\r\nFrom: eve@evil.test\r\nsubject:\tsecond\r\n"])
def test_signing_input_is_what_dkimpy_hashes(key, extra: bytes) -> None:  # type: ignore[no-untyped-def]
    """Our header selection and canonicalization give dkimpy's bytes, also for folded and repeated headers."""
    from dkim import hash_headers
    from dkim.canonicalization import CanonicalizationPolicy

    from connectors.dkim import _FIELD_START

    signer = DkimSigner(domain=DOMAIN, selector="s1", private_key_pem=pem(key))
    msg = extra + message()
    tags, data = signer.signing_input(msg, NOW)
    policy = CanonicalizationPolicy.from_c_value(b"relaxed/simple")
    raw = [tuple(f.split(b":", 1)) for f in _FIELD_START.split(msg.partition(b"\r\n\r\n")[0])]
    collected = _Collect()
    hash_headers(collected, policy, policy.canonicalize_headers([(n, v + b"\r\n") for n, v in raw]),
                 signer._include, (b"DKIM-Signature", b" " + tags), None)
    assert b"".join(collected.parts) == data


async def test_the_signing_process_signs_batches_and_survives_its_child_dying(key) -> None:  # type: ignore[no-untyped-def]
    import asyncio
    import os
    import signal

    from connectors.dkim import DkimSigningProcess

    process = DkimSigningProcess(DkimSigner(domain=DOMAIN, selector="s1", private_key_pem=pem(key)))
    try:
        signed = await asyncio.gather(*process.submit([message(), message(), b"no blank line"], NOW),
                                      return_exceptions=True)
        assert all(dkim.verify(m, dnsfunc=dns_for(key)) for m in signed[:2])
        assert isinstance(signed[2], DkimError)
        assert process._pool is not None
        for pid in list(process._pool._processes):
            os.kill(pid, signal.SIGKILL)
        lost = await asyncio.gather(*process.submit([message()], NOW), return_exceptions=True)
        assert isinstance(lost[0], DkimError)  # not sent unsigned: the caller skips it
        again = await asyncio.gather(*process.submit([message()], NOW))
        assert dkim.verify(again[0], dnsfunc=dns_for(key))
    finally:
        process.close()


def test_the_signing_child_exits_when_its_worker_is_killed(tmp_path: Path, key) -> None:  # type: ignore[no-untyped-def]
    import os
    import subprocess
    import sys
    import time

    (tmp_path / "key.pem").write_bytes(pem(key))
    script = tmp_path / "worker.py"
    script.write_text(
        "import asyncio, os, signal\n"
        "from datetime import datetime, timezone\n"
        "from connectors.dkim import DkimSigner, DkimSigningProcess\n"
        "async def main():\n"
        f"    signer = DkimSigner.from_file({str(tmp_path / 'key.pem')!r}, domain='x.test', selector='s')\n"
        "    process = DkimSigningProcess(signer)\n"
        "    await asyncio.gather(*process.submit([b'From: a@x.test\\r\\n\\r\\nbody\\r\\n'], datetime.now(timezone.utc)))\n"
        "    print(*process._pool._processes, flush=True)\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "if __name__ == '__main__':\n"
        "    asyncio.run(main())\n"
    )
    worker = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True,
                              cwd=Path(__file__).resolve().parents[2])
    child = int(worker.stdout.readline())  # type: ignore[union-attr]
    worker.wait(timeout=30)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.kill(child, 9)
    raise AssertionError("the signing child outlived its killed worker")
