/*  clock.h - monotonic time for timers, deadlines and timings.  */
#ifndef AMAAS_CLOCK_H_INCLUDED
#define AMAAS_CLOCK_H_INCLUDED

#include <stdint.h>

//  Microseconds on the monotonic clock.  Cannot fail.
uint64_t clock_now_us (void);

//  Milliseconds on the monotonic clock.  Cannot fail.
int64_t clock_now_ms (void);

#endif
