#!/usr/bin/env bash
# The Debian package test (issue 11, item 6), run by scripts/test.sh after the
# cargo tests. It packages the debug binary those tests built (no release build:
# that would add many minutes on CI's 2 cores), installs it with dpkg, checks
# what landed where with which owner and mode, validates the shipped config as
# the service user, measures the unit's exposure with systemd-analyze, and
# removes then purges the package, checking each step left what it should.
#
# It changes this machine (a package, a system user), so it:
# - needs root; as another user it says why and skips;
# - refuses to touch a riskgate package, user or /etc/riskgate it did not
#   install itself (a marker file records what it did);
# - cleans up on any exit, and on its next run after a run that died midway.
set -euo pipefail
cd "$(dirname "$0")/.."

MARKER=/var/tmp/riskgate-package-test.marker
OUT=target/package-test
MAX_EXPOSURE=2.0

say() { echo "package-test: $*"; }
fail() { echo "package-test: FAIL: $*" >&2; exit 1; }

if [ "$(id -u)" -ne 0 ]; then
    say "skipped: installing a .deb needs root (CI runs as root; run as root to test the package)"
    exit 0
fi
for tool in dpkg dpkg-deb adduser; do
    command -v "$tool" >/dev/null 2>&1 || { say "skipped: no $tool (not a Debian system)"; exit 0; }
done
if ! command -v systemd-analyze >/dev/null 2>&1; then
    say "installing systemd (for systemd-analyze; it is not started)"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends systemd
fi
if ! command -v cargo-deb >/dev/null 2>&1; then
    say "installing cargo-deb (once; later runs reuse it)"
    start=$(date +%s)
    cargo install cargo-deb --locked
    say "cargo-deb installed in $(( $(date +%s) - start )) s"
fi

bin=target/debug/riskgate
[ -x "$bin" ] || fail "$bin missing: run cargo test (or cargo build) first"

# ---- a previous run that died midway, or someone else's riskgate
# Whether dpkg has anything of riskgate (installed, half-done, or its config).
known_to_dpkg() {
    dpkg-query -W -f='${Status}' riskgate 2>/dev/null \
        | grep -qE ' (installed|config-files|half-installed|half-configured|unpacked|triggers-awaited|triggers-pending)$'
}
cleanup() {
    if [ -f "$MARKER" ]; then
        if known_to_dpkg; then
            dpkg -P riskgate >/dev/null 2>&1 || true
        fi
        if grep -q '^created-user$' "$MARKER" && getent passwd riskgate >/dev/null; then
            deluser --system riskgate >/dev/null 2>&1 || true
            getent group riskgate >/dev/null && delgroup --system riskgate >/dev/null 2>&1 || true
        fi
        rm -f "$MARKER"
    fi
}
if [ -f "$MARKER" ]; then
    say "cleaning up after a previous run that did not finish"
    cleanup
fi
if known_to_dpkg; then
    say "skipped: a riskgate package is installed that this test did not install; not touching it"
    exit 0
fi
for p in /etc/riskgate /var/lib/riskgate; do
    if [ -e "$p" ]; then
        say "skipped: $p exists and no package owns it; not touching it"
        exit 0
    fi
done
: >"$MARKER"
if ! getent passwd riskgate >/dev/null; then
    echo created-user >>"$MARKER"
fi
trap cleanup EXIT

# ---- build the .deb from the tests' binary
rm -rf "$OUT"
mkdir -p "$OUT"
start=$(date +%s)
cargo deb --no-build --profile dev --fast --output "$OUT/" >"$OUT/cargo-deb.log" 2>&1 \
    || { cat "$OUT/cargo-deb.log" >&2; fail "cargo deb"; }
deb=$(ls "$OUT"/riskgate_*.deb)
say "built $deb ($(du -h "$deb" | cut -f1)) in $(( $(date +%s) - start )) s"
dpkg-deb --info "$deb" | grep -E "Package|Version|Depends|Architecture" | sed 's/^/    /'

# ---- install
dpkg -i "$deb" >"$OUT/dpkg-i.log" 2>&1 || { cat "$OUT/dpkg-i.log" >&2; fail "dpkg -i"; }
say "installed"

expect() { # PATH MODE OWNER:GROUP
    [ -e "$1" ] || fail "$1 missing"
    local got
    got=$(stat -c '%a %U:%G' "$1")
    [ "$got" = "$2 $3" ] || fail "$1 is $got, want $2 $3"
}
expect /usr/bin/riskgate 755 root:root
expect /lib/systemd/system/riskgate.service 644 root:root
expect /etc/riskgate 2750 root:riskgate
expect /etc/riskgate/riskgate.toml 640 root:riskgate
expect /etc/riskgate/credentials 700 root:root
expect /var/lib/riskgate 750 riskgate:riskgate
for ex in /usr/share/doc/riskgate/examples/*.example.toml; do expect "$ex" 644 root:root; done
dpkg-query -W -f='${Conffiles}\n' riskgate | grep -q '^ /etc/riskgate/riskgate.toml ' \
    || fail "/etc/riskgate/riskgate.toml is not a conffile"
IFS=: read -r _ _ uid _ _ home shell < <(getent passwd riskgate)
[ "$uid" -lt 1000 ] || fail "riskgate is uid $uid, not a system user"
[ "$home" = /var/lib/riskgate ] || fail "riskgate's home is $home"
[ "$shell" = /usr/sbin/nologin ] || fail "riskgate's shell is $shell"
groups=$(id -nG riskgate)
for g in riskgate dialout; do
    [[ " $groups " == *" $g "* ]] || fail "riskgate is not in group $g (groups: $groups)"
done
say "files, modes, conffile, user riskgate (uid $uid; groups: $groups): ok"

# ---- the shipped config, read as the service reads it
runuser -u riskgate -- /usr/bin/riskgate validate --config /etc/riskgate/riskgate.toml \
    || fail "the shipped /etc/riskgate/riskgate.toml is not valid"
for ex in /usr/share/doc/riskgate/examples/*.example.toml; do
    /usr/bin/riskgate validate --config "$ex" >/dev/null || fail "$ex is not valid"
done
# A file root creates in /etc/riskgate later (the users file) is the service's group.
(umask 022 && touch /etc/riskgate/package-test.new)
expect /etc/riskgate/package-test.new 644 root:riskgate
rm /etc/riskgate/package-test.new
# The world may not read the config.
if runuser -u nobody -- cat /etc/riskgate/riskgate.toml >/dev/null 2>&1; then
    fail "user nobody can read /etc/riskgate/riskgate.toml"
fi

# ---- the unit's exposure as installed
analysis=$(systemd-analyze security --offline=yes /lib/systemd/system/riskgate.service 2>&1) \
    || { echo "$analysis" >&2; fail "systemd-analyze security"; }
exposure=$(echo "$analysis" | sed -n 's/.*Overall exposure level for riskgate.service: \([0-9.]*\).*/\1/p')
[ -n "$exposure" ] || { echo "$analysis" >&2; fail "no exposure level in systemd-analyze's output"; }
awk -v e="$exposure" -v m="$MAX_EXPOSURE" 'BEGIN { exit !(e <= m) }' \
    || { echo "$analysis" >&2; fail "exposure $exposure > $MAX_EXPOSURE"; }
say "systemd-analyze security: exposure $exposure (at most $MAX_EXPOSURE)"

if [ -d /run/systemd/system ]; then
    systemctl start riskgate.service
    systemctl is-active --quiet riskgate.service || { systemctl status riskgate.service >&2 || true; fail "riskgate.service is not active"; }
    say "started under systemd: active"
    systemctl stop riskgate.service
else
    say "not started under systemd: this machine does not run systemd (dpkg -i and validate only)"
fi

# ---- remove keeps the config and the store; purge deletes them
echo "kept across remove" >/var/lib/riskgate/package-test.keep
dpkg -r riskgate >"$OUT/dpkg-r.log" 2>&1 || { cat "$OUT/dpkg-r.log" >&2; fail "dpkg -r"; }
[ ! -e /usr/bin/riskgate ] || fail "dpkg -r left /usr/bin/riskgate"
[ ! -e /lib/systemd/system/riskgate.service ] || fail "dpkg -r left the unit"
[ -f /etc/riskgate/riskgate.toml ] || fail "dpkg -r removed the config (a conffile stays until purge)"
[ -f /var/lib/riskgate/package-test.keep ] || fail "dpkg -r removed the store"
say "removed: binary and unit gone, config and store kept"
dpkg -P riskgate >"$OUT/dpkg-P.log" 2>&1 || { cat "$OUT/dpkg-P.log" >&2; fail "dpkg -P"; }
for p in /etc/riskgate /var/lib/riskgate /usr/share/doc/riskgate; do
    [ ! -e "$p" ] || fail "dpkg -P left $p: $(ls -la "$p")"
done
if known_to_dpkg; then
    fail "dpkg still knows riskgate after purge"
fi
say "purged: /etc/riskgate and /var/lib/riskgate gone"
say "ok"
