#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs the programs the tests drive (Debian's
# ffmpeg for the video tests, Debian's chromium and npm's playwright-core for the page test)
# when they are missing, checks the bare library
# (`--no-default-features`), then runs `cargo test --locked`.
# CI runs this (`.ci/run`); so does the README's second command.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v ffmpeg >/dev/null 2>&1 && command -v ffprobe >/dev/null 2>&1 || missing+=(ffmpeg)
# The page test drives Debian's chromium with playwright-core (Node.js from the machine, or
# Debian's when it has none).
[ -x "${CHROMIUM:-/usr/bin/chromium}" ] || missing+=(chromium)
command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)
if ((${#missing[@]})); then
    echo "installing ${missing[*]} (Debian packages) for the tests" >&2
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -d tests/browser/node_modules/playwright-core ]; then
    echo "installing playwright-core (npm) into tests/browser/node_modules" >&2
    (cd tests/browser && npm install --no-audit --no-fund --silent)
fi

# The kernel tests loop over the instruction sets this CPU has and fail when one of these is
# missing, so a machine with AVX-512 cannot pass without running the AVX-512 kernels.
if [ -z "${NORMSTYLE_REQUIRE_ISA:-}" ] && [ -r /proc/cpuinfo ]; then
    flags=$(grep -m1 '^flags' /proc/cpuinfo || true)
    have() { [[ " $flags " == *" $1 "* ]]; }
    isas=()
    if have avx2 && have fma; then
        isas+=(avx2)
        if have avx512f && have avx512vl; then isas+=(avx512); fi
    fi
    NORMSTYLE_REQUIRE_ISA=$(IFS=,; echo "${isas[*]:-}")
    export NORMSTYLE_REQUIRE_ISA
fi
echo "kernel instruction sets required by the tests: ${NORMSTYLE_REQUIRE_ISA:-none}" >&2

# The bare library (`default-features = false`) builds and its documented examples run: a user
# who leaves out the CLI, the hub, the plots and the grids pays for none of their crates.
cargo check --locked --lib --no-default-features
cargo test --locked --doc --no-default-features

cargo test --locked "$@"

# The parity cases again through Candle's ops (NORMSTYLE_KERNEL=candle): the code CUDA and Metal
# run, checked on the CPU against the same PyTorch/float64 fixtures.
NORMSTYLE_KERNEL=candle cargo test --locked --test adain_parity --test magenta_parity \
    --test norm_parity --test norm_properties --test norm_grad --test library
