#!/usr/bin/env python3
"""Convert the openspf RFC 7208 YAML suite into the flat file test_spf_suite.c reads.

Usage: spf_suite_convert.py ../shared/conformance/spf-openspf/rfc7208-tests.yml \
           > tests/data/spf/rfc7208-tests.txt
Lines (fields separated by one space, each field %XX-encoded outside 0x21..0x7e and '%'):
  S <description>                     a new scenario (zone starts empty)
  Z <name> <type> <value>             type A AAAA MX PTR TXT CNAME; value for TXT is the
                                      encoded character-strings joined by ',' ("," itself is
                                      %2C) or "!" for an RR with no strings; MX "pref,host"
  Z <name> TIMEOUT -                  every type not listed before it times out
  Z <name> NOTXT -                    TXT: NONE (SPF entries not published as TXT)
  T <id> <host> <helo> <mailfrom> <result[,result...]>
The rules (those of pyspf's driver for this suite): SPF entries are also TXT unless the
name has a TXT entry; names not listed are NXDOMAIN.
"""
import sys
import yaml


def enc(s):
    if isinstance(s, str):
        b = s.encode('utf-8')
    elif isinstance(s, bytes):
        b = s
    else:
        b = str(s).encode()
    out = []
    for c in b:
        if 0x21 <= c <= 0x7e and c not in (0x25, 0x2c):
            out.append(chr(c))
        else:
            out.append('%%%02X' % c)
    return ''.join(out) or '""'


def strings(v):
    if isinstance(v, list):
        return ','.join(enc(x) for x in v) if v else '!'
    return enc(v)


def main():
    docs = list(yaml.safe_load_all(open(sys.argv[1], 'rb')))
    w = sys.stdout.write
    for d in docs:
        w('S %s\n' % enc(d.get('description', '')))
        for name, rrs in (d.get('zonedata') or {}).items():
            has_txt = any(isinstance(r, dict) and 'TXT' in r for r in rrs)
            for r in rrs:
                if r == 'TIMEOUT':
                    w('Z %s TIMEOUT -\n' % enc(name))
                    continue
                for t, v in r.items():
                    if t == 'SPF':
                        if not has_txt:
                            w('Z %s TXT %s\n' % (enc(name), strings(v)))
                    elif t == 'TXT' and v == 'NONE':
                        w('Z %s NOTXT -\n' % enc(name))
                    elif t == 'MX':
                        w('Z %s MX %s,%s\n' % (enc(name), v[0], enc(v[1])))
                    elif t in ('TXT',):
                        w('Z %s TXT %s\n' % (enc(name), strings(v)))
                    elif t in ('A', 'AAAA', 'PTR', 'CNAME'):
                        w('Z %s %s %s\n' % (enc(name), t, enc(v)))
                    else:
                        raise SystemExit('unknown RR type %r' % t)
        for tid, t in d['tests'].items():
            res = t['result']
            res = res if isinstance(res, list) else [res]
            w('T %s %s %s %s %s\n' % (enc(tid), enc(t['host']), enc(t.get('helo', '')),
                                      enc(t.get('mailfrom', '')), ','.join(res)))


main()
