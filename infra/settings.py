"""Process configuration, read from `TIDINGS_*` environment variables (and `.env`).

Every process (api, worker, mailsink, CLI) builds one `Settings` at start-up; nothing else
reads the environment.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TIDINGS_", env_file=".env", extra="ignore")

    data_dir: Path = Field(Path("var"), description="Where local state lives: broker data, SQLite, chDB, mail sink.")
    kafka_bootstrap: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers.")
    topic_prefix: str = Field("tidings", description="Prefix of every topic name: `<prefix>.events`, ...")
    partitions: int = Field(4, ge=1, description="Partition count shared by every subscriber-keyed topic.")
    replication_factor: int = Field(1, ge=1)

    clickhouse_dsn: str = Field("", description="`chdb:///path` (embedded, default under data_dir) or `http(s)://...`.")
    smtp_url: str = Field("smtp://127.0.0.1:2525", description="SMTP relay; the local capture sink by default.")
    smtp_connections: int = Field(8, ge=1, le=64, description="Pooled SMTP connections per relay.")
    mail_from: str = Field("Tidings Demo <hello@news.tidings.test>")

    api_host: str = "127.0.0.1"
    api_port: int = 8080
    api_key_hashes: str = Field("", description="Comma-separated sha256 hex digests of accepted API keys.")
    public_url: str = Field("http://127.0.0.1:8080", description="Base URL used in links inside emails.")

    worker_host: str = "127.0.0.1"
    worker_port: int = Field(6066, description="Worker web port: health and analytics queries.")
    worker_id: str = Field("tidings-worker", description="Faust app id = consumer group.")

    mailsink_host: str = "127.0.0.1"
    mailsink_port: int = 2525

    event_store: str = Field("sqlite", description="`sqlite` (files under data_dir/event-store) or `postgres`.")
    postgres_host: str = "127.0.0.1"
    postgres_port: int = 5432
    postgres_user: str = "tidings"
    postgres_password: str = "tidings"
    postgres_dbname: str = "tidings"
    postgres_schema: str = Field("public", description="Schema holding the event store tables.")

    definitions_dir: Path = Field(Path("examples"), description="YAML journeys, segments and templates to load.")
    log_format: str = Field("auto", description="`json`, `console` or `auto` (console on a terminal).")
    log_level: str = "INFO"

    retry_base_seconds: float = Field(60.0, gt=0, description="First retry delay after a 4xx; doubles per attempt.")
    retry_max_age_seconds: float = Field(86400.0, gt=0, description="Deferred mail older than this soft-bounces.")

    tracking_enabled: bool = Field(True, description="Rewrite links for click tracking and add the open pixel.")
    tracking_token_days: int = Field(180, ge=1, description="How long click and open-pixel links stay valid.")
    unsubscribe_mailto: str = Field("", description="`mailto:` target for List-Unsubscribe, beside the one-click URL.")
    dkim_selector: str = Field("", description="DKIM selector; DKIM signing is on when this and dkim_key_path are set.")
    dkim_key_path: str = Field("", description="PEM private key (RSA) used for DKIM signatures.")
    frequency_cap: str = Field("", description="Marketing caps per rolling window, e.g. `3/1d,10/7d`; empty: no cap.")
    quiet_hours: str = Field("", description="Local quiet hours, e.g. `21:00-08:00`; empty: none.")
    quiet_hours_mode: str = Field("defer", description="`defer` to the end of quiet hours, or `skip`.")
    default_timezone: str = Field("UTC", description="Time zone for subscribers without a `timezone` trait.")
    webhook_secret: str = Field("", description="Shared secret of the generic HMAC-signed feedback webhook.")
    webhook_tolerance_seconds: int = Field(300, ge=1, description="Accepted clock skew of webhook timestamps.")

    reputation_thresholds: str = Field("", description="Reputation overrides, e.g. `complaint=0.1%/0.3%/0.5%,bounce=2%/5%/10%,min_sent=500,min_accepted=1000,throttle_per_minute=60`; empty: defaults (docs/reputation.md).")
    reputation_cooldown_seconds: float = Field(0.0, ge=0, description="A paused identity resumes by itself after this long; 0: only `tidings reputation resume`.")

    analytics_batch_rows: int = Field(5000, ge=1)
    analytics_batch_seconds: float = Field(1.0, gt=0)

    @property
    def resolved_clickhouse_dsn(self) -> str:
        if self.clickhouse_dsn:
            return self.clickhouse_dsn
        return f"chdb://{(self.data_dir / 'analytics').resolve()}"

    @property
    def mailsink_dir(self) -> Path:
        return self.data_dir / "mailsink"

    @property
    def api_keys_file(self) -> Path:
        return self.data_dir / "api-keys.json"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
