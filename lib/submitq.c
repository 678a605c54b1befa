/*
 * submitq.c - bounded queue of outgoing mail with one sender thread
 *
 * Design note. A milter thread that decides "notify" must not wait for a relay, so it only
 * copies the message into this queue (one lock, no I/O) and signals the thread. The thread
 * takes the job that is due first (a linear scan: the queue holds at most max_jobs, 100 in
 * the daemon, and notices are rare), sends it without holding the lock, and either frees
 * it or puts it back with a later due time. Backoff doubles per attempt up to a cap, and
 * attempts are counted, so each message costs at most max_attempts connections and the
 * queue as a whole at most max_jobs messages of memory. When full, the newest message is the
 * one dropped: the queued ones are older and already closer to being sent, and every drop
 * is logged, so nothing disappears silently.
 */
#include "submitq.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct sq_job {
    struct sq_job *next;
    struct um_submit_opts o;
    void *owner;
    const char *what;
    char *from;
    char **rcpts;
    size_t nrcpts;
    char *msg;
    size_t len;
    unsigned attempts;
    long long due_ms; /* CLOCK_MONOTONIC */
};

struct um_submitq {
    struct um_submitq_params p;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    pthread_t thread;
    struct sq_job *head; /* unordered; guarded by lock */
    size_t njobs;        /* guarded by lock; includes the job being sent */
    _Atomic bool stop;
};

static long long
sq_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
sq_job_free(struct um_submitq *q, struct sq_job *j)
{
    if (j == NULL)
        return;
    if (q->p.release != NULL && j->owner != NULL)
        q->p.release(j->owner);
    for (size_t i = 0; i < j->nrcpts; i++)
        free(j->rcpts[i]);
    free(j->rcpts);
    free(j->from);
    free(j->msg);
    free(j);
}

/* The first recipient, for log lines. */
static const char *
sq_to(const struct sq_job *j)
{
    return j->nrcpts > 0 ? j->rcpts[0] : "-";
}

static void
sq_log(const struct um_submitq *q, enum um_log_level lv, const struct sq_job *j, const char *result,
       const char *error, long long retry_s)
{
    struct um_logline l;
    char shown[512];

    if (q->p.log == NULL)
        return;
    um_logline_init(&l, NULL, "submit");
    um_logline_str(&l, "what", j->what);
    um_logline_str(&l, "to", sq_to(j));
    if (j->o.via == UM_SUBMIT_VIA_SENDMAIL) {
        um_logline_str(&l, "via", j->o.sendmail);
    } else {
        um_submit_relay_shown(j->o.relay, shown, sizeof(shown));
        um_logline_str(&l, "relay", shown);
    }
    um_logline_str(&l, "result", result);
    um_logline_int(&l, "attempts", j->attempts);
    if (retry_s >= 0)
        um_logline_int(&l, "retry_in", retry_s);
    if (error != NULL)
        um_logline_str(&l, "error", error);
    um_log_emit(q->p.log, lv, &l);
}

static long long
sq_backoff_ms(const struct um_submitq *q, unsigned attempts)
{
    long long d = q->p.first_backoff_ms;

    for (unsigned i = 1; i < attempts && d < q->p.max_backoff_ms; i++)
        d *= 2;
    return d < q->p.max_backoff_ms ? d : q->p.max_backoff_ms;
}

/* Removes and returns the job due first if it is due; else sets *wait_ms (-1: none queued). */
static struct sq_job *
sq_take_due(struct um_submitq *q, long long now, long long *wait_ms)
{
    struct sq_job **best = NULL;

    for (struct sq_job **pp = &q->head; *pp != NULL; pp = &(*pp)->next)
        if (best == NULL || (*pp)->due_ms < (*best)->due_ms)
            best = pp;
    if (best == NULL) {
        *wait_ms = -1;
        return NULL;
    }
    if ((*best)->due_ms > now) {
        *wait_ms = (*best)->due_ms - now;
        return NULL;
    }
    struct sq_job *j = *best;
    *best = j->next;
    j->next = NULL;
    return j;
}

static void *
sq_thread(void *arg)
{
    struct um_submitq *q = arg;

    pthread_mutex_lock(&q->lock);
    while (!atomic_load(&q->stop)) {
        long long wait_ms;
        struct sq_job *j = sq_take_due(q, sq_now_ms(), &wait_ms);

        if (j == NULL) {
            if (wait_ms < 0) {
                pthread_cond_wait(&q->cond, &q->lock);
            } else {
                struct timespec ts;
                clock_gettime(CLOCK_MONOTONIC, &ts);
                ts.tv_sec += wait_ms / 1000;
                ts.tv_nsec += (wait_ms % 1000) * 1000000;
                if (ts.tv_nsec >= 1000000000) {
                    ts.tv_sec++;
                    ts.tv_nsec -= 1000000000;
                }
                (void)pthread_cond_timedwait(&q->cond, &q->lock, &ts);
            }
            continue;
        }
        pthread_mutex_unlock(&q->lock);

        struct um_error err = {0};
        enum um_status st;
        j->attempts++;
        st = q->p.send != NULL
                 ? q->p.send(q->p.send_arg, &j->o, j->from, (const char *const *)j->rcpts,
                             j->nrcpts, j->msg, j->len, &err)
                 : um_submit_send(&j->o, j->from, (const char *const *)j->rcpts, j->nrcpts, j->msg,
                                  j->len, &err);
        bool retry = st == UM_ETEMP && j->attempts < q->p.max_attempts && !atomic_load(&q->stop);
        if (st == UM_OK) {
            sq_log(q, UM_LOG_INFO, j, "sent", NULL, -1);
        } else if (retry) {
            long long b = sq_backoff_ms(q, j->attempts);
            sq_log(q, UM_LOG_WARNING, j, "deferred", err.msg, (b + 999) / 1000);
            j->due_ms = sq_now_ms() + b;
        } else {
            sq_log(q, UM_LOG_ERR, j, "dropped", err.msg, -1);
        }
        if (!retry) {
            sq_job_free(q, j);
            j = NULL;
        }
        pthread_mutex_lock(&q->lock);
        if (j != NULL) {
            j->next = q->head;
            q->head = j;
        } else {
            q->njobs--;
        }
    }
    pthread_mutex_unlock(&q->lock);
    return NULL;
}

enum um_status
um_submitq_new(const struct um_submitq_params *p, struct um_submitq **out, struct um_error *err)
{
    struct um_submitq *q;
    pthread_condattr_t ca;

    *out = NULL;
    if (p->max_jobs == 0 || p->max_attempts == 0 || p->first_backoff_ms == 0
        || p->max_backoff_ms < p->first_backoff_ms)
        return um_error_set(err, UM_EINVAL, "submitq: bad parameters");
    q = calloc(1, sizeof(*q));
    if (q == NULL)
        return um_error_set(err, UM_ENOMEM, "submitq: out of memory");
    q->p = *p;
    atomic_init(&q->stop, false);
    pthread_mutex_init(&q->lock, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&q->cond, &ca);
    pthread_condattr_destroy(&ca);
    if (pthread_create(&q->thread, NULL, sq_thread, q) != 0) {
        pthread_cond_destroy(&q->cond);
        pthread_mutex_destroy(&q->lock);
        free(q);
        return um_error_set(err, UM_EIO, "submitq: cannot start the sender thread");
    }
    *out = q;
    return UM_OK;
}

static char *
sq_memdup(const char *p, size_t len)
{
    char *c = malloc(len + 1);

    if (c != NULL) {
        memcpy(c, p, len);
        c[len] = '\0';
    }
    return c;
}

enum um_status
um_submitq_add(struct um_submitq *q, const struct um_submit_opts *o, void *owner, const char *what,
               const char *from, const char *const *rcpts, size_t nrcpts, const char *msg,
               size_t len)
{
    struct sq_job *j = calloc(1, sizeof(*j));
    bool full;

    if (j == NULL || (j->rcpts = calloc(nrcpts ? nrcpts : 1, sizeof(char *))) == NULL) {
        free(j);
        if (q->p.release != NULL && owner != NULL)
            q->p.release(owner);
        if (q->p.log != NULL)
            um_log_msg(q->p.log, UM_LOG_ERR, "submit", "out of memory: %s dropped", what);
        return UM_ENOMEM;
    }
    j->o = *o;
    j->o.cancel = &q->stop;
    j->owner = owner;
    j->what = what;
    j->from = strdup(from != NULL ? from : "");
    j->msg = sq_memdup(msg, len);
    j->len = len;
    bool oom = j->from == NULL || j->msg == NULL;
    for (size_t i = 0; i < nrcpts && !oom; i++, j->nrcpts++)
        oom = (j->rcpts[i] = strdup(rcpts[i])) == NULL;
    if (oom) {
        if (q->p.log != NULL)
            um_log_msg(q->p.log, UM_LOG_ERR, "submit", "out of memory: %s dropped", what);
        sq_job_free(q, j);
        return UM_ENOMEM;
    }
    j->due_ms = sq_now_ms();
    pthread_mutex_lock(&q->lock);
    full = q->njobs >= q->p.max_jobs;
    if (!full) {
        j->next = q->head;
        q->head = j;
        q->njobs++;
        pthread_cond_signal(&q->cond);
    }
    pthread_mutex_unlock(&q->lock);
    if (full) {
        sq_log(q, UM_LOG_ERR, j, "dropped", "queue full", -1);
        sq_job_free(q, j);
        return UM_ELIMIT;
    }
    return UM_OK;
}

void
um_submitq_free(struct um_submitq *q)
{
    if (q == NULL)
        return;
    pthread_mutex_lock(&q->lock);
    atomic_store(&q->stop, true);
    pthread_cond_signal(&q->cond);
    pthread_mutex_unlock(&q->lock);
    pthread_join(q->thread, NULL);
    while (q->head != NULL) {
        struct sq_job *j = q->head;
        q->head = j->next;
        sq_log(q, UM_LOG_ERR, j, "dropped", "shutting down", -1);
        sq_job_free(q, j);
    }
    pthread_cond_destroy(&q->cond);
    pthread_mutex_destroy(&q->lock);
    free(q);
}
