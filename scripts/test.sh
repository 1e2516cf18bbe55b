#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs the programs the tests drive (Debian's
# ffmpeg, for the video tests) when they are missing, checks the bare library
# (`--no-default-features`), then runs `cargo test --locked`.
# CI runs this (`.ci/run`); so does the README's second command.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v ffmpeg >/dev/null 2>&1 && command -v ffprobe >/dev/null 2>&1 || missing+=(ffmpeg)
if ((${#missing[@]})); then
    echo "installing ${missing[*]} (Debian packages) for the tests" >&2
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The bare library (`default-features = false`) builds and its documented examples run: a user
# who leaves out the CLI, the hub, the plots and the grids pays for none of their crates.
cargo check --locked --lib --no-default-features
cargo test --locked --doc --no-default-features

cargo test --locked "$@"
