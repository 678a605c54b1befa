/*
 * listen - the descriptor budget, and the guard on libmilter's accept()
 *
 * DESCRIPTION  um_listen_init() raises the soft RLIMIT_NOFILE to the hard limit and sets the
 *              budget: a reserve of descriptors for what sessions need besides their own
 *              connection, and how many of them DNS may take. After smfi_opensocket(),
 *              um_listen_adopt(um_listen_find()) puts libmilter's listening socket under the
 *              guard (listen.c defines accept(), which libmilter's listener calls): it never
 *              lets libmilter see EMFILE (which makes it sleep for seconds, then stop), and it
 *              leaves connections in the backlog while descriptors are very short.
 *              um_listen_short() says whether a new connection should be refused (tempfail
 *              at CONNECT) because the reserve is being used. um_listen_stop() makes the
 *              listener accept nothing more and wakes it, so smfi_main() returns at once
 *              after smfi_stop() instead of at its next 5-second look.
 * THREADS      init and adopt: once, before libmilter's threads start. The rest from any
 *              thread.
 * ERRORS       um_listen_find(): -1 when there is not exactly one listening socket (the
 *              guard then stays off: libmilter's own behaviour). The rest cannot fail;
 *              shortages are logged (warning, at most one line per 10 s, with counts).
 * LIMITS       Counting costs one /proc/self/fd read at most every 100 ms, and on every new
 *              connection while near the refuse mark.
 */
#ifndef UM_LISTEN_H
#define UM_LISTEN_H

#include <stdbool.h>
#include <sys/resource.h>

#include "log.h"

struct um_listen_budget {
    rlim_t soft_before; /* RLIMIT_NOFILE soft limit as found */
    long limit;         /* as raised (0: unknown, no guard) */
    unsigned reserve;
    unsigned dns_sockets; /* for um_dns_new_capped() */
};

void um_listen_init(struct um_logger *log, struct um_listen_budget *b);
int um_listen_find(void);
void um_listen_adopt(int fd);
bool um_listen_short(void);
long um_listen_in_use(void);
void um_listen_stop(void);

#endif
