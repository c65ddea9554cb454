"""A worker with only the segments and journeys stages, for `bench.journeys` (system clock)."""

from __future__ import annotations

import importlib

import faust
from faust.web import Request, Response, View

from connectors.definitions_topic import DefinitionsFollower
from infra.logging import configure_logging
from infra.settings import Settings
from processors.app import WorkerContext, create_faust_app
from processors.live_definitions import LiveDefinitionsHolder

import os

# BENCH_STAGES lets a run measure one stage alone (comma-separated module names).
STAGES = tuple(os.environ.get("BENCH_STAGES", "processors.segments,processors.journeys").split(","))


def main() -> None:
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    holder = LiveDefinitionsHolder()
    ctx = WorkerContext(app=create_faust_app(settings), settings=settings, definitions=holder)
    for module in STAGES:
        importlib.import_module(module).register(ctx)

    @ctx.app.page("/healthz/")
    class Health(View):
        async def get(self, request: Request) -> Response:
            return self.json({"recovered": ctx.app.tables.recovery.completed.is_set(), "journeys": len(holder.current.journeys)})

    follower = DefinitionsFollower(settings, on_change=holder.replace)
    follower.catch_up()
    follower.start()
    try:
        faust.Worker(ctx.app, loglevel=settings.log_level, quiet=True, redirect_stdouts=False).execute_from_commandline()
    finally:
        follower.stop()


if __name__ == "__main__":
    main()
