#!/usr/bin/python3
"""gencorpus.py - benchmark corpus for milterload: domains, DNS zone, keys, messages, expectations

usage: /usr/bin/python3 bench/gencorpus.py OUTDIR [--seed N] [--inbound N] [--outbound N]

Needs Debian's python3-dkim and python3-nacl (hence /usr/bin/python3) and openssl(1).

Writes into OUTDIR (a build directory; nothing here is committed):
  keys/           DKIM keys: <domain>.rsa.pem (RSA-2048, made once by `openssl genpkey` and
                  kept, so reruns reuse them), <domain>.ed.pem (Ed25519, derived from the seed)
  inbound/        messages and `manifest` for inbound checks (SPF, DKIM, DMARC)
  outbound/       unsigned messages of sign.example, submitted by an authenticated user on port 587
                  with {daemon_name}=ORIGINATING, and their `manifest`
  unbound.zone    unbound `local-data:` lines for every record (include it under `server:`)
  domains.txt     the domains and their policies, for people

Manifest columns (tab-separated; milterload reads the first eight):
  file client_ip helo mail_from rcpts daemon_name daemon_port sasl_user scenario spf dkim dmarc
Expected results use RFC 8601 words: spf pass|fail|softfail|none, dkim pass|fail|none (pass when
any signature verifies), dmarc pass|fail|none.

Everything but the RSA keys is a function of --seed (default 1): the same seed gives the same
messages, envelopes, signatures (given the same keys) and expectations.

Scenarios (inbound):
  aligned      signed by the From domain (RSA, Ed25519 or both), sent from an IP its SPF allows
               (directly, or two includes deep)
  subdomain    From news.D, MAIL FROM mail.D, signed d=D: aligned only where the policy is relaxed
  tampered     signed, then the body changed: dkim=fail; SPF decides DMARC
  spoofed      From and MAIL FROM a domain, sent from an IP outside its SPF, unsigned
  forwarded    signed, relayed unchanged by a forwarder whose IP no SPF lists: DKIM carries DMARC
  mlist        forwarded through a list that tags the subject and adds a footer: everything fails
  unaligned    sent and signed by an ESP (esp.example) on behalf of the From domain
  nodmarc      aligned mail from a domain without a DMARC record
  nospf        mail from a domain that publishes no SPF
"""

import argparse
import base64
import hashlib
import os
import random
import subprocess
import sys

import dkim
import nacl.signing

# Names under a TLD the Public Suffix List knows, so PSL-based DMARC (opendmarc, rspamd) finds
# organizational domains as tree-walk DMARC does; not .test or .example: libunbound answers
# NXDOMAIN for test. itself (RFC 6761) and PSL users see no org domain under example.
# Nothing leaks: compare serves them from a local unbound inside a private network namespace.
TLD = "org"
PREFIX = "umbench-"
ESP = PREFIX + "esp." + TLD
SIGN_DOMAIN = PREFIX + "sign." + TLD
HDRS = [b"from", b"to", b"subject", b"date", b"message-id", b"mime-version", b"content-type"]
WORDS = ("the quick brown fox jumps over lazy dog mail server relay policy domain key "
         "record message header body signature report invoice meeting agenda project "
         "update release notes please find attached regards thanks schedule review").split()


def ed25519_pem(seed32):
    """PKCS#8 PEM of an Ed25519 private key (RFC 8410) from its 32-byte seed."""
    der = bytes.fromhex("302e020100300506032b657004220420") + seed32
    b64 = base64.encodebytes(der).decode().replace("\n", "")
    return "-----BEGIN PRIVATE KEY-----\n%s\n-----END PRIVATE KEY-----\n" % b64


def rsa_key(path):
    if not os.path.exists(path):
        subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt",
                        "rsa_keygen_bits:2048", "-out", path], check=True,
                       stderr=subprocess.DEVNULL)
        os.chmod(path, 0o600)
    pub = subprocess.run(["openssl", "pkey", "-in", path, "-pubout", "-outform", "DER"],
                         check=True, capture_output=True).stdout
    with open(path, "rb") as f:
        return f.read(), base64.b64encode(pub).decode()


class Domain:
    def __init__(self, name, i, rnd, keydir, seed):
        self.name = name
        self.i = i
        self.all = rnd.choice(["-all", "~all"])
        self.spf = True
        self.dmarc = rnd.choice(["none", "quarantine", "reject"])
        self.adkim = rnd.choice(["r", "s"])
        self.aspf = rnd.choice(["r", "s"])
        self.direct_ip = "192.0.2.%d" % (10 + i)
        self.include_ip = "198.51.100.%d" % (i * 8 + 3)
        self.rsa_pem, self.rsa_pub = rsa_key(os.path.join(keydir, name + ".rsa.pem"))
        s = hashlib.sha256(("%d:%s:ed25519" % (seed, name)).encode()).digest()
        self.ed_seed = base64.b64encode(s)
        self.ed_pub = base64.b64encode(bytes(nacl.signing.SigningKey(s).verify_key)).decode()
        path = os.path.join(keydir, name + ".ed.pem")
        with open(path, "w") as f:
            f.write(ed25519_pem(s))
        os.chmod(path, 0o600)

    def zone(self):
        n = self.name
        out = []
        if n == ESP:
            out.append((n, "v=spf1 include:_spf.%s -all" % n))
            out.append(("_spf." + n, "v=spf1 ip4:203.0.113.0/26 -all"))
        elif self.spf:
            out.append((n, "v=spf1 ip4:%s include:_spf.%s %s" % (self.direct_ip, n, self.all)))
            out.append(("_spf." + n, "v=spf1 ip4:198.51.100.%d/29 include:_spf.%s -all"
                        % (self.i * 8, ESP)))
            out.append(("mail." + n, "v=spf1 ip4:%s include:_spf.%s %s"
                        % (self.direct_ip, n, self.all)))
        if self.dmarc is not None:
            out.append(("_dmarc." + n, "v=DMARC1; p=%s; adkim=%s; aspf=%s; rua=mailto:d@%s"
                        % (self.dmarc, self.adkim, self.aspf, n)))
        out.append(("rsa2048._domainkey." + n, "v=DKIM1; k=rsa; p=" + self.rsa_pub))
        out.append(("ed25519._domainkey." + n, "v=DKIM1; k=ed25519; p=" + self.ed_pub))
        return out

    def sign(self, msg, algs, d=None):
        d = d or self.name
        sigs = b""
        for a in algs:
            if a == "rsa":
                s = dkim.sign(msg, b"rsa2048", d.encode(), self.rsa_pem,
                              canonicalize=(b"relaxed", b"relaxed"), include_headers=HDRS)
            else:
                s = dkim.sign(msg, b"ed25519", d.encode(), self.ed_seed,
                              canonicalize=(b"relaxed", b"relaxed"), include_headers=HDRS,
                              signature_algorithm=b"ed25519-sha256")
            sigs = s + sigs
        return sigs + msg


def org(d):
    return ".".join(d.split(".")[-2:])


def aligned(a, b, mode):
    return a == b if mode == "s" else org(a) == org(b)


def txt_local_data(name, txt):
    parts = [txt[i:i + 255] for i in range(0, len(txt), 255)]
    return "    local-data: '%s. 300 IN TXT %s'\n" % (name, " ".join('"%s"' % p for p in parts))


def body_text(rnd, size):
    lines = []
    n = 0
    while n < size:
        ln = " ".join(rnd.choice(WORDS) for _ in range(rnd.randint(6, 14)))
        if rnd.random() < 0.05:
            ln = ""
        lines.append(ln)
        n += len(ln) + 2
    return "\r\n".join(lines) + "\r\n"


def make_message(rnd, n, frm, to, size):
    """RFC 5322 message, CRLF, about `size` bytes; one in four carries a base64 attachment."""
    h = ("Received: from client%d.example.net (client%d.example.net [192.0.2.200])\r\n"
         "\tby relay.example.net with ESMTPS id %08X; Mon, 23 Nov 2026 10:%02d:%02d +0000\r\n"
         % (n, n, rnd.getrandbits(32), n % 60, (n * 7) % 60))
    h += "From: Sender %d <%s>\r\nTo: <%s>\r\n" % (n, frm, to)
    h += "Subject: bench message %d %s\r\n" % (n, " ".join(rnd.choice(WORDS) for _ in range(4)))
    h += "Date: Mon, 23 Nov 2026 10:%02d:%02d +0000\r\n" % (n % 60, (n * 13) % 60)
    h += "Message-ID: <bench.%d.%08x@%s>\r\nMIME-Version: 1.0\r\n" % (
        n, rnd.getrandbits(32), frm.split("@")[1])
    if rnd.random() < 0.25 and size > 8192:
        att = size * 3 // 4 * 3 // 4
        text = body_text(rnd, size - att * 4 // 3)
        blob = base64.encodebytes(rnd.randbytes(att)).decode().replace("\n", "\r\n")
        h += 'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n' % n
        b = ("--b%d\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n%s"
             "--b%d\r\nContent-Type: application/pdf; name=\"doc%d.pdf\"\r\n"
             "Content-Transfer-Encoding: base64\r\n"
             "Content-Disposition: attachment; filename=\"doc%d.pdf\"\r\n\r\n%s--b%d--\r\n"
             % (n, text, n, n, n, blob, n))
    else:
        h += "Content-Type: text/plain; charset=utf-8\r\n\r\n"
        b = body_text(rnd, size)
    return (h + b).encode()


def msg_size(rnd):
    """2 to 200 KiB, log-uniform: many small messages, a long tail."""
    return int(2048 * (100 ** rnd.random()))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--inbound", type=int, default=400)
    ap.add_argument("--outbound", type=int, default=200)
    a = ap.parse_args()
    rnd = random.Random(a.seed)
    keydir = os.path.join(a.out, "keys")
    for d in ("keys", "inbound", "outbound"):
        os.makedirs(os.path.join(a.out, d), exist_ok=True)

    doms = [Domain("%sd%02d.%s" % (PREFIX, i, TLD), i, rnd, keydir, a.seed) for i in range(12)]
    doms[10].dmarc = None   # nodmarc
    doms[11].spf = False    # nospf
    doms[11].dmarc = "reject"
    esp = Domain(ESP, 30, rnd, keydir, a.seed)
    esp.dmarc, esp.all = "none", "-all"
    sign = Domain(SIGN_DOMAIN, 31, rnd, keydir, a.seed)
    sign.dmarc, sign.all = "reject", "-all"

    # Zone: everything local, nothing recursed ("." static answers NXDOMAIN for the rest).
    with open(os.path.join(a.out, "unbound.zone"), "w") as z:
        z.write('    local-zone: "." static\n')
        for d in doms + [esp, sign]:
            for name, txt in d.zone():
                z.write(txt_local_data(name, txt))
    with open(os.path.join(a.out, "domains.txt"), "w") as f:
        for d in doms + [esp, sign]:
            f.write("%s spf=%s all=%s dmarc=p=%s adkim=%s aspf=%s\n"
                    % (d.name, d.spf, d.all, d.dmarc, d.adkim, d.aspf))

    scen = (["aligned"] * 30 + ["subdomain"] * 10 + ["tampered"] * 10 + ["spoofed"] * 12
            + ["forwarded"] * 10 + ["mlist"] * 8 + ["unaligned"] * 10 + ["nodmarc"] * 5
            + ["nospf"] * 5)
    man = ["# file\tclient_ip\thelo\tmail_from\trcpts\tdaemon_name\tdaemon_port\tsasl_user"
           "\tscenario\tspf\tdkim\tdmarc\n"]
    for n in range(a.inbound):
        s = rnd.choice(scen)
        d = {"nodmarc": doms[10], "nospf": doms[11]}.get(s) or rnd.choice(doms[:10])
        algs = rnd.choice([["rsa"], ["ed25519"], ["rsa", "ed25519"]])
        frm_dom, mf_dom, sig_d, signer = d.name, d.name, d.name, d
        ip = rnd.choice([d.direct_ip, d.include_ip])
        fwd_ip = "203.0.113.%d" % rnd.randint(200, 250)
        signed, tamper, mlist = True, False, False
        if s == "subdomain":
            frm_dom, mf_dom = "news." + d.name, "mail." + d.name
        elif s == "tampered":
            tamper = True
            if rnd.random() < 0.5:
                ip = fwd_ip
        elif s == "spoofed":
            signed, ip = False, fwd_ip
        elif s == "forwarded":
            ip = fwd_ip
        elif s == "mlist":
            ip, mlist = fwd_ip, True
        elif s == "unaligned":
            mf_dom, sig_d, signer = ESP, ESP, esp
            ip = "203.0.113.%d" % rnd.randint(1, 62)
        elif s == "nospf":
            ip = "198.51.100.%d" % rnd.randint(200, 250)
        local = rnd.choice(["alice", "bob", "billing", "news", "noreply"])
        frm = "%s@%s" % (local, frm_dom)
        mail_from = "bounce-%d@%s" % (n, mf_dom)
        rcpts = ["user%d@mx.example.net" % rnd.randint(1, 99) for _ in range(rnd.choice([1, 1, 1, 2, 3]))]
        msg = make_message(rnd, n, frm, rcpts[0], msg_size(rnd))
        if signed:
            msg = signer.sign(msg, algs, sig_d)
        if tamper:
            msg = msg.replace(b" the ", b" teh ", 1) if b" the " in msg else msg + b"P.S.\r\n"
        if mlist:
            msg = msg.replace(b"Subject: ", b"Subject: [list] ", 1) + b"-- \r\nlist footer\r\n"
        # Expected results.
        spf_dom = next((x for x in doms + [esp] if x.name == org(mf_dom)), None)
        if spf_dom is None or not spf_dom.spf:
            spf = "none"
        elif ip in (spf_dom.direct_ip, spf_dom.include_ip) or (
                spf_dom is esp and ip.startswith("203.0.113.") and int(ip.split(".")[3]) < 64):
            spf = "pass"
        else:
            spf = "fail" if spf_dom.all == "-all" else "softfail"
        dk = "none" if not signed else ("fail" if tamper or mlist else "pass")
        pol = d if org(frm_dom) == d.name else None
        if pol is None or pol.dmarc is None:
            dmarc = "none"
        else:
            ok = (spf == "pass" and aligned(mf_dom, frm_dom, pol.aspf)) or (
                dk == "pass" and aligned(sig_d, frm_dom, pol.adkim))
            dmarc = "pass" if ok else "fail"
        fn = "m%04d.eml" % n
        with open(os.path.join(a.out, "inbound", fn), "wb") as f:
            f.write(msg)
        man.append("\t".join([fn, ip, "client%d.example.net" % n, mail_from, ",".join(rcpts),
                              "mx.bench.test", "25", "-", s, spf, dk, dmarc]) + "\n")
    with open(os.path.join(a.out, "inbound", "manifest"), "w") as f:
        f.writelines(man)

    man = man[:1]
    for n in range(a.outbound):
        frm = "%s@%s" % (rnd.choice(["alice", "bob", "carol", "dave"]), SIGN_DOMAIN)
        rcpts = ["friend%d@example.net" % rnd.randint(1, 99) for _ in range(rnd.choice([1, 1, 2]))]
        msg = make_message(rnd, 10000 + n, frm, rcpts[0], msg_size(rnd))
        fn = "o%04d.eml" % n
        with open(os.path.join(a.out, "outbound", fn), "wb") as f:
            f.write(msg)
        man.append("\t".join([fn, "10.0.0.%d" % rnd.randint(2, 250), "laptop.example.net", frm,
                              ",".join(rcpts), "ORIGINATING", "587", frm.split("@")[0],
                              "submit", "-", "pass", "-"]) + "\n")
    with open(os.path.join(a.out, "outbound", "manifest"), "w") as f:
        f.writelines(man)
    print("gencorpus: %d inbound, %d outbound messages in %s (seed %d)"
          % (a.inbound, a.outbound, a.out, a.seed))


if __name__ == "__main__":
    sys.exit(main())
