/*  timing.h - the clock and the median of the C baselines of bench/
    (sgemm_baseline, model_compute, graph_gemm).
*/
#ifndef AMAAS_BENCH_TIMING_H_INCLUDED
#define AMAAS_BENCH_TIMING_H_INCLUDED

#include <stdlib.h>
#include <time.h>

//  Seconds on the monotonic clock.
static inline double bench_now (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static inline int bench_compare_double (const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

//  The median of count >= 1 values (of the middle two when count is
//  even), which are sorted in place.
static inline double bench_median (double *values, size_t count)
{
    qsort (values, count, sizeof *values, bench_compare_double);
    return count % 2 ? values[count / 2] : (values[count / 2 - 1] + values[count / 2]) / 2;
}

#endif
