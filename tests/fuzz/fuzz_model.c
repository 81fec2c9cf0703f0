/*  fuzz_model.c - libFuzzer target for the model loader and runtime.

    Any input is loaded as a model file; one that loads is run on a few rows
    of each input datatype, and every output must have the shape and size
    the model declares.  A graph model (format_version 2) is planned for a
    batch of 1 and every named dimension 2, under a small plan limit, and
    run on inputs of zeros: every output must have the batch first.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graph.h"
#include "model.h"

//  Checked in every build type (assert is compiled out with NDEBUG)
#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf (stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);              \
            abort ();                                                                              \
        }                                                                                          \
    } while (0)

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    char err[512];
    //  A private copy: the loader may keep pointers into the buffer
    uint8_t *copy = malloc (size ? size : 1);
    memcpy (copy, data, size);
    model_t *model = model_load_buffer (copy, size, "fuzz", err, sizeof err);
    if (!model) {
        CHECK (err[0]);
        free (copy);
        return 0;
    }
    const graph_t *graph = model_graph (model);
    if (graph) {
        graph_plan_limit ((size_t)64 << 20); //  a hostile graph gets -2, not the memory
        model_workspace_t *ws = model_workspace_new ();
        graph_ws_t *gws = model_workspace_graph (ws);
        int64_t shapes[GRAPH_MAX_INPUTS][GRAPH_MAX_DIMS];
        void *inputs[GRAPH_MAX_INPUTS];
        size_t n_inputs = graph_input_count (graph);
        for (size_t i = 0; i < n_inputs; i++) {
            const graph_io_t *io = graph_input (graph, i);
            for (int d = 0; d < io->ndim; d++)
                shapes[i][d] = d == 0 ? 1 : io->dims[d] > 0 ? io->dims[d] : 2;
        }
        int rc = gws ? graph_prepare (graph, gws, shapes, inputs, err, sizeof err) : -2;
        CHECK (rc == 0 || err[0]);
        if (rc == 0) {
            for (size_t i = 0; i < n_inputs; i++) {
                const graph_io_t *io = graph_input (graph, i);
                size_t count = 1;
                for (int d = 0; d < io->ndim; d++)
                    count *= (size_t)shapes[i][d];
                memset (inputs[i], 0, count * amaas_dtype_size (io->datatype));
            }
            model_output_t outs[GRAPH_MAX_OUTPUTS];
            if (graph_execute (graph, gws, outs, err, sizeof err) == 0)
                for (size_t o = 0; o < graph_output_count (graph); o++)
                    CHECK (outs[o].shape[0] == 1 && outs[o].data);
            else
                CHECK (err[0]);
        }
        model_workspace_destroy (&ws);
    }
    size_t width = model_input_width (model);
    if (!graph && width <= 4096) {
        model_workspace_t *ws = model_workspace_new ();
        double *in = calloc (3 * width, sizeof (double));
        for (size_t i = 0; i < 3 * width; i++)
            in[i] = (double)i / 7.0 - 1.0;
        model_output_t outs[MODEL_MAX_OUTPUTS];
        amaas_dtype_t types[] = {AMAAS_FP64, AMAAS_FP32, AMAAS_INT32, AMAAS_INT64};
        for (int t = 0; t < 4; t++)
            if (model_run (model, ws, types[t], in, 3, outs, err, sizeof err) == 0)
                for (size_t o = 0; o < model_output_count (model); o++)
                    CHECK (outs[o].shape[0] == 3 && outs[o].data);
        free (in);
        model_workspace_destroy (&ws);
    }
    model_destroy (&model);
    free (copy);
    return 0;
}
