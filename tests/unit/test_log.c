/*
 * test_log - lib/log: escaping of untrusted bytes, quoting, truncation, level filter.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "log.h"

struct capture {
    char line[UM_LOGLINE_MAX];
    int n;
    enum um_log_level level;
};

static void
capture_sink(void *arg, enum um_log_level level, const char *line, size_t len)
{
    struct capture *c = arg;

    memcpy(c->line, line, len);
    c->line[len] = '\0';
    c->level = level;
    c->n++;
}

static const struct {
    const char *name;
    const char *val;
    size_t len;
    const char *want;
} esc_cases[] = {
    {"plain", "alice@example.org", 17, " k=alice@example.org"},
    {"space quotes", "a b", 3, " k=\"a b\""},
    {"equals quotes", "a=b", 3, " k=\"a=b\""},
    {"empty quotes", "", 0, " k=\"\""},
    {"crlf injection", "x\r\nevent=forged", 15, " k=\"x\\x0d\\x0aevent=forged\""},
    {"quote escaped", "say \"hi\"", 8, " k=\"say \\x22hi\\x22\""},
    {"backslash", "a\\b", 3, " k=a\\x5cb"},
    {"8-bit", "\xc3\xa9", 2, " k=\\xc3\\xa9"},
    {"nul inside", "a\0b", 3, " k=a\\x00b"},
    {"del", "\x7f", 1, " k=\\x7f"},
};

static void
test_escape(void **state)
{
    int failures = 0;

    (void)state;
    for (size_t i = 0; i < sizeof(esc_cases) / sizeof(esc_cases[0]); i++) {
        struct um_logline l;
        um_logline_init(&l, NULL, "e");
        um_logline_mem(&l, "k", esc_cases[i].val, esc_cases[i].len);
        if (strcmp(l.buf + strlen("event=e"), esc_cases[i].want) != 0) {
            print_error("%s: got [%s], want [%s]\n", esc_cases[i].name, l.buf + 7,
                        esc_cases[i].want);
            failures++;
        }
    }
    assert_int_equal(failures, 0);
}

static void
test_line_and_levels(void **state)
{
    struct capture c = {0};
    struct um_logger lg;
    struct um_logline l;

    (void)state;
    um_logger_init(&lg, capture_sink, &c, UM_LOG_INFO);
    um_logline_init(&l, "5f2c01a9e3b0c417", "verdict");
    um_logline_str(&l, "ip", "192.0.2.7");
    um_logline_int(&l, "rcpts", 3);
    um_logline_str(&l, "from", NULL);
    um_log_emit(&lg, UM_LOG_INFO, &l);
    assert_int_equal(c.n, 1);
    assert_string_equal(c.line, "sess=5f2c01a9e3b0c417 event=verdict ip=192.0.2.7 rcpts=3 from=-");
    um_log_emit(&lg, UM_LOG_DEBUG, &l);
    assert_int_equal(c.n, 1); /* filtered */
    um_logger_set_level(&lg, UM_LOG_DEBUG);
    um_log_emit(&lg, UM_LOG_DEBUG, &l);
    assert_int_equal(c.n, 2);
    um_log_msg(&lg, UM_LOG_WARNING, "config", "file %s line %d", "/etc/x y", 3);
    assert_string_equal(c.line, "event=config msg=\"file /etc/x y line 3\"");
    assert_int_equal(c.level, UM_LOG_WARNING);
}

static void
test_truncation(void **state)
{
    struct um_logline l;
    char big[5000];

    (void)state;
    memset(big, 'a', sizeof(big));
    um_logline_init(&l, NULL, "e");
    um_logline_mem(&l, "k", big, sizeof(big));
    um_logline_str(&l, "after", "x");
    assert_true(l.truncated);
    assert_int_equal(l.len, UM_LOGLINE_MAX - 1);
    assert_memory_equal(l.buf + l.len - 3, "...", 3);
}

static void
test_levels_parse(void **state)
{
    enum um_log_level lv;

    (void)state;
    assert_int_equal(um_log_level_parse("warning", &lv), UM_OK);
    assert_int_equal(lv, UM_LOG_WARNING);
    assert_int_equal(um_log_level_parse("notice", &lv), UM_EINVAL);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_escape),
        cmocka_unit_test(test_line_and_levels),
        cmocka_unit_test(test_truncation),
        cmocka_unit_test(test_levels_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
