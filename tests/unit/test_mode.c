/*
 * test_mode - lib/mode: the example rules against both MTAs' conventions, condition
 * combinations, missing macros, and strict port parsing.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "mode.h"

static struct um_mode_rule example_rule[] = {
    {(char[]){"ORIGINATING"}, -1, UM_TRI_ANY, UM_MODE_OUTBOUND, 1},
    {(char[]){"MSA"}, -1, UM_TRI_ANY, UM_MODE_OUTBOUND, 2},
    {NULL, 587, UM_TRI_ANY, UM_MODE_OUTBOUND, 3},
    {NULL, 465, UM_TRI_ANY, UM_MODE_OUTBOUND, 4},
};
static const struct um_mode_rules example = {example_rule, 4, UM_MODE_INBOUND};

static struct um_mode_rule combo_rule[] = {
    {(char[]){"mta"}, 25, UM_TRI_ANY, UM_MODE_SKIP, 1},  /* both must hold */
    {NULL, -1, UM_TRI_YES, UM_MODE_OUTBOUND, 2},         /* any authenticated client */
    {(char[]){"relay"}, -1, UM_TRI_NO, UM_MODE_SKIP, 3}, /* unauthenticated on "relay" */
};
static const struct um_mode_rules combo = {combo_rule, 3, UM_MODE_INBOUND};

static const struct um_mode_rules none = {NULL, 0, UM_MODE_SKIP};

static const struct {
    const char *name;
    const struct um_mode_rules *rules;
    const char *dname, *dport, *auth;
    enum um_mode want;
    int want_rule;
} cases[] = {
    {"postfix submission", &example, "ORIGINATING", "587", NULL, UM_MODE_OUTBOUND, 0},
    {"postfix smtp default name", &example, "mx.example.org", "25", NULL, UM_MODE_INBOUND, -1},
    {"sendmail MSA", &example, "MSA", NULL, NULL, UM_MODE_OUTBOUND, 1},
    {"sendmail MTA", &example, "MTA", NULL, NULL, UM_MODE_INBOUND, -1},
    {"name case-insensitive", &example, "originating", NULL, NULL, UM_MODE_OUTBOUND, 0},
    {"port 587 any name", &example, "Daemon0", "587", NULL, UM_MODE_OUTBOUND, 2},
    {"port 465", &example, NULL, "465", NULL, UM_MODE_OUTBOUND, 3},
    {"no macros at all", &example, NULL, NULL, NULL, UM_MODE_INBOUND, -1},
    {"port with junk", &example, NULL, "587x", NULL, UM_MODE_INBOUND, -1},
    {"port overflow", &example, NULL, "4294967883", NULL, UM_MODE_INBOUND, -1},
    {"empty port", &example, NULL, "", NULL, UM_MODE_INBOUND, -1},
    {"name and port both", &combo, "mta", "25", NULL, UM_MODE_SKIP, 0},
    {"name without port", &combo, "mta", "2525", NULL, UM_MODE_INBOUND, -1},
    {"authenticated", &combo, "mta", "2525", "alice", UM_MODE_OUTBOUND, 1},
    {"empty auth is not auth", &combo, "mta", "2525", "", UM_MODE_INBOUND, -1},
    {"unauthenticated relay", &combo, "relay", NULL, NULL, UM_MODE_SKIP, 2},
    {"authenticated relay", &combo, "relay", NULL, "bob", UM_MODE_OUTBOUND, 1},
    {"no rules: default", &none, "x", "1", "y", UM_MODE_SKIP, -1},
};

static void
test_decide(void **state)
{
    int failures = 0;

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct um_mode_input in = {cases[i].dname, cases[i].dport, cases[i].auth};
        int rule = -2;
        enum um_mode got = um_mode_decide(cases[i].rules, &in, &rule);

        if (got != cases[i].want || rule != cases[i].want_rule) {
            print_error("%s: got %s (rule %d), want %s (rule %d)\n", cases[i].name,
                        um_mode_name(got), rule, um_mode_name(cases[i].want), cases[i].want_rule);
            failures++;
        }
    }
    assert_int_equal(failures, 0);
}

static void
test_uses(void **state)
{
    (void)state;
    assert_true(um_mode_rules_use_name(&example));
    assert_true(um_mode_rules_use_port(&example));
    assert_false(um_mode_rules_use_name(&none));
    assert_false(um_mode_rules_use_port(&none));
}

static void
test_names(void **state)
{
    enum um_mode m;

    (void)state;
    assert_int_equal(um_mode_parse("outbound", &m), UM_OK);
    assert_int_equal(m, UM_MODE_OUTBOUND);
    assert_int_equal(um_mode_parse("skip", &m), UM_OK);
    assert_int_equal(m, UM_MODE_SKIP);
    assert_int_equal(um_mode_parse("Inbound", &m), UM_EINVAL);
    assert_string_equal(um_mode_name(UM_MODE_INBOUND), "inbound");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decide),
        cmocka_unit_test(test_uses),
        cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
