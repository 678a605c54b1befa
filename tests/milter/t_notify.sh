#!/bin/bash
# Type=notify (issue 13): started with $NOTIFY_SOCKET, the daemon sends READY=1 only once the
# milter socket and the control socket exist (a receiver looks at both the moment READY=1
# arrives), RELOADING=1 then READY=1 around a SIGHUP reload, STOPPING=1 at SIGTERM, each as
# one datagram on an abstract AF_UNIX socket.
. "$(dirname "$0")/lib.sh"
need python3

NS="@um-notify-$$"
cat >"$T/recv.py" <<'PY'
import os, socket, sys
name, sock, ctl, out = sys.argv[1:5]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind("\0" + name[1:])
open(out + ".bound", "w").close()
s.settimeout(30)
with open(out, "a") as f:
    while True:
        try:
            data = s.recv(4096).decode()
        except socket.timeout:
            break
        state = data.replace("\n", "|").split("|MONOTONIC_USEC=")[0]
        f.write("%s milter=%s control=%s\n" % (state, os.path.exists(sock), os.path.exists(ctl)))
        f.flush()
        if state == "STOPPING=1":
            break
PY
python3 "$T/recv.py" "$NS" "$T/um.sock" "$T/control.sock" "$T/notify.out" &
RECV=$!
trap 'kill "$RECV" 2>/dev/null || true; cleanup' EXIT
for _ in $(seq 1 100); do [ -e "$T/notify.out.bound" ] && break; sleep 0.05; done
[ -e "$T/notify.out.bound" ] || fail "the test's notify receiver did not start"

write_conf "$T/um.conf"
NOTIFY_SOCKET=$NS um_start "$T/um.conf"
wait_line() {
    for _ in $(seq 1 200); do
        [ "$(grep -c -- "^$1" "$T/notify.out" 2>/dev/null || true)" -ge "$2" ] && return 0
        sleep 0.05
    done
    fail "no $2 x '$1' on NOTIFY_SOCKET; got: $(cat "$T/notify.out" 2>/dev/null)"
}
wait_line "READY=1" 1
first=$(head -n1 "$T/notify.out")
[ "$first" = "READY=1 milter=True control=True" ] ||
    fail "the first notification must be READY=1 with both sockets in place; got '$first'"
echo "ok: READY=1 after the milter and control sockets exist"

um_reload HUP
wait_line "READY=1" 2
[ "$(sed -n 2,3p "$T/notify.out" | cut -d' ' -f1 | tr '\n' ' ')" = "RELOADING=1 READY=1 " ] ||
    fail "a reload must send RELOADING=1 then READY=1; got: $(cat "$T/notify.out")"
echo "ok: SIGHUP: RELOADING=1, then READY=1"

um_stop
[ "$UM_RC" = 0 ] || fail "exit status $UM_RC after SIGTERM"
wait "$RECV" || true
[ "$(tail -n1 "$T/notify.out" | cut -d' ' -f1)" = "STOPPING=1" ] ||
    fail "SIGTERM must send STOPPING=1; got: $(cat "$T/notify.out")"
[ "$(wc -l <"$T/notify.out")" = 4 ] || fail "unexpected notifications: $(cat "$T/notify.out")"
echo "ok: SIGTERM: STOPPING=1; nothing else sent"
