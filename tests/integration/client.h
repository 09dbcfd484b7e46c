/*
 * client.h - what the C test clients (ws_client, replay_check) share beside
 * the codecs: connecting to an address given on the command line and
 * writing whole buffers.  Blocking sockets, one thread.
 */
#ifndef HERALD_TEST_CLIENT_H
#define HERALD_TEST_CLIENT_H

#include <stddef.h>

/*
 * Connect to addr: "host:port" (resolved, IPv4 or IPv6; TCP_NODELAY) or
 * "unix:/path".  rcvbuf > 0 sets SO_RCVBUF before connecting (a slow
 * reader's window).  Returns a blocking descriptor, or -1 with
 * "PROG: connect ADDR: why" on stderr.
 */
int client_dial(const char *prog, const char *addr, int rcvbuf);

/*
 * Write all n bytes of b; EINTR is retried, and a non-blocking descriptor
 * that is full is waited for.  Returns 0, or -1 when the peer is gone.
 */
int client_write_all(int fd, const void *b, size_t n);

#endif
