#!/bin/sh
# Runs the whole integration suite: every tests/integration/test_*.py (the
# scenarios run inside test_scenarios.py) against fresh palaverd servers,
# prints a summary and exits nonzero on any failure. `make check` calls it;
# by hand: PV_BUILDDIR=<build tree> tests/integration/run_all.sh [test_x.py..]
# Environment (CONTRACTS.md §5): PV_BUILDDIR, PV_SRCDIR, PV_MODULE_PATH,
# PV_TEST_STRICT=1 (a skip fails), PV_TEST_LEAVE=1 (keep temp dirs),
# PV_TEST_TIME_FACTOR (timeouts; defaults to 3 for ASan builds).

here=$(cd "$(dirname "$0")" && pwd)
: "${PV_SRCDIR:=$(cd "$here/../.." && pwd)}"
: "${PV_BUILDDIR:=$PV_SRCDIR}"
export PV_SRCDIR PV_BUILDDIR
PYTHON=/usr/bin/python3

if [ $# -gt 0 ]; then
    tests="$*"
else
    tests=$(cd "$here" && ls test_*.py)
fi

logdir=$(mktemp -d "${TMPDIR:-/tmp}/pv-integration.XXXXXX")
n_pass=0 n_fail=0 n_skip=0
failed="" skipped=""
start=$(date +%s)
for t in $tests; do
    t=$(basename "$t")
    echo "=== $t"
    "$PYTHON" "$here/$t" >"$logdir/$t.log" 2>&1
    rc=$?
    cat "$logdir/$t.log"
    case $rc in
    0) n_pass=$((n_pass + 1)) ;;
    77) n_skip=$((n_skip + 1)); skipped="$skipped $t" ;;
    *) n_fail=$((n_fail + 1)); failed="$failed $t" ;;
    esac
done
end=$(date +%s)

echo "=== integration summary ($((end - start))s)"
grep -h '^\(PASS\|FAIL\|SKIP\) ' "$logdir"/*.log | cut -c1-4 | sort | uniq -c
echo "files: $n_pass passed, $n_fail failed, $n_skip skipped"
[ -n "$failed" ] && echo "failed:$failed"
[ -n "$skipped" ] && echo "skipped:$skipped"
if [ "${PV_TEST_LEAVE:-0}" = 1 ] || [ $n_fail -gt 0 ]; then
    echo "logs kept in $logdir"
else
    rm -rf "$logdir"
fi
[ $n_fail -gt 0 ] && exit 1
if [ $n_skip -gt 0 ]; then
    [ "${PV_TEST_STRICT:-0}" = 1 ] && { echo "skips fail under PV_TEST_STRICT=1"; exit 1; }
    [ $n_pass -eq 0 ] && exit 77
fi
exit 0
