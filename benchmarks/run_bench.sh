#!/usr/bin/env bash
# run_bench.sh - the driver of `make bench` (bench.mk builds the runners
# first). Runs every workload of WORKLOADS.md for every runner found in
# $BENCH_DIR, interleaved (for each repetition, for each workload, for each
# implementation) so that drift hits them all alike; then the 1-vs-2-process
# scaling workload, on mseg and on Boost when its runner is built; then
# prints the table of medians and ratios.
#
# The implementations take turns going first: repetition r starts with the
# r-th (rotate_impls). On a virtual machine a run's figures can depend on
# what ran just before it: mseg's alloc phase took 0.17 s right after a
# Boost alloc run and 0.34-0.44 s right after an LMDB map run (3 runs
# each; the kernel's zeroing of new page-cache pages was half the slow
# phase). On the second machine (2026-11-29), in one series of 3 pairs
# each: right after glibc's runner, mseg's alloc phase took 0.26-0.38 s
# and Boost's 0.25-0.33 s; right after the other's file-backed run,
# 0.10-0.11 s and 0.09-0.10 s (in a later series, both 0.09-0.12 s
# after glibc's runner too).
# So the order also runs backwards on even repetitions: with one
# direction only, each implementation had the same neighbour before it
# in every repetition but the one it started (mseg: glibc's runner), and
# in a `make bench REPS=5` mseg's phase was slow in 4 repetitions of 5,
# Boost's in 1. Phases that fill new pages still vary: read medians.
#
# Every runner but the scale workload's runs on one CPU, the same for all
# implementations (PIN, default the last CPU; PIN=none: wherever the
# scheduler puts it). On the project's virtual machine the two CPUs differ:
# a pointer chase over 4 MiB took 129-141 ns a step on CPU 0 and 25-53 ns
# on CPU 1 (its share of the L3 cache is larger), and a loop of mseg_alloc
# and mseg_free over 10,000 blocks 108-124 ns against 57-61 ns an
# operation. Unpinned, a runner's figures depended on where it landed.
#
# Environment: BENCH_DIR (build/bench), REPS (3), QUICK (0; 1 = N/10),
# BACKENDS ("file"), SCALE (1), PIN (the last CPU, or none), TMPDIR (/tmp).
# Output: $BENCH_DIR/results.csv (the runners' rows, with the header),
# $BENCH_DIR/runs.csv (the same rows with the repetition first),
# $BENCH_DIR/log.txt (the runners' stderr), $BENCH_DIR/ratios.svg (gnuplot).
set -u

BENCH_DIR=${BENCH_DIR:-build/bench}
REPS=${REPS:-3}
QUICK=${QUICK:-0}
BACKENDS=${BACKENDS:-file}
SCALE=${SCALE:-1}
PIN=${PIN:-$(( $(nproc) - 1 ))}
export TMPDIR=${TMPDIR:-/tmp}
HERE=$(cd "$(dirname "$0")" && pwd)

WORKLOADS="alloc churn named vector map reopen durable"
HEADER="workload,impl,backend,phase,n,seconds,ops_per_sec,extra"
RESULTS=$BENCH_DIR/results.csv
RUNS=$BENCH_DIR/runs.csv
LOG=$BENCH_DIR/log.txt

# N of WORKLOADS.md (the runners know them too; QUICK passes N/10).
default_n() {
    case $1 in
    alloc|churn|map|reopen|scale) echo 1000000 ;;
    named) echo 100000 ;;
    vector) echo 10000000 ;;
    durable) echo 2000 ;;
    esac
}

n_args() {
    [ "$QUICK" = 1 ] && echo "--n $(( $(default_n "$1") / 10 ))"
}

# Runners present, mseg first.
find_impls() {
    local impls="" name
    for name in mseg-bench peer-boost peer-pmemobj peer-lmdb peer-malloc; do
        [ -x "$BENCH_DIR/$name" ] && impls="$impls $name"
    done
    echo $impls
}

# The runners that have the scale workload, among those found.
scale_impls() {
    local name
    for name in "$@"; do
        case $name in mseg-bench|peer-boost) echo "$name" ;; esac
    done
}

# rotate_impls R IMPL...: the implementations, starting with the
# ((R - 1) mod count)-th, so that each goes first in turn; in the listed
# order on odd repetitions, backwards on even ones, so that each also
# follows both its neighbours in the list.
rotate_impls() {
    local r=$1
    shift
    local n=$# k=$(( (r - 1) % $# )) step=1 i
    [ $(( r % 2 )) -eq 0 ] && step=$(( n - 1 ))   # -1, modulo n
    for i in $(seq 0 $(( n - 1 ))); do
        local j=$(( (k + i * step) % n + 1 ))
        printf '%s ' "${!j}"
    done
}

progress() {
    [ -t 2 ] && printf '\r\033[K[%d/%d] %s' "$1" "$2" "$3" >&2
}

# Removes what a runner (pid) left behind if it died: its segment files,
# LMDB lock files and shm objects are all named mseg-bench-<impl>-<pid>.
cleanup_after() {
    rm -f "$TMPDIR"/mseg-bench-*-"$1" "$TMPDIR"/mseg-bench-*-"$1"-lock \
          /dev/shm/mseg-bench-*-"$1" /dev/shm/mseg-bench-*-"$1"-lock
}

FAILURES=0

# The command that runs a runner on the PIN CPU (taskset execs it, so its
# pid stays the runner's); empty when PIN=none, taskset is missing or it
# cannot use that CPU. Set once, in main.
PINNED=
pin_command() {
    [ "$PIN" != none ] && command -v taskset > /dev/null 2>&1 &&
        taskset -c "$PIN" true 2> /dev/null && echo "taskset -c $PIN"
}

# run REP BIN ARGS...: one runner invocation; its rows go to both CSVs.
# The scale workload is not pinned: its processes need every CPU.
run() {
    local rep=$1 bin=$2 out rc pid pin=
    shift 2
    [ "$2" = scale ] || pin=$PINNED
    out=$BENCH_DIR/.out
    echo "== rep $rep: $pin $bin $*" >> "$LOG"
    $pin "$BENCH_DIR/$bin" "$@" > "$out" 2>> "$LOG" &
    pid=$!
    wait "$pid"
    rc=$?
    cleanup_after "$pid"
    cat "$out" >> "$RESULTS"
    sed "s/^/$rep,/" "$out" >> "$RUNS"
    if [ "$rc" -ne 0 ]; then
        FAILURES=$((FAILURES + 1))
        [ -t 2 ] && printf '\n' >&2
        echo "bench: FAILED (exit $rc): $bin $*  (see $LOG)" >&2
        tail -n 3 "$LOG" >&2
    fi
}

main() {
    mkdir -p "$BENCH_DIR"
    : > "$LOG"
    echo "$HEADER" > "$RESULTS"
    echo "rep,$HEADER" > "$RUNS"
    local impls scalers total step=0 rep w b bin p
    impls=$(find_impls)
    scalers=$(scale_impls $impls)
    total=$(( REPS * ( $(echo $WORKLOADS | wc -w) * $(echo $BACKENDS | wc -w) * $(echo $impls | wc -w) + (SCALE ? 2 * $(echo $scalers | wc -w) : 0) ) ))
    PINNED=$(pin_command)
    [ "$PIN" != none ] && [ -z "$PINNED" ] &&
        echo "bench: cannot run the runners on CPU $PIN (taskset missing or refused); not pinned" >&2
    echo "bench: implementations: $impls; backends: $BACKENDS; $REPS repetition(s)$([ "$QUICK" = 1 ] && echo ', QUICK (N/10)'); $([ -n "$PINNED" ] && echo "pinned to CPU $PIN" || echo 'not pinned')" >&2
    for rep in $(seq 1 "$REPS"); do
        for w in $WORKLOADS; do
            for b in $BACKENDS; do
                for bin in $(rotate_impls "$rep" $impls); do
                    step=$((step + 1))
                    progress "$step" "$total" "rep $rep/$REPS  $w  $bin  $b"
                    run "$rep" "$bin" --workload "$w" --backend "$b" $(n_args "$w")
                done
            done
        done
        [ "$SCALE" = 1 ] || continue
        for p in 1 2; do
            for bin in $(rotate_impls "$rep" $scalers); do
                step=$((step + 1))
                progress "$step" "$total" "rep $rep/$REPS  scale  $bin  procs=$p  shm"
                run "$rep" "$bin" --workload scale --backend shm --procs "$p" $(n_args scale)
            done
        done
    done
    [ -t 2 ] && printf '\r\033[K' >&2

    echo
    echo "Skipped (no row):"
    grep -h 'skipped' "$LOG" | sort -u | sed 's/^/  /'
    echo
    awk -F, -v reps="$REPS" -v svgdata="$BENCH_DIR/ratios.dat" -f "$HERE/report.awk" "$RUNS"
    plot
    echo
    echo "rows: $RESULTS  (per repetition: $RUNS; runners' stderr: $LOG)"
    if [ "$FAILURES" -ne 0 ]; then
        echo "bench: $FAILURES run(s) FAILED: their figures are missing above" >&2
        return 1
    fi
}

# The SVG bar chart of the ratios, when gnuplot is installed.
plot() {
    local dat=$BENCH_DIR/ratios.dat svg=$BENCH_DIR/ratios.svg
    command -v gnuplot > /dev/null 2>&1 || { echo "(gnuplot not installed: no chart)"; return 0; }
    [ -s "$dat" ] || return 0
    local ncol
    ncol=$(head -n 1 "$dat" | awk '{print NF}')
    gnuplot <<EOF 2>> "$LOG" || { echo "gnuplot failed (see $LOG)"; return 0; }
set terminal svg size 1200,600 dynamic font "sans,11"
set output "$svg"
set title "mseg / peer, ops per second (file backend, medians of per-repetition ratios; >1: mseg faster)"
set datafile missing "?"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set logscale y 10
set yrange [0.01:*]
set grid ytics
set xtics rotate by -40 left
set key outside right top
set arrow from graph 0, first 1 to graph 1, first 1 nohead dashtype 2 linewidth 2
plot for [i=2:$ncol] "$dat" using i:xtic(1) title columnheader(i)
EOF
    echo "chart: $svg"
}

main "$@"
