/*  vmath.c - exp over arrays (vmath.h says how and how accurate).
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "vmath.h"

//  Builds for the baseline x86-64 and for AVX2 + FMA, picked at load time
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define S_CLONES __attribute__ ((target_clones ("arch=x86-64-v3", "default")))
#else
#define S_CLONES
#endif

S_CLONES void vmath_exp_d (double *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        x[i] = vmath_exp1 (x[i]);
}

S_CLONES void vmath_exp_s (float *x, size_t n)
{
    const float log2e = 1.44269504f;
    const float ln2_hi = 0.693145752f; //  ln 2 with its low 12 bits zero
    const float ln2_lo = 1.42860677e-06f;
    const float shifter = 0x1.8p23f;
    uint32_t shifter_bits;
    memcpy (&shifter_bits, &shifter, sizeof shifter_bits);
    for (size_t i = 0; i < n; i++) {
        float v = x[i];
        float c = v < -86.0f ? -86.0f : v;
        c = c > 88.75f ? 88.75f : c;
        float t = c * log2e + shifter;
        float k = t - shifter;
        float r = c - k * ln2_hi;
        r = r - k * ln2_lo;
        float p = 1.0f / 5040.0f;
        p = p * r + 1.0f / 720.0f;
        p = p * r + 1.0f / 120.0f;
        p = p * r + 1.0f / 24.0f;
        p = p * r + 1.0f / 6.0f;
        p = p * r + 0.5f;
        p = p * r + 1.0f;
        p = p * r + 1.0f;
        uint32_t bits;
        memcpy (&bits, &t, sizeof bits);
        uint32_t scale_bits = (bits - shifter_bits + 126) << 23;
        float scale;
        memcpy (&scale, &scale_bits, sizeof scale);
        float y = p * scale * 2.0f;
        y = v < -86.0f ? 0.0f : y;
        y = v > 88.7228394f ? INFINITY : y;
        x[i] = v != v ? v : y;
    }
}
