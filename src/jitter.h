/*
 * jitter.h - random spreads for timers: retry delays, stream ends.
 *
 * xorshift64*, one state per owner, not thread-safe: each owner (the
 * subscriber, herald-fcgi's loop) keeps its own and draws on its thread.
 * The draws only need to differ between owners and processes, so that
 * what started together (a Redis restart, a deploy) does not come back
 * together; nothing secret comes from here (tickets and idempotency keys
 * take getrandom(2)).
 */
#ifndef HERALD_JITTER_H
#define HERALD_JITTER_H

#include <stdint.h>
#include <unistd.h>

#include "clock.h"

struct jitter {
	uint64_t s;
};

/* Seed j from the clock, the pid and salt (the owner's address). */
static inline void jitter_seed(struct jitter *j, const void *salt)
{
	j->s = (uint64_t)clock_mono_us() ^ ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)salt;
	if (j->s == 0)
		j->s = 1; /* xorshift's one fixed point */
}

/* Uniform in [0, max]. */
static inline uint64_t jitter_upto(struct jitter *j, uint64_t max)
{
	j->s ^= j->s >> 12;
	j->s ^= j->s << 25;
	j->s ^= j->s >> 27;
	return (j->s * 2685821657736338717ULL) % (max + 1);
}

#endif
