import pytest

from domain.definitions_store import DefinitionsApplication, DefinitionStoreError, split_key
from domain.subscribers import SubscriberError, SubscribersApplication, consent_change_of


class ReversingCipher:
    """A stand-in cipher for pure tests: enough to see nothing is stored in clear."""

    def __init__(self):
        self.keys = set()

    def seal(self, subscriber_id, plaintext):
        self.keys.add(subscriber_id)
        return "sealed:" + plaintext[::-1]

    def open(self, subscriber_id, sealed):
        return sealed[len("sealed:"):][::-1] if subscriber_id in self.keys else None

    def destroy(self, subscriber_id):
        self.keys.discard(subscriber_id)


@pytest.fixture
def app():
    return SubscribersApplication(env={"PERSISTENCE_MODULE": "eventsourcing.popo"}, cipher=ReversingCipher())


def test_registering_stores_the_email_sealed(app):
    app.register_or_update("s1", "ann@example.com", lists=["news"])
    stored = [n.state for n in app.notification_log.select(start=1, limit=10)]
    assert all(b"ann@example.com" not in s for s in stored)
    assert app.view("s1").email == "ann@example.com"


def test_an_unchanged_update_records_nothing(app):
    app.register_or_update("s1", "ann@example.com")
    app.register_or_update("s1", "ann@example.com")
    assert app.view("s1").version == 1
    app.register_or_update("s1", "ann@example.org")
    assert app.view("s1").version == 2


def test_double_opt_in_is_pending_until_confirmed(app):
    app.register_or_update("s1", "ann@example.com", lists=["news"], double_opt_in=True)
    assert app.view("s1").lists == {"news": "pending"}
    app.change("s1", "confirm_opt_in", list_id="news", actor="link")
    assert app.view("s1").lists == {"news": "subscribed"}
    with pytest.raises(SubscriberError, match="no pending"):
        app.change("s1", "confirm_opt_in", list_id="news", actor="link")


def test_repeated_unsubscribes_record_one_event(app):
    app.register_or_update("s1", "ann@example.com")
    app.change("s1", "unsubscribe", list_id=None, actor="a", reason="one-click")
    app.change("s1", "unsubscribe", list_id=None, actor="a", reason="one-click")
    assert [h.event for h in app.history("s1")] == ["Registered", "GloballyUnsubscribed"]


def test_suppression_needs_a_known_reason_and_an_operator_lifts_it(app):
    app.register_or_update("s1", "ann@example.com")
    with pytest.raises(SubscriberError, match="reason"):
        app.change("s1", "suppress", reason="because", actor="op")
    app.change("s1", "suppress", reason="hard_bounce", actor="op")
    app.change("s1", "unsuppress", actor="op")
    assert [h.detail["status"] for h in app.history("s1")] == ["subscribed", "suppressed", "subscribed"]


def test_erasure_destroys_the_key_and_refuses_later_changes(app):
    app.register_or_update("s1", "ann@example.com")
    assert app.erase("s1", actor="dpo")
    view = app.view("s1")
    assert view.erased and view.email is None
    with pytest.raises(SubscriberError, match="erased"):
        app.register_or_update("s1", "ann@example.com")
    assert not app.erase("nobody", actor="dpo")


@pytest.mark.parametrize(
    "kwargs,field",
    [({"subscriber_id": "bad id!", "email": "a@b.co"}, "subscriber_id"),
     ({"subscriber_id": "s", "email": "not-an-email"}, "email"),
     ({"subscriber_id": "s", "email": "a@b.co", "lists": ["bad list"]}, "list_id")],
)
def test_bad_input_names_the_field(app, kwargs, field):
    sid, email = kwargs.pop("subscriber_id"), kwargs.pop("email")
    with pytest.raises(SubscriberError, match=f"^{field}"):
        app.register_or_update(sid, email, **kwargs)


def test_unknown_commands_and_subscribers_are_refused(app):
    with pytest.raises(SubscriberError, match="command"):
        app.change("s1", "delete_everything")
    with pytest.raises(SubscriberError, match="no subscriber"):
        app.change("s1", "resubscribe", actor="a")


def test_every_subscriber_event_maps_to_a_consent_record(app):
    app.register_or_update("s1", "ann@example.com", lists=["news"], double_opt_in=True, attributes="likes cats")
    for command, kwargs in [("confirm_opt_in", {"list_id": "news"}), ("unsubscribe", {"list_id": "news"}),
                            ("subscribe", {"list_id": "news"}), ("unsubscribe", {"list_id": None}),
                            ("resubscribe", {}), ("suppress", {"reason": "complaint"}), ("unsuppress", {})]:
        app.change("s1", command, actor="t", **kwargs)
    app.erase("s1", actor="t")
    statuses = [consent_change_of(e)[0] for e in app.events.get(app.find("s1").id)]
    assert len(statuses) == 11 and statuses[-1] == "erased"


def test_publishing_unchanged_content_creates_no_version():
    defs = DefinitionsApplication(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    assert defs.publish("journey", "welcome", {"steps": [1]}, "ann", "a.yaml") == 1
    assert defs.publish("journey", "welcome", {"steps": [1]}, "ann", "a.yaml") is None
    assert defs.publish("journey", "welcome", {"steps": [2]}, "bob", "a.yaml") == 2
    defs.pause("journey", "welcome", "ops")
    defs.resume("journey", "welcome", "ops")
    defs.archive("journey", "welcome", "ops")
    history = defs.history("journey", "welcome")
    assert [(h.event, h.version, h.actor) for h in history] == [
        ("Published", 1, "ann"), ("Published", 2, "bob"), ("Paused", None, "ops"), ("Resumed", 2, "ops"),
        ("Archived", None, "ops")]
    diff = defs.diff("journey", "welcome", 1, 2)
    assert "\n-- 1\n" in diff and "\n+- 2\n" in diff
    with pytest.raises(DefinitionStoreError, match="no version 9"):
        defs.diff("journey", "welcome", 1, 9)
    with pytest.raises(DefinitionStoreError, match="not paused"):
        defs.resume("journey", "welcome", "ops")


@pytest.mark.parametrize("key", ["welcome", "flow:welcome", "journey:"])
def test_definition_keys_must_be_kind_and_id(key):
    with pytest.raises(DefinitionStoreError, match="kind:id"):
        split_key(key)
