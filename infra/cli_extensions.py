"""Command groups that add themselves to the `tidings` CLI.

Each listed module defines `register(app: typer.Typer) -> None`. One line per module: add yours
with a one-line edit.
"""

CLI_MODULES: list[str] = [
    "infra.cli_segments",
    "infra.cli_reputation",
    "infra.cli_store",
    "infra.cli_analytics",
    "infra.cli_journeys",
    "infra.cli_feedback",
]
