#!/bin/sh
# Reproduces the scan figures of docs/benchmarks.md: builds the bench and the CLI in release
# and runs the three configurations. TIME_WAIT entries live 60 s, so it first waits (at most
# 90 s) for earlier ones to expire.
set -eu
cd "$(dirname "$0")/.."
cargo build --release -p cargo-loopcheck
cargo bench --bench scan --no-run
export LOOPCHECK_CLI="$PWD/target/release/cargo-loopcheck"
wait_for_time_wait_to_expire() {
    i=0
    while [ "$(ss -Htan state time-wait | wc -l)" -gt 10 ] && [ "$i" -lt 90 ]; do sleep 1; i=$((i + 1)); done
}
for args in "--listeners 50" "--listeners 1000" "--listeners 50 --time-wait 20000"; do
    wait_for_time_wait_to_expire
    echo "## cargo bench --bench scan -- $args --runs 21   (load: $(cut -d' ' -f1-3 /proc/loadavg))"
    # shellcheck disable=SC2086
    cargo bench --bench scan -- $args --runs 21 2>/dev/null
    echo
done
