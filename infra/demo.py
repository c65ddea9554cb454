"""`tidings demo`: the whole system on one machine, end to end, with a summary at the end.

Starts the broker, SMTP capture sink, worker and API; publishes the example definitions; posts a few
thousand synthetic events through the API; waits until every expected email is in the sink and every
accepted event is in ClickHouse; prints what ClickHouse says; stops what it started.
Each run uses fresh topics (`demo-<time>.*`) and a fresh data dir (`var/demo`).
"""

from __future__ import annotations

import shutil
import time
from datetime import datetime, timezone
from pathlib import Path

import httpx
import structlog
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from examples.generator import Expectation, generate
from infra.settings import Settings

log = structlog.get_logger(__name__)

BATCH = 100
REPO = Path(__file__).resolve().parent.parent


class DemoFailed(RuntimeError):
    pass


def demo_settings(base: Settings) -> Settings:
    run = datetime.now(timezone.utc).strftime("%Y%m%d%H%M%S")
    return base.model_copy(
        update={
            "data_dir": (base.data_dir / "demo").resolve(),
            "topic_prefix": f"demo-{run}",
            "definitions_dir": (REPO / "examples").resolve(),
            "log_format": "json",
        }
    )


def _forget_old_demo_topics(settings: Settings) -> None:
    from connectors.kafka_admin import admin_client, delete_topics

    names = admin_client(settings).list_topics(timeout=10).topics
    old = [n for n in names if n.startswith("demo-") and not n.startswith(settings.topic_prefix + ".")]
    delete_topics(settings, old)


def post_events(settings: Settings, api_key: str, events: list[dict], console: Console) -> int:
    """POST events in batches; returns how many the API accepted (202 = acknowledged by Kafka)."""
    accepted = 0
    url = f"http://{settings.api_host}:{settings.api_port}/v1/events"
    headers = {"Authorization": f"Bearer {api_key}"}
    with httpx.Client(timeout=30) as client, Progress(
        TextColumn("[bold]posting events"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
    ) as progress:
        task = progress.add_task("events", total=len(events))
        for start in range(0, len(events), BATCH):
            chunk = events[start : start + BATCH]
            for attempt in range(5):
                response = client.post(url, json={"events": chunk}, headers=headers)
                if response.status_code == 202:
                    body = response.json()
                    accepted += body["accepted"] + body.get("duplicates", 0)
                    break
                if response.status_code < 500:
                    raise DemoFailed(f"API rejected a batch: {response.status_code} {response.text[:300]}")
                time.sleep(0.5 * (attempt + 1))
            else:
                raise DemoFailed(f"API kept failing: {response.status_code} {response.text[:300]}")
            progress.advance(task, len(chunk))
    return accepted


def wait_for(predicate, timeout: float, what: str, interval: float = 0.5):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        ok, last = predicate()
        if ok:
            return last
        time.sleep(interval)
    raise DemoFailed(f"timed out after {timeout:.0f}s waiting for {what} (last seen: {last})")


def summary_queries() -> dict[str, str]:
    return {
        "events by type": "SELECT type, count() AS events FROM events GROUP BY type ORDER BY events DESC",
        "emails by journey": (
            "SELECT i.journey_id AS journey, i.template_id AS template, count() AS accepted "
            "FROM deliveries AS d INNER JOIN send_intents AS i ON d.intent_id = i.intent_id "
            "WHERE d.kind = 'accepted' GROUP BY journey, template ORDER BY accepted DESC"
        ),
        "emails by recipient domain": (
            "SELECT recipient_domain, countIf(kind = 'accepted') AS accepted, countIf(kind = 'bounced') AS bounced, "
            "countIf(kind = 'deferred') AS deferred FROM deliveries GROUP BY recipient_domain ORDER BY accepted DESC"
        ),
        "journeys: entries, holdouts and goal conversions": (
            "SELECT journey_id AS journey, countIf(kind = 'entered') AS entered, countIf(kind = 'holdout') AS holdout, "
            "countIf(kind = 'goal') AS converted, round(countIf(kind = 'goal') / greatest(countIf(kind = 'entered'), 1), 3) "
            "AS conversion_rate FROM journey_decisions GROUP BY journey ORDER BY journey"
        ),
        "segment entries": (
            "SELECT segment_id, countIf(change = 'entered') AS entered, countIf(change = 'exited') AS exited "
            "FROM segment_changes GROUP BY segment_id ORDER BY segment_id"
        ),
    }


def run_demo(subscribers: int = 600, keep_running: bool = False, console: Console | None = None) -> int:
    from connectors.mailsink import list_messages
    from infra.analytics_client import run_query
    from infra.api_keys import ApiKeyStore
    from infra.publish import apply_paths
    from infra.settings import get_settings
    from infra.stack import Stack

    console = console or Console()
    base = get_settings()
    settings = demo_settings(base)
    shutil.rmtree(settings.data_dir, ignore_errors=True)
    settings.data_dir.mkdir(parents=True)
    stack = Stack(settings, broker_settings=base)
    started = time.monotonic()
    try:
        console.rule("[bold]Tidings demo")
        console.print("starting Kafka (first run fetches the broker from Maven Central) ...")
        stack.broker.start(wait=True)
        _forget_old_demo_topics(settings)
        api_key = ApiKeyStore(settings).create("demo")
        console.print("starting SMTP capture sink, worker and API ...")
        stack.up()
        published = apply_paths(settings, [settings.definitions_dir])
        console.print(
            "published: " + ", ".join(f"{p.kind} {p.definition_id} v{p.version}" for p in published)
        )
        _wait_definitions_live(settings, published)
        events, expectation = generate(subscribers, namespace=settings.topic_prefix)
        accepted = post_events(settings, api_key, events, console)
        console.print(f"API accepted {accepted} events (each acknowledged by Kafka before the 202)")

        def mail_landed():  # type: ignore[no-untyped-def]
            count = len(list_messages(settings.mailsink_dir))
            return count >= expectation.expected_messages, count

        with console.status(f"waiting for {expectation.expected_messages} emails in the SMTP sink ..."):
            wait_for(mail_landed, 180, "emails in the SMTP sink")

        def analytics_caught_up():  # type: ignore[no-untyped-def]
            rows = run_query(settings, "SELECT count() FROM events")["rows"]
            accepted_mail = run_query(settings, "SELECT count() FROM deliveries WHERE kind = 'accepted'")["rows"]
            count, mail = int(rows[0][0]), int(accepted_mail[0][0])
            return count >= accepted and mail >= expectation.expected_messages, (count, mail)

        with console.status("waiting for ClickHouse to hold every accepted event ..."):
            wait_for(analytics_caught_up, 120, "events in ClickHouse", interval=1.0)
        _check_mail(settings, expectation)
        screenshot = _screenshot(settings, console)
        _print_summary(settings, console, accepted, expectation, time.monotonic() - started, screenshot)
        return 0
    except Exception as exc:
        console.print(f"[red]demo failed:[/red] {exc}")
        for name, service in stack.services.items():
            console.print(f"[dim]--- {name} log: {service.log_file}[/dim]")
        return 1
    finally:
        if not keep_running:
            stack.down(stop_broker=False)
            console.print("stopped the worker, API and SMTP sink (the Kafka broker keeps running: `tidings kafka stop`)")


def _wait_definitions_live(settings: Settings, published: list) -> None:  # type: ignore[type-arg]
    want = {p.kind for p in published}
    url = f"http://{settings.worker_host}:{settings.worker_port}/healthz/"

    def live():  # type: ignore[no-untyped-def]
        counts = httpx.get(url, timeout=2).json()["definitions"]
        ok = all(counts.get(f"{kind}s", 0) > 0 for kind in want)
        return ok, counts

    wait_for(live, 30, "the worker to load the published definitions")


def _check_mail(settings: Settings, expectation: Expectation) -> None:
    from connectors.mailsink import list_messages

    messages = list_messages(settings.mailsink_dir)
    ids = [m.message_id for m in messages]
    if len(ids) != len(set(ids)):
        raise DemoFailed("a message was delivered twice")
    if len(messages) != expectation.expected_messages:
        raise DemoFailed(f"expected {expectation.expected_messages} emails, the sink holds {len(messages)}")


def _screenshot(settings: Settings, console: Console) -> Path | None:
    """A PNG of the live dashboard: what an analyst would see after this run."""
    from infra.screenshot import capture_dashboard

    path = settings.data_dir / "dashboard.png"
    try:
        with console.status("taking a screenshot of the dashboard in headless Chromium ..."):
            return capture_dashboard(f"http://{settings.api_host}:{settings.api_port}/dashboard", path)
    except Exception as exc:  # the demo's result stands without the picture; say why it is missing
        console.print(f"[yellow]no dashboard screenshot: {exc}[/yellow]")
        return None


def _print_summary(
    settings: Settings, console: Console, accepted: int, expectation: Expectation, seconds: float,
    screenshot: Path | None = None,
) -> None:
    from infra.analytics_client import run_query

    console.rule("[bold green]Result (queried from ClickHouse)")
    for title, query in summary_queries().items():
        result = run_query(settings, query)
        table = Table(*result["columns"], title=title, title_justify="left")
        for row in result["rows"]:
            table.add_row(*(str(v) for v in row))
        console.print(table)
    console.print(
        f"{accepted} events accepted; {expectation.expected_messages} emails expected and delivered, "
        f"each exactly once (per journey and template above), in {seconds:.1f}s"
    )
    console.rule("where to look next")
    console.print(f"emails captured by the SMTP sink: {settings.mailsink_dir}  (`tidings mailsink --list`)")
    console.print(f"service logs: {settings.data_dir / 'logs'}")
    if screenshot is not None:
        console.print(f"dashboard screenshot: {screenshot}  (live at http://{settings.api_host}:{settings.api_port}/dashboard)")
    console.print("query analytics: `tidings sql \"SELECT type, count() FROM events GROUP BY type\"` (stack running)")
    console.print("definitions: examples/journeys, examples/segments, examples/templates (`tidings apply examples/`)")
