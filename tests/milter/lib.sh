# tests/milter/lib.sh - start the built daemon on a private socket and drive it with
# miltertest (no MTA). Sourced by tests/milter/t_*.sh; ctest sets UM_BIN and UM_SRC.
set -euo pipefail

UM_BIN=${UM_BIN:?UM_BIN must point at the built unimilter}
UM_SRC=${UM_SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}

need() {
    if ! command -v "$1" >/dev/null 2>&1; then
        if [ "${CI:-}" = "true" ]; then
            echo "FAIL: $1 is not installed (CI installs it: tools/test.sh)" >&2
            exit 1
        fi
        echo "SKIP: $1 is not installed" >&2
        exit 77
    fi
}
need miltertest

T=$(mktemp -d /tmp/um-milter.XXXXXX)
# The daemon writes its sockets, state and history here after dropping to nobody, and reads
# its configurations from here as root: a root-owned sticky directory (like /tmp) serves
# both, since the daemon refuses a configuration in a directory another user owns or may
# write without the sticky bit (lib/fileperm.h).
chmod 1777 "$T"
UM_PID=
cleanup() {
    if [ -n "$UM_PID" ] && kill -0 "$UM_PID" 2>/dev/null; then
        kill -KILL "$UM_PID" 2>/dev/null || true
    fi
    if [ "${KEEP:-}" = "" ]; then rm -rf "$T"; else echo "kept $T" >&2; fi
}
trap cleanup EXIT

fail() {
    echo "FAIL: $*" >&2
    if [ -f "$T/log" ]; then echo "--- daemon log:" >&2; tail -n 40 "$T/log" >&2; fi
    exit 1
}

# write_conf FILE [extra libconfig text]: a config on the private socket, stderr logs,
# trace header on, the example's mode rules. RLEXTRA (env) adds ratelimit settings.
write_conf() {
    local f=$1; shift
    local RLEXTRA=${RLEXTRA:-}
    # No DNS in protocol tests: inbound checks that would query are off unless a test asks
    # (INEXTRA), and the resolver points nowhere unless the test configures dns itself.
    local DNSDEFAULT='dns = { servers = ["127.0.0.1@9"]; timeout = 1; };'
    case ${1:-} in *"dns = "*) DNSDEFAULT= ;; esac
    cat >"$f" <<CONF
socket = "unix:$T/um.sock";
socket_mode = "0666";
user = "nobody";
shutdown_timeout = 10;
log = { target = "stderr"; level = "debug"; };
debug = { trace_header = true; };
control_socket = "$T/control.sock";
ratelimit = { state_file = "$T/rl.state"; $RLEXTRA };
$DNSDEFAULT
inbound = { ${INEXTRA:-spf = false; dmarc = false;} };
reports = { history_file = "$T/dmarc-history.sqlite"; };
mode = {
    default = "inbound";
    rules = (
        { daemon_name = "ORIGINATING"; mode = "outbound"; },
        { daemon_name = "MSA"; mode = "outbound"; },
        { daemon_port = 587; mode = "outbound"; },
        { daemon_port = 465; mode = "outbound"; },
        { daemon_name = "skipme"; mode = "skip"; }
    );
};
${1:-}
CONF
}

# um_start CONF [extra args]: start in the foreground (background job), wait for the socket.
um_start() {
    local conf=$1; shift
    "$UM_BIN" -c "$conf" "$@" >>"$T/log" 2>&1 &
    UM_PID=$!
    local sock
    sock=$(sed -n 's/^socket = "unix:\(.*\)";$/\1/p' "$conf")
    for a in "$@"; do case $a in unix:*) sock=${a#unix:} ;; esac; done
    for _ in $(seq 1 100); do
        [ -S "$sock" ] && grep -q "listening on" "$T/log" && return 0
        kill -0 "$UM_PID" 2>/dev/null || fail "unimilter exited at startup"
        sleep 0.05
    done
    fail "socket $sock did not appear"
}

# um_reload [SIGNAL]: send SIGHUP (or SIGNAL) and wait until the daemon logged the reload.
um_reload() {
    local before
    before=$(grep -c 'event=reload' "$T/log" || true)
    kill -"${1:-HUP}" "$UM_PID"
    for _ in $(seq 1 200); do
        [ "$(grep -c 'event=reload' "$T/log" || true)" -gt "$before" ] && return 0
        sleep 0.05
    done
    fail "no reload logged after SIG${1:-HUP}"
}

# wait_log PATTERN COUNT: wait (up to 10 s) until the daemon log has COUNT matching lines.
wait_log() {
    for _ in $(seq 1 200); do
        [ "$(grep -c -- "$1" "$T/log" || true)" -ge "$2" ] && return 0
        sleep 0.05
    done
    fail "log never had $2 line(s) matching $1"
}

# um_stop: SIGTERM, wait, return its exit status in UM_RC.
um_stop() {
    kill -TERM "$UM_PID"
    UM_RC=0
    wait "$UM_PID" || UM_RC=$?
    UM_PID=
}

# mt_session NAME DAEMON_NAME DAEMON_PORT EXPECT [SLEEP_MID] : one message through
# miltertest; EXPECT is the X-Unimilter-Mode value, or "accept-at-mail" for skip.
mt_session() {
    local name=$1 dname=$2 dport=$3 expect=$4 mid=${5:-0} sock=${SOCK:-$T/um.sock}
    local macros="" macroline="-- no connect macros"
    [ -n "$dname" ] && macros="$macros, \"{daemon_name}\", \"$dname\""
    [ -n "$dport" ] && macros="$macros, \"{daemon_port}\", \"$dport\""
    [ -n "$macros" ] && macroline="mt.macro(conn, SMFIC_CONNECT $macros)"
    cat >"$T/$name.lua" <<LUA
local conn = mt.connect("unix:$sock", 40, 0.1)
if conn == nil then error("connect failed") end
$macroline
if mt.conninfo(conn, "client.example", "192.0.2.7") ~= nil then error("conninfo failed") end
if mt.getreply(conn) ~= SMFIR_CONTINUE then error("connect not continued") end
if mt.helo(conn, "client.example") ~= nil then error("helo failed") end
if mt.mailfrom(conn, "<alice@example.org>") ~= nil then error("mail failed") end
if "$expect" == "accept-at-mail" then
    if mt.getreply(conn) ~= SMFIR_ACCEPT then error("skip: MAIL FROM was not accepted") end
    mt.disconnect(conn)
    return
end
if mt.getreply(conn) ~= SMFIR_CONTINUE then error("mail not continued") end
if mt.rcptto(conn, "<bob@example.net>") ~= nil then error("rcpt failed") end
if mt.header(conn, "From", "Alice <alice@example.org>") ~= nil then error("header failed") end
if mt.header(conn, "Subject", "test $name") ~= nil then error("header failed") end
if mt.eoh(conn) ~= nil then error("eoh failed") end
if $mid > 0 then mt.sleep($mid) end
if mt.bodystring(conn, "hello\r\n") ~= nil then error("body failed") end
if mt.eom(conn) ~= nil then error("eom failed") end
-- miltertest offers SMFIP_HDR_LEADSPC and we take it, so the value carries its space.
if not mt.eom_check(conn, MT_HDRINSERT, "X-Unimilter-Mode", " $expect") then
    error("no X-Unimilter-Mode: $expect header inserted")
end
if mt.getreply(conn) ~= SMFIR_ACCEPT then error("eom not accepted") end
mt.disconnect(conn)
LUA
    miltertest -s "$T/$name.lua" >"$T/$name.out" 2>&1 || { cat "$T/$name.out" >&2; return 1; }
}

# rl_session NAME AUTH FROM "RCPT..." WANT [abort|local|hold]
#   WANT: one letter per recipient, c = accepted, t = refused (reply code); then the
#   end-of-message answer: a = accept, t = refused.
rl_session() {
    local name=$1 auth=$2 from=$3 rcpts=$4 want=$5 how=${6:-} host="client.example" ip="192.0.2.7"
    [ "$how" = local ] && { host=localhost; ip=127.0.0.1; }
    {
        echo "local conn = mt.connect(\"unix:${SOCK:-$T/um.sock}\", 40, 0.1)"
        echo 'if conn == nil then error("connect failed") end'
        echo 'mt.macro(conn, SMFIC_CONNECT, "{daemon_name}", "ORIGINATING")'
        echo "if mt.conninfo(conn, \"$host\", \"$ip\") ~= nil then error(\"conninfo\") end"
        # HELO first: miltertest drops later stages' macros when it sends one itself.
        echo 'if mt.helo(conn, "client.example") ~= nil then error("helo") end'
        [ -n "$auth" ] && echo "mt.macro(conn, SMFIC_MAIL, \"{auth_authen}\", \"$auth\")"
        echo "if mt.mailfrom(conn, \"<$from>\") ~= nil then error(\"mail\") end"
        echo 'if mt.getreply(conn) ~= SMFIR_CONTINUE then error("mail refused") end'
        local i=0
        for r in $rcpts; do
            local w=${want:$i:1}
            echo "if mt.rcptto(conn, \"<$r>\") ~= nil then error(\"rcpt\") end"
            if [ "$w" = c ]; then
                echo "if mt.getreply(conn) ~= SMFIR_CONTINUE then error(\"rcpt $r: want continue\") end"
            else
                echo "if mt.getreply(conn) ~= SMFIR_REPLYCODE then error(\"rcpt $r: want refusal\") end"
            fi
            i=$((i + 1))
        done
        if [ "$how" = abort ]; then
            echo 'mt.abort(conn)'
            echo 'mt.disconnect(conn)'
        else
            echo 'if mt.header(conn, "From", "x@example.org") ~= nil then error("header") end'
            echo 'if mt.eoh(conn) ~= nil then error("eoh") end'
            echo 'if mt.bodystring(conn, "hi\r\n") ~= nil then error("body") end'
            echo 'if mt.eom(conn) ~= nil then error("eom") end'
            if [ "${want:$i:1}" = a ]; then
                echo 'if mt.getreply(conn) ~= SMFIR_ACCEPT then error("eom: want accept") end'
                [ "$how" = hold ] && echo 'if not mt.eom_check(conn, MT_QUARANTINE) then error("not held") end'
            else
                echo 'local r = mt.getreply(conn)'
                echo 'if r ~= SMFIR_REPLYCODE and r ~= SMFIR_TEMPFAIL then error("eom: want refusal") end'
            fi
            echo 'mt.disconnect(conn)'
        fi
    } >"$T/$name.lua"
    miltertest -s "$T/$name.lua" >"$T/$name.out" 2>&1 || fail "$name: $(cat "$T/$name.out")"
}

