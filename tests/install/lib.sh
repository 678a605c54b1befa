# shellcheck shell=bash
# tests/install/lib.sh - shared helpers for the install, man, systemd and SELinux checks.
# A missing tool skips (exit 77) on a developer machine and fails under CI=true, because
# CI installs every tool (tools/deps.sh).

inst_fail() {
    echo "FAIL: $*" >&2
    exit 1
}

# inst_need WHAT CMD...: every CMD must be on PATH (WHAT names the Debian packages).
inst_need() {
    local what=$1 c
    shift
    for c in "$@"; do
        if ! command -v "$c" >/dev/null 2>&1; then
            if [[ "${CI:-}" == "true" ]]; then
                inst_fail "$c not found (install $what); under CI=true a missing tool is a failure"
            fi
            echo "SKIP: $c not found (install $what)" >&2
            exit 77
        fi
    done
}

# inst_need_file WHAT FILE: as inst_need, for a file a package provides.
inst_need_file() {
    if [[ ! -e "$2" ]]; then
        if [[ "${CI:-}" == "true" ]]; then
            inst_fail "$2 not found (install $1); under CI=true a missing tool is a failure"
        fi
        echo "SKIP: $2 not found (install $1)" >&2
        exit 77
    fi
}
