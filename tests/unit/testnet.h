/*
 * testnet.h - test helpers for the tests that start their own servers: sleep_ms() (a sleep
 * that survives EINTR) and free_port() (a loopback TCP port nothing listens on right now;
 * the process exits when none can be had). Include after <errno.h>, <stdio.h>, <stdlib.h>,
 * <string.h>, <time.h>, <unistd.h>, <netinet/in.h>, <sys/socket.h>.
 */
#ifndef UM_TEST_TESTNET_H
#define UM_TEST_TESTNET_H

static void
sleep_ms(unsigned ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static int
free_port(void)
{
    struct sockaddr_in a = {0};
    socklen_t len = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM, 0), port;

    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0
        || getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
        fprintf(stderr, "free_port: %s\n", strerror(errno));
        exit(1);
    }
    port = ntohs(a.sin_port);
    close(fd);
    return port;
}

#endif
