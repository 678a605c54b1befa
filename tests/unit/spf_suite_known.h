/* Known failures of the RFC 7208 suite through um_spf: {test id, why}. NULL-terminated.
 * A case here that starts passing is reported by test_spf_suite; remove it then. */
{"macro-mania-in-domain",
 "the name holds spaces (%_ expands to a space); lib/dns refuses names outside 0x21..0x7e "
 "(um_dns_name_valid), so the query cannot be sent and the a: term does not match"},
    {NULL, NULL},
