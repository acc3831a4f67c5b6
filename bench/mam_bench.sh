#!/usr/bin/env bash
# bench/mam_bench.sh: the XEP-0313 "latest page of a big archive" figure
# for Palaver beside Prosody and ejabberd in one run. Starts each server
# with ../shared/bench/servers/*.sh (the same configurations compare.sh
# uses: every peer archives 1:1 messages by default), fills one archive
# with bench/mam_query.py, times the queries, stops the server.
#   PALAVER_START='exec <checkout>/bench/palaver-start.sh' bench/mam_bench.sh
# Environment: SERVERS (prosody ejabberd palaver), MESSAGES (100000),
# QUERIES (30), PAGE (50), BENCH_DIR (../shared/bench), OUT (results file).
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
BENCH_DIR=${BENCH_DIR:-$HERE/../../shared/bench}
SERVERS=${SERVERS:-prosody ejabberd palaver}
MESSAGES=${MESSAGES:-100000}
QUERIES=${QUERIES:-30}
PAGE=${PAGE:-50}
DOMAIN=${DOMAIN:-bench.test}
OUT=${OUT:-/tmp/mam_bench.jsonl}
: "${PALAVER_START:=exec $HERE/palaver-start.sh}"

for name in $SERVERS; do
    case $name in
    prosody|ejabberd)
        st=$(DOMAIN=$DOMAIN "$BENCH_DIR/servers/$name.sh" start) || exit 1
        script=$BENCH_DIR/servers/$name.sh ;;
    palaver)
        st=$(CMD=$PALAVER_START PORT=16222 DOMAIN=$DOMAIN \
             "$BENCH_DIR/servers/custom.sh" start palaver) || exit 1
        script=$BENCH_DIR/servers/custom.sh ;;
    *) echo "unknown server $name" >&2; exit 2 ;;
    esac
    state=${st#STATE=}
    # shellcheck disable=SC1091
    . "$state/bench.env"
    sleep 2
    echo "$name: filling $MESSAGES messages on port $PORT" >&2
    /usr/bin/python3 "$HERE/mam_query.py" --port "$PORT" --domain "$DOMAIN" \
        --name "$name" --cafile "$state/cert.pem" --messages "$MESSAGES" --queries "$QUERIES" \
        --page "$PAGE" | tee -a "$OUT"
    "$script" stop "$state"
done
