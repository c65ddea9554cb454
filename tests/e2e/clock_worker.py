"""A worker with the segments and journeys stages whose clock reads a file: for tests of durable
timers on simulated time. Tests only; production workers always use the system clock.

Run: `TIDINGS_TEST_CLOCK_FILE=/path python -m tests.e2e.clock_worker` with the `TIDINGS_*` settings
of the stack under test. The file holds one ISO 8601 time; the test rewrites it to move time on.
"""

from __future__ import annotations

import importlib
import os
from datetime import datetime
from pathlib import Path

import faust
from faust.web import Request, Response, View

from connectors.definitions_topic import DefinitionsFollower
from connectors.kafka_admin import ensure_topics
from infra.logging import configure_logging
from infra.settings import Settings
from processors.app import WorkerContext, create_faust_app
from processors.live_definitions import LiveDefinitionsHolder

STAGES = ("processors.segments", "processors.journeys")


def file_clock(path: Path):  # type: ignore[no-untyped-def]
    def clock() -> datetime:
        return datetime.fromisoformat(path.read_text().strip())

    return clock


def main() -> None:
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    ensure_topics(settings)
    holder = LiveDefinitionsHolder()
    clock = file_clock(Path(os.environ["TIDINGS_TEST_CLOCK_FILE"]))
    ctx = WorkerContext(app=create_faust_app(settings), settings=settings, definitions=holder, clock=clock)
    for module in STAGES:
        importlib.import_module(module).register(ctx)

    @ctx.app.page("/healthz/")
    class Health(View):
        async def get(self, request: Request) -> Response:
            recovered = ctx.app.tables.recovery.completed.is_set()
            return self.json({"status": "ok", "recovered": recovered, "journeys": len(holder.current.journeys)})

    follower = DefinitionsFollower(settings, on_change=holder.replace)
    follower.catch_up()
    follower.start()
    worker = faust.Worker(ctx.app, loglevel=settings.log_level, quiet=True, redirect_stdouts=False)
    try:
        worker.execute_from_commandline()
    finally:
        follower.stop()


if __name__ == "__main__":
    main()
