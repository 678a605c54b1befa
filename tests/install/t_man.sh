#!/usr/bin/env bash
# Man pages: unimilter.conf(5), generated from the configuration schema by man/gen_man.c at
# build time, and unimilter(8), hand-written. Asserts that
#   1. both render with groff -man and `man -l` with no warnings at all (groff -ww);
#   2. unimilter.conf(5) documents every setting the loader accepts: each path of the
#      schema table in lib/config.c (read from the source here, independently of the
#      generator) is a .TP entry of the generated page, and shows in the rendered text;
#   3. unimilter(8) covers every daemon option of main.c's getopt string and every
#      subcommand in cli.c's table.
# Label "install". Env: UM_BUILD (build directory, holds man/unimilter.conf.5), UM_SRC.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/install/lib.sh
. "$here/lib.sh"
UM_SRC=${UM_SRC:-$(cd "$here/../.." && pwd)}
UM_BUILD=${UM_BUILD:?UM_BUILD must point at the build directory}
trap 'echo "FAIL: $0:$LINENO: command failed: $BASH_COMMAND" >&2' ERR

inst_need "groff-base man-db" groff man
conf5=$UM_BUILD/man/unimilter.conf.5
man8=$UM_SRC/man/unimilter.8
[[ -s "$conf5" ]] || inst_fail "$conf5 missing: the build did not generate it (man/CMakeLists.snippet.txt)"
export LC_ALL=C.UTF-8 MANWIDTH=80

# --- 1. no warnings ------------------------------------------------------------------------
for page in "$conf5" "$man8"; do
    msgs=$(groff -ww -z -man -Tutf8 "$page" 2>&1) || inst_fail "groff failed on $page: $msgs"
    [[ -z "$msgs" ]] || inst_fail "groff -ww warns on $page:"$'\n'"$msgs"
    msgs=$(man -l "$page" 2>&1 >/dev/null) || inst_fail "man -l failed on $page: $msgs"
    [[ -z "$msgs" ]] || inst_fail "man -l warns on $page:"$'\n'"$msgs"
    echo "ok: $(basename "$page") renders with no warnings"
done

# --- 2. every schema path documented -------------------------------------------------------
# Both forms of table entries: {"path", CFG_KIND, ...} and {.path = "path", .kind = CFG_KIND, ...},
# wherever clang-format breaks their lines (the table is read as one line).
paths=$(sed -n '/^static const struct cfg_item cfg_schema\[\] = {/,/^};/p' "$UM_SRC/lib/config.c" \
    | tr '\n' ' ' | tr -s '[:space:]' ' ' \
    | grep -oE '\{ ?(\.path = )?"[a-z_][][a-z0-9_.]*", ?(\.kind = )?CFG_[A-Z]+' \
    | sed -E 's/^\{ ?(\.path = )?"([^"]+)", ?(\.kind = )?(CFG_[A-Z]+)/\2 \4/')
n=$(wc -l <<<"$paths")
((n >= 40)) || inst_fail "found only $n schema entries in lib/config.c: the pattern no longer matches the table"
text=$(man -l "$conf5" 2>/dev/null | col -b)
missing=0
while read -r p kind; do
    if [[ "$kind" == CFG_GROUP ]]; then
        grep -qxF ".SS $p" "$conf5" || { echo "FAIL: group $p has no .SS heading" >&2; missing=$((missing + 1)); }
    else
        grep -qxF ".B $p" "$conf5" || { echo "FAIL: setting $p has no entry" >&2; missing=$((missing + 1)); }
    fi
    grep -qF -- "$p" <<<"$text" || { echo "FAIL: $p not in the rendered page" >&2; missing=$((missing + 1)); }
done <<<"$paths"
((missing == 0)) || inst_fail "$missing schema path(s) undocumented in unimilter.conf(5)"
echo "ok: all $n schema paths of lib/config.c are documented in unimilter.conf(5)"
# Nothing the loader does not know: every .B entry under SETTINGS is a schema path.
extra=$(awk 'prev == ".TP" && /^\.B / { print substr($0, 4) } { prev = $0 }' "$conf5" \
    | grep -vxF -f <(cut -d' ' -f1 <<<"$paths") || true)
[[ -z "$extra" ]] || inst_fail "unimilter.conf(5) documents settings the schema lacks: $extra"

# --- 3. unimilter(8) against main.c and cli.c ----------------------------------------------
text8=$(man -l "$man8" 2>/dev/null | col -b)
opts=$(grep -oE 'getopt\(argc, argv, "[^"]+"\)' "$UM_SRC/milter/main.c" | head -n 1 | sed -E 's/.*"([^"]+)".*/\1/' | tr -d ':')
[[ -n "$opts" ]] || inst_fail "no getopt string in milter/main.c"
for ((i = 0; i < ${#opts}; i++)); do
    o=${opts:i:1}
    grep -qE "(^|[^[:alnum:]])[-−]$o([^[:alnum:]]|$)" <<<"$text8" \
        || inst_fail "unimilter(8) does not document option -$o (main.c getopt \"$opts\")"
done
cmds=$(sed -n '/cmds\[\] = {/,/};/p' "$UM_SRC/milter/cli.c" | grep -oE '\{"[a-z-]+",' | tr -d '{",')
[[ -n "$cmds" ]] || inst_fail "no subcommand table in milter/cli.c"
for c in $cmds; do
    grep -qE "^ *unimilter ${c/-/[-‐−]}( |$)" <<<"$text8" \
        || inst_fail "unimilter(8) SYNOPSIS lacks subcommand $c (milter/cli.c)"
done
for s in SIGHUP SIGUSR1 SIGTERM SIGINT; do
    grep -q "$s" <<<"$text8" || inst_fail "unimilter(8) does not document $s"
done
echo "ok: unimilter(8) documents options -$(sed 's/./& -/g; s/ -$//' <<<"$opts"), subcommands $(echo $cmds), and the signals"
echo "PASS: man pages"
