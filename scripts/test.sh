#!/usr/bin/env bash
# The test command: installs what the tests need (Debian packages: a real
# Mosquitto broker, VictoriaMetrics as the InfluxDB-compatible server, socat
# for serial-line pseudo-terminals, Chromium with its driver and CJK fonts for
# the browser test; the clippy and rustfmt components), checks
# formatting and lints (warnings are errors, so the `[lints]` of Cargo.toml
# hold), then runs every test of the workspace and the Debian package test.
# The tests start their own services on free loopback ports and stop them.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
command -v mosquitto_sub >/dev/null 2>&1 || need+=(mosquitto-clients)
command -v victoria-metrics >/dev/null 2>&1 || need+=(victoria-metrics)
command -v socat >/dev/null 2>&1 || need+=(socat)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
# The browser test (tests/browser.rs): headless Chromium, its WebDriver, and
# a CJK font so the page's Chinese is drawn.
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
dpkg -s fonts-noto-cjk >/dev/null 2>&1 || need+=(fonts-noto-cjk)
if [ ${#need[@]} -gt 0 ]; then
    echo "installing: ${need[*]}"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${need[@]}"
    # The packages start system services; the tests start their own on free ports.
    $SUDO systemctl stop mosquitto victoria-metrics >/dev/null 2>&1 || true
fi

# A toolchain from rustup may lack the clippy and rustfmt components; one
# from Debian's packages (no rustup) has them as packages instead.
need_component() { # COMPONENT PROBE...
    local component=$1
    shift
    "$@" --version >/dev/null 2>&1 && return 0
    if command -v rustup >/dev/null 2>&1; then
        echo "installing the $component component"
        rustup component add "$component"
    else
        echo "error: \`$*\` is missing (Debian: apt-get install rust-clippy rustfmt)" >&2
        exit 1
    fi
}
need_component clippy cargo clippy
need_component rustfmt cargo fmt

cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked "$@"
# The criterion micro-benchmarks once each (seconds): they must keep building
# and running; their timings are not judged here (docs/benchmarks.md).
cargo test --locked --bench micro
# The end-to-end benchmark suite's smoke mode (benches/suite.rs): a tiny load
# through every part of the gateway's path, so the suite cannot rot. It checks that
# every figure is produced, never a figure's value.
cargo test --locked --bench suite
# The Debian package, from the debug binary the tests just built (no release
# build): install, check, remove, purge. Skips with its reason when not root.
./scripts/package-test.sh
