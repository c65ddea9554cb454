#!/usr/bin/env bash
# Installs what Tidings needs on a fresh Debian machine, idempotently:
#   system packages (Java for the broker, Maven to fetch it, Postfix for the smtp-sink benchmark
#   target, PostgreSQL for the production event store tests, Chromium for the dashboard tests,
#   graphviz for journey drawings), the Python package with its test extras, and the Kafka jars.
set -euo pipefail
cd "$(dirname "$0")/../.."

PYTHON="${PYTHON:-python3}"
need=()
command -v java >/dev/null 2>&1 || need+=(default-jre-headless)
command -v mvn >/dev/null 2>&1 || need+=(maven)
[ -x /usr/sbin/smtp-sink ] || need+=(postfix)
command -v pg_ctlcluster >/dev/null 2>&1 || need+=(postgresql)
command -v chromium >/dev/null 2>&1 || need+=(chromium chromium-driver)
command -v dot >/dev/null 2>&1 || need+=(graphviz)
if [ "${#need[@]}" -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "bootstrap: installing system packages: ${need[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

stamp="var/.installed-$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -f "$stamp" ] || ! "$PYTHON" -c "import infra.cli" >/dev/null 2>&1; then
  echo "bootstrap: installing the tidings Python package and its test dependencies"
  "$PYTHON" -m pip install -q --disable-pip-version-check -e ".[test]"
  mkdir -p var && touch "$stamp"
fi

"$PYTHON" - <<'PY'
from infra.kafka_broker import KafkaBroker
from infra.settings import Settings
broker = KafkaBroker(Settings())
if not broker.jars_present():
    print("bootstrap: fetching the Kafka broker jars from Maven Central")
    broker.fetch_jars()
PY
bash infra/scripts/postgres.sh  # the event store tests run every case on SQLite and PostgreSQL
