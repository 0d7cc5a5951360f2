#!/usr/bin/env bash
# Runs one fuzz target for a while (default 150 s) with the settings used for the recorded runs.
#   fuzz/run.sh http_request|wsgi_environ|static_path [SECONDS] [extra libFuzzer flags...]
# New inputs go to fuzz/corpus/TARGET, crashes to fuzz/artifacts/TARGET, libFuzzer's output to
# fuzz/fuzz-0.log (it runs one job, in a child process). Needs cargo-fuzz and a nightly toolchain.
set -euo pipefail
cd "$(dirname "$0")"
target=${1:?usage: fuzz/run.sh TARGET [SECONDS] [libFuzzer flags...]}
secs=${2:-150}
shift $(($# < 2 ? $# : 2))
PY=${PY:-python3}

# The binaries link libpython and embed the interpreter (as `cargo test` does; see the Makefile).
LIBDIR=$("$PY" -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR") or "")')
export LD_LIBRARY_PATH="$LIBDIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
PYTHONHOME=$("$PY" -c 'import sys; print(sys.base_prefix)')
export PYTHONHOME
# http_request reads the server's defaults from this checkout's rsgi.config (as `make test-rust`).
export PYTHONPATH="$PWD/../python${PYTHONPATH:+:$PYTHONPATH}"

case "$target" in
    # It embeds Python only to read the defaults; CPython's own allocations are not reported as
    # leaks (lsan-python.supp), the core's still are.
    http_request) seeds=(seeds/http_request ../tests/reliability/corpus); flags=(-max_len=16384)
                  export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$PWD/lsan-python.supp} ;;
    # The embedded interpreter is never finalized: LeakSanitizer would report CPython's own
    # allocations as leaks. (RSS stays flat over a run; see README.md.)
    wsgi_environ) seeds=(seeds/wsgi_environ); flags=(-max_len=4096 -detect_leaks=0)
                  export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0} ;;
    static_path) seeds=(seeds/static_path); flags=(-max_len=1024) ;;
    *) echo "unknown target $target" >&2; exit 2 ;;
esac
mkdir -p "corpus/$target"
rm -f fuzz-0.log
status=0
cargo +nightly fuzz run "$target" "corpus/$target" "${seeds[@]}" -- \
    -max_total_time="$secs" -jobs=1 -timeout=10 -print_final_stats=1 "${flags[@]}" "$@" || status=$?
[ -f fuzz-0.log ] && grep -E '^#[0-9]+ +(INITED|DONE)|^stat::|ERROR|panicked|Test unit' fuzz-0.log | tail -20
exit $status
