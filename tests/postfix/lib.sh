# shellcheck shell=bash
# tests/postfix/lib.sh - a private, throwaway, real Postfix instance for integration tests.
#
# Source this file from a test script (bash, `set -euo pipefail` safe). See README.md.
#
#   pf_require                      skip (77) if postfix/smtp-sink/swaks are missing or not root
#   pf_setup DIR                    write a private instance under DIR (config, queue, data, sink)
#   pf_set_milters SMTPD NONSMTPD   set smtpd_milters / non_smtpd_milters (reloads if running)
#   pf_postconf key=value...        any other main.cf setting (reloads if running)
#   pf_start / pf_stop              start / stop sink + Postfix (pf_stop is EXIT-trap safe)
#   pf_reload / pf_is_running       SIGHUP master and wait for the old children to exit
#   pf_teardown                     pf_stop, then rm -rf DIR unless PF_KEEP=1
#   pf_send_smtp ARGS...            swaks to the smtp port        (returns swaks' exit code)
#   pf_send_submission ARGS...      swaks to the submission port  (returns swaks' exit code)
#   pf_sendmail_local FROM TO FILE  the instance's sendmail (non_smtpd_milters path)
#   pf_wait_delivered N [TIMEOUT]   wait until N complete messages are in the sink
#   pf_wait_held N [TIMEOUT]        wait until N messages are in the hold queue
#   pf_held_count / pf_sink_count   print counts
#   pf_sink_files                   print captured files (complete ones), oldest first
#   pf_log_grep [GREP-OPTS] PATTERN grep -E the instance's maillog
#   pf_wait_log PATTERN [TIMEOUT]   wait until PATTERN shows up in the maillog
#   pf_diag                         dump maillog tail, queue, sink listing to stderr
#
# Exported: PF_DIR PF_CONF PF_QUEUE PF_SMTP_PORT PF_SUBMISSION_PORT PF_SINK_PORT PF_SINK_DIR
#           PF_LOG PF_RUN_DIR PF_SWAKS_OUT
# PF_RUN_DIR (mode 0755) is where callers put milter sockets (mode 0666): smtpd and cleanup run
# as user postfix and connect to e.g. unix:$PF_RUN_DIR/unimilter.sock.
#
# Nothing outside DIR is written except port reservations under ${TMPDIR:-/tmp}/unimilter-pf-ports
# (empty directories, pruned after 10 minutes). /etc/postfix is never modified: as root,
# `postfix -c` and `sendmail -C` accept a non-default config directory without it being listed
# in alternate_config_directories.

# Guard against double sourcing.
if [[ -n "${_PF_LIB_LOADED:-}" ]]; then
    return 0
fi
_PF_LIB_LOADED=1

PF_POSTFIX=${PF_POSTFIX:-/usr/sbin/postfix}
PF_POSTCONF=${PF_POSTCONF:-/usr/sbin/postconf}
PF_POSTQUEUE=${PF_POSTQUEUE:-/usr/sbin/postqueue}
PF_SENDMAIL=${PF_SENDMAIL:-/usr/sbin/sendmail}
PF_SMTP_SINK=${PF_SMTP_SINK:-/usr/sbin/smtp-sink}
PF_SWAKS=${PF_SWAKS:-swaks}
PF_HOSTNAME=${PF_HOSTNAME:-mta.unimilter.test}

_pf_msg() { printf 'pf: %s\n' "$*" >&2; }
_pf_die() { _pf_msg "error: $*"; return 1; }

# pf_require - skip (exit 77) when the tools are missing; under CI=true that is a failure (exit 1).
pf_require() {
    local missing=() t
    for t in "$PF_POSTFIX" "$PF_POSTCONF" "$PF_POSTQUEUE" "$PF_SENDMAIL" "$PF_SMTP_SINK" \
        "$PF_SWAKS" ps runuser; do
        command -v "$t" >/dev/null 2>&1 || missing+=("$t")
    done
    local why=""
    if ((${#missing[@]})); then
        why="missing: ${missing[*]} (Debian: apt-get install postfix swaks procps util-linux)"
    elif [[ $(id -u) -ne 0 ]]; then
        why="must run as root (postfix start needs it)"
    fi
    if [[ -n "$why" ]]; then
        if [[ "${CI:-}" == "true" ]]; then
            printf 'FAIL: real-Postfix test cannot run under CI=true: %s\n' "$why" >&2
            exit 1
        fi
        printf 'SKIP: real-Postfix test: %s\n' "$why" >&2
        exit 77
    fi
}

# _pf_ports_free PORT... - print the ports that 127.0.0.1 can bind right now.
_pf_ports_free() {
    local py p
    py=$(command -v /usr/bin/python3 python3 2>/dev/null | head -n1) || py=""
    if [[ -n "$py" ]]; then
        "$py" - "$@" <<'EOF' 2>/dev/null
import socket, sys
for port in sys.argv[1:]:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", int(port)))
        print(port)
    except OSError:
        pass
    finally:
        s.close()
EOF
    else
        # Without python3: only detects listeners (no bind test), good enough.
        for p in "$@"; do
            _pf_listening "$p" || printf '%s\n' "$p"
        done
    fi
}

# _pf_pick_ports N - print N free TCP ports in 20000..32767 (below the Linux ephemeral range,
# so outgoing connections do not grab them between the pick and the bind). Each is reserved
# with mkdir under ${TMPDIR:-/tmp}/unimilter-pf-ports so parallel tests never pick the same.
_pf_pick_ports() {
    local want=$1 resdir="${TMPDIR:-/tmp}/unimilter-pf-ports" port i round free
    local picked=() cands=()
    mkdir -p "$resdir" 2>/dev/null || true
    find "$resdir" -mindepth 1 -maxdepth 1 -type d -mmin +10 -exec rmdir {} + 2>/dev/null || true
    for ((round = 0; round < 20 && ${#picked[@]} < want; round++)); do
        cands=()
        for ((i = 0; i < 100 && ${#cands[@]} + ${#picked[@]} < want; i++)); do
            port=$((20000 + (RANDOM * 32768 + RANDOM) % 12768))
            mkdir "$resdir/$port" 2>/dev/null && cands+=("$port") # else: reserved by another test
        done
        ((${#cands[@]})) || continue
        free=" $(_pf_ports_free "${cands[@]}" | tr '\n' ' ') "
        for port in "${cands[@]}"; do
            if [[ "$free" == *" $port "* ]]; then
                picked+=("$port")
            else
                rmdir "$resdir/$port" 2>/dev/null || true
            fi
        done
    done
    ((${#picked[@]} == want)) || { _pf_die "no free TCP ports found"; return 1; }
    printf '%s\n' "${picked[@]}"
}

_pf_release_ports() {
    local resdir="${TMPDIR:-/tmp}/unimilter-pf-ports" p
    for p in "${PF_SMTP_PORT:-}" "${PF_SUBMISSION_PORT:-}" "${PF_SINK_PORT:-}"; do
        if [[ -n "$p" ]]; then rmdir "$resdir/$p" 2>/dev/null || true; fi
    done
}

# pf_setup DIR - create the private instance (does not start it).
pf_setup() {
    local dir=${1:?usage: pf_setup DIR}
    mkdir -p "$dir"
    PF_DIR=$(cd "$dir" && pwd -P)
    PF_CONF=$PF_DIR/etc
    PF_QUEUE=$PF_DIR/queue
    PF_SINK_DIR=$PF_DIR/sink
    PF_RUN_DIR=$PF_DIR/run
    PF_LOG=$PF_DIR/maillog
    PF_SWAKS_OUT=$PF_DIR/swaks.last
    local data=$PF_DIR/data

    # Postfix daemons (user postfix) must traverse to the queue; smtpd must reach milter sockets.
    chmod 0755 "$PF_DIR"
    mkdir -p "$PF_CONF" "$PF_QUEUE" "$data" "$PF_SINK_DIR" "$PF_RUN_DIR"
    chmod 0755 "$PF_CONF" "$PF_QUEUE" "$PF_RUN_DIR"
    chown postfix: "$data"
    chmod 0700 "$data"
    chown nobody: "$PF_SINK_DIR"
    chmod 0755 "$PF_SINK_DIR"
    : >"$PF_LOG"
    chmod 0644 "$PF_LOG"
    if command -v runuser >/dev/null 2>&1 &&
        ! runuser -u postfix -- test -x "$PF_QUEUE" 2>/dev/null; then
        _pf_die "user postfix cannot reach $PF_QUEUE; choose a DIR whose parents are world-searchable"
        return 1
    fi

    local ports
    ports=$(_pf_pick_ports 3) || return 1
    { read -r PF_SMTP_PORT; read -r PF_SUBMISSION_PORT; read -r PF_SINK_PORT; } <<<"$ports"
    export PF_DIR PF_CONF PF_QUEUE PF_SMTP_PORT PF_SUBMISSION_PORT PF_SINK_PORT PF_SINK_DIR \
        PF_LOG PF_RUN_DIR PF_SWAKS_OUT

    cat >"$PF_CONF/main.cf" <<EOF
# Private throwaway instance written by tests/postfix/lib.sh. Do not edit.
compatibility_level = 3.6
queue_directory = $PF_QUEUE
data_directory = $data
maillog_file = $PF_LOG
maillog_file_prefixes = $PF_DIR
syslog_name = postfix-um-$PF_SMTP_PORT
readme_directory = no
html_directory = no
biff = no
append_dot_mydomain = no

myhostname = $PF_HOSTNAME
mydomain = unimilter.test
myorigin = \$myhostname
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
local_transport = error:5.1.1 local delivery is disabled in the test instance
relay_domains =
relayhost = [127.0.0.1]:$PF_SINK_PORT

inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks_style = host
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
smtpd_banner = \$myhostname ESMTP unimilter-test
smtpd_peername_lookup = no
smtpd_error_sleep_time = 0s
smtpd_soft_error_limit = 100
smtpd_hard_error_limit = 200
smtpd_tls_security_level = none
smtp_tls_security_level = none

# No DNS at all for delivery (disable_dns_lookups is obsolete since Postfix 3.0).
smtp_dns_support_level = disabled
smtp_host_lookup = native
lmtp_host_lookup = native
smtp_connect_timeout = 5s

# Mail must flow fast.
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
maximal_queue_lifetime = 1h
bounce_queue_lifetime = 1h
delay_warning_time = 0h
in_flow_delay = 0s

milter_protocol = 6
milter_default_action = tempfail
milter_connect_timeout = 10s
smtpd_milters =
non_smtpd_milters =
EOF

    cat >"$PF_CONF/master.cf" <<EOF
# Private throwaway instance written by tests/postfix/lib.sh. No chroot anywhere.
# service type  private unpriv  chroot  wakeup  maxproc command + args
$PF_SMTP_PORT      inet  n       -       n       -       -       smtpd
$PF_SUBMISSION_PORT      inet  n       -       n       -       -       smtpd
  -o syslog_name=postfix-um-$PF_SMTP_PORT/submission
  -o milter_macro_daemon_name=ORIGINATING
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
EOF
}

_pf_need_setup() {
    [[ -n "${PF_CONF:-}" && -f "$PF_CONF/main.cf" ]] || _pf_die "pf_setup has not been called"
}

_pf_master_pid() {
    local f=${PF_QUEUE:-/nonexistent}/pid/master.pid pid
    [[ -r "$f" ]] || return 1
    read -r pid <"$f" || return 1
    [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
    printf '%s\n' "$pid"
}

pf_is_running() { _pf_master_pid >/dev/null; }

# pf_postconf key=value... - edit the instance's main.cf; reload if it is running.
pf_postconf() {
    _pf_need_setup || return 1
    (($#)) || return 0
    "$PF_POSTCONF" -c "$PF_CONF" -e "$@"
    if pf_is_running; then pf_reload; fi
}

# pf_set_milters SMTPD_MILTERS [NON_SMTPD_MILTERS] - e.g. "unix:$PF_RUN_DIR/um.sock".
pf_set_milters() {
    pf_postconf "smtpd_milters=${1-}" "non_smtpd_milters=${2-}"
}

# _pf_children - pids of processes in the master's session other than master itself.
_pf_children() {
    local m=$1
    ps -o pid= -s "$m" 2>/dev/null | awk -v m="$m" '$1 != m { print $1 }'
}

# pf_reload - postfix reload, then wait until the old children are gone so the next
# connection is served by a process that has read the new main.cf.
pf_reload() {
    local m old p i
    m=$(_pf_master_pid) || { _pf_die "postfix is not running"; return 1; }
    old=$(_pf_children "$m" | tr '\n' ' ')
    # What `postfix reload` does after its (slow, ~2 s) integrity check.
    kill -HUP "$m" || { _pf_die "cannot signal master $m"; return 1; }
    for ((i = 0; i < 100; i++)); do
        local alive=0
        for p in $old; do
            kill -0 "$p" 2>/dev/null && alive=1 && break
        done
        ((alive)) || return 0
        sleep 0.1
    done
    _pf_msg "warning: some pre-reload Postfix processes still run after 10s"
    return 0
}

# _pf_listening PORT - true if something LISTENs on 127.0.0.1:PORT or *:PORT. Reads
# /proc/net/tcp instead of connecting, so no probe session reaches smtpd (or a milter).
_pf_listening() {
    local hex
    hex=$(printf '%04X' "$1")
    awk -v a="0100007F:$hex" -v b="00000000:$hex" \
        'NR > 1 && ($2 == a || $2 == b) && $4 == "0A" { found = 1 } END { exit !found }' \
        /proc/net/tcp
}

_pf_wait_port() {
    local port=$1 i
    for ((i = 0; i < 100; i++)); do
        _pf_listening "$port" && return 0
        sleep 0.1
    done
    return 1
}

# pf_start - start the capture sink, then the instance.
pf_start() {
    _pf_need_setup || return 1
    if pf_is_running; then _pf_die "instance already running"; return 1; fi
    # Sink: one file per transaction, full message with headers (plus smtp-sink's X-* lines).
    (cd / && exec "$PF_SMTP_SINK" -4 -u nobody -h sink.unimilter.test \
        -d "$PF_SINK_DIR/%Y%m%d%H%M%S." "127.0.0.1:$PF_SINK_PORT" 64 \
        >"$PF_DIR/sink.log" 2>&1 </dev/null) &
    echo $! >"$PF_DIR/sink.pid"
    if ! _pf_wait_port "$PF_SINK_PORT"; then
        cat "$PF_DIR/sink.log" >&2 || true
        _pf_die "smtp-sink did not start on port $PF_SINK_PORT"
        return 1
    fi
    if ! "$PF_POSTFIX" -c "$PF_CONF" start >"$PF_DIR/start.log" 2>&1; then
        cat "$PF_DIR/start.log" >&2 || true
        _pf_die "postfix -c $PF_CONF start failed"
        return 1
    fi
    if ! _pf_wait_port "$PF_SMTP_PORT" || ! _pf_wait_port "$PF_SUBMISSION_PORT"; then
        pf_diag
        _pf_die "postfix did not listen on $PF_SMTP_PORT/$PF_SUBMISSION_PORT"
        return 1
    fi
    _pf_master_pid >"$PF_DIR/master.pid" || true
    _pf_release_ports
}

# pf_stop - stop Postfix and the sink; idempotent, never fails (safe in an EXIT trap).
pf_stop() {
    local m="" p i
    [[ -n "${PF_DIR:-}" ]] || return 0
    if [[ -r "$PF_DIR/master.pid" ]]; then read -r m <"$PF_DIR/master.pid" || true; fi
    [[ -n "$m" ]] || m=$(_pf_master_pid 2>/dev/null) || m=""
    if [[ -n "$m" ]] && kill -0 "$m" 2>/dev/null; then
        # What `postfix stop` does, minus its 1 s polling; master terminates its children.
        kill -TERM "$m" 2>/dev/null || true
        for ((i = 0; i < 100; i++)); do
            [[ -z "$(ps -o pid= -s "$m" 2>/dev/null)" ]] && break
            sleep 0.1
        done
        for p in $(ps -o pid= -s "$m" 2>/dev/null); do
            _pf_msg "warning: killing leftover Postfix process $p"
            kill -KILL "$p" 2>/dev/null || true
        done
    fi
    rm -f "$PF_DIR/master.pid"
    if [[ -r "$PF_DIR/sink.pid" ]]; then
        read -r p <"$PF_DIR/sink.pid" || p=""
        if [[ -n "$p" ]] && kill -0 "$p" 2>/dev/null; then
            kill -TERM "$p" 2>/dev/null || true
            for ((i = 0; i < 50; i++)); do
                kill -0 "$p" 2>/dev/null || break
                sleep 0.1
            done
            kill -KILL "$p" 2>/dev/null || true
        fi
        wait "$p" 2>/dev/null || true
        rm -f "$PF_DIR/sink.pid"
    fi
    _pf_release_ports
    return 0
}

# pf_teardown - pf_stop and remove DIR (kept when PF_KEEP=1).
pf_teardown() {
    pf_stop
    if [[ -n "${PF_DIR:-}" && -d "$PF_DIR" && "${PF_KEEP:-0}" != 1 ]]; then
        rm -rf "$PF_DIR"
    elif [[ -n "${PF_DIR:-}" ]]; then
        _pf_msg "kept $PF_DIR"
    fi
    return 0
}

_pf_swaks() {
    local port=$1 rc=0
    shift
    "$PF_SWAKS" --server 127.0.0.1 --port "$port" --helo client.unimilter.test \
        --timeout 30 "$@" >"$PF_SWAKS_OUT" 2>&1 || rc=$?
    cat "$PF_SWAKS_OUT"
    return "$rc"
}

# pf_send_smtp / pf_send_submission ARGS... - swaks ARGS to the port; transcript also in
# $PF_SWAKS_OUT; returns swaks' exit code (0 ok, 23 MAIL, 24 RCPT, 25 DATA, 26 after DATA).
pf_send_smtp() { _pf_swaks "$PF_SMTP_PORT" "$@"; }
pf_send_submission() { _pf_swaks "$PF_SUBMISSION_PORT" "$@"; }

# pf_sendmail_local FROM TO FILE - submit FILE via the instance's sendmail (pickup path).
pf_sendmail_local() {
    local from=${1:?from} to=${2:?to} file=${3:?file}
    _pf_need_setup || return 1
    "$PF_SENDMAIL" -C "$PF_CONF" -i -f "$from" -- "$to" <"$file"
}

# pf_sink_files - captured files that smtp-sink has finished writing, oldest first.
pf_sink_files() {
    local open="" p f
    [[ -n "${PF_SINK_DIR:-}" && -d "$PF_SINK_DIR" ]] || return 0
    if [[ -r "$PF_DIR/sink.pid" ]]; then
        read -r p <"$PF_DIR/sink.pid" || p=""
        if [[ -n "$p" && -d /proc/$p/fd ]]; then
            open=$(find "/proc/$p/fd" -mindepth 1 -maxdepth 1 -exec readlink {} \; 2>/dev/null |
                grep -F "$PF_SINK_DIR/" || true)
        fi
    fi
    while IFS= read -r f; do
        [[ -n "$f" ]] || continue
        if [[ -n "$open" ]] && grep -qxF -- "$f" <<<"$open"; then continue; fi
        printf '%s\n' "$f"
    done < <(find "$PF_SINK_DIR" -type f -printf '%T@ %p\n' 2>/dev/null | sort -n | cut -d' ' -f2-)
}

pf_sink_count() { pf_sink_files | grep -c . || true; }

pf_held_count() {
    [[ -n "${PF_QUEUE:-}" && -d "$PF_QUEUE/hold" ]] || { echo 0; return 0; }
    find "$PF_QUEUE/hold" -type f 2>/dev/null | grep -c . || true
}

# pf_kill_job PID [SIGNAL=KILL] - stop one background job of the test (if still running), reap it.
pf_kill_job() {
    local pid=$1 sig=${2:-KILL}
    if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
        kill -"$sig" "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
}

# pf_um_report - for a failure message: the last 40 lines of $UM_LOG (the daemon's log) and
# any AddressSanitizer/UBSan report in it. Prints to stdout; callers redirect.
pf_um_report() {
    [[ -n "${UM_LOG:-}" && -f "$UM_LOG" ]] || return 0
    echo "----- unimilter log (last 40 lines)"
    tail -n 40 "$UM_LOG"
    if grep -qE 'ERROR: AddressSanitizer|runtime error:' "$UM_LOG"; then
        echo "----- sanitizer report"
        grep -E -A 25 'ERROR: AddressSanitizer|runtime error:' "$UM_LOG" | awk 'NR <= 60'
    fi
}

pf_diag() {
    local log=${PF_LOG:-/nonexistent} conf=${PF_CONF:-/nonexistent}
    local sinkdir=${PF_SINK_DIR:-/nonexistent} dir=${PF_DIR:-/nonexistent}
    {
        echo "===== pf_diag: $dir"
        echo "----- maillog (last 40 lines)"
        tail -n 40 "$log" 2>/dev/null || true
        echo "----- postqueue -p"
        "$PF_POSTQUEUE" -c "$conf" -p 2>&1 || true
        echo "----- sink ($sinkdir)"
        ls -l "$sinkdir" 2>&1 || true
        echo "----- sink.log"
        tail -n 20 "$dir/sink.log" 2>/dev/null || true
        echo "====="
    } >&2
}

# pf_wait_delivered N [TIMEOUT=20] - wait until at least N messages are captured by the sink.
pf_wait_delivered() {
    local n=${1:?count} timeout=${2:-20} end got=0 last_flush=0
    end=$((SECONDS + timeout))
    while ((SECONDS <= end)); do
        got=$(pf_sink_count)
        ((got >= n)) && return 0
        if ((SECONDS != last_flush)); then
            "$PF_POSTQUEUE" -c "$PF_CONF" -f >/dev/null 2>&1 || true
            last_flush=$SECONDS
        fi
        sleep 0.2
    done
    _pf_msg "timeout: $got of $n message(s) delivered to the sink after ${timeout}s"
    pf_diag
    return 1
}

# pf_wait_held N [TIMEOUT=20] - wait until at least N messages sit in the hold queue.
pf_wait_held() {
    local n=${1:?count} timeout=${2:-20} end got=0
    end=$((SECONDS + timeout))
    while ((SECONDS <= end)); do
        got=$(pf_held_count)
        ((got >= n)) && return 0
        sleep 0.2
    done
    _pf_msg "timeout: $got of $n message(s) held after ${timeout}s"
    pf_diag
    return 1
}

# pf_log_grep [GREP-OPTS] PATTERN - grep -E the instance's maillog.
pf_log_grep() {
    (($#)) || { _pf_die "usage: pf_log_grep [GREP-OPTS] PATTERN"; return 2; }
    local pat=${!#}
    grep -E "${@:1:$#-1}" -e "$pat" -- "$PF_LOG"
}

# pf_wait_log PATTERN [TIMEOUT=10] - postlogd writes asynchronously; wait for a line.
pf_wait_log() {
    local pat=${1:?pattern} timeout=${2:-10} end
    end=$((SECONDS + timeout))
    while ((SECONDS <= end)); do
        grep -qE -- "$pat" "$PF_LOG" 2>/dev/null && return 0
        sleep 0.2
    done
    _pf_msg "timeout: no maillog line matches /$pat/ after ${timeout}s"
    return 1
}
