#!/usr/bin/env bash
# SELinux policy module: builds selinux/unimilter.pp against Debian's reference-policy
# headers with no warnings, links it into a SCRATCH copy of Debian's default policy store
# (the system's own store and loaded policy are never touched: semodule -p ROOT -n), and
# asserts with sesearch on the resulting binary policy that
#   1. Postfix smtpd, Postfix cleanup and Sendmail may write the socket file and connect
#      to unimilter_t, and may not touch the control socket;
#   2. unimilter_t reads its keys, configuration and state;
#   3. nothing broader exists: no access to user home files or directories, name_connect
#      only to dns_port_t (and redis_port_t behind the unimilter_connect_redis boolean),
#      name_bind only to milter_port_t, and no domain but unimilter_t reads the keys
#      apart from the allow-list below (each of which can read /etc/shadow as well).
# Label "selinux". Takes about 15 s (most of it semodule relinking the whole policy).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/install/lib.sh
. "$here/lib.sh"
UM_SRC=${UM_SRC:-$(cd "$here/../.." && pwd)}

PKGS="selinux-policy-dev selinux-policy-default semodule-utils policycoreutils setools checkpolicy"
inst_need "$PKGS" make semodule sesearch checkmodule
inst_need_file "$PKGS" /usr/share/selinux/devel/Makefile
inst_need_file "$PKGS" /var/lib/selinux/default/active/modules
inst_need_file "$PKGS" /etc/selinux/default/contexts

work=$(mktemp -d /tmp/um-selinux.XXXXXX)
trap 'rm -rf "$work"' EXIT
trap 'echo "FAIL: $0:$LINENO: command failed: $BASH_COMMAND" >&2' ERR

# --- 1. build, no warnings ------------------------------------------------------------------
mkdir "$work/src"
cp "$UM_SRC"/selinux/unimilter.te "$UM_SRC"/selinux/unimilter.if "$UM_SRC"/selinux/unimilter.fc \
    "$work/src/"
if ! make -C "$work/src" -f /usr/share/selinux/devel/Makefile unimilter.pp >"$work/build.log" 2>&1; then
    cat "$work/build.log" >&2
    inst_fail "policy module build failed"
fi
if grep -iE 'warning|error|deprecated' "$work/build.log" >&2; then
    inst_fail "policy module build printed warnings (above)"
fi
echo "ok: unimilter.pp built with no warnings"

# --- 2. link into a scratch copy of the default store ---------------------------------------
root=$work/root
mkdir -p "$root/var/lib/selinux" "$root/etc/selinux"
cp -a /var/lib/selinux/default "$root/var/lib/selinux/"
cp -a /etc/selinux/default "$root/etc/selinux/"
cp -a /etc/selinux/semanage.conf "$root/etc/selinux/" 2>/dev/null || true
sys_before=$(sha256sum /etc/selinux/default/policy/policy.* | sort)
# -p: alternate root (store and policy land under it); -n: do not load into the kernel.
# libsemanage warns about users of other packages' policies that have no passwd entry
# (e.g. "user sddm not in password file"); that noise is not ours.
if ! semodule -p "$root" -s default -n -i "$work/src/unimilter.pp" >"$work/link.log" 2>&1; then
    cat "$work/link.log" >&2
    inst_fail "semodule could not link unimilter.pp into the scratch store"
fi
[[ "$(sha256sum /etc/selinux/default/policy/policy.* | sort)" == "$sys_before" ]] \
    || inst_fail "the system policy changed: semodule did not stay in the scratch root"
pol=$(ls "$root"/etc/selinux/default/policy/policy.* 2>/dev/null | sort -V | tail -n 1)
[[ -n "$pol" && -s "$pol" ]] || inst_fail "no binary policy under $root/etc/selinux/default/policy"
semodule -p "$root" -s default -l 2>/dev/null | grep -qx 'unimilter' \
    || semodule -p "$root" -s default -l 2>/dev/null | grep -q '^unimilter\b' \
    || inst_fail "unimilter not listed in the scratch store"
grep -q '^/etc/unimilter/keys(/\.\*)?' "$root"/var/lib/selinux/default/active/file_contexts \
    || inst_fail "file contexts of unimilter not in the scratch store"
grep -qE '^/var/spool/postfix/unimilter\(/\.\*\)\?\s+system_u:object_r:unimilter_var_run_t' \
    "$root"/var/lib/selinux/default/active/file_contexts \
    || inst_fail "the Postfix socket directory /var/spool/postfix/unimilter is not unimilter_var_run_t"
echo "ok: linked into a scratch copy of the default policy: $pol"

# --- 3. assertions ---------------------------------------------------------------------------
nfail=0
bad() {
    echo "FAIL: $*" >&2
    nfail=$((nfail + 1))
}
# has_allow DESC SESEARCH-ARGS...: at least one rule matches.
has_allow() {
    local desc=$1 out
    shift
    out=$(sesearch -A "$@" "$pol")
    if [[ -n "$out" ]]; then
        echo "ok: $desc"
        printf '      %s\n' "$out" | head -n 3
    else
        bad "$desc (sesearch -A $* found nothing)"
    fi
}

for d in postfix_smtpd_t postfix_cleanup_t sendmail_t; do
    has_allow "$d may write the milter socket" -s "$d" -t unimilter_var_run_t -c sock_file -p write
    has_allow "$d may connect to unimilter_t" -s "$d" -t unimilter_t -c unix_stream_socket -p connectto
    has_allow "$d may search /run/unimilter" -s "$d" -t unimilter_var_run_t -c dir -p search
    out=$(sesearch -A -s "$d" -t unimilter_control_t -c sock_file -p write "$pol")
    [[ -z "$out" ]] && echo "ok: $d may not write the control socket" \
        || bad "$d may write the control socket: $out"
done
has_allow "unimilter_t reads its keys" -s unimilter_t -t unimilter_key_t -c file -p read
has_allow "unimilter_t reads its configuration" -s unimilter_t -t unimilter_conf_t -c file -p read
has_allow "unimilter_t writes its state file" -s unimilter_t -t unimilter_var_lib_t -c file -p write
has_allow "unimilter_t creates sockets in /run/unimilter" -s unimilter_t -t unimilter_var_run_t -c sock_file -p create
has_allow "unimilter_t reaches /var/spool/postfix/unimilter" -s unimilter_t -t postfix_spool_t -c dir -p search
for d in postfix_smtpd_t postfix_cleanup_t; do
    has_allow "$d may search the spool (the socket's parent)" -s "$d" -t postfix_spool_t -c dir -p search
done
has_allow "unimilter_t resolves DNS (tcp)" -s unimilter_t -t dns_port_t -c tcp_socket -p name_connect
has_allow "unimilter_t sends syslog" -s unimilter_t -t devlog_t -c sock_file -p write
has_allow "init starts unimilter_t from unimilter_exec_t" -s init_t -t unimilter_t -c process -p transition
has_allow "unimilter_t notifies systemd (Type=notify: sendto)" -s unimilter_t -t init_t -c unix_dgram_socket -p sendto
has_allow "unimilter_t notifies systemd (Type=notify: the notify socket)" -s unimilter_t -t init_runtime_t -c sock_file -p write

out=$(sesearch -A -s unimilter_t -t unimilter_key_t -c file -p write "$pol")
[[ -z "$out" ]] && echo "ok: unimilter_t cannot write its keys" || bad "unimilter_t writes keys: $out"

# No home directories, no user content (sesearch -s expands the attributes unimilter_t has).
for t in user_home_t user_home_dir_t home_root_t user_tmp_t; do
    out=$(sesearch -A -s unimilter_t -t "$t" "$pol")
    [[ -z "$out" ]] && echo "ok: nothing from unimilter_t to $t" || bad "unimilter_t reaches $t: $out"
done

# Ports: what unimilter_t may connect to and bind, conditional rules included.
check_ports() { # CLASS PERM ALLOWED-TYPES...
    local cls=$1 perm=$2 t got
    shift 2
    got=$(sesearch -A -s unimilter_t -c "$cls" -p "$perm" "$pol" | awk '{print $3}' | cut -d: -f1 | sort -u)
    for t in $got; do
        case " $* " in
        *" $t "*) ;;
        *) bad "unimilter_t may $perm $cls on $t: $(sesearch -A -s unimilter_t -t "$t" -c "$cls" -p "$perm" "$pol")" ;;
        esac
    done
    echo "ok: $cls $perm targets of unimilter_t: $(echo $got) (allowed: $*)"
}
check_ports tcp_socket name_connect dns_port_t redis_port_t
check_ports tcp_socket name_bind milter_port_t
check_ports udp_socket name_bind
has_allow "redis only behind the unimilter_connect_redis boolean" -s unimilter_t -t redis_port_t -c tcp_socket -p name_connect -b unimilter_connect_redis
plain=$(sesearch -A -s unimilter_t -t redis_port_t -c tcp_socket -p name_connect "$pol" | grep -v '\[ unimilter_connect_redis \]' || true)
[[ -z "$plain" ]] || bad "redis_port_t reachable without the boolean: $plain"

# Who reads the keys. Allow-list, and why:
#   unimilter_t            the daemon;
#   files_unconfined_type  unconfined and administrative domains (unconfined_t, sysadm via
#                          files_unconfined): they can read everything anyway;
#   aide_t samhain_t samhaind_t tripwire_t siggen_t
#                          file-integrity checkers (files_read_all_files by design);
#   amanda_t backup_t bacula_t
#                          backup software (the keys must be backed up);
#   quota_t                quotacheck reads every file to count usage.
# Every one of these except unimilter_t can read /etc/shadow (shadow_t) too, which the
# test checks as well: the keys are as well guarded as the password hashes.
allow_readers="unimilter_t files_unconfined_type aide_t samhain_t samhaind_t tripwire_t siggen_t amanda_t backup_t bacula_t quota_t"
readers=$(sesearch -A -t unimilter_key_t -c file -p read "$pol" | awk '{print $2}' | sort -u)
shadow=$(sesearch -A -t shadow_t -c file -p read "$pol" | awk '{print $2}' | sort -u)
for r in $readers; do
    case " $allow_readers " in
    *" $r "*) ;;
    *) bad "$r may read unimilter_key_t: $(sesearch -A -s "$r" -t unimilter_key_t -c file -p read "$pol")" ;;
    esac
    if [[ "$r" != unimilter_t ]] && ! grep -qx "$r" <<<"$shadow"; then
        bad "$r reads unimilter keys but not /etc/shadow"
    fi
done
echo "ok: readers of unimilter_key_t: $(echo $readers)"
# Postfix and Sendmail in particular: they talk to the milter, they never see its keys.
for d in postfix_smtpd_t postfix_cleanup_t sendmail_t system_mail_t; do
    out=$(sesearch -A -s "$d" -t unimilter_key_t -c file -p read "$pol")
    [[ -z "$out" ]] && echo "ok: $d cannot read the keys" || bad "$d reads the keys: $out"
done

if ((nfail > 0)); then
    echo "FAIL: $nfail SELinux assertion(s) failed" >&2
    exit 1
fi
echo "PASS: SELinux policy module"
