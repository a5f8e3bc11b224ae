#!/usr/bin/env bash
# The test command: installs what the tests need (Debian packages: a real
# Mosquitto broker, VictoriaMetrics as the InfluxDB-compatible server, socat
# for serial-line pseudo-terminals), then runs every test of the workspace.
# The tests start their own services on free loopback ports and stop them.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
command -v mosquitto_sub >/dev/null 2>&1 || need+=(mosquitto-clients)
command -v victoria-metrics >/dev/null 2>&1 || need+=(victoria-metrics)
command -v socat >/dev/null 2>&1 || need+=(socat)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
if [ ${#need[@]} -gt 0 ]; then
    echo "installing: ${need[*]}"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${need[@]}"
    # The packages start system services; the tests start their own on free ports.
    $SUDO systemctl stop mosquitto victoria-metrics >/dev/null 2>&1 || true
fi

cargo test --workspace --locked "$@"
