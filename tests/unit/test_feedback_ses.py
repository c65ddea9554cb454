"""SES via SNS: signature versions 1 and 2 against a test CA, certificate URL rules, parsing."""

from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta, timezone

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from connectors.feedback.report import ref_header, to_delivery
from connectors.feedback.ses import SnsError, SnsVerifier, canonical_string, check_cert_url, parse_notification
from domain.tracking import Signer

NOW = datetime(2026, 11, 2, 9, 0, tzinfo=timezone.utc)
HOST = "sns.eu-west-1.amazonaws.com"
CERT_URL = f"https://{HOST}/SimpleNotificationService-abc.pem"
SIGNER = Signer({"k1": b"k" * 32}, "k1")


def _cert(subject: str, key, issuer_name: str, issuer_key, *, ca: bool, now: datetime, san: str | None = None):  # type: ignore[no-untyped-def]
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_name)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False)
    )
    if ca:
        builder = builder.add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
    else:
        builder = builder.add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(san or subject)]), critical=False)
        builder = builder.add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def make_pki(now: datetime):  # type: ignore[no-untyped-def]
    """A test root, an SNS-like leaf it issued (valid around `now`), and a self-issued rogue leaf."""
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca = _cert("Test Root", ca_key, "Test Root", ca_key, ca=True, now=now)
    leaf_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    leaf = _cert(HOST, leaf_key, "Test Root", ca_key, ca=False, now=now)
    rogue_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    rogue = _cert(HOST, rogue_key, "Rogue", rogue_key, ca=False, now=now)
    return ca, leaf, leaf_key, rogue, rogue_key


@pytest.fixture(scope="module")
def pki():  # type: ignore[no-untyped-def]
    return make_pki(NOW)


def pem(cert) -> bytes:  # type: ignore[no-untyped-def]
    return cert.public_bytes(serialization.Encoding.PEM)


def sns_message(key, version: str = "2", ref_signer: Signer = SIGNER, **overrides) -> dict:  # type: ignore[no-untyped-def]
    ref = ref_header(ref_signer, "intent-5", "sub-5", NOW).decode().split(": ", 1)[1].strip()
    ses = {"notificationType": "Bounce",
           "bounce": {"bounceType": "Permanent", "bounceSubType": "General",
                      "bouncedRecipients": [{"emailAddress": "gone@example.com", "status": "5.1.1",
                                             "diagnosticCode": "smtp; 550 5.1.1 user unknown"}]},
           "mail": {"messageId": "ses-1", "headers": [{"name": "X-Tidings-Ref", "value": ref}],
                    "commonHeaders": {"messageId": "<m-5@news.tidings.test>"}}}
    message = {"Type": "Notification", "MessageId": "sns-msg-1", "TopicArn": "arn:aws:sns:eu-west-1:1:ses",
               "Message": json.dumps(ses), "Timestamp": "2026-11-02T09:00:00.000Z", "SignatureVersion": version,
               "SigningCertURL": CERT_URL}
    message.update(overrides)
    algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()
    message["Signature"] = base64.b64encode(key.sign(canonical_string(message), padding.PKCS1v15(), algorithm)).decode()
    return message


def verifier(pki, served: bytes | None = None) -> SnsVerifier:  # type: ignore[no-untyped-def]
    ca, leaf = pki[0], pki[1]
    fetched: list[str] = []

    def fetch(url: str) -> bytes:
        fetched.append(url)
        return served if served is not None else pem(leaf)

    v = SnsVerifier(fetch_pem=fetch, roots=[ca])
    v.fetched = fetched  # type: ignore[attr-defined]
    return v


@pytest.mark.parametrize("version", ["1", "2"])
def test_signature_versions_1_and_2_verify_and_certificates_are_cached(pki, version: str) -> None:  # type: ignore[no-untyped-def]
    v = verifier(pki)
    v.verify(sns_message(pki[2], version), NOW)
    v.verify(sns_message(pki[2], version, MessageId="sns-msg-2"), NOW)
    assert v.fetched == [CERT_URL]  # type: ignore[attr-defined]


def test_tampered_message_and_wrong_key_are_refused(pki) -> None:  # type: ignore[no-untyped-def]
    message = sns_message(pki[2])
    message["Message"] = message["Message"].replace("gone@", "victim@")
    with pytest.raises(SnsError, match="bad SNS signature"):
        verifier(pki).verify(message, NOW)
    with pytest.raises(SnsError, match="bad SNS signature"):
        verifier(pki).verify(sns_message(pki[4]), NOW)  # signed by a key the certificate does not hold


def test_certificate_not_issued_by_a_trusted_root_is_refused(pki) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SnsError, match="not trusted"):
        verifier(pki, served=pem(pki[3])).verify(sns_message(pki[4]), NOW)
    with pytest.raises(SnsError, match="not trusted"):
        verifier(pki).verify(sns_message(pki[2]), NOW + timedelta(days=60))  # expired


@pytest.mark.parametrize(
    "url",
    ["http://sns.eu-west-1.amazonaws.com/x.pem", "https://sns.eu-west-1.amazonaws.com.evil.test/x.pem",
     "https://evil.test/sns.eu-west-1.amazonaws.com/x.pem", "https://sns.eu-west-1.amazonaws.com/x.txt",
     "https://user:pw@sns.eu-west-1.amazonaws.com/x.pem", "https://sns.eu-west-1.amazonaws.com:8443/x.pem",
     "https://s3.eu-west-1.amazonaws.com/x.pem"],
)
def test_only_sns_hosts_over_https_are_fetched(pki, url: str) -> None:  # type: ignore[no-untyped-def]
    v = verifier(pki)
    with pytest.raises(SnsError, match="SigningCertURL|URL"):
        v.verify(sns_message(pki[2], SigningCertURL=url), NOW)
    assert v.fetched == []  # type: ignore[attr-defined]
    assert check_cert_url(CERT_URL) == HOST


@pytest.mark.parametrize("change, problem", [({"SignatureVersion": "0"}, "SignatureVersion"),
                                             ({"Signature": None}, "required"), ({"Type": "Other"}, "Type")])
def test_unsigned_or_malformed_messages_are_refused(pki, change: dict, problem: str) -> None:  # type: ignore[no-untyped-def]
    message = sns_message(pki[2])
    message.update(change)
    with pytest.raises(SnsError, match=problem):
        verifier(pki).verify(message, NOW)


def test_topic_allow_list(pki) -> None:  # type: ignore[no-untyped-def]
    v = SnsVerifier(fetch_pem=lambda url: pem(pki[1]), roots=[pki[0]], topic_arns=("arn:aws:sns:eu-west-1:1:other",))
    with pytest.raises(SnsError, match="TopicArn"):
        v.verify(sns_message(pki[2]), NOW)


def test_bounce_and_complaint_notifications_become_reports(pki) -> None:  # type: ignore[no-untyped-def]
    [bounce] = parse_notification(sns_message(pki[2]))
    assert (bounce.kind, bounce.bounce_type, bounce.code, bounce.status, bounce.source_id) == (
        "bounced", "hard", 550, "5.1.1", "sns-msg-1")
    assert to_delivery(bounce, SIGNER, NOW).intent_id == "intent-5"
    complaint = json.dumps({"notificationType": "Complaint", "mail": {"headers": []},
                            "complaint": {"complainedRecipients": [{"emailAddress": "a@b.test"}], "complaintFeedbackType": "abuse"}})
    [report] = parse_notification({"Message": complaint, "MessageId": "m2"})
    assert report.kind == "complained"
    transient = json.loads(sns_message(pki[2])["Message"])
    transient["bounce"]["bounceType"] = "Transient"
    assert parse_notification({"Message": json.dumps(transient), "MessageId": "m3"})[0].kind == "deferred"
