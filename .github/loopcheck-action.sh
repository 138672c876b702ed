#!/usr/bin/env bash
# The shell steps of the GitHub Action in action.yml, kept here so that they run, and are
# tested, outside GitHub too (.ci/action runs them on examples/demo).
#
#   loopcheck-action.sh install   install cargo-loopcheck from this repository, or check the
#                                 prebuilt binary given as INPUT_CARGO_LOOPCHECK
#   loopcheck-action.sh run       the preflight (`check`), then `test`; exits with the worse of
#                                 their exit codes (0 clean, 1 problems, 2 usage, 3 could not run)
#
# Inputs are INPUT_* variables, set by action.yml from the action's inputs. They are never
# evaluated as shell code: INPUT_TEST_ARGS and INPUT_INSTALL_ARGS hold one argument per line.
# The script runs on the bash of every GitHub runner, macOS's 3.2 included: no `${x,,}`, no
# `mapfile`, and no bare `"${array[@]}"` of an array that may be empty (an error under `set -u`
# before bash 4.4).
set -euo pipefail

die() {
    echo "::error title=cargo-loopcheck action::$1" >&2
    exit "${2:-2}"
}

# true or false, as GitHub passes booleans.
flag() {
    case "$(printf '%s' "$1" | tr '[:upper:]' '[:lower:]')" in
    true | yes | on | 1) return 0 ;;
    false | no | off | 0) return 1 ;;
    *) die "\`$2\` must be true or false, not \`$1\`" ;;
    esac
}

# The binary: the prebuilt one, else where `install` put it.
binary() {
    local bin=${INPUT_CARGO_LOOPCHECK:-${LOOPCHECK_ACTION_BIN:-}}
    if [ -z "$bin" ]; then
        bin=$(command -v cargo-loopcheck) || die "cargo-loopcheck is not installed: run \`$0 install\` first" 3
    fi
    [ -f "$bin" ] && [ -x "$bin" ] || die "cargo-loopcheck \`$bin\` is not an executable file" 3
    printf '%s\n' "$bin"
}

# Prints each non-empty line of $1 as one argument, NUL-terminated, for `read -d ''`.
arguments() {
    local line
    while IFS= read -r line || [ -n "$line" ]; do
        line=${line%$'\r'}
        [ -n "$line" ] && printf '%s\0' "$line"
    done <<<"$1"
    return 0
}

# The installed binary under $1/bin: `cargo-loopcheck`, or `cargo-loopcheck.exe` on Windows.
installed() {
    if [ -f "$1/bin/cargo-loopcheck.exe" ] && [ ! -f "$1/bin/cargo-loopcheck" ]; then
        printf '%s\n' "$1/bin/cargo-loopcheck.exe"
    else
        printf '%s\n' "$1/bin/cargo-loopcheck"
    fi
}

install() {
    local bin
    if [ -n "${INPUT_CARGO_LOOPCHECK:-}" ]; then
        bin=$(binary)
    else
        local source=${INPUT_SOURCE:-$(cd "$(dirname "$0")/.." && pwd)}
        local root=${INPUT_INSTALL_ROOT:-${RUNNER_TEMP:-${TMPDIR:-/tmp}}/cargo-loopcheck}
        local extra=() arg
        while IFS= read -r -d '' arg; do extra+=("$arg"); done < <(arguments "${INPUT_INSTALL_ARGS:-}")
        echo "::group::cargo install cargo-loopcheck from $source"
        cargo install --locked --path "$source/cargo-loopcheck" --root "$root" ${extra[@]+"${extra[@]}"}
        echo "::endgroup::"
        bin=$(installed "$root")
    fi
    "$bin" loopcheck --version
    # Later steps, the action's and the job's own, find it: `cargo loopcheck` works after this.
    if [ -n "${GITHUB_ENV:-}" ]; then
        echo "LOOPCHECK_ACTION_BIN=$bin" >>"$GITHUB_ENV"
    fi
    if [ -n "${GITHUB_PATH:-}" ]; then
        dirname "$bin" >>"$GITHUB_PATH"
    fi
}

run() {
    local bin status=0 code
    bin=$(binary)
    local common=()
    if [ -n "${INPUT_MANIFEST_PATH:-}" ]; then
        common+=(--manifest-path "$INPUT_MANIFEST_PATH")
    fi
    if ! flag "${INPUT_SUMMARY:-true}" summary; then
        unset GITHUB_STEP_SUMMARY
    fi
    local preflight=false test=false
    flag "${INPUT_PREFLIGHT:-true}" preflight && preflight=true
    flag "${INPUT_TEST:-true}" test && test=true

    if $preflight; then
        echo "::group::cargo loopcheck check"
        code=0
        if [ -n "${INPUT_SARIF:-}" ]; then
            # Code scanning shows the findings, from the uploaded SARIF.
            "$bin" loopcheck check ${common[@]+"${common[@]}"} --message-format sarif >"$INPUT_SARIF" || code=$?
        else
            "$bin" loopcheck check ${common[@]+"${common[@]}"} --message-format github || code=$?
        fi
        echo "::endgroup::"
        echo "cargo loopcheck check: exit code $code"
        ((code > status)) && status=$code
    fi

    if $test; then
        local args=() junit=() arg
        while IFS= read -r -d '' arg; do args+=("$arg"); done < <(arguments "${INPUT_TEST_ARGS:-}")
        if [ -n "${INPUT_JUNIT:-}" ]; then
            junit=(--junit "$INPUT_JUNIT")
        fi
        if [ ${#args[@]} -gt 0 ]; then
            args=(-- "${args[@]}")
        fi
        code=0
        "$bin" loopcheck test ${common[@]+"${common[@]}"} --message-format github \
            ${junit[@]+"${junit[@]}"} ${args[@]+"${args[@]}"} || code=$?
        echo "cargo loopcheck test: exit code $code"
        ((code > status)) && status=$code
    fi

    if [ -n "${GITHUB_OUTPUT:-}" ]; then
        echo "exit-code=$status" >>"$GITHUB_OUTPUT"
    fi
    return "$status"
}

case "${1:-}" in
install) install ;;
run) run ;;
*) die "usage: $0 install|run" ;;
esac
