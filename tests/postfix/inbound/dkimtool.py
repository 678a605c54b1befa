#!/usr/bin/python3
"""dkimtool.py - messages, DKIM signatures (python3-dkim) and checks for t_inbound.sh.

  dkimtool.py make OUT --from ADDR [--from ADDR]... --subject S [--top "H: v"]...
                 [--header "H: v"]...
      Writes a CRLF message: the --top headers first (e.g. forged Authentication-Results
      above everything, as an upstream hop would leave them), then From (one line per
      --from), To, Subject, Date, Message-ID, MIME-Version, Content-Type, the --header
      headers, and a short body.

  dkimtool.py sign IN OUT --key ALG:KEYFILE:DOMAIN:SELECTOR [--key ...]
      Signs IN with each key in turn (relaxed/relaxed, python3-dkim's default header list):
      ALG rsa (KEYFILE: a PKCS#1 or PKCS#8 PEM) or ed25519 (KEYFILE: an OpenSSL Ed25519 PEM;
      the raw 32-byte seed is what dkimpy wants). The last key's signature ends up on top.

  dkimtool.py pubkey ALG KEYFILE
      Prints the p= value: base64 SubjectPublicKeyInfo for rsa (RFC 6376), base64 raw
      32-byte key for ed25519 (RFC 8463). Uses openssl(1).

  dkimtool.py verify PORT FILE
      Verifies every DKIM-Signature in FILE against the DNS server on 127.0.0.1:PORT and
      prints one line per signature: "d=... s=... a=... pass|fail"; exit 1 if one fails or
      there is none.

  dkimtool.py query PORT NAME [TYPE]
      Prints "RCODE" and the TXT strings of NAME (DNS test helper).

  dkimtool.py headers FILE
      Prints the header fields of FILE one per line, unfolded, every run of white space
      (folds included) turned into one space: "Name: value".
"""
import argparse
import base64
import email.utils
import subprocess
import sys

import dkim


def der(args):
    return subprocess.run(["openssl"] + args + ["-outform", "DER"], check=True,
                          stdout=subprocess.PIPE).stdout


def pubkey(alg, keyfile):
    spki = der(["pkey", "-in", keyfile, "-pubout"])
    if alg == "ed25519":
        return base64.b64encode(spki[-32:]).decode()
    return base64.b64encode(spki).decode()


def dkimpy_key(alg, keyfile):
    if alg == "ed25519":
        pkcs8 = der(["pkey", "-in", keyfile])  # 48 bytes; the seed is the last 32
        return base64.b64encode(pkcs8[-32:])
    with open(keyfile, "rb") as f:
        return f.read()


def cmd_make(a):
    crlf = "\r\n"
    hdrs = list(a.top)
    hdrs += ["From: %s" % f for f in a.from_]
    hdrs += [
        "To: Bob <bob@example.com>",
        "Subject: %s" % a.subject,
        "Date: %s" % email.utils.formatdate(localtime=False),
        "Message-ID: <%s@unimilter.test>" % a.subject.replace(" ", "-"),
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=us-ascii",
    ]
    hdrs += list(a.header)
    body = ["Hello Bob,", "", "this is %s." % a.subject, "", "-- ", "Alice", ""]
    with open(a.out, "wb") as f:
        f.write((crlf.join(hdrs) + crlf + crlf + crlf.join(body)).encode())


def cmd_sign(a):
    with open(a.infile, "rb") as f:
        msg = f.read()
    for spec in a.key:
        alg, keyfile, domain, selector = spec.split(":")
        sig = dkim.sign(msg, selector.encode(), domain.encode(), dkimpy_key(alg, keyfile),
                        canonicalize=(b"relaxed", b"relaxed"),
                        signature_algorithm=(b"ed25519-sha256" if alg == "ed25519"
                                             else b"rsa-sha256"))
        msg = sig + msg
    with open(a.outfile, "wb") as f:
        f.write(msg)


def resolver(port):
    import dns.resolver
    r = dns.resolver.Resolver(configure=False)
    r.nameservers = ["127.0.0.1"]
    r.port = int(port)
    r.lifetime = 5
    return r


def cmd_verify(a):
    r = resolver(a.port)

    def dnsfunc(name, timeout=5):
        ans = r.resolve(name.decode().rstrip("."), "TXT")
        return b"".join(b"".join(rr.strings) for rr in ans)

    with open(a.file, "rb") as f:
        msg = f.read()
    d = dkim.DKIM(msg)
    n = sum(1 for h in d.headers if h[0].lower() == b"dkim-signature")
    bad = n == 0
    for i in range(n):
        ok = d.verify(idx=i, dnsfunc=dnsfunc)
        tags = d.signature_fields
        print("d=%s s=%s a=%s %s" % (tags.get(b"d", b"").decode(), tags.get(b"s", b"").decode(),
                                      tags.get(b"a", b"").decode(), "pass" if ok else "fail"))
        bad = bad or not ok
    return 1 if bad else 0


def cmd_query(a):
    import dns.message
    import dns.query
    import dns.rcode
    q = dns.message.make_query(a.name, a.type)
    resp = dns.query.udp(q, "127.0.0.1", port=int(a.port), timeout=5)
    print(dns.rcode.to_text(resp.rcode()))
    for rrset in resp.answer:
        for rr in rrset:
            if hasattr(rr, "strings"):
                print(b"".join(rr.strings).decode())
            else:
                print(rr.to_text())
    return 0


def cmd_headers(a):
    import re
    with open(a.file, "rb") as f:
        raw = f.read().decode("utf-8", "replace")
    head = re.split(r"\r?\n\r?\n", raw, maxsplit=1)[0]
    for field in re.split(r"\r?\n(?![ \t])", head):
        name, _, value = field.partition(":")
        print("%s: %s" % (name, " ".join(value.split())))
    return 0


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make")
    m.add_argument("out")
    m.add_argument("--from", dest="from_", action="append", required=True)
    m.add_argument("--subject", required=True)
    m.add_argument("--top", action="append", default=[])
    m.add_argument("--header", action="append", default=[])
    s = sub.add_parser("sign")
    s.add_argument("infile")
    s.add_argument("outfile")
    s.add_argument("--key", action="append", required=True)
    k = sub.add_parser("pubkey")
    k.add_argument("alg", choices=["rsa", "ed25519"])
    k.add_argument("keyfile")
    v = sub.add_parser("verify")
    v.add_argument("port")
    v.add_argument("file")
    q = sub.add_parser("query")
    q.add_argument("port")
    q.add_argument("name")
    q.add_argument("type", nargs="?", default="TXT")
    h = sub.add_parser("headers")
    h.add_argument("file")
    a = p.parse_args()
    if a.cmd == "make":
        return cmd_make(a) or 0
    if a.cmd == "sign":
        return cmd_sign(a) or 0
    if a.cmd == "pubkey":
        print(pubkey(a.alg, a.keyfile))
        return 0
    if a.cmd == "verify":
        return cmd_verify(a)
    if a.cmd == "headers":
        return cmd_headers(a)
    return cmd_query(a)


if __name__ == "__main__":
    sys.exit(main())
