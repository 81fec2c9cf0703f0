/*  control.c - answers of the broker's control commands, as msgpack maps.

    Each answer is one map, packed straight from the dispatcher's tables;
    the amaas CLI turns it into a table or JSON.  They are for operators,
    not the hot path: they walk every worker and model.
*/
#include "control.h"

#include <assert.h>
#include <string.h>

static int s_write_sbuffer (void *data, const char *buf, size_t len)
{
    return msgpack_sbuffer_write ((msgpack_sbuffer *)data, buf, len);
}

static void s_pack_str (msgpack_packer *pk, const char *s)
{
    msgpack_pack_str (pk, strlen (s));
    msgpack_pack_str_body (pk, s, strlen (s));
}

static void s_free_item (void **item)
{
    free (*item);
    *item = NULL;
}

static zframe_t *s_finish (msgpack_sbuffer *sbuf)
{
    zframe_t *frame = zframe_new (sbuf->data, sbuf->size);
    msgpack_sbuffer_destroy (sbuf);
    return frame;
}

//  A model's figures in the status, its versions added up
typedef struct {
    size_t queued;      //  jobs waiting
    uint64_t oldest_us; //  when the oldest of them arrived; 0: none
} status_model_t;

zframe_t *control_status (dispatch_t *dispatch, metrics_t *metrics, const control_stats_t *stats,
                          int64_t now_ms)
{
    assert (dispatch);
    assert (metrics);
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &sbuf, s_write_sbuffer);
    msgpack_pack_map (&pk, 11);
    s_pack_str (&pk, "uptime_s");
    msgpack_pack_double (&pk, (double)(now_ms - stats->started_ms) / 1000.0);
    s_pack_str (&pk, "jobs");
    size_t codes = 0;
    for (int c = 0; c < 32; c++)
        codes += stats->answered[c] > 0;
    msgpack_pack_map (&pk, codes);
    for (int c = 0; c < 32; c++)
        if (stats->answered[c]) {
            s_pack_str (&pk, amaas_code_name ((amaas_code_t)c));
            msgpack_pack_uint64 (&pk, stats->answered[c]);
        }
    //  By model name: its versions add up (the oldest job, of them all)
    zhashx_t *by_name = zhashx_new ();
    for (dispatch_model_t *m = dispatch_model_first (dispatch); by_name && m;
         m = dispatch_model_next (dispatch)) {
        status_model_t *model = zhashx_lookup (by_name, dispatch_model_name (m));
        if (!model && (model = calloc (1, sizeof *model)))
            zhashx_insert (by_name, dispatch_model_name (m), model);
        if (!model)
            continue;
        model->queued += dispatch_model_queued (m);
        uint64_t oldest = dispatch_model_oldest_us (m);
        if (oldest && (model->oldest_us == 0 || oldest < model->oldest_us))
            model->oldest_us = oldest;
    }
    if (by_name)
        zhashx_set_destructor (by_name, s_free_item);
    size_t models = by_name ? zhashx_size (by_name) : 0;
    s_pack_str (&pk, "queued");
    msgpack_pack_map (&pk, models);
    for (status_model_t *model = by_name ? zhashx_first (by_name) : NULL; model;
         model = zhashx_next (by_name)) {
        s_pack_str (&pk, zhashx_cursor (by_name));
        msgpack_pack_uint64 (&pk, model->queued);
    }
    s_pack_str (&pk, "queue_wait_s");
    msgpack_pack_map (&pk, models);
    int64_t now_us = now_ms * 1000;
    for (status_model_t *model = by_name ? zhashx_first (by_name) : NULL; model;
         model = zhashx_next (by_name)) {
        s_pack_str (&pk, zhashx_cursor (by_name));
        int64_t waited = model->oldest_us ? now_us - (int64_t)model->oldest_us : 0;
        msgpack_pack_double (&pk, waited > 0 ? (double)waited / 1e6 : 0);
    }
    s_pack_str (&pk, "queue_wait_p99_s");
    msgpack_pack_map (&pk, models);
    for (status_model_t *model = by_name ? zhashx_first (by_name) : NULL; model;
         model = zhashx_next (by_name)) {
        s_pack_str (&pk, zhashx_cursor (by_name));
        msgpack_pack_double (&pk, metrics_queue_wait_p99 (metrics, zhashx_cursor (by_name)));
    }
    zhashx_destroy (&by_name);
    //  Over the workers that serve (a draining one takes no new job)
    size_t serving = 0, held = 0;
    uint64_t credit = 0;
    for (dispatch_worker_t *w = dispatch_worker_first (dispatch); w;
         w = dispatch_worker_next (dispatch))
        if (!dispatch_worker_draining (w)) {
            serving++;
            held += dispatch_worker_held (w);
            credit += dispatch_worker_credit (w);
        }
    s_pack_str (&pk, "in_flight");
    msgpack_pack_uint64 (&pk, dispatch_in_flight (dispatch));
    s_pack_str (&pk, "workers");
    msgpack_pack_uint64 (&pk, dispatch_worker_count (dispatch));
    s_pack_str (&pk, "serving_workers");
    msgpack_pack_uint64 (&pk, serving);
    s_pack_str (&pk, "busy_ratio");
    msgpack_pack_double (&pk, credit ? (double)held / (double)credit : 0);
    s_pack_str (&pk, "in_flight_per_worker");
    msgpack_pack_double (&pk, serving ? (double)held / (double)serving : 0);
    s_pack_str (&pk, "models");
    msgpack_pack_uint64 (&pk, models);
    return s_finish (&sbuf);
}

zframe_t *control_workers (dispatch_t *dispatch, int64_t now_ms)
{
    assert (dispatch);
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &sbuf, s_write_sbuffer);
    msgpack_pack_map (&pk, 1);
    s_pack_str (&pk, "workers");
    msgpack_pack_array (&pk, dispatch_worker_count (dispatch));
    for (dispatch_worker_t *w = dispatch_worker_first (dispatch); w;
         w = dispatch_worker_next (dispatch)) {
        msgpack_pack_map (&pk, 10);
        s_pack_str (&pk, "id");
        s_pack_str (&pk, dispatch_worker_key (w));
        s_pack_str (&pk, "host");
        s_pack_str (&pk, dispatch_worker_host (w));
        s_pack_str (&pk, "pid");
        msgpack_pack_uint32 (&pk, dispatch_worker_pid (w));
        s_pack_str (&pk, "models");
        msgpack_pack_array (&pk, dispatch_worker_model_count (w));
        for (size_t i = 0; i < dispatch_worker_model_count (w); i++) {
            const dispatch_model_t *model = dispatch_worker_model (w, i);
            char label[CODEC_NAME_MAX + CODEC_VERSION_MAX + 1];
            snprintf (label, sizeof label, "%s@%s", dispatch_model_name (model),
                      dispatch_model_version (model));
            s_pack_str (&pk, label);
        }
        s_pack_str (&pk, "model_errors");
        msgpack_pack_uint32 (&pk, dispatch_worker_model_errors (w));
        s_pack_str (&pk, "credit");
        msgpack_pack_uint32 (&pk, dispatch_worker_credit (w));
        s_pack_str (&pk, "in_flight");
        msgpack_pack_uint64 (&pk, dispatch_worker_held (w));
        s_pack_str (&pk, "done");
        msgpack_pack_uint64 (&pk, dispatch_worker_done (w));
        s_pack_str (&pk, "last_heartbeat_ms");
        msgpack_pack_int64 (&pk, now_ms - dispatch_worker_seen_ms (w));
        s_pack_str (&pk, "draining");
        if (dispatch_worker_draining (w))
            msgpack_pack_true (&pk);
        else
            msgpack_pack_false (&pk);
    }
    return s_finish (&sbuf);
}

zframe_t *control_models (dispatch_t *dispatch)
{
    assert (dispatch);
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &sbuf, s_write_sbuffer);
    size_t n = 0;
    for (dispatch_model_t *m = dispatch_model_first (dispatch); m;
         m = dispatch_model_next (dispatch))
        n += dispatch_model_workers (m) > 0 || dispatch_model_queued (m) > 0;
    msgpack_pack_map (&pk, 1);
    s_pack_str (&pk, "models");
    msgpack_pack_array (&pk, n);
    for (dispatch_model_t *m = dispatch_model_first (dispatch); m;
         m = dispatch_model_next (dispatch)) {
        if (dispatch_model_workers (m) == 0 && dispatch_model_queued (m) == 0)
            continue;
        msgpack_pack_map (&pk, 6);
        s_pack_str (&pk, "name");
        s_pack_str (&pk, dispatch_model_name (m));
        s_pack_str (&pk, "version");
        s_pack_str (&pk, dispatch_model_version (m));
        s_pack_str (&pk, "width");
        msgpack_pack_uint32 (&pk, dispatch_model_width (m));
        s_pack_str (&pk, "workers");
        msgpack_pack_uint64 (&pk, dispatch_model_workers (m));
        s_pack_str (&pk, "queued");
        msgpack_pack_uint64 (&pk, dispatch_model_queued (m));
        s_pack_str (&pk, "mapped");
        msgpack_pack_uint64 (&pk, dispatch_model_mapped (m));
    }
    return s_finish (&sbuf);
}
