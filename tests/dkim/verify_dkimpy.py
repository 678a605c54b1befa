#!/usr/bin/python3
"""Verify every DKIM-Signature of each file with dkimpy; keys come from a DNS server.

usage: verify_dkimpy.py SERVER PORT FILE...   prints "FILE IDX ALG pass|fail DETAIL" per signature
"""
import re
import sys

import dkim
import dns.resolver

server, port, files = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
res = dns.resolver.Resolver(configure=False)
res.nameservers = [server]
res.port = port
res.timeout = res.lifetime = 5


def dnsfunc(name, timeout=5):
    if isinstance(name, bytes):
        name = name.decode()
    try:
        ans = res.resolve(name, "TXT")
    except Exception:  # NXDOMAIN and friends: dkimpy wants None
        return None
    return b"".join(ans[0].strings)


for f in files:
    msg = open(f, "rb").read()
    head = msg.split(b"\r\n\r\n", 1)[0]
    sigs = re.findall(rb"(?im)^DKIM-Signature:((?:.*)(?:\r\n[ \t].*)*)", head)
    for idx, sig in enumerate(sigs):
        m = re.search(rb"a\s*=\s*([a-z0-9-]+)", sig)
        alg = m.group(1).decode() if m else "?"
        d = dkim.DKIM(msg)
        try:
            ok = d.verify(idx=idx, dnsfunc=dnsfunc)
            detail = "" if ok else "verify returned False"
        except Exception as e:  # a verifier error is a failure, with its reason
            ok, detail = False, repr(e)
        print(f, idx, alg, "pass" if ok else "fail", detail)
