#!/usr/bin/env bash
# Fuzzes what a stranger can send the server: the client-message decoder (and the relay's fast
# path against it), the UserSig decoder/verifier, and the SDP checks (fuzz/fuzz_targets/*).
#
#   scripts/fuzz.sh                  every target, FUZZ_SECS (default 60) seconds each
#   FUZZ_SECS=3600 scripts/fuzz.sh sdp   one target for an hour
#   FUZZ_JOBS=2 ...                  fuzzing processes per target (default 1; libFuzzer -fork)
#
# Needs the nightly toolchain and cargo-fuzz (scripts/setup.sh installs both). Builds go to
# target/fuzz (sanitizer flags would otherwise rebuild the normal target dir); the growing corpus
# is kept in target/fuzz/corpus/<target>, seeded from fuzz/seeds/<target> (committed, small:
# real SDPs, the UserSig vectors, the protocol document's examples). A crash stops the run with
# exit 1 and leaves its input in target/fuzz/artifacts/<target>/; reproduce it with
#   cargo +nightly fuzz run --fuzz-dir fuzz --target-dir target/fuzz <target> <crash file>
# then copy it into fuzz/regressions/<target>/ (named after what it found): the stable test
# crates/proto/tests/fuzz_regressions.rs replays every seed and regression through the same
# properties (fuzz/checks.rs) in every `cargo test`. Dictionaries: fuzz/dicts/<target>.dict.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
secs="${FUZZ_SECS:-60}"
jobs="${FUZZ_JOBS:-1}"
all=(client_message usersig sdp)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${all[@]}")

if ! command -v cargo-fuzz >/dev/null; then
    echo "cargo-fuzz is missing: run scripts/setup.sh (or cargo install cargo-fuzz --locked)" >&2
    exit 2
fi
out=target/fuzz
fuzz=(cargo +nightly fuzz)
echo "== build fuzz targets (nightly, $out)"
"${fuzz[@]}" build --fuzz-dir fuzz --target-dir "$out"
extra=()
# Several processes on one corpus (libFuzzer's fork mode).
[ "$jobs" -gt 1 ] && extra+=(-fork="$jobs")

status=0
for t in "${targets[@]}"; do
    corpus="$out/corpus/$t"
    artifacts="$out/artifacts/$t"
    mkdir -p "$corpus" "$artifacts"
    echo "== fuzz $t for ${secs}s (corpus $(find "$corpus" -type f | wc -l) + $(find "fuzz/seeds/$t" -type f | wc -l) seeds)"
    log="$out/$t.log"
    dict=()
    [ -f "fuzz/dicts/$t.dict" ] && dict=(-dict="fuzz/dicts/$t.dict")
    # The first corpus dir takes new inputs; the seeds are read only.
    if "${fuzz[@]}" run --fuzz-dir fuzz --target-dir "$out" "$t" "$corpus" "fuzz/seeds/$t" -- \
        -max_total_time="$secs" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
        -artifact_prefix="$artifacts/" -print_final_stats=1 "${dict[@]}" "${extra[@]}" >"$log" 2>&1; then
        grep -E "^stat::(number_of_executed_units|new_units_added)|^#[0-9]+ *DONE" "$log" | tr '\n' ' '
        echo
    else
        status=1
        echo "!! $t found a crash (log: $log; input in $artifacts):"
        grep -E "panicked at|ERROR: libFuzzer|SUMMARY|Test unit written" "$log" | head -n 10
    fi
done
exit $status
