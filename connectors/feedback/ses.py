"""Amazon SES feedback delivered by SNS: signature verification and notification parsing.

SNS signs each message (SignatureVersion 1: SHA1withRSA, 2: SHA256withRSA) over a canonical string
of its fields, with a certificate it names in `SigningCertURL`. The URL is accepted only over https
on `sns.<region>.amazonaws.com` with a `.pem` path; the certificate must chain to a trusted root
(the system's by default; tests pass their own CA), be valid now, and be issued to that host.
Fetching is pluggable (`fetch_pem`) and certificates are cached by URL.
"""

from __future__ import annotations

import base64
import json
import re
import ssl
import warnings
from collections.abc import Callable
from datetime import datetime
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from connectors.feedback.report import Feedback, FeedbackError, bounce_verdict, find_ref

_SNS_HOST = re.compile(r"^sns\.[a-z]{2}(?:-[a-z]+)+-\d\.amazonaws\.com$")
_NOTIFICATION_FIELDS = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
_SUBSCRIPTION_FIELDS = ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type")
MAX_CACHED_CERTS = 16


class SnsError(FeedbackError):
    """An SNS message is unsigned, badly signed, or from a certificate we do not trust."""


def check_cert_url(url: str, *, pem: bool = True) -> str:
    """The host of an SNS URL (signing certificate, or SubscribeURL with `pem=False`); SnsError if not SNS's."""
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname or not _SNS_HOST.match(parts.hostname) or parts.port not in (None, 443):
        raise SnsError(f"URL {url[:200]!r}: must be https://sns.<region>.amazonaws.com/...")
    if parts.username or parts.password or (pem and not parts.path.endswith(".pem")):
        raise SnsError("SigningCertURL: must name a .pem file" if pem else "SubscribeURL: no credentials allowed")
    return parts.hostname


def system_roots() -> list[x509.Certificate]:
    paths = ssl.get_default_verify_paths()
    try:
        with open(paths.cafile or paths.openssl_cafile, "rb") as handle, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # one distro root has a non-positive serial; it is not SNS's
            return x509.load_pem_x509_certificates(handle.read())
    except (OSError, TypeError, ValueError):
        return []


def download_pem(url: str) -> bytes:
    import httpx

    response = httpx.get(url, timeout=10, follow_redirects=False)
    response.raise_for_status()
    return response.content


class SnsVerifier:
    def __init__(
        self,
        fetch_pem: Callable[[str], bytes] = download_pem,
        roots: list[x509.Certificate] | None = None,
        topic_arns: tuple[str, ...] = (),
    ) -> None:
        self.fetch_pem = fetch_pem
        self.roots = roots if roots is not None else system_roots()
        self.topic_arns = topic_arns
        self._certs: dict[str, x509.Certificate] = {}

    def verify(self, message: dict, now: datetime) -> None:
        """Raise SnsError unless `message` is signed by SNS (and from an allowed topic)."""
        if not isinstance(message, dict):
            raise SnsError("SNS body must be a JSON object")
        version = str(message.get("SignatureVersion", ""))
        if version not in ("1", "2"):
            raise SnsError("SignatureVersion must be 1 or 2 (unsigned messages are refused)")
        if self.topic_arns and message.get("TopicArn") not in self.topic_arns:
            raise SnsError("TopicArn is not one this endpoint accepts")
        signature_text = message.get("Signature")
        url = message.get("SigningCertURL") or message.get("SigningCertUrl")
        if not isinstance(signature_text, str) or not isinstance(url, str):
            raise SnsError("Signature and SigningCertURL are required")
        signed_text = canonical_string(message)
        host = check_cert_url(url)
        certificate = self._certificate(url, host, now)
        public_key = certificate.public_key()
        if not isinstance(public_key, rsa.RSAPublicKey):
            raise SnsError("signing certificate does not hold an RSA key")
        try:
            signature = base64.b64decode(signature_text, validate=True)
            algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()
            public_key.verify(signature, signed_text, padding.PKCS1v15(), algorithm)
        except (InvalidSignature, ValueError):
            raise SnsError("bad SNS signature") from None

    def _certificate(self, url: str, host: str, now: datetime) -> x509.Certificate:
        if url in self._certs:
            cert = self._certs[url]
            if cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
                return cert
        try:
            chain = x509.load_pem_x509_certificates(self.fetch_pem(url))
        except Exception as exc:  # noqa: BLE001 - any fetch or parse failure means "not verified"
            raise SnsError(f"signing certificate could not be loaded: {type(exc).__name__}") from None
        if not self.roots:
            raise SnsError("no trusted root certificates to check the SNS certificate against")
        try:
            verifier = (PolicyBuilder().store(Store(self.roots)).time(now.replace(tzinfo=None))
                        .build_server_verifier(x509.DNSName(host)))
            verifier.verify(chain[0], chain[1:])
        except (VerificationError, ValueError) as exc:
            raise SnsError(f"signing certificate not trusted for {host}: {exc}") from None
        if len(self._certs) >= MAX_CACHED_CERTS:
            self._certs.clear()
        self._certs[url] = chain[0]
        return chain[0]


def canonical_string(message: dict) -> bytes:
    kind = message.get("Type")
    if kind == "Notification":
        names = _NOTIFICATION_FIELDS
    elif kind in ("SubscriptionConfirmation", "UnsubscribeConfirmation"):
        names = _SUBSCRIPTION_FIELDS
    else:
        raise SnsError(f"unknown SNS message Type {str(kind)[:40]!r}")
    lines = []
    for name in names:
        if name in message and message[name] is not None:
            lines.append(f"{name}\n{message[name]}\n")
        elif name != "Subject":
            raise SnsError(f"SNS message has no {name}")
    return "".join(lines).encode()


def parse_notification(message: dict) -> list[Feedback]:
    """Bounces and complaints in an SES notification (the SNS `Message`, a JSON string)."""
    try:
        body = json.loads(message["Message"])
    except (KeyError, TypeError, ValueError):
        raise FeedbackError("SNS Message is not SES notification JSON") from None
    if not isinstance(body, dict):
        raise FeedbackError("SES notification must be a JSON object")
    kind = body.get("notificationType") or body.get("eventType")
    mail = body.get("mail") if isinstance(body.get("mail"), dict) else {}
    ref, message_id = _ref_from_mail(mail)
    source_id = str(message.get("MessageId", ""))[:100]
    if kind == "Bounce":
        bounce = body.get("bounce") or {}
        permanent = bounce.get("bounceType") == "Permanent"
        out = []
        for item in bounce.get("bouncedRecipients") or []:
            diagnostic = str(item.get("diagnosticCode", ""))[:300]
            status = str(item.get("status", ""))
            code = int(m.group(1)) if (m := re.search(r"(?<!\d)([45]\d\d)(?!\d)", diagnostic)) else None
            if permanent:
                code, status, bounce_type = bounce_verdict(code, status, diagnostic, permanent=True)
                out.append(Feedback("bounced", "ses", source_id, str(item.get("emailAddress", "")), ref, message_id,
                                    code, status, bounce_type, diagnostic or str(bounce.get("bounceSubType", ""))))  # type: ignore[arg-type]
            else:
                out.append(Feedback("deferred", "ses", source_id, str(item.get("emailAddress", "")), ref, message_id,
                                    code, status, "", diagnostic or f"transient: {bounce.get('bounceSubType', '')}"))
        return out
    if kind == "Complaint":
        complaint = body.get("complaint") or {}
        if complaint.get("complaintFeedbackType") == "not-spam":
            return []
        return [Feedback("complained", "ses", source_id, str(r.get("emailAddress", "")), ref, message_id,
                         detail=f"{complaint.get('complaintFeedbackType') or 'complaint'} via SES")
                for r in complaint.get("complainedRecipients") or []]
    return []  # Delivery, Send, Open, Click: the sender and the tracking routes record those


def _ref_from_mail(mail: dict) -> tuple[str, str]:
    headers = mail.get("headers") if isinstance(mail.get("headers"), list) else []
    text = "\n".join(f"{h.get('name')}: {h.get('value')}" for h in headers if isinstance(h, dict))
    ref, message_id = find_ref(text)
    common = mail.get("commonHeaders") if isinstance(mail.get("commonHeaders"), dict) else {}
    return ref, message_id or str(common.get("messageId", ""))[:255]
