/*
 * ratelimit_bench - decisions per second and memory per tracked sender of lib/ratelimit
 *
 * A benchmark, not a test: it prints measurements and asserts nothing about time.
 *   ratelimit_bench [THREADS] [SENDERS] [DECISIONS_PER_THREAD]
 * Phase 1 fills SENDERS distinct senders (one recipient each) and reports the resident
 * memory they added (from /proc/self/statm) divided by SENDERS. Phase 2 runs THREADS
 * threads, each making DECISIONS_PER_THREAD um_ratelimit_reserve() calls over a random
 * mix of senders (Zipf-like: a few hot senders, many cold), and reports decisions/s and
 * CPU seconds per million decisions.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "ratelimit.h"

struct worker {
    struct um_ratelimit *rl;
    unsigned id;
    unsigned long n, senders, allowed;
};

static long
rss_kib(void)
{
    long pages = 0, rss = 0;
    FILE *fp = fopen("/proc/self/statm", "r");

    if (fp != NULL) {
        if (fscanf(fp, "%ld %ld", &pages, &rss) != 2)
            rss = 0;
        fclose(fp);
    }
    return rss * (sysconf(_SC_PAGESIZE) / 1024);
}

static double
now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *
work(void *arg)
{
    struct worker *w = arg;
    unsigned long x = 0x9e3779b97f4a7c15UL ^ w->id;
    char key[64];

    for (unsigned long i = 0; i < w->n; i++) {
        struct um_ratelimit_decision d;
        unsigned long s;
        int len;

        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        /* 80% of decisions over 1% of senders. */
        s = (x % 10 < 8) ? (x >> 8) % (w->senders / 100 + 1) : (x >> 8) % w->senders;
        len = snprintf(key, sizeof(key), "sasl:user%lu@example.org", s);
        if (um_ratelimit_reserve(w->rl, (struct um_str){key, (size_t)len}, 1,
                                 1700000000 + (int64_t)(i / 1000), &d, NULL)
                == UM_OK
            && d.allowed)
            w->allowed++;
    }
    return NULL;
}

int
main(int argc, char **argv)
{
    unsigned threads = argc > 1 ? (unsigned)atoi(argv[1]) : 2;
    unsigned long senders = argc > 2 ? strtoul(argv[2], NULL, 10) : 1000000;
    unsigned long per = argc > 3 ? strtoul(argv[3], NULL, 10) : 1000000;
    struct um_ratelimit_opts o = {0};
    struct um_ratelimit_policy *pol;
    struct um_ratelimit *rl;
    struct um_error err = {0};
    struct worker *w;
    pthread_t *tid;
    struct rusage ru0, ru1;
    long before, after;
    double t0, t1, cpu;
    char key[64];

    if (threads == 0 || senders < 100 || per == 0)
        return 2;
    o.max_senders = senders;
    o.seed[0] = 42;
    if (um_ratelimit_policy_new(100, 3600, NULL, 0, &pol, &err) != UM_OK
        || um_ratelimit_new(&o, pol, &rl, &err) != UM_OK) {
        fprintf(stderr, "setup: %s\n", err.msg);
        return 1;
    }
    before = rss_kib();
    for (unsigned long s = 0; s < senders; s++) {
        struct um_ratelimit_decision d;
        int len = snprintf(key, sizeof(key), "sasl:user%lu@example.org", s);
        if (um_ratelimit_reserve(rl, (struct um_str){key, (size_t)len}, 1, 1700000000, &d, &err)
            != UM_OK) {
            fprintf(stderr, "fill: %s\n", err.msg);
            return 1;
        }
    }
    after = rss_kib();
    printf("senders tracked: %lu (keys like \"sasl:user123456@example.org\", 1 recipient each)\n",
           senders);
    printf("memory: %.1f MiB resident added, %.0f bytes per tracked sender\n",
           (double)(after - before) / 1024.0, (double)(after - before) * 1024.0 / (double)senders);

    w = calloc(threads, sizeof(*w));
    tid = calloc(threads, sizeof(*tid));
    getrusage(RUSAGE_SELF, &ru0);
    t0 = now_s();
    for (unsigned i = 0; i < threads; i++) {
        w[i] = (struct worker){rl, i + 1, per, senders, 0};
        pthread_create(&tid[i], NULL, work, &w[i]);
    }
    for (unsigned i = 0; i < threads; i++)
        pthread_join(tid[i], NULL);
    t1 = now_s();
    getrusage(RUSAGE_SELF, &ru1);
    cpu = (double)(ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec + ru1.ru_stime.tv_sec
                   - ru0.ru_stime.tv_sec)
          + (double)(ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec + ru1.ru_stime.tv_usec
                     - ru0.ru_stime.tv_usec)
                / 1e6;
    printf("decisions: %lu in %.2f s with %u thread(s): %.0f decisions/s, %.2f CPU s per "
           "million\n",
           (unsigned long)threads * per, t1 - t0, threads,
           (double)threads * (double)per / (t1 - t0), cpu * 1e6 / ((double)threads * (double)per));
    um_ratelimit_free(rl);
    um_ratelimit_policy_free(pol);
    free(w);
    free(tid);
    return 0;
}
