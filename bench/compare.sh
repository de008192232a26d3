#!/usr/bin/env bash
# Runs the quick benchmarks of an older commit and of the working tree back to back, bench by
# bench, so that both sides of each figure see the same machine load. Prints the `name=value`
# lines of each side under `### <bench> base|head` headers.
#
#   bench/compare.sh BASE_COMMIT [BENCH...]
#
# BENCH is any of codec mux_session flow transfer frontier mux (default: all). The base commit is
# checked out into target/compare-base (a git worktree, reused on later runs).
set -euo pipefail

root=$(git rev-parse --show-toplevel)
base_rev=${1:?usage: bench/compare.sh BASE_COMMIT [BENCH...]}
shift
[ $# -gt 0 ] || set -- codec mux_session flow transfer frontier mux
base="$root/target/compare-base"

if [ -d "$base" ]; then
    git -C "$base" checkout --quiet --detach "$base_rev"
else
    git -C "$root" worktree add --quiet --detach "$base" "$base_rev"
fi
make -C "$root" --quiet go-bench >/dev/null
export WEIR_BENCH_QUICK=1 WEIR_GO_BENCH="$root/target/drpc-go-bench"

figures() { grep -E '^[a-z0-9_]+=' || true; }

for bench in "$@"; do
    for side in base head; do
        tree=$root
        [ "$side" = base ] && tree=$base
        echo "### $bench $side"
        if [ "$bench" = mux ]; then
            (cd "$tree/bench" && cargo run --quiet --release --bin mux 2>/dev/null | figures)
        else
            (cd "$tree" && cargo bench --quiet -p weir --bench "$bench" 2>/dev/null | figures)
        fi
    done
done
