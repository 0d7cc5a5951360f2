#!/usr/bin/env bash
# Set up everything bench/run.py needs; safe to run again (it only adds what is missing).
#
#   bash bench/setup.sh
#
# - bench/.venv: a virtualenv with --system-site-packages, so the editable rsgi and Django already installed
#   in the interpreter that creates it stay importable, plus the peers from bench/requirements.txt;
# - from apt, when missing: wrk (HTTP/1.1 load), nghttp2-client (h2load, HTTP/2 load), nginx (static files);
# - bench/wsload-rs/target/release/wsload-rs, the websocket load client (cargo; without it run.py falls back to
#   the slower bench/wsload.py).
#
# Environment: PYTHON (default python3) is the interpreter the venv is made from; BENCH_SKIP_APT=1 skips apt;
# BENCH_SKIP_WSLOAD=1 skips the websocket client's cargo build (`make bench-seed` runs no websocket scenario).
set -euo pipefail

bench_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$bench_dir/.venv"
python="${PYTHON:-python3}"

if [[ ! -x "$venv/bin/python" ]]; then
    echo "setup: creating $venv (from $("$python" -c 'import sys; print(sys.executable)'))"
    "$python" -m venv --system-site-packages "$venv"
fi
echo "setup: pip install -r bench/requirements.txt into bench/.venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$bench_dir/requirements.txt"

if ! "$venv/bin/python" -c "import rsgi" 2>/dev/null; then
    echo "setup: warning: rsgi is not importable from bench/.venv; build it into $python first (maturin develop)" >&2
fi

missing=()
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v h2load >/dev/null 2>&1 || missing+=(nghttp2-client)
[[ -x /usr/sbin/nginx ]] || command -v nginx >/dev/null 2>&1 || missing+=(nginx)
if ((${#missing[@]})) && [[ "${BENCH_SKIP_APT:-0}" != 1 ]]; then
    sudo=()
    [[ "$(id -u)" -eq 0 ]] || sudo=(sudo)
    echo "setup: apt-get install ${missing[*]}"
    # Only refresh the package lists when the install fails without it (e.g. a fresh image with empty lists).
    # RUNLEVEL=1 keeps Debian's maintainer scripts from starting nginx as a system service.
    if ! "${sudo[@]}" env RUNLEVEL=1 DEBIAN_FRONTEND=noninteractive \
        apt-get install -y --no-install-recommends "${missing[@]}"; then
        "${sudo[@]}" apt-get update
        "${sudo[@]}" env RUNLEVEL=1 DEBIAN_FRONTEND=noninteractive \
            apt-get install -y --no-install-recommends "${missing[@]}"
    fi
fi

# The Rust websocket client: its own workspace and target dir, so it never touches the rsgi crate's build.
# A failed build is a warning, not an error: run.py then uses bench/wsload.py and its reports say so.
wsload="$bench_dir/wsload-rs"
if [[ "${BENCH_SKIP_WSLOAD:-0}" == 1 ]]; then
    echo "setup: BENCH_SKIP_WSLOAD=1: bench/wsload-rs not built"
elif command -v cargo >/dev/null 2>&1; then
    echo "setup: cargo build --release in bench/wsload-rs"
    cargo build --release --locked --manifest-path "$wsload/Cargo.toml" --target-dir "$wsload/target" ||
        echo "setup: warning: bench/wsload-rs did not build; the ws scenario will use bench/wsload.py" >&2
else
    echo "setup: warning: cargo not found; the ws scenario will use bench/wsload.py (slower, often the bottleneck)" >&2
fi

echo "setup: done. Run: bench/.venv/bin/python bench/run.py   (see bench/README.md)"
