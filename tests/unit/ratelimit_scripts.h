/*
 * ratelimit_scripts.h - test helper: the scripted sliding-window rows that both rate-limit
 * backends must follow exactly (test_ratelimit.c in memory, test_ratelimit_redis.c against a
 * real redis-server). The including file defines run_script() for its backend, calling
 * check_step() on each decision; include after <cmocka.h> and ratelimit.h.
 */
#ifndef UM_TEST_RATELIMIT_SCRIPTS_H
#define UM_TEST_RATELIMIT_SCRIPTS_H

#define RL_SCRIPT_LEN(a) (sizeof(a) / sizeof((a)[0]))

struct step {
    const char *what;
    int64_t t;
    unsigned n;
    bool allowed;
    unsigned count;
    bool notify;
    unsigned retry_after;
};

/* Runs the steps against a fresh limiter of limit recipients per window seconds. */
static void run_script(const char *name, unsigned limit, unsigned window, const struct step *s,
                       size_t n);

/* One decision against step i of the script called name. */
static void
check_step(const char *name, size_t i, const struct step *s, struct um_ratelimit_decision d,
           unsigned limit, unsigned window)
{
    if (d.allowed != s[i].allowed || d.count != s[i].count || d.notify != s[i].notify
        || d.retry_after != s[i].retry_after) {
        fail_msg("%s, step %zu (%s, t=%lld n=%u): got allowed=%d count=%u notify=%d "
                 "retry_after=%u, want allowed=%d count=%u notify=%d retry_after=%u",
                 name, i, s[i].what, (long long)s[i].t, s[i].n, d.allowed, d.count, d.notify,
                 d.retry_after, s[i].allowed, s[i].count, s[i].notify, s[i].retry_after);
    }
    assert_int_equal(d.limit, limit);
    assert_int_equal(d.window, window);
}

static void
test_sliding_10_per_hour(void **state)
{
    static const struct step s[] = {
        {"1st", 0, 1, true, 1, false, 0},
        {"2nd", 1, 1, true, 2, false, 0},
        {"3rd", 2, 1, true, 3, false, 0},
        {"4th", 3, 1, true, 4, false, 0},
        {"5th", 4, 1, true, 5, false, 0},
        {"6th", 5, 1, true, 6, false, 0},
        {"7th", 6, 1, true, 7, false, 0},
        {"8th", 7, 1, true, 8, false, 0},
        {"9th (limit-1)", 8, 1, true, 9, false, 0},
        {"10th (limit)", 9, 1, true, 10, false, 0},
        {"11th (limit+1) refused, notified", 10, 1, false, 10, true, 3590},
        {"still refused, not notified again", 11, 1, false, 10, false, 3589},
        {"one second before the first ages out", 3599, 1, false, 10, false, 1},
        {"first aged out: exactly one fits", 3600, 1, true, 10, false, 0},
        {"and not two", 3600, 1, false, 10, false, 1},
        {"second aged out", 3601, 1, true, 10, false, 0},
        {"two at once need two slots", 3602, 2, false, 9, false, 1},
        {"two slots free at 3603", 3603, 2, true, 10, false, 0},
        {"more than the limit never fits", 3604, 11, false, 9, false, 0},
        {"everything aged out", 10000, 10, true, 10, false, 0},
    };
    (void)state;
    run_script("10/3600", 10, 3600, s, RL_SCRIPT_LEN(s));
}

static void
test_sliding_spent_at_1059(void **state)
{
    /* 10:00 = 0.  The limit is spent at 10:59; nothing more until 11:59. */
    static const struct step s[] = {
        {"10:00 one", 0, 1, true, 1, false, 0},
        {"10:59 the other nine", 3540, 9, true, 10, false, 0},
        {"10:59:30 refused", 3570, 1, false, 10, true, 30},
        {"11:00 first ages out", 3600, 1, true, 10, false, 0},
        {"11:00:01 refused again, same episode", 3601, 1, false, 10, false, 3539},
        {"11:30 refused", 5400, 1, false, 10, false, 1740},
        {"11:58:59 refused", 7139, 1, false, 10, false, 1},
        {"11:59 nine fit", 7140, 9, true, 10, false, 0},
    };
    (void)state;
    run_script("spent at 10:59", 10, 3600, s, RL_SCRIPT_LEN(s));
}

static void
test_sliding_limit_one_and_zero(void **state)
{
    static const struct step one[] = {
        {"first", 100, 1, true, 1, false, 0},
        {"same second", 100, 1, false, 1, true, 60},
        {"window-1", 159, 1, false, 1, false, 1},
        {"window", 160, 1, true, 1, false, 0},
    };
    static const struct step zero[] = {
        {"blocked", 0, 1, false, 0, true, 0},
        {"blocked, same episode", 30, 1, false, 0, false, 0},
        {"new episode after a quiet window", 131, 1, false, 0, true, 0},
    };
    (void)state;
    run_script("1/60", 1, 60, one, RL_SCRIPT_LEN(one));
    run_script("0/100", 0, 100, zero, RL_SCRIPT_LEN(zero));
}

static void
test_episode_notify_once(void **state)
{
    static const struct step s[] = {
        {"fill", 0, 2, true, 2, false, 0},
        {"first refusal notifies", 10, 1, false, 2, true, 90},
        {"second does not", 20, 1, false, 2, false, 80},
        {"aged out: allowed (episode goes on)", 100, 2, true, 2, false, 0},
        {"refused 81 s after the last refusal: same episode", 101, 1, false, 2, false, 99},
        {"allowed again", 201, 2, true, 2, false, 0},
        {"a full window since the last refusal: new episode", 202, 1, false, 2, true, 99},
        {"and only once", 203, 1, false, 2, false, 98},
    };
    (void)state;
    run_script("episodes 2/100", 2, 100, s, RL_SCRIPT_LEN(s));
}

#endif
