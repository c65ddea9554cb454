"""DKIM signatures (RFC 6376, rsa-sha256, c=relaxed/simple) for outgoing messages.

The RSA signature is made with `cryptography` (dkimpy's pure-Python RSA takes ~15 ms per message
here against ~0.4 ms for OpenSSL). Everything else is done here for our own messages: header
canonicalization (relaxed; a fast path when nothing is folded or doubled), the selection of the
signed headers and the signature header's own canonical form (the same bytes dkimpy hashes, checked
in tests/integration/test_dkim.py, where dkimpy also verifies every signature), and the body with
`simple`: our bodies are already canonical (CRLF, quoted-printable or base64, no trailing
whitespace), so only trailing empty lines go. That keeps the Python part of a signature near 15 µs.
The signed header list covers the unsubscribe headers (RFC 8058) and names From once more than it
occurs, so no second From can be added unnoticed.

`cryptography` keeps the GIL while it signs (measured with 48.0: two signing threads are no faster
than one), so a thread cannot put the RSA work on the second core. `DkimSigningProcess` does: the
signing input is made here, the RSA signatures in one child process, in batches so one round trip
serves several messages.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import multiprocessing
import os
import re
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from datetime import datetime
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

SIGNED_HEADERS = (
    "from", "to", "subject", "date", "message-id", "list-unsubscribe", "list-unsubscribe-post",
    "list-id", "feedback-id", "mime-version", "content-type", "from",
)
_FIELD_START = re.compile(rb"\r\n(?![ \t])")
_FOLD = re.compile(rb"\r\n(?=[ \t])")
_WSP = re.compile(rb"[ \t]+")


class DkimError(ValueError):
    """The DKIM key or settings cannot be used; the message names the problem."""


class DkimSigner:
    def __init__(self, *, domain: str, selector: str, private_key_pem: bytes) -> None:
        try:
            key = serialization.load_pem_private_key(private_key_pem, password=None)
        except (ValueError, TypeError) as exc:
            raise DkimError(f"DKIM key: not an unencrypted PEM private key ({exc})") from None
        if not isinstance(key, rsa.RSAPrivateKey):
            raise DkimError("DKIM key: only RSA keys are supported (rsa-sha256)")
        if key.key_size < 1024:
            raise DkimError(f"DKIM key: {key.key_size} bits is too short (RFC 8301 asks for 1024 at least)")
        for name, value in (("domain", domain), ("selector", selector)):
            if not value or any(c in value for c in ";=\r\n \t"):
                raise DkimError(f"DKIM {name} {value!r} is empty or has forbidden characters")
        self.domain = domain.lower()
        self.selector = selector
        self._key = key
        self._pem = private_key_pem
        self._include = tuple(h.encode() for h in SIGNED_HEADERS)
        self._tags_head = b"v=1; a=rsa-sha256; c=relaxed/simple; d=" + self.domain.encode() + b"; s=" + selector.encode()

    @classmethod
    def from_file(cls, path: str | Path, *, domain: str, selector: str) -> DkimSigner:
        try:
            pem = Path(path).read_bytes()
        except OSError as exc:
            raise DkimError(f"DKIM key file {path}: {exc.strerror or exc}") from None
        return cls(domain=domain, selector=selector, private_key_pem=pem)

    def sign(self, message: bytes, now: datetime) -> bytes:
        """The message with a DKIM-Signature header in front."""
        tags, data = self.signing_input(message, now)
        return assemble(message, tags, self._key.sign(data, padding.PKCS1v15(), hashes.SHA256()))

    def signing_input(self, message: bytes, now: datetime) -> tuple[bytes, bytes]:
        """(the signature header's tags up to `b=`, the bytes the RSA signature is made over)."""
        header_block, sep, body = message.partition(b"\r\n\r\n")
        if not sep:
            raise DkimError("message has no blank line between headers and body")
        headers = _relaxed_headers(header_block)
        body_hash = base64.b64encode(hashlib.sha256(_simple_body(body)).digest())
        tags = (
            self._tags_head
            + b"; t=" + str(int(now.timestamp())).encode()
            + b";\r\n\th=" + b":".join(self._include)
            + b";\r\n\tbh=" + body_hash
            + b";\r\n\tb="
        )
        return tags, _header_hash_input(headers, self._include, tags)


def assemble(message: bytes, tags: bytes, signature: bytes) -> bytes:
    return b"DKIM-Signature: " + tags + base64.b64encode(signature) + b"\r\n" + message


def _relaxed_headers(block: bytes) -> list[tuple[bytes, bytes]]:
    """RFC 6376 3.4.2: lower-case names, unfolded values, runs of WSP as one SP, no WSP at the ends."""
    out = []
    for field in block.split(b"\r\n") if b"\r\n " not in block and b"\r\n\t" not in block else _FIELD_START.split(block):
        name, sep, value = field.partition(b":")
        if not sep:
            raise DkimError(f"header line without a colon: {field[:40]!r}")
        if b"\r\n" in value or b"\t" in value or b"  " in value:
            value = _WSP.sub(b" ", _FOLD.sub(b"", value))
        out.append((name.rstrip(b" \t").lower(), value.strip(b" \t") + b"\r\n"))
    return out


def _header_hash_input(headers: list[tuple[bytes, bytes]], include: tuple[bytes, ...], tags: bytes) -> bytes:
    """What RFC 6376 3.7 hashes: each `h=` header, bottom-up (a name listed twice takes the next one
    up; a missing one counts as empty, which is what makes over-signing From work), then the
    signature header itself, relaxed and without its final CRLF. Equal to dkimpy's hash_headers
    (tests/integration/test_dkim.py checks it byte for byte)."""
    unused: dict[bytes, list[int]] = {}
    for index, (name, _) in enumerate(headers):
        unused.setdefault(name, []).append(index)
    parts = []
    for name in include:
        indices = unused.get(name)
        if indices:
            name_found, value = headers[indices.pop()]
            parts.append(name_found + b":" + value)
    # The tags are ours: single spaces, folded only as ";CRLF TAB", so relaxing them is one replace.
    parts.append(b"dkim-signature:" + tags.replace(b"\r\n\t", b" "))
    return b"".join(parts)


def _simple_body(body: bytes) -> bytes:
    """RFC 6376 3.4.3: the body with trailing empty lines removed, ending in one CRLF."""
    return body.rstrip(b"\r\n") + b"\r\n"


# -- signing on another core ---------------------------------------------------------------

_child_key: rsa.RSAPrivateKey | None = None


def _load_child_key(pem: bytes, parent: int) -> None:
    global _child_key
    _child_key = serialization.load_pem_private_key(pem, password=None)  # type: ignore[assignment]
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True, name="dkim-parent-watch").start()


def _exit_with_parent(parent: int) -> None:
    """A SIGKILLed worker closes no pipes the child waits on (the child holds both ends), so it looks."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(0)


def _sign_in_child(blobs: list[bytes]) -> list[bytes]:
    assert _child_key is not None
    return [_child_key.sign(blob, padding.PKCS1v15(), hashes.SHA256()) for blob in blobs]


class DkimSigningProcess:
    """Makes RSA signatures for `signer` in one child process; the event loop only awaits them.

    `submit` prepares the messages here (~30 µs each) and sends their signing inputs to the child
    in one batch. A child that dies is replaced on the next batch; the batch it was holding fails,
    and a message that could not be signed is not sent (the caller skips it).
    """

    def __init__(self, signer: DkimSigner) -> None:
        self.signer = signer
        self._pool: ProcessPoolExecutor | None = None

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            # spawn, not fork: the worker process has threads (Kafka clients) that fork would copy mid-state.
            self._pool = ProcessPoolExecutor(
                max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                initializer=_load_child_key, initargs=(self.signer._pem, os.getpid()),
            )
        return self._pool

    def submit(self, messages: list[bytes], now: datetime) -> list[asyncio.Future[bytes]]:
        """One future per message, resolving to the signed message (or failing with the reason)."""
        loop = asyncio.get_running_loop()
        results: list[asyncio.Future[bytes]] = [loop.create_future() for _ in messages]
        inputs = []
        for message, result in zip(messages, results):
            try:
                inputs.append(self.signer.signing_input(message, now))
            except DkimError as exc:
                result.set_exception(exc)
                inputs.append(None)
        pending = [(m, r, i) for m, r, i in zip(messages, results, inputs) if i is not None]
        if not pending:
            return results
        try:
            job = asyncio.wrap_future(self._executor().submit(_sign_in_child, [i[1] for _, _, i in pending]))
        except (BrokenProcessPool, RuntimeError) as exc:
            self._pool = None
            for _, result, _ in pending:
                result.set_exception(DkimError(f"DKIM signing process unavailable: {exc}"))
            return results

        def deliver(job: asyncio.Future[list[bytes]]) -> None:
            if job.cancelled() or job.exception() is not None:
                failure = job.exception() if not job.cancelled() else None
                if isinstance(failure, BrokenProcessPool):
                    self._pool = None  # the next batch starts a new child
                for _, result, _ in pending:
                    if not result.done():
                        result.set_exception(DkimError(f"DKIM signing failed: {failure!r}"))
                return
            for (message, result, (tags, _)), signature in zip(pending, job.result()):
                if not result.done():
                    result.set_result(assemble(message, tags, signature))

        job.add_done_callback(deliver)
        return results

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def signer_from_settings(settings, sending_domain: str) -> DkimSigner | None:  # type: ignore[no-untyped-def]
    """The signer the settings ask for, or None when DKIM is not configured."""
    if not settings.dkim_selector and not settings.dkim_key_path:
        return None
    if not (settings.dkim_selector and settings.dkim_key_path):
        raise DkimError("DKIM needs both TIDINGS_DKIM_SELECTOR and TIDINGS_DKIM_KEY_PATH")
    return DkimSigner.from_file(settings.dkim_key_path, domain=sending_domain, selector=settings.dkim_selector)
