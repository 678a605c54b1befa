#!/bin/sh
# t_format.sh - fails when a C source or header of the project differs from what
# clang-format makes of it with the repository's .clang-format (prints the places).
set -eu
src=${UM_SRC:-$(dirname "$0")/../..}
cd "$src"
if ! command -v clang-format >/dev/null 2>&1; then
    echo "clang-format is not installed (tools/deps.sh test installs it)" >&2
    exit 1
fi
files=$(find lib milter tests bench man -name build -prune -o -type f \( -name '*.c' -o -name '*.h' \) -print | sort)
n=$(echo "$files" | wc -l)
# shellcheck disable=SC2086
if ! clang-format --dry-run --Werror $files; then
    echo "FAIL: clang-format would change the files above; run: clang-format -i FILE" >&2
    exit 1
fi
echo "ok: $n files as .clang-format says"
