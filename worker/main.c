/*  main.c - amaas-worker: command line of the worker daemon.

    Parses the flags (and the settings file they may name) into a
    worker_config_t, sets up logging and signals, and runs the worker
    (worker.h).  A bad flag exits 2 with a message, before anything starts.
*/
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <czmq.h>

#include "log.h"
#include "options.h"
#include "signals.h"
#include "worker.h"

#define MAX_MODEL_BATCH 63 //  --model-batch flags at most (the array ends with NULL)

//  Prints the help, with the defaults of d.  Cannot fail.
static void s_usage (FILE *out, const worker_config_t *d)
{
    fprintf (out,
             "Usage: amaas-worker --models DIR [OPTIONS]\n"
             "\n"
             "Loads every model file (*.amm) in DIR, registers with the broker and\n"
             "computes the jobs it sends.  Run one worker per core.  DIR is watched:\n"
             "a model file added, replaced (by rename) or removed is loaded, swapped\n"
             "or retired without a restart; SIGHUP rescans DIR too.\n"
             "\n"
             "Options (default in brackets):\n"
             "  --broker ENDPOINT[,ENDPOINT...]\n"
             "                         the brokers' backend endpoints (up to 8, all\n"
             "                         active): jobs come from each, the credit is\n"
             "                         shared among them [%s]\n"
             "  --models DIR           folder of model files (required)\n"
             "  --server-key FILE      CURVE: the broker's public certificate\n"
             "  --cert FILE            CURVE: this worker's key pair (FILE, FILE_secret)\n"
             "  --credit N             jobs the worker may hold at once [%u]\n"
             "  --heartbeat-ms N       heartbeat interval, same as the broker's [%d]\n"
             "  --liveness N           silent intervals before the broker is dead [%d]\n"
             "  --max-elements N       largest input tensor, elements [%llu]\n"
             "  --max-batch ROWS       dynamic batching: rows of waiting jobs of one model\n"
             "                         stacked into one run at most; 1 turns it off [%zu]\n"
             "  --batch-delay-us N     wait up to N us for more jobs to stack [%llu]\n"
             "  --model-batch NAME=ROWS[:DELAY_US]\n"
             "                         the same for one model, every version, also\n"
             "                         versions loaded later (repeatable)\n"
             "  --config FILE           read settings from FILE (zconfig format): every\n"
             "                          option here is a setting, under 'worker', e.g.\n"
             "                            worker\n"
             "                                heartbeat-ms = 500\n"
             "                          flags on the command line win over the file\n"
             "  --log-syslog            log to syslog (daemon facility), not stderr\n"
             "  --log-level LEVEL      error, warn, info or debug [info]\n"
             "  -h, --help             show this help\n"
             "\n"
             "SIGINT or SIGTERM: take no new jobs, finish the ones held, tell the broker,\n"
             "exit 0 (a second signal stops at once).  SIGHUP: rescan DIR.\n",
             d->broker, d->credit, d->heartbeat_ms, d->liveness,
             (unsigned long long)d->max_elements, d->max_batch,
             (unsigned long long)d->batch_delay_us);
}

int main (int argc, char *argv[])
{
    worker_config_t config;
    worker_config_defaults (&config);
    int level = LOG_LEVEL_INFO;
    bool syslog = false;
    static const char *model_batch[MAX_MODEL_BATCH + 1]; //  NULL-terminated
    size_t n_model_batch = 0;
    config.model_batch = model_batch;
    static const struct option options[] = {{"broker", required_argument, 0, 'b'},
                                            {"models", required_argument, 0, 'm'},
                                            {"credit", required_argument, 0, 'c'},
                                            {"server-key", required_argument, 0, 'S'},
                                            {"cert", required_argument, 0, 'K'},
                                            {"heartbeat-ms", required_argument, 0, 'H'},
                                            {"liveness", required_argument, 0, 'L'},
                                            {"max-elements", required_argument, 0, 'E'},
                                            {"max-batch", required_argument, 0, 'B'},
                                            {"batch-delay-us", required_argument, 0, 'D'},
                                            {"model-batch", required_argument, 0, 'P'},
                                            {"log-level", required_argument, 0, 'l'},
                                            {"log-syslog", no_argument, 0, 'Y'},
                                            {"config", required_argument, 0, 'F'},
                                            {"help", no_argument, 0, 'h'},
                                            {0, 0, 0, 0}};
    argv = options_with_config ("amaas-worker", "worker", &argc, argv);
    if (!argv)
        return 2;
    long long n; //  an option's value
    int c;
    while ((c = getopt_long (argc, argv, "h", options, NULL)) != -1) {
        switch (c) {
        case 'b': config.broker = optarg; break;
        case 'm': config.models_dir = optarg; break;
        case 'S': config.server_cert = optarg; break;
        case 'K': config.cert = optarg; break;
        case 'c':
            if ((n = options_positive ("amaas-worker", "credit", optarg, 65535)) < 0)
                return 2;
            config.credit = (uint32_t)n;
            break;
        case 'H':
            if ((n = options_positive ("amaas-worker", "heartbeat-ms", optarg, 3600000)) < 0)
                return 2;
            config.heartbeat_ms = (int)n;
            break;
        case 'L':
            if ((n = options_positive ("amaas-worker", "liveness", optarg, 1000)) < 0)
                return 2;
            config.liveness = (int)n;
            break;
        case 'E':
            if ((n = options_positive ("amaas-worker", "max-elements", optarg, 1LL << 40)) < 0)
                return 2;
            config.max_elements = (uint64_t)n;
            break;
        case 'B':
            if ((n = options_positive ("amaas-worker", "max-batch", optarg, 1 << 24)) < 0)
                return 2;
            config.max_batch = (size_t)n;
            break;
        case 'D': config.batch_delay_us = (uint64_t)strtoull (optarg, NULL, 10); break;
        case 'P':
            if (n_model_batch == MAX_MODEL_BATCH) {
                fprintf (stderr,
                         "amaas-worker: too many --model-batch flags (at most %d); '%s' "
                         "refused\n",
                         MAX_MODEL_BATCH, optarg);
                return 2;
            }
            model_batch[n_model_batch++] = optarg;
            break;
        case 'Y': syslog = true; break;
        case 'F': break; //  read by options_with_config
        case 'l':
            if ((level = options_log_level ("amaas-worker", optarg)) < 0)
                return 2;
            break;
        case 'h': s_usage (stdout, &config); return 0;
        default: fprintf (stderr, "Try 'amaas-worker --help'.\n"); return 2;
        }
    }
    if (optind < argc || !config.models_dir) {
        fprintf (stderr, "amaas-worker: %s\nTry 'amaas-worker --help'.\n",
                 optind < argc ? "unexpected argument" : "--models DIR is required");
        return 2;
    }
    log_setup ("amaas-worker", (log_level_t)level);
    if (syslog)
        log_to_syslog ();
    signals_catch_stop ();
    signals_catch_reload ();
    zsys_init ();
    return worker_run (&config) == 0 ? 0 : 1;
}
