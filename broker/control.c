/*  control.c - answers of the broker's control commands, as msgpack maps.

    Each answer is one map, packed straight from the dispatcher's tables;
    the amaas CLI turns it into a table or JSON.  They are for operators,
    not the hot path: they walk every worker and model.
*/
#include "control.h"

#include <string.h>

static int write_sbuffer (void *data, const char *buf, size_t len)
{
    return msgpack_sbuffer_write ((msgpack_sbuffer *)data, buf, len);
}

static void pack_str (msgpack_packer *pk, const char *s)
{
    msgpack_pack_str (pk, strlen (s));
    msgpack_pack_str_body (pk, s, strlen (s));
}

static zframe_t *finish (msgpack_sbuffer *sbuf)
{
    zframe_t *frame = zframe_new (sbuf->data, sbuf->size);
    msgpack_sbuffer_destroy (sbuf);
    return frame;
}

zframe_t *control_status (dispatch_t *dispatch, const broker_stats_t *stats, int64_t now_ms)
{
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &sbuf, write_sbuffer);
    msgpack_pack_map (&pk, 6);
    pack_str (&pk, "uptime_s");
    msgpack_pack_double (&pk, (double)(now_ms - stats->started_ms) / 1000.0);
    pack_str (&pk, "jobs");
    size_t codes = 0;
    for (int c = 0; c < 32; c++)
        codes += stats->answered[c] > 0;
    msgpack_pack_map (&pk, codes);
    for (int c = 0; c < 32; c++)
        if (stats->answered[c]) {
            pack_str (&pk, amaas_code_name ((amaas_code_t)c));
            msgpack_pack_uint64 (&pk, stats->answered[c]);
        }
    pack_str (&pk, "queued");
    size_t models = 0;
    for (broker_model_t *m = dispatch_model_first (dispatch); m; m = dispatch_model_next (dispatch))
        models++;
    msgpack_pack_map (&pk, models);
    for (broker_model_t *m = dispatch_model_first (dispatch); m;
         m = dispatch_model_next (dispatch)) {
        pack_str (&pk, m->name);
        msgpack_pack_uint64 (&pk, m->queued);
    }
    pack_str (&pk, "in_flight");
    msgpack_pack_uint64 (&pk, dispatch_in_flight (dispatch));
    pack_str (&pk, "workers");
    msgpack_pack_uint64 (&pk, dispatch_worker_count (dispatch));
    pack_str (&pk, "models");
    msgpack_pack_uint64 (&pk, models);
    return finish (&sbuf);
}

zframe_t *control_workers (dispatch_t *dispatch, int64_t now_ms)
{
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &sbuf, write_sbuffer);
    msgpack_pack_map (&pk, 1);
    pack_str (&pk, "workers");
    msgpack_pack_array (&pk, dispatch_worker_count (dispatch));
    for (broker_worker_t *w = dispatch_worker_first (dispatch); w;
         w = dispatch_worker_next (dispatch)) {
        msgpack_pack_map (&pk, 9);
        pack_str (&pk, "id");
        pack_str (&pk, w->key);
        pack_str (&pk, "host");
        pack_str (&pk, w->host);
        pack_str (&pk, "pid");
        msgpack_pack_uint32 (&pk, w->pid);
        pack_str (&pk, "models");
        msgpack_pack_array (&pk, w->n_models);
        for (size_t i = 0; i < w->n_models; i++)
            pack_str (&pk, w->models[i]->name);
        pack_str (&pk, "credit");
        msgpack_pack_uint32 (&pk, w->credit);
        pack_str (&pk, "in_flight");
        msgpack_pack_uint64 (&pk, w->jobs.size);
        pack_str (&pk, "done");
        msgpack_pack_uint64 (&pk, w->done);
        pack_str (&pk, "last_heartbeat_ms");
        msgpack_pack_int64 (&pk, now_ms - w->seen_ms);
        pack_str (&pk, "draining");
        if (w->draining)
            msgpack_pack_true (&pk);
        else
            msgpack_pack_false (&pk);
    }
    return finish (&sbuf);
}

zframe_t *control_models (dispatch_t *dispatch)
{
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &sbuf, write_sbuffer);
    size_t n = 0;
    for (broker_model_t *m = dispatch_model_first (dispatch); m; m = dispatch_model_next (dispatch))
        n += zlistx_size (m->workers) > 0 || m->queued > 0;
    msgpack_pack_map (&pk, 1);
    pack_str (&pk, "models");
    msgpack_pack_array (&pk, n);
    for (broker_model_t *m = dispatch_model_first (dispatch); m;
         m = dispatch_model_next (dispatch)) {
        if (zlistx_size (m->workers) == 0 && m->queued == 0)
            continue;
        msgpack_pack_map (&pk, 5);
        pack_str (&pk, "name");
        pack_str (&pk, m->name);
        pack_str (&pk, "version");
        pack_str (&pk, m->version);
        pack_str (&pk, "width");
        msgpack_pack_uint32 (&pk, m->width);
        pack_str (&pk, "workers");
        msgpack_pack_uint64 (&pk, zlistx_size (m->workers));
        pack_str (&pk, "queued");
        msgpack_pack_uint64 (&pk, m->queued);
    }
    return finish (&sbuf);
}
