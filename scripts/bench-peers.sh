#!/usr/bin/env bash
# Installs the two peer gateways the end-to-end suite (benches/suite.rs,
# docs/benchmarks.md#peers) runs its loads against, under a prefix of their
# own, as external programs; nothing is installed globally:
#   PREFIX/node-red     node-red@4 + node-red-contrib-modbus@5.23.3 (npm)
#   PREFIX/tb-venv      thingsboard-gateway (PyPI) in a venv, with pymodbus
#                       pinned because the gateway's Modbus connector would
#                       otherwise install one itself at start
# A peer already installed is reused. Writes PREFIX/versions.json, one entry
# per peer: {"version": ...} or {"error": ...}; exits 0 even when a peer
# failed, so the suite can record the reason and still measure riskgate.
#
# Usage: scripts/bench-peers.sh [PREFIX]   (default target/bench/peers)
set -uo pipefail
cd "$(dirname "$0")/.."
PREFIX="${1:-target/bench/peers}"
mkdir -p "$PREFIX" || exit 1
PREFIX="$(cd "$PREFIX" && pwd)"

NODE_RED_SPEC="node-red@4"
CONTRIB_SPEC="node-red-contrib-modbus@5.23.3"
TB_SPEC="thingsboard-gateway==3.8.5"
# The version the gateway's Modbus connector requires (its `required_version`).
PYMODBUS_VERSION="3.9.2"
PYMODBUS_SPEC="pymodbus==$PYMODBUS_VERSION"

log() { echo "bench-peers: $*" >&2; }
json_str() { python3 -c 'import json,sys; print(json.dumps(sys.argv[1]))' "$1"; }

node_red() {
    local dir="$PREFIX/node-red"
    if [ ! -x "$dir/node_modules/.bin/node-red" ] || [ ! -d "$dir/node_modules/node-red-contrib-modbus" ]; then
        command -v npm >/dev/null || { echo "npm not found"; return 1; }
        mkdir -p "$dir"
        [ -f "$dir/package.json" ] || echo '{"name":"bench-peer-node-red","private":true}' >"$dir/package.json"
        log "installing $NODE_RED_SPEC $CONTRIB_SPEC into $dir"
        (cd "$dir" && npm install --no-audit --no-fund --loglevel=error \
            "$NODE_RED_SPEC" "$CONTRIB_SPEC" >&2) || { echo "npm install failed"; return 1; }
    fi
    local v c
    v=$(node -p "require('$dir/node_modules/node-red/package.json').version") || { echo "node-red not loadable"; return 1; }
    c=$(node -p "require('$dir/node_modules/node-red-contrib-modbus/package.json').version") || { echo "contrib-modbus not loadable"; return 1; }
    echo "node-red $v + node-red-contrib-modbus $c (node $(node --version))"
}

thingsboard() {
    local venv="$PREFIX/tb-venv"
    if [ ! -x "$venv/bin/thingsboard-gateway" ] || ! "$venv/bin/python" -c 'import sys, thingsboard_gateway, pymodbus, serial_asyncio; sys.exit(pymodbus.__version__ != sys.argv[1])' "$PYMODBUS_VERSION" 2>/dev/null; then
        local py
        py=$(command -v python3.11 || command -v python3) || { echo "python3 not found"; return 1; }
        log "installing $TB_SPEC $PYMODBUS_SPEC into $venv"
        [ -x "$venv/bin/pip" ] || "$py" -m venv "$venv" >&2 || { echo "python venv failed"; return 1; }
        "$venv/bin/pip" install -q "$TB_SPEC" "$PYMODBUS_SPEC" pyserial pyserial-asyncio >&2 || { echo "pip install failed"; return 1; }
    fi
    local v m
    v=$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("thingsboard-gateway"))') || { echo "thingsboard-gateway not loadable"; return 1; }
    m=$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("pymodbus"))') || { echo "pymodbus not loadable"; return 1; }
    echo "thingsboard-gateway $v + pymodbus $m ($("$venv/bin/python" --version))"
}

entry() {
    local out rc
    out=$("$1" | tail -n 1); rc=${PIPESTATUS[0]}
    if [ "$rc" -eq 0 ]; then
        log "$1: $out"; echo "{\"version\": $(json_str "$out")}"
    else
        log "$1 not installed: $out"; echo "{\"error\": $(json_str "$out")}"
    fi
}

NR=$(entry node_red)
TB=$(entry thingsboard)
printf '{"prefix": %s, "node_red": %s, "thingsboard": %s}\n' "$(json_str "$PREFIX")" "$NR" "$TB" | tee "$PREFIX/versions.json"
