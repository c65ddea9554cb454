from datetime import datetime, timezone

from domain.publishing import content_hash, next_publication

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)


def test_first_publication_is_version_one():
    pub = next_publication("journey", "welcome", {"id": "welcome", "steps": [1]}, None, NOW)
    assert pub is not None and pub.version == 1 and pub.key == "journey:welcome"


def test_unchanged_content_creates_no_version_and_key_order_does_not_matter():
    first = next_publication("segment", "s", {"a": 1, "b": 2}, None, NOW)
    assert next_publication("segment", "s", {"b": 2, "a": 1}, first, NOW) is None


def test_changed_content_bumps_the_version():
    first = next_publication("template", "t", {"subject": "a"}, None, NOW)
    second = next_publication("template", "t", {"subject": "b"}, first, NOW)
    assert second.version == 2 and second.content_hash == content_hash({"subject": "b"})
