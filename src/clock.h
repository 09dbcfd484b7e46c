/*
 * clock.h - the two clocks Herald reads.
 *
 * Wall time (CLOCK_REALTIME) for what is compared with another host's clock:
 * envelope timestamps, token expiry, publish-to-write lag.  Monotonic time
 * for every timeout and interval, which must not jump when NTP steps the
 * wall clock.
 */
#ifndef HERALD_CLOCK_H
#define HERALD_CLOCK_H

#include <time.h>

static inline long long clock_wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static inline long long clock_mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static inline long long clock_mono_ms(void)
{
	return clock_mono_us() / 1000;
}

#endif
