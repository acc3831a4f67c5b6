#!/usr/bin/env bash
# bench/palaver-start.sh: start Palaver for ../shared/bench (CONTRACTS.md §6):
#   PALAVER_START='exec <checkout>/bench/palaver-start.sh' ../shared/bench/compare.sh
# Runs with cwd = $BENCH_STATE and PORT DOMAIN MUC BENCH_STATE BENCH_CERT
# BENCH_KEY set (servers/custom.sh). Idempotent: the first start writes
# $BENCH_STATE/palaver.conf and the accounts, later starts reuse them.
# Environment: PALAVER_BUILD (build directory to use; default: the tree, then
# build/*, sanitizer builds last), BENCH_USERS (10000), PALAVER_BENCH_MODULES
# (the module set; default below, reduced to what the build has).
set -euo pipefail

say() { printf 'palaver-start: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

: "${PORT:?PORT is not set (run through servers/custom.sh)}"
: "${DOMAIN:?DOMAIN is not set}"
: "${BENCH_STATE:?BENCH_STATE is not set}"
: "${BENCH_CERT:?BENCH_CERT is not set}"
: "${BENCH_KEY:?BENCH_KEY is not set}"
MUC=${MUC:-conference.$DOMAIN}
USERS=${BENCH_USERS:-10000}

CHECKOUT=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)
STATE=$(readlink -f "$BENCH_STATE")
CERT=$(readlink -f "$BENCH_CERT")
KEY=$(readlink -f "$BENCH_KEY")
CONF=$STATE/palaver.conf
STORE=$STATE/store

# The features both peers run in the bench (../shared/bench/README.md, "Same
# features"), as Palaver modules; BOSH is left out with the http listener.
BENCH_MODULES=${PALAVER_BENCH_MODULES:-disco ping version time roster
presence offline carbons smacks mam csi blocking vcard private pep bookmarks
register muc}

configured_with() { grep -q -e "--enable-$2" "$1/config.status" 2>/dev/null; }

# Which build to run: $PALAVER_BUILD, else the in-tree build (./bootstrap
# run), else build/*; sanitizer builds only when nothing else exists, since
# they measure ASan, not Palaver.
pick_build() {
    if [ -n "${PALAVER_BUILD:-}" ]; then
        [ -x "$PALAVER_BUILD/src/palaverd" ] ||
            die "no src/palaverd in PALAVER_BUILD=$PALAVER_BUILD"
        readlink -f "$PALAVER_BUILD"
        return 0
    fi
    local d
    local -a cands=("$CHECKOUT")
    for d in "$CHECKOUT"/build/*/; do cands+=("${d%/}"); done
    for d in "${cands[@]}"; do
        [ -x "$d/src/palaverd" ] && ! configured_with "$d" sanitizers &&
            { echo "$d"; return 0; }
    done
    for d in "${cands[@]}"; do
        if [ -x "$d/src/palaverd" ]; then
            say "warning: only a sanitizer build exists ($d): figures will be slow"
            echo "$d"
            return 0
        fi
    done
    die "no built palaverd in $CHECKOUT or $CHECKOUT/build/* (run ./bootstrap run or make)"
}

BUILD=$(pick_build)
PALAVERD=$BUILD/src/palaverd
PALAVERCTL=$BUILD/tools/palaverctl
MODDIR=$BUILD/modules/.libs

# has_module NAME: the build has it, as mod_NAME.so or linked in.
has_module() {
    if configured_with "$BUILD" static-modules; then
        grep -q "modules/mod_$1\.c\|modules/mod_$1/" "$BUILD/Makefile" 2>/dev/null
    else
        [ -f "$MODDIR/mod_$1.so" ]
    fi
}

write_conf() {
    local m mods=() list="" vhost_extra=""
    for m in $BENCH_MODULES; do
        has_module "$m" && mods+=("$m")
    done
    for m in "${mods[@]}"; do list="$list${list:+, }\"$m\""; done
    if has_module muc; then
        vhost_extra=" muc_domain = \"$MUC\";"
    fi
    local register=""
    if has_module register; then
        register='
# In-band registration open and unthrottled (XEP-0077).
register_open = true;
register_rate_limit = "off";'
    fi
    cat >"$CONF.tmp" <<EOF
# Written by $CHECKOUT/bench/palaver-start.sh for xmppbench.
# Build: $BUILD
# Modules on: ${mods[*]}

vhosts = ( { name = "$DOMAIN";$vhost_extra } );
listen = ( { kind = "c2s"; address = "127.0.0.1"; port = $PORT; } );

tls_certificate = "$CERT";
tls_key = "$KEY";
storage_path = "$STORE";
module_path = "$MODDIR";
modules_enabled = [ $list ];

run_as_root = true;
log_level = "warn";
scram_iterations = 4096;

# Every limit off: the bench measures the server, not its throttles.
c2s_rate_limit = "off";
c2s_stanza_rate = "off";
auth_failure_limit = "off";
max_connections = "off";
max_connections_per_ip = "off";$register
EOF
    # Module directives whose names this build may not have yet: a module
    # without the directive has no such limit either, so leave it out
    # rather than fail the load.
    local err d pruned=0
    if ! err=$("$PALAVERD" -t -c "$CONF.tmp" 2>&1); then
        for d in register_open register_rate_limit; do
            if grep -q "$d" <<<"$err"; then
                say "this build has no directive $d; left out"
                sed -i "/^$d = /d" "$CONF.tmp"
                pruned=1
            fi
        done
        if [ "$pruned" = 0 ] || ! err=$("$PALAVERD" -t -c "$CONF.tmp" 2>&1); then
            printf '%s\n' "$err" >&2
            die "the generated configuration does not load ($CONF.tmp)"
        fi
    fi
    mv "$CONF.tmp" "$CONF"
    printf '%s\n' "${mods[@]}" >"$STATE/modules.txt"
    say "wrote $CONF (build $BUILD; modules: ${mods[*]})"
}

# user0001:pass0001 ... in one transaction, as xmppbench names them
# (user%04d). Only on a new store and when accounts cannot be registered
# in-band; the marker makes a failed batch (which commits nothing) retry.
create_users() {
    [ -f "$STATE/users.created" ] && return 0
    has_module register && return 0
    say "creating $USERS accounts"
    # The bench pins this script to the server's core, but the generator
    # is not running yet: hash the passwords on every CPU so that the
    # accounts are there within START_TIMEOUT.
    local -a unpin=()
    local last
    last=$(($(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1) - 1))
    if [ "$last" -gt 0 ] && command -v taskset >/dev/null 2>&1 &&
        taskset -c "0-$last" true 2>/dev/null; then
        unpin=(taskset -c "0-$last")
    fi
    awk -v n="$USERS" -v d="$DOMAIN" \
        'BEGIN { for (i = 1; i <= n; i++) printf "user%04d@%s:pass%04d\n", i, d, i }' |
        "${unpin[@]}" "$PALAVERCTL" -c "$CONF" adduser --batch >/dev/null ||
        die "palaverctl adduser --batch failed"
    say "created $USERS accounts in ${SECONDS}s"
    : >"$STATE/users.created"
}

[ -f "$CONF" ] || write_conf
create_users
exec "$PALAVERD" -c "$CONF"
