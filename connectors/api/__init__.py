"""The ingest HTTP API (native and Segment-compatible). `run_api(settings)` serves it with uvicorn."""

from connectors.api.app import create_api, run_api

__all__ = ["create_api", "run_api"]
