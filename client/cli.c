/*  cli.c - amaas: the command-line tool of amaas.

    amaas [--broker ENDPOINT] [--timeout MS] COMMAND [OPTIONS]
      predict --model NAME --input JSON|@FILE   print the outputs as JSON
      models [--json]                           list the models served

    JSON in and out goes through jansson; numbers are printed with 17
    significant digits so that FP64 values survive the round trip.
*/
#include <czmq.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "amaas.h"
#include "amaas_defs.h"
#include "bench.h"
#include "control.h"

//  Where and how to reach the broker: the defaults, then the environment,
//  then the options
static const char *s_broker = AMAAS_DEFAULT_FRONTEND;
static const char *s_control = DEFS_CONTROL_LOCAL;
static const char *s_server_cert = NULL; //  CURVE: the broker's public certificate
static const char *s_cert = NULL;        //  CURVE: our key pair
static int s_timeout_ms = 10000;

//  Prints the help.  Cannot fail.
static void s_usage (FILE *out)
{
    fprintf (out,
             "Usage: amaas [--broker ENDPOINT] [--timeout MS] COMMAND [OPTIONS]\n"
             "\n"
             "Commands:\n"
             "  predict --model NAME --input [NAME[:DATATYPE]=]ROWS ...\n"
             "          [--datatype FP64|FP32|INT64|INT32] [--version V] [--info]\n"
             "      Send one job and print its outputs as a JSON object.  ROWS is a JSON\n"
             "      array of rows, e.g. '[[0.5],[1.0]]' (a flat array is one row; rows\n"
             "      may be nested arrays, for inputs of more dimensions), or @FILE to\n"
             "      read it from a file ('@-' reads standard input).  A model of several\n"
             "      inputs takes one --input NAME=ROWS each, e.g. --input\n"
             "      input_ids:INT64='[[101,7,102]]' --input attention_mask:INT64='[[1,1,1]]';\n"
             "      alone, ROWS is the tensor 'input'.  --datatype is that of every input\n"
             "      without one (default FP64).  --version\n"
             "      asks for that version of the model (default: the highest served);\n"
             "      --info prints the model, version and timings on standard error.\n"
             "      The job may queue and compute as long as --timeout allows.\n"
             "  models [--json]\n"
             "      List the models the broker can serve, each version on its own line:\n"
             "      its (first) input's shape, workers, jobs queued, bytes of the model\n"
             "      file each worker maps (shared by the workers of one machine); then a\n"
             "      line per input and output: name, datatype, shape (-1: the batch, or a\n"
             "      dimension the request sets).  --json says the same, and each\n"
             "      output's width (0 for shape [rows], k for [rows, k]).\n"
             "  bench --model NAME [--rows N] [--concurrency C[,C...]] [--duration S]\n"
             "        [--rate R] [--json]\n"
             "      Load the service and report throughput, latency percentiles and the\n"
             "      server's queue/compute split (amaas bench --help).\n"
             "\n"
             "Operator commands, on the broker's control endpoint (with a list\n"
             "EP1,EP2 of several brokers: status and workers of each; drain through\n"
             "the first that knows the worker; --json: an array, each with 'control'):\n"
             "  status [--json]     uptime, jobs by outcome, queue depth per model, workers\n"
             "  workers [--json]    each worker: host, pid, models, credit, in flight, done,\n"
             "                      last heartbeat\n"
             "  drain WORKER        the worker finishes its jobs, takes no new one, exits\n"
             "  shutdown            the broker stops gracefully\n"
             "\n"
             "Security (docs/SECURITY.md):\n"
             "  keygen NAME [--dir DIR]\n"
             "      Write a CURVE key pair: DIR/NAME.key (public, give it to the broker's\n"
             "      allow-list or to its peers) and DIR/NAME.key_secret (keep it private).\n"
             "\n"
             "Options:\n"
             "  --broker ENDPOINT   broker's frontend [%s, or $AMAAS_BROKER]\n"
             "  --control ENDPOINT  broker's control endpoint [" DEFS_CONTROL_LOCAL ", or\n"
             "                      $AMAAS_CONTROL]\n"
             "  --server-key FILE   CURVE: the broker's public certificate [$AMAAS_SERVER_KEY]\n"
             "  --cert FILE         CURVE: our key pair, FILE and FILE_secret [$AMAAS_CERT]\n"
             "  --timeout MS        how long to wait for the broker [%d]\n"
             "  -h, --help          show this help (also: amaas COMMAND --help)\n"
             "\n"
             "Exit status: 0 on success, 1 when the service answered with an error,\n"
             "2 on a usage error.\n",
             AMAAS_DEFAULT_FRONTEND, s_timeout_ms);
}

//  amaas keygen NAME [--dir DIR].  Returns the exit status: 0, 1 when the
//  key exists or cannot be written, 2 on a usage error.
static int s_keygen_main (int argc, char *argv[])
{
    const char *dir = ".";
    static const struct option options[] = {
        {"dir", required_argument, 0, 'd'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    int c;
    optind = 1;
    while ((c = getopt_long (argc, argv, "h", options, NULL)) != -1) {
        if (c == 'd')
            dir = optarg;
        else if (c == 'h') {
            s_usage (stdout);
            return 0;
        } else
            return 2;
    }
    const char *name = optind < argc ? argv[optind] : NULL;
    if (!name || !*name || strchr (name, '/')) {
        fprintf (stderr, "amaas keygen: give the key a NAME (no '/'), e.g. 'amaas keygen alice'\n");
        return 2;
    }
    char path[4096], secret[4200];
    snprintf (path, sizeof path, "%s/%s.key", dir, name);
    snprintf (secret, sizeof secret, "%s_secret", path);
    if (zsys_file_exists (path) || zsys_file_exists (secret)) {
        fprintf (stderr, "amaas keygen: %s exists; not overwriting a key\n", path);
        return 1;
    }
    zcert_t *key = zcert_new ();
    zcert_set_meta (key, "name", "%s", name);
    zcert_set_meta (key, "created-by", "amaas keygen");
    int rc = zcert_save (key, path);
    if (rc == 0)
        printf ("wrote %s (public) and %s (secret: keep it private)\npublic key: %s\n", path,
                secret, zcert_public_txt (key));
    else
        fprintf (stderr, "amaas keygen: cannot write %s: %s\n", path, strerror (errno));
    zcert_destroy (&key);
    return rc == 0 ? 0 : 1;
}

//  A client connected to the broker (over CURVE with keys given); on
//  error, prints why and exits 1.
static amaas_client_t *s_connect_or_die (void)
{
    amaas_error_t err;
    amaas_client_t *client =
        s_server_cert || s_cert
            ? amaas_connect_curve (s_broker, s_timeout_ms, s_server_cert, s_cert, &err)
            : amaas_connect (s_broker, s_timeout_ms, &err);
    if (!client) {
        fprintf (stderr, "amaas: %s: %s\n", amaas_code_name (err.code), err.message);
        exit (1);
    }
    return client;
}

#define AMAAS_MAX_INPUTS_CLI 16 //  --input given to one predict

//  Reads ROWS from the argument or a file.  NULL with a message on error.
static json_t *s_read_rows (const char *arg)
{
    json_error_t jerr;
    json_t *rows;
    if (arg[0] == '@') {
        FILE *f = strcmp (arg + 1, "-") == 0 ? stdin : fopen (arg + 1, "r");
        if (!f) {
            fprintf (stderr, "amaas: cannot read %s: %s\n", arg + 1, strerror (errno));
            return NULL;
        }
        rows = json_loadf (f, 0, &jerr);
        if (f != stdin)
            fclose (f);
    } else
        rows = json_loads (arg, 0, &jerr);
    if (!rows)
        fprintf (stderr, "amaas: --input is not valid JSON: %s (line %d, column %d)\n", jerr.text,
                 jerr.line, jerr.column);
    return rows;
}

//  Writes one JSON number as an element of dtype at `at`.
static void s_put_number (double x, amaas_dtype_t dtype, char *at)
{
    if (dtype == AMAAS_FP64)
        memcpy (at, &x, 8);
    else if (dtype == AMAAS_FP32) {
        float f = (float)x;
        memcpy (at, &f, 4);
    } else if (dtype == AMAAS_INT64) {
        int64_t i = x >= 9.3e18 ? INT64_MAX : x <= -9.3e18 ? INT64_MIN : (int64_t)x;
        memcpy (at, &i, 8);
    } else {
        int32_t i = x >= 2147483647.0 ? INT32_MAX : x <= -2147483648.0 ? INT32_MIN : (int32_t)x;
        memcpy (at, &i, 4);
    }
}

//  Fills data with the numbers of a nested array of t's shape from
//  dimension dim on, counting elements in *index.  Returns 0, -1 with a
//  message when the array is not rectangular or holds something else.
static int s_fill (json_t *array, const amaas_tensor_t *t, int dim, char *data, size_t *index,
                   const char *name)
{
    if (!json_is_array (array) || json_array_size (array) != (size_t)t->shape[dim]) {
        fprintf (stderr,
                 "amaas: --input %s: not rectangular: dimension %d must hold %" PRId64
                 " elements everywhere\n",
                 name, dim, t->shape[dim]);
        return -1;
    }
    size_t elem = amaas_dtype_size (t->datatype);
    for (size_t i = 0; i < json_array_size (array); i++) {
        json_t *v = json_array_get (array, i);
        if (dim + 1 < t->ndim) {
            if (s_fill (v, t, dim + 1, data, index, name))
                return -1;
        } else if (!json_is_number (v)) {
            fprintf (stderr, "amaas: --input %s: element %zu is not a number\n", name, *index);
            return -1;
        } else
            s_put_number (json_number_value (v), t->datatype, data + (*index)++ * elem);
    }
    return 0;
}

//  Converts a JSON array of rows (nested arrays of numbers, any depth up to
//  AMAAS_MAX_DIMS; a flat array of numbers is one row) into a tensor of
//  dtype named name.  Returns the buffer (caller frees), or NULL with a
//  message.
static void *s_rows_to_tensor (json_t *rows, amaas_dtype_t dtype, const char *name,
                               amaas_tensor_t *t)
{
    if (!json_is_array (rows) || json_array_size (rows) == 0) {
        fprintf (stderr, "amaas: --input %s must be a non-empty JSON array of rows\n", name);
        return NULL;
    }
    memset (t, 0, sizeof *t);
    t->name = name;
    t->datatype = dtype;
    bool flat = !json_is_array (json_array_get (rows, 0));
    if (flat)
        t->shape[t->ndim++] = 1;
    uint64_t count = 1;
    for (json_t *a = rows; json_is_array (a); a = json_array_get (a, 0)) {
        if (t->ndim == AMAAS_MAX_DIMS) {
            fprintf (stderr, "amaas: --input %s has more than %d dimensions\n", name,
                     AMAAS_MAX_DIMS);
            return NULL;
        }
        if (json_array_size (a) == 0) {
            fprintf (stderr, "amaas: --input %s: rows must not be empty\n", name);
            return NULL;
        }
        t->shape[t->ndim++] = (int64_t)json_array_size (a);
        count *= json_array_size (a); //  each <= the text's length: no overflow
    }
    size_t elem = amaas_dtype_size (dtype);
    char *data = malloc (count * elem);
    if (!data)
        return NULL;
    size_t index = 0;
    json_t *wrapped = flat ? json_pack ("[O]", rows) : json_incref (rows);
    int rc = wrapped ? s_fill (wrapped, t, 0, data, &index, name) : -1;
    json_decref (wrapped);
    if (rc) {
        free (data);
        return NULL;
    }
    t->data = data;
    t->size = count * elem;
    return data;
}

//  One element of a tensor as JSON; *offset walks BYTES elements.  JSON
//  null for a value JSON cannot hold (NaN, infinities) and on out-of-memory.
static json_t *s_element_json (const amaas_tensor_t *t, size_t index, size_t *offset)
{
    const char *p = t->data;
    switch (t->datatype) {
    case AMAAS_FP32: {
        float f;
        memcpy (&f, p + index * 4, 4);
        return isfinite (f) ? json_real (f) : json_null ();
    }
    case AMAAS_FP64: {
        double d;
        memcpy (&d, p + index * 8, 8);
        return isfinite (d) ? json_real (d) : json_null ();
    }
    case AMAAS_INT32: {
        int32_t i;
        memcpy (&i, p + index * 4, 4);
        return json_integer (i);
    }
    case AMAAS_INT64: {
        int64_t i;
        memcpy (&i, p + index * 8, 8);
        return json_integer (i);
    }
    case AMAAS_UINT8:
    case AMAAS_BOOL: return json_integer ((uint8_t)p[index]);
    case AMAAS_BYTES: {
        uint32_t len;
        memcpy (&len, p + *offset, 4);
        json_t *s = json_stringn (p + *offset + 4, len);
        *offset += 4 + len;
        return s ? s : json_null ();
    }
    default: return json_null ();
    }
}

//  A tensor as nested JSON arrays following its shape.  NULL on
//  out-of-memory.
static json_t *s_tensor_json (const amaas_tensor_t *t, int dim, size_t *index, size_t *offset)
{
    json_t *array = json_array ();
    for (int64_t i = 0; i < t->shape[dim]; i++) {
        if (dim + 1 < t->ndim)
            json_array_append_new (array, s_tensor_json (t, dim + 1, index, offset));
        else
            json_array_append_new (array, s_element_json (t, (*index)++, offset));
    }
    return array;
}

//  amaas predict: one job, its outputs printed as JSON.  Returns the exit
//  status: 0, 1 when the service answered an error, 2 on a usage error.
static int s_cmd_predict (int argc, char *argv[])
{
    const char *model = NULL, *version = NULL;
    const char *inputs[AMAAS_MAX_INPUTS_CLI];
    size_t n_inputs = 0;
    bool info = false;
    amaas_dtype_t dtype = AMAAS_FP64;
    static const struct option options[] = {{"model", required_argument, 0, 'm'},
                                            {"input", required_argument, 0, 'i'},
                                            {"version", required_argument, 0, 'v'},
                                            {"info", no_argument, 0, 'I'},
                                            {"datatype", required_argument, 0, 'd'},
                                            {"broker", required_argument, 0, 'b'},
                                            {"timeout", required_argument, 0, 't'},
                                            {"help", no_argument, 0, 'h'},
                                            {0, 0, 0, 0}};
    int c;
    optind = 1;
    while ((c = getopt_long (argc, argv, "h", options, NULL)) != -1) {
        switch (c) {
        case 'm': model = optarg; break;
        case 'i':
            if (n_inputs == AMAAS_MAX_INPUTS_CLI) {
                fprintf (stderr, "amaas: at most %d --input\n", AMAAS_MAX_INPUTS_CLI);
                return 2;
            }
            inputs[n_inputs++] = optarg;
            break;
        case 'v': version = optarg; break;
        case 'I': info = true; break;
        case 'd':
            dtype = amaas_dtype_from_name (optarg, strlen (optarg));
            if (dtype != AMAAS_FP64 && dtype != AMAAS_FP32 && dtype != AMAAS_INT64 &&
                dtype != AMAAS_INT32) {
                fprintf (stderr, "amaas: --datatype must be FP64, FP32, INT64 or INT32\n");
                return 2;
            }
            break;
        case 'b': s_broker = optarg; break;
        case 't': s_timeout_ms = atoi (optarg) > 0 ? atoi (optarg) : s_timeout_ms; break;
        case 'h': s_usage (stdout); return 0;
        default: return 2;
        }
    }
    if (!model || !n_inputs) {
        fprintf (stderr, "amaas predict: --model NAME and --input ROWS are required\n");
        return 2;
    }
    amaas_tensor_t tensors[AMAAS_MAX_INPUTS_CLI];
    void *buffers[AMAAS_MAX_INPUTS_CLI] = {0};
    char names[AMAAS_MAX_INPUTS_CLI][128];
    int usage = 0;
    for (size_t i = 0; i < n_inputs && !usage; i++) {
        //  NAME[:DATATYPE]=ROWS, or ROWS alone for a model's one input
        const char *arg = inputs[i], *eq = strchr (arg, '=');
        amaas_dtype_t type = dtype;
        snprintf (names[i], sizeof names[i], "input");
        if (arg[0] != '[' && arg[0] != '@' && eq) {
            size_t len = (size_t)(eq - arg);
            const char *colon = memchr (arg, ':', len);
            size_t name_len = colon ? (size_t)(colon - arg) : len;
            if (name_len == 0 || name_len >= sizeof names[i]) {
                fprintf (stderr, "amaas: --input %s: the name before '=' must be 1..127 bytes\n",
                         arg);
                usage = 2;
                break;
            }
            snprintf (names[i], sizeof names[i], "%.*s", (int)name_len, arg);
            if (colon) {
                type = amaas_dtype_from_name (colon + 1, (size_t)(eq - colon - 1));
                if (type != AMAAS_FP64 && type != AMAAS_FP32 && type != AMAAS_INT64 &&
                    type != AMAAS_INT32) {
                    fprintf (stderr,
                             "amaas: --input %s: the datatype must be FP64, FP32, INT64 "
                             "or INT32\n",
                             arg);
                    usage = 2;
                    break;
                }
            }
            arg = eq + 1;
        }
        json_t *rows = s_read_rows (arg);
        buffers[i] = rows ? s_rows_to_tensor (rows, type, names[i], &tensors[i]) : NULL;
        json_decref (rows);
        usage = buffers[i] ? 0 : 2;
    }
    if (usage) {
        for (size_t i = 0; i < n_inputs; i++)
            free (buffers[i]);
        return usage;
    }
    amaas_client_t *client = s_connect_or_die ();
    amaas_error_t err;
    //  The job's deadline is --timeout: it may queue and compute that long
    amaas_options_t opts = {.version = version};
    uint64_t id = amaas_send_opts (client, model, tensors, n_inputs, &opts, &err);
    amaas_result_t *result = id ? amaas_recv (client, s_timeout_ms, &err) : NULL;
    if (id && !result)
        amaas_cancel (client, id);
    for (size_t i = 0; i < n_inputs; i++)
        free (buffers[i]);
    int rc = 0;
    if (!result) {
        fprintf (stderr, "amaas: %s: %s\n", amaas_code_name (err.code), err.message);
        rc = 1;
    } else if (result->error.code != AMAAS_OK) {
        fprintf (stderr, "amaas: %s: %s\n", amaas_code_name (result->error.code),
                 result->error.message);
        rc = 1;
    } else {
        json_t *out = json_object ();
        for (size_t i = 0; i < result->n_outputs; i++) {
            size_t index = 0, offset = 0;
            json_object_set_new (out, result->outputs[i].name,
                                 s_tensor_json (&result->outputs[i], 0, &index, &offset));
        }
        char *text = json_dumps (out, JSON_PRESERVE_ORDER | JSON_REAL_PRECISION (17));
        printf ("%s\n", text);
        if (info)
            fprintf (stderr,
                     "model=%s version=%s queue_us=%" PRIu64 " compute_us=%" PRIu64 " batch=%u\n",
                     result->model, result->version, result->queue_us, result->compute_us,
                     result->batch);
        free (text);
        json_decref (out);
    }
    amaas_result_destroy (&result);
    amaas_close (&client);
    return rc;
}

//  A datatype's name for JSON: "" when unknown (a worker too old to say)
static const char *s_dtype_json (amaas_dtype_t dtype)
{
    return dtype == AMAAS_DTYPE_INVALID ? "" : amaas_dtype_name (dtype);
}

//  A declared shape as a JSON array: -1 for the batch and for each
//  dimension the request sets.
static json_t *s_shape_json (const int64_t *shape, int ndim)
{
    json_t *array = json_array ();
    for (int d = 0; d < ndim && d < AMAAS_MAX_DIMS; d++)
        json_array_append_new (array, json_integer ((json_int_t)shape[d]));
    return array;
}

//  A declared shape as text, "[-1,4]", into buf.  Cannot fail.
static void s_shape_text (const int64_t *shape, int ndim, char *buf, size_t size)
{
    size_t used = (size_t)snprintf (buf, size, "[");
    for (int d = 0; d < ndim && d < AMAAS_MAX_DIMS && used < size; d++)
        used += (size_t)snprintf (buf + used, size - used, "%s%" PRId64, d ? "," : "", shape[d]);
    if (used < size)
        snprintf (buf + used, size - used, "]");
}

//  One entry of `amaas models --json`: what the broker says of a version,
//  with its first input's name and datatype, and its inputs and outputs
//  with their shapes ([] when unknown).
static json_t *s_model_json (const amaas_model_info_t *m)
{
    json_t *inputs = json_array ();
    for (uint32_t k = 0; k < m->n_inputs && k < AMAAS_MAX_INPUTS; k++)
        json_array_append_new (inputs,
                               json_pack ("{s:s, s:s, s:o}", "name", m->inputs[k].name, "datatype",
                                          s_dtype_json (m->inputs[k].datatype), "shape",
                                          s_shape_json (m->inputs[k].shape, m->inputs[k].ndim)));
    json_t *outputs = json_array ();
    for (uint32_t k = 0; k < m->n_outputs && k < AMAAS_MAX_OUTPUTS; k++)
        json_array_append_new (outputs,
                               json_pack ("{s:s, s:s, s:I, s:o}", "name", m->outputs[k].name,
                                          "datatype", s_dtype_json (m->outputs[k].datatype),
                                          "width", (json_int_t)m->outputs[k].width, "shape",
                                          s_shape_json (m->outputs[k].shape, m->outputs[k].ndim)));
    return json_pack ("{s:s, s:s, s:I, s:I, s:I, s:I, s:s, s:s, s:o, s:o}", "name", m->name,
                      "version", m->version, "width", (json_int_t)m->width, "workers",
                      (json_int_t)m->workers, "mapped", (json_int_t)m->mapped, "queued",
                      (json_int_t)m->queued, "input", m->input, "datatype",
                      s_dtype_json (m->datatype), "inputs", inputs, "outputs", outputs);
}

//  The lines under a version in `amaas models`: each input and output, its
//  name, datatype and shape (none when its workers did not say).
static void s_print_tensors (const amaas_model_info_t *m)
{
    char shape[AMAAS_MAX_DIMS * 22 + 3];
    for (uint32_t k = 0; k < m->n_inputs && k < AMAAS_MAX_INPUTS; k++) {
        s_shape_text (m->inputs[k].shape, m->inputs[k].ndim, shape, sizeof shape);
        printf ("    input  %-24s %-6s %s\n", m->inputs[k].name,
                s_dtype_json (m->inputs[k].datatype), shape);
    }
    for (uint32_t k = 0; k < m->n_outputs && k < AMAAS_MAX_OUTPUTS; k++) {
        s_shape_text (m->outputs[k].shape, m->outputs[k].ndim, shape, sizeof shape);
        printf ("    output %-24s %-6s %s\n", m->outputs[k].name,
                s_dtype_json (m->outputs[k].datatype), shape);
    }
}

//  amaas models: the models the broker serves, as a table or JSON.
//  Returns the exit status: 0, 1 when the broker did not answer, 2 on a
//  usage error.
static int s_cmd_models (int argc, char *argv[])
{
    bool as_json = false;
    static const struct option options[] = {{"json", no_argument, 0, 'j'},
                                            {"broker", required_argument, 0, 'b'},
                                            {"timeout", required_argument, 0, 't'},
                                            {"help", no_argument, 0, 'h'},
                                            {0, 0, 0, 0}};
    int c;
    optind = 1;
    while ((c = getopt_long (argc, argv, "h", options, NULL)) != -1) {
        if (c == 'j')
            as_json = true;
        else if (c == 'b')
            s_broker = optarg;
        else if (c == 't')
            s_timeout_ms = atoi (optarg) > 0 ? atoi (optarg) : s_timeout_ms;
        else if (c == 'h') {
            s_usage (stdout);
            return 0;
        } else
            return 2;
    }
    amaas_client_t *client = s_connect_or_die ();
    amaas_error_t err;
    //  On the heap: 1024 entries with their outputs are most of a MiB
    amaas_model_info_t *models = calloc (1024, sizeof *models);
    if (!models) {
        amaas_close (&client);
        fprintf (stderr, "amaas: out of memory\n");
        return 1;
    }
    int n = amaas_models (client, models, 1024, &err);
    amaas_close (&client);
    if (n < 0) {
        free (models);
        fprintf (stderr, "amaas: %s: %s\n", amaas_code_name (err.code), err.message);
        return 1;
    }
    if (n > 1024)
        n = 1024;
    if (as_json) {
        json_t *list = json_array ();
        for (int i = 0; i < n; i++)
            json_array_append_new (list, s_model_json (&models[i]));
        char *text = json_dumps (list, JSON_PRESERVE_ORDER);
        printf ("%s\n", text);
        free (text);
        json_decref (list);
    } else {
        printf ("%-32s %-10s %-10s %7s %7s %10s\n", "MODEL", "VERSION", "INPUT", "WORKERS",
                "QUEUED", "MAPPED");
        for (int i = 0; i < n; i++) {
            char input[AMAAS_MAX_DIMS * 22 + 3], mapped[32];
            if (models[i].n_inputs)
                s_shape_text (models[i].inputs[0].shape, models[i].inputs[0].ndim, input,
                              sizeof input);
            else
                snprintf (input, sizeof input, "[-1,%u]", models[i].width);
            if (models[i].mapped >= 10u << 20)
                snprintf (mapped, sizeof mapped, "%" PRIu64 " MiB", models[i].mapped >> 20);
            else if (models[i].mapped >= 10u << 10)
                snprintf (mapped, sizeof mapped, "%" PRIu64 " KiB", models[i].mapped >> 10);
            else
                snprintf (mapped, sizeof mapped, "%" PRIu64 " B", models[i].mapped);
            printf ("%-32s %-10s %-10s %7u %7u %10s\n", models[i].name, models[i].version, input,
                    models[i].workers, models[i].queued, mapped);
            s_print_tensors (&models[i]);
        }
    }
    free (models);
    return 0;
}

int main (int argc, char *argv[])
{
    if (getenv ("AMAAS_BROKER"))
        s_broker = getenv ("AMAAS_BROKER");
    if (getenv ("AMAAS_CONTROL"))
        s_control = getenv ("AMAAS_CONTROL");
    if (getenv ("AMAAS_SERVER_KEY"))
        s_server_cert = getenv ("AMAAS_SERVER_KEY");
    if (getenv ("AMAAS_CERT"))
        s_cert = getenv ("AMAAS_CERT");
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (strcmp (argv[i], "-h") == 0 || strcmp (argv[i], "--help") == 0) {
            s_usage (stdout);
            return 0;
        } else if (strcmp (argv[i], "--broker") == 0 && i + 1 < argc)
            s_broker = argv[++i];
        else if (strcmp (argv[i], "--control") == 0 && i + 1 < argc)
            s_control = argv[++i];
        else if (strcmp (argv[i], "--server-key") == 0 && i + 1 < argc)
            s_server_cert = argv[++i];
        else if (strcmp (argv[i], "--cert") == 0 && i + 1 < argc)
            s_cert = argv[++i];
        else if (strcmp (argv[i], "--timeout") == 0 && i + 1 < argc) {
            s_timeout_ms = atoi (argv[++i]);
            if (s_timeout_ms < 1) {
                fprintf (stderr, "amaas: --timeout must be a positive number of ms\n");
                return 2;
            }
        } else {
            fprintf (stderr, "amaas: unknown option '%s'\nTry 'amaas --help'.\n", argv[i]);
            return 2;
        }
    }
    if (i >= argc) {
        s_usage (stderr);
        return 2;
    }
    const char *command = argv[i];
    int sub_argc = argc - i;
    char **sub_argv = argv + i;
    if (strcmp (command, "predict") == 0)
        return s_cmd_predict (sub_argc, sub_argv);
    if (strcmp (command, "status") == 0 || strcmp (command, "workers") == 0 ||
        strcmp (command, "drain") == 0 || strcmp (command, "shutdown") == 0)
        return control_main (s_control, s_timeout_ms, s_server_cert, s_cert, sub_argc, sub_argv);
    if (strcmp (command, "keygen") == 0)
        return s_keygen_main (sub_argc, sub_argv);
    if (strcmp (command, "bench") == 0)
        return bench_main (s_connect_or_die, sub_argc, sub_argv);
    if (strcmp (command, "models") == 0)
        return s_cmd_models (sub_argc, sub_argv);
    fprintf (stderr, "amaas: unknown command '%s'\nTry 'amaas --help'.\n", command);
    return 2;
}
