"""The worker's stages, registered in this order.

Each listed module defines `register(ctx: WorkerContext) -> None`. One line per module: add yours
with a one-line edit.
"""

STAGE_MODULES: list[str] = [
    "processors.segments",
    "processors.journeys",
    "processors.consent",
    "processors.sender",
    "processors.reputation",
]
