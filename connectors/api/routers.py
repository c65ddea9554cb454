"""Feature areas that add routes to the API.

Each listed module defines `include(app: FastAPI, settings: Settings, producer: KafkaProducer) -> None`.
One line per module: add yours with a one-line edit.
"""

ROUTER_MODULES: list[str] = [
    "connectors.api.segments",
    "connectors.api.consent",
    "connectors.api.dashboard",
    "connectors.api.feedback",
]
