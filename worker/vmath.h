/*  vmath.h - exp over arrays, in loops the compiler vectorizes.

    glibc's exp is accurate and fast for one value, but a call per element
    keeps a loop scalar: on an SVM's rbf kernel (hundreds of thousands of
    exps per batch) that is most of the time.  These compute exp with the
    usual range reduction (x = n ln2 + r, |r| <= ln2 / 2, ln2 split in two
    parts), a Taylor polynomial of r (degree 13 for double, 7 for float:
    truncation below half an ulp), and 2^n built in the exponent bits, with
    no branch, so that -O3 turns the loop into SIMD code; the file is built
    for AVX2 + FMA too and the variant is picked at run time (target_clones).
    Accuracy: within 2 ulp of the exact value (tests/test_vmath.c checks
    against glibc).  Special values: exp(NaN) = NaN, exp(x) = +inf above the
    largest finite result, and results below about 1e-304 (x < -700) are
    flushed to 0, which no sum that they take part in can tell apart.
*/
#ifndef AMAAS_VMATH_H_INCLUDED
#define AMAAS_VMATH_H_INCLUDED

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

//  exp (v) of one double, branch-free, inline so that loops of other
//  functions (tanh, sigmoid, GELU in graph_kernels.c) vectorize with it.
//  Cannot fail.
static inline double vmath_exp1 (double v)
{
    const double log2e = 1.4426950408889634074;
    const double ln2_hi = 6.93147180369123816490e-01; //  ln 2 with its low 32 bits zero
    const double ln2_lo = 1.90821492927058770002e-10; //  ln 2 - ln2_hi
    const double shifter = 0x1.8p52;                  //  adding it rounds to an integer
    uint64_t shifter_bits;
    memcpy (&shifter_bits, &shifter, sizeof shifter_bits);
    //  Clamped so that n - 1 stays a normal exponent; NaN passes through
    double c = v < -700.0 ? -700.0 : v;
    c = c > 709.9 ? 709.9 : c;
    double t = c * log2e + shifter;
    double k = t - shifter; //  round (c / ln2)
    double r = c - k * ln2_hi;
    r = r - k * ln2_lo;
    double p = 1.0 / 6227020800.0; //  1/13!
    p = p * r + 1.0 / 479001600.0;
    p = p * r + 1.0 / 39916800.0;
    p = p * r + 1.0 / 3628800.0;
    p = p * r + 1.0 / 362880.0;
    p = p * r + 1.0 / 40320.0;
    p = p * r + 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    uint64_t bits; //  unsigned: a NaN's bits wrap harmlessly (the select below drops them)
    memcpy (&bits, &t, sizeof bits);
    //  2^(k - 1): t's low bits hold k; times 2 below, so that k = 1024
    //  (results near the top of the range) overflows only when it must
    uint64_t scale_bits = (bits - shifter_bits + 1022) << 52;
    double scale;
    memcpy (&scale, &scale_bits, sizeof scale);
    double y = p * scale * 2.0;
    y = v < -700.0 ? 0.0 : y;
    y = v > 709.782712893384 ? INFINITY : y;
    return v != v ? v : y;
}

//  x[i] = exp (x[i]) for i < n.  Cannot fail.
void vmath_exp_d (double *x, size_t n);
void vmath_exp_s (float *x, size_t n);

#endif
