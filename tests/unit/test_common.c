/*
 * test_common - lib/common: the ASCII case helpers over every byte value (A-Z fold, nothing
 * else moves), in-place and copying lower-casing, the case-insensitive comparison, and
 * um_str_of on NULL and on strings.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "common.h"

static void
test_tolower_every_byte(void **state)
{
    (void)state;
    for (int c = -128; c < 256; c++) {
        int want = (c >= 'A' && c <= 'Z') ? c + ('a' - 'A') : c;
        int got = um_ascii_tolower(c);

        if (got != want)
            fail_msg("byte %d: got %d, want %d", c, got, want);
    }
    assert_int_equal(um_ascii_tolower(-1), -1); /* EOF */
}

static void
test_lower(void **state)
{
    char in[] = "MiXeD.Example-ORG_1@\x80\xff", out[sizeof(in)];

    (void)state;
    memset(out, '#', sizeof(out));
    um_ascii_lower(out, in, sizeof(in) - 1);
    assert_memory_equal(out, "mixed.example-org_1@\x80\xff", sizeof(in) - 1);
    assert_int_equal(out[sizeof(in) - 1], '#');              /* no NUL added, nothing past len */
    assert_string_equal(in, "MiXeD.Example-ORG_1@\x80\xff"); /* src untouched */

    um_ascii_lower(in, in, 5); /* in place, a prefix only */
    assert_string_equal(in, "mixed.Example-ORG_1@\x80\xff");
    um_ascii_lower(in, in, 0);
    assert_string_equal(in, "mixed.Example-ORG_1@\x80\xff");
}

static void
test_eq_ci(void **state)
{
    (void)state;
    assert_true(um_str_eq_ci(UM_STR("Example.ORG"), "example.org"));
    assert_true(um_str_eq_ci(UM_STR("example.org"), "EXAMPLE.org"));
    assert_true(um_str_eq_ci(UM_STR(""), ""));
    assert_false(um_str_eq_ci(UM_STR("example.org"), "example.org."));
    assert_false(um_str_eq_ci(UM_STR("example.or"), "example.org"));
    assert_false(um_str_eq_ci(UM_STR("\xc4"), "\xe4")); /* no folding outside ASCII */
    assert_false(um_str_eq_ci(UM_STR("@"), "`"));       /* 0x40 and 0x60 differ by 0x20 only */
    assert_true(um_str_eq_ci((struct um_str){"ABCdef", 3}, "abc"));
}

static void
test_str_of(void **state)
{
    struct um_str s;
    const char *text = "from";

    (void)state;
    s = um_str_of(NULL);
    assert_non_null(s.p);
    assert_int_equal(s.len, 0);
    s = um_str_of("");
    assert_int_equal(s.len, 0);
    s = um_str_of(text);
    assert_ptr_equal(s.p, text);
    assert_int_equal(s.len, 4);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tolower_every_byte),
        cmocka_unit_test(test_lower),
        cmocka_unit_test(test_eq_ci),
        cmocka_unit_test(test_str_of),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
