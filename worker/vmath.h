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

#include <stddef.h>

//  x[i] = exp (x[i]) for i < n.  Cannot fail.
void vmath_exp_d (double *x, size_t n);
void vmath_exp_s (float *x, size_t n);

#endif
