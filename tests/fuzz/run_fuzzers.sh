#!/usr/bin/env bash
# tests/fuzz/run_fuzzers.sh: run every built libFuzzer harness for a bounded
# time on a copy of its seed corpus (tests/fuzz/corpus/<name>/), and fail on
# any crash, leak, timeout or out-of-memory. Building the harnesses is
# `make fuzz`'s job, not this script's.
#   tests/fuzz/run_fuzzers.sh [DIR...]   harnesses fuzz_* found under DIR
#                                        (default: build/fuzz, build/*/fuzz)
# Environment: FUZZ_SECONDS (45) per harness, FUZZ_JOBS (number of CPUs)
# harnesses at a time, FUZZ_ONLY="xmlstream jid" to run some, FUZZ_KEEP=1
# to keep the work directory. Findings (inputs and logs) are copied to
# FUZZ_FINDINGS (build/fuzz-findings/<name>/).
set -euo pipefail

SRC=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../.." && pwd)
SECONDS_EACH=${FUZZ_SECONDS:-45}
JOBS=${FUZZ_JOBS:-$(nproc 2>/dev/null || echo 1)}
FINDINGS=${FUZZ_FINDINGS:-$SRC/build/fuzz-findings}

say() { printf 'run_fuzzers: %s\n' "$*" >&2; }

dirs=("$@")
if [ "${#dirs[@]}" -eq 0 ]; then
    for d in "$SRC"/build/fuzz "$SRC"/build/*/fuzz; do
        [ -d "$d" ] && dirs+=("$d")
    done
fi
[ "${#dirs[@]}" -gt 0 ] || { say "no harness directory; run make fuzz first"; exit 1; }

# Harnesses: executables named fuzz_<name> (no suffix: skip .c, .o, .sh),
# not libtool's .libs copies. When two directories build the same harness
# the first wins.
declare -A path=()
names=()
while IFS= read -r f; do
    n=${f##*/fuzz_}
    [ -n "${path[$n]:-}" ] && continue
    if [ -n "${FUZZ_ONLY:-}" ]; then
        case " $FUZZ_ONLY " in *" $n "*) ;; *) continue ;; esac
    fi
    path[$n]=$f
    names+=("$n")
done < <(find "${dirs[@]}" -maxdepth 2 -type f -perm -u+x -name 'fuzz_*' \
    ! -name '*.*' ! -path '*/.libs/*' 2>/dev/null | LC_ALL=C sort)
[ "${#names[@]}" -gt 0 ] || { say "no fuzz_* harness in ${dirs[*]}"; exit 1; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/palaver-fuzz.XXXXXX")
cleanup() { [ "${FUZZ_KEEP:-0}" = 1 ] || rm -rf "$WORK"; }
trap cleanup EXIT

# UBSan in the harnesses must stop on the first report, or undefined
# behaviour would only be printed and the run would still pass.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}

# run_one NAME: fuzz one harness; its exit status is the verdict.
run_one() {
    local n=$1 bin=${path[$1]} dir=$WORK/$1 seeds=$SRC/tests/fuzz/corpus/$1
    mkdir -p "$dir/corpus" "$dir/artifacts"
    # The harness writes new inputs into its corpus: give it a copy so the
    # checked-in seeds stay as they are.
    if [ -d "$seeds" ]; then
        cp -R "$seeds/." "$dir/corpus/"
    else
        say "$n: no seed corpus in tests/fuzz/corpus/$n (starting empty)"
    fi
    local rc=0
    "$bin" -max_total_time="$SECONDS_EACH" -rss_limit_mb=2048 -timeout=10 \
        -print_final_stats=1 -artifact_prefix="$dir/artifacts/" \
        "$dir/corpus" >"$dir/log" 2>&1 || rc=$?
    if [ "$rc" -ne 0 ] || [ -n "$(ls -A "$dir/artifacts")" ]; then
        [ "$rc" -ne 0 ] || rc=1
        mkdir -p "$FINDINGS/$n"
        cp -R "$dir/artifacts/." "$FINDINGS/$n/" 2>/dev/null || true
        cp "$dir/log" "$FINDINGS/$n/log"
    fi
    return "$rc"
}

declare -A pid_of=()
failed=()
report() {
    local n=$1 rc=$2 dir=$WORK/$1 execs
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$dir/log" | tail -1)
    if [ "$rc" -eq 0 ]; then
        say "$n: ok (${execs:-?} runs in ${SECONDS_EACH}s)"
    else
        say "$n: FAILED (exit $rc); findings in $FINDINGS/$n/"
        # The report from a few lines before the sanitizer's first line
        # (a harness's own message comes just before it), without
        # libFuzzer's progress lines; the rest is in the findings log.
        grep -v -e '^#[0-9]' -e '^INFO:' -e '^[[:space:]]*NEW_FUNC' "$dir/log" |
            awk '/==[0-9]+==.*ERROR|ERROR: libFuzzer|^SUMMARY:/ && !f { f = NR }
                 { l[NR] = $0 }
                 END { s = f ? f - 8 : NR - 40; if (s < 1) s = 1
                       for (i = s; i <= NR && i < s + 48; i++) print l[i] }' >&2
        failed+=("$n")
    fi
}

# Run up to JOBS harnesses at a time, report each as it finishes.
wait_one() {
    local n done_pid="" rc=0
    wait -n -p done_pid || rc=$?
    for n in "${!pid_of[@]}"; do
        if [ "${pid_of[$n]}" = "$done_pid" ]; then
            unset "pid_of[$n]"
            report "$n" "$rc"
            return 0
        fi
    done
}

say "${#names[@]} harnesses (${names[*]}), ${SECONDS_EACH}s each, $JOBS at a time"
for n in "${names[@]}"; do
    while [ "${#pid_of[@]}" -ge "$JOBS" ]; do wait_one; done
    run_one "$n" &
    pid_of[$n]=$!
done
while [ "${#pid_of[@]}" -gt 0 ]; do wait_one; done

if [ "${#failed[@]}" -gt 0 ]; then
    say "failed: ${failed[*]}"
    exit 1
fi
say "all harnesses passed"
