/*
 * submitq - the daemon's outgoing mail (rate-limit notices): a bounded queue, one sender
 * thread, retries with backoff
 *
 * DESCRIPTION  um_submitq_add() copies one message into the queue and returns at once; the
 *              queue's thread sends it (params->send, normally um_submit_send()). A
 *              temporary failure (UM_ETEMP) is retried after first_backoff_ms, doubling up
 *              to max_backoff_ms, until max_attempts attempts were made; a permanent one is
 *              not retried. Every failed attempt is logged (warning) and so is a message
 *              given up (err); a message sent is logged (info) with its attempt count:
 *                event=submit what=ratelimit-notice to=ops@example.org relay=smtp://...
 *                  result=sent attempts=2
 * THREADS      um_submitq_add() is safe from any thread and never blocks on I/O (one short
 *              lock). The send function runs on the queue's thread only, one message at a
 *              time.
 * OWNERSHIP    from, rcpts and msg are copied. opts is copied by value but what it points to
 *              is borrowed until the message is done: pass the object that owns it as owner;
 *              params->release(owner) is called once when the message is sent or dropped.
 * ERRORS       um_submitq_add(): UM_OK queued; UM_ELIMIT the queue holds max_jobs messages
 *              already: this (newest) message is dropped and logged, the queued ones stay;
 *              UM_ENOMEM. In both failure cases release(owner) has been called.
 * LIMITS       At most max_jobs messages queued. um_submitq_free() cancels an attempt in
 *              flight (SMTP) and drops what is still queued, logging how many.
 */
#ifndef UM_SUBMITQ_H
#define UM_SUBMITQ_H

#include <stddef.h>

#include "common.h"
#include "log.h"
#include "submit.h"

typedef enum um_status um_submitq_send_fn(void *arg, const struct um_submit_opts *o,
                                          const char *from, const char *const *rcpts, size_t nrcpts,
                                          const char *msg, size_t len, struct um_error *err);
typedef void um_submitq_release_fn(void *owner);

struct um_submitq_params {
    size_t max_jobs;
    unsigned max_attempts;
    unsigned first_backoff_ms, max_backoff_ms;
    um_submitq_send_fn *send; /* NULL: um_submit_send() */
    void *send_arg;
    um_submitq_release_fn *release; /* may be NULL */
    const struct um_logger *log;    /* borrowed for the queue's lifetime */
};

/* The daemon's schedule: 12 attempts, 2 s doubling to 10 min (about 2 hours in all). */
#define UM_SUBMITQ_MAX_JOBS      100
#define UM_SUBMITQ_MAX_ATTEMPTS  12
#define UM_SUBMITQ_FIRST_BACKOFF 2000
#define UM_SUBMITQ_MAX_BACKOFF   600000

struct um_submitq;

UM_NODISCARD enum um_status um_submitq_new(const struct um_submitq_params *p,
                                           struct um_submitq **out, struct um_error *err);
/* what names the message in logs ("ratelimit-notice"); it must be a string literal. */
enum um_status um_submitq_add(struct um_submitq *q, const struct um_submit_opts *o, void *owner,
                              const char *what, const char *from, const char *const *rcpts,
                              size_t nrcpts, const char *msg,
                              size_t len);  /* logs its own failures */
void um_submitq_free(struct um_submitq *q); /* NULL does nothing */

#endif
