/*  graph_gemm.c - the graph kernels' products (gk_gemm, gk_matmul) against
    bare BLIS sgemm calls on the same shapes: what the bias, the activation
    and the batched calls cost over BLIS itself.

    graph_gemm [--hidden H] [--batch B] [--seq S] [--gemm M,K,N]...
               [--repeats R] [--min-time S]

    By default the products of one BERT-style encoder layer on B sequences
    of S tokens (rows = B S, heads of 64): the gemms q/k/v and out [rows, H]
    x [H, H] + bias, ffn1 [rows, H] x [H, 4H] + bias then gelu, ffn2
    [rows, 4H] x [4H, H] + bias, and the per-head attention products, B H/64
    of them: scores = Q K^T ([S, 64] x [64, S], b transposed) and context =
    P V ([S, S] x [S, 64]).  --gemm M,K,N (repeatable) times those gemm
    shapes instead (+ bias, no activation).  The bare call is bli_sgemm,
    row-major, beta 0, one BLIS thread (attention: a loop of them, K^T by
    BLIS_TRANSPOSE); each side runs as many times as fill --min-time seconds,
    the two alternating, and the figure is the median of --repeats repeats.
    Prints one JSON object: {"rows", "hidden", "shapes": [{"name", "count",
    "m", "k", "n", "gk_us", "sgemm_us", "gk_gflops", "sgemm_gflops",
    "ratio"}]}, ratio = sgemm time / gk time (1 = as fast as BLIS alone).
*/
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <blis.h>

#include "timing.h"

#include "graph_kernels.h"

#define MAX_SHAPES 16
#define MAX_REPEATS 1000

typedef struct {
    char name[16];
    size_t count; //  products (attention: one per sequence and head)
    size_t m, k, n;
    bool matmul;  //  gk_matmul (else gk_gemm)
    bool trans_b; //  matmul: b holds [n][k]
    gk_act_t act; //  gemm: activation
} shape_t;

//  Buffers of one shape: a [count][m k], b [count][k n], c [count][m n]
typedef struct {
    const shape_t *shape;
    float *a, *b, *bias, *c;
    const float **ap, **bp;
    float **cp;
} run_t;

static void *s_alloc (size_t bytes)
{
    void *p = NULL;
    if (posix_memalign (&p, 64, bytes + 64) != 0) {
        fprintf (stderr, "graph_gemm: out of memory\n");
        exit (1);
    }
    return p;
}

static float *s_random (size_t count)
{
    float *p = s_alloc (count * sizeof (float));
    for (size_t i = 0; i < count; i++)
        p[i] = (float)((double)rand () / RAND_MAX - 0.5) * 0.1f;
    return p;
}

//  One call of the kernel (gk) or of bare BLIS on the shape
static void s_once (const run_t *run, bool gk)
{
    const shape_t *s = run->shape;
    float one = 1, zero = 0;
    if (gk && s->matmul)
        gk_matmul (s->count, run->ap, run->bp, run->cp, s->m, s->n, s->k, false, s->trans_b);
    else if (gk)
        gk_gemm (run->a, run->b, run->bias, run->c, s->m, s->k, s->n, s->act, 0.01f);
    else
        for (size_t i = 0; i < s->count; i++)
            bli_sgemm (BLIS_NO_TRANSPOSE, s->trans_b ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE,
                       (dim_t)s->m, (dim_t)s->n, (dim_t)s->k, &one, (float *)run->ap[i],
                       (inc_t)s->k, 1, (float *)run->bp[i], s->trans_b ? (inc_t)s->k : (inc_t)s->n,
                       1, &zero, run->cp[i], (inc_t)s->n, 1);
}

//  Seconds per call: calls[] calibrated on the first repeat
static double s_time (const run_t *run, bool gk, long *calls, double min_time)
{
    double t0 = bench_now (), t1;
    long done = 0;
    do {
        for (long i = 0; i < *calls; i++)
            s_once (run, gk);
        done += *calls;
        t1 = bench_now ();
    } while (t1 - t0 < min_time);
    return (t1 - t0) / (double)done;
}

static void s_usage (FILE *out)
{
    fprintf (out,
             "usage: graph_gemm [options]\n"
             "  Times gk_gemm and gk_matmul against bare BLIS sgemm (one thread) on the\n"
             "  products of a BERT-style encoder layer; prints JSON.\n"
             "  --hidden H      hidden size, a multiple of 64 (default 768)\n"
             "  --batch B       sequences (default 32)\n"
             "  --seq S         tokens per sequence (default 128)\n"
             "  --gemm M,K,N    time this gemm shape instead (repeatable, up to %d)\n"
             "  --repeats R     repeats, the median is printed (default 5)\n"
             "  --min-time S    least seconds per repeat and side (default 0.2)\n",
             MAX_SHAPES);
}

static bool s_parse_size (const char *text, long low, long high, long *value)
{
    char *end;
    errno = 0;
    long v = strtol (text, &end, 10);
    if (errno || end == text || *end || v < low || v > high)
        return false;
    *value = v;
    return true;
}

int main (int argc, char **argv)
{
    long hidden = 768, batch = 32, seq = 128, repeats = 5;
    double min_time = 0.2;
    shape_t shapes[MAX_SHAPES];
    int n_shapes = 0;
    static const struct option options[] = {
        {"hidden", required_argument, 0, 'H'},  {"batch", required_argument, 0, 'b'},
        {"seq", required_argument, 0, 's'},     {"gemm", required_argument, 0, 'g'},
        {"repeats", required_argument, 0, 'n'}, {"min-time", required_argument, 0, 't'},
        {"help", no_argument, 0, 'h'},          {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long (argc, argv, "h", options, NULL)) != -1) {
        bool ok = true;
        switch (c) {
        case 'H': ok = s_parse_size (optarg, 64, 16384, &hidden) && hidden % 64 == 0; break;
        case 'b': ok = s_parse_size (optarg, 1, 4096, &batch); break;
        case 's': ok = s_parse_size (optarg, 1, 4096, &seq); break;
        case 'n': ok = s_parse_size (optarg, 1, MAX_REPEATS, &repeats); break;
        case 't': {
            char *end;
            errno = 0;
            min_time = strtod (optarg, &end);
            ok = !errno && end != optarg && !*end && min_time > 0 && min_time <= 3600;
            break;
        }
        case 'g': {
            unsigned long m, k, n;
            char tail;
            ok = n_shapes < MAX_SHAPES &&
                 sscanf (optarg, "%lu,%lu,%lu%c", &m, &k, &n, &tail) == 3 && m >= 1 && m <= 65536 &&
                 k >= 1 && k <= 65536 && n >= 1 && n <= 65536;
            if (ok) {
                shapes[n_shapes] = (shape_t){.count = 1, .m = m, .k = k, .n = n};
                snprintf (shapes[n_shapes].name, sizeof shapes[n_shapes].name, "gemm%d",
                          n_shapes + 1);
                n_shapes++;
            }
            break;
        }
        case 'h': s_usage (stdout); return 0;
        default: s_usage (stderr); return 2;
        }
        if (!ok) {
            fprintf (stderr, "graph_gemm: bad value for --%s: %s\n", argv[optind - 1] + 2, optarg);
            return 2;
        }
    }
    if (optind < argc) {
        s_usage (stderr);
        return 2;
    }
    size_t rows = (size_t)(batch * seq), h = (size_t)hidden, heads = h / 64;
    if (n_shapes == 0) {
        shapes[0] = (shape_t){"qkv", 1, rows, h, h, false, false, GK_ACT_NONE};
        shapes[1] = (shape_t){"out", 1, rows, h, h, false, false, GK_ACT_NONE};
        shapes[2] = (shape_t){"ffn1", 1, rows, h, 4 * h, false, false, GK_ACT_GELU};
        shapes[3] = (shape_t){"ffn2", 1, rows, 4 * h, h, false, false, GK_ACT_NONE};
        shapes[4] = (shape_t){
            "scores", (size_t)batch * heads, (size_t)seq, 64, (size_t)seq, true, true, GK_ACT_NONE};
        shapes[5] =
            (shape_t){"context",  (size_t)batch * heads, (size_t)seq, (size_t)seq, 64, true, false,
                      GK_ACT_NONE};
        n_shapes = 6;
    }

    bli_thread_set_num_threads (1);
    srand (42);
    printf ("{\"rows\": %zu, \"hidden\": %zu, \"shapes\": [", rows, h);
    for (int i = 0; i < n_shapes; i++) {
        const shape_t *s = &shapes[i];
        run_t run = {.shape = s};
        run.a = s_random (s->count * s->m * s->k);
        run.b = s_random (s->count * s->k * s->n);
        run.bias = s_random (s->n);
        run.c = s_alloc (s->count * s->m * s->n * sizeof (float));
        run.ap = s_alloc (s->count * sizeof (float *));
        run.bp = s_alloc (s->count * sizeof (float *));
        run.cp = s_alloc (s->count * sizeof (float *));
        for (size_t j = 0; j < s->count; j++) {
            run.ap[j] = run.a + j * s->m * s->k;
            run.bp[j] = run.b + j * s->k * s->n;
            run.cp[j] = run.c + j * s->m * s->n;
        }
        //  Warm-up: calls per repeat so that one takes about min_time
        long calls[2] = {1, 1};
        for (int side = 0; side < 2; side++) {
            double per = s_time (&run, side, &calls[side], min_time / 4);
            calls[side] = (long)(min_time / per) + 1;
        }
        double times[2][MAX_REPEATS];
        for (long r = 0; r < repeats; r++)
            for (int side = 0; side < 2; side++)
                times[side][r] = s_time (&run, side, &calls[side], min_time);
        double bare = bench_median (times[0], repeats), gk = bench_median (times[1], repeats);
        double flops = 2.0 * (double)s->count * (double)s->m * (double)s->k * (double)s->n;
        printf ("%s\n  {\"name\": \"%s\", \"count\": %zu, \"m\": %zu, \"k\": %zu, \"n\": %zu, "
                "\"gk_us\": %.1f, \"sgemm_us\": %.1f, \"gk_gflops\": %.2f, "
                "\"sgemm_gflops\": %.2f, \"ratio\": %.3f}",
                i ? "," : "", s->name, s->count, s->m, s->k, s->n, gk * 1e6, bare * 1e6,
                flops / gk / 1e9, flops / bare / 1e9, bare / gk);
        fflush (stdout);
        free (run.a);
        free (run.b);
        free (run.bias);
        free (run.c);
        free (run.ap);
        free (run.bp);
        free (run.cp);
    }
    printf ("]}\n");
    return 0;
}
