/*  main.c - amaas-broker: command line of the broker daemon.  */
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <czmq.h>

#include "broker.h"
#include "log.h"
#include "options.h"
#include "signals.h"

static void s_usage (FILE *out, const broker_config_t *d)
{
    fprintf (out,
             "Usage: amaas-broker [OPTIONS]\n"
             "\n"
             "Load-balances inference jobs from amaas clients across amaas workers.\n"
             "\n"
             "Options (default in brackets):\n"
             "  --frontend ENDPOINT     bind for clients [%s]\n"
             "  --backend ENDPOINT      bind for workers [%s]\n"
             "  --control ENDPOINT      bind for operators (amaas status, ...) [%s]\n"
             "  --heartbeat-ms N        heartbeat interval, milliseconds [%d]\n"
             "  --liveness N            silent intervals before a worker is dead [%d]\n"
             "  --max-message BYTES     largest request accepted [%zu]\n"
             "  --max-queue N           jobs waiting per model [%zu]\n"
             "  --max-lost N            a job lost with N workers fails UNAVAILABLE [%u]\n"
             "  --max-client-jobs N     jobs one client may have queued or computing [%zu]\n"
             "  --curve-cert FILE       turn security on: CURVE with this broker key pair\n"
             "                          (FILE and FILE_secret, from 'amaas keygen')\n"
             "  --clients DIR           with --curve-cert: public keys of clients\n"
             "  --workers DIR           with --curve-cert: public keys of workers\n"
             "  --operators DIR         with --curve-cert: public keys of operators\n"
             "  --acl FILE              with --curve-cert: models each client may call\n"
             "                          (lines 'NAME: MODEL MODEL', '*' for all)\n"
             "  --drain                 on SIGTERM, serve the queued jobs before exiting\n"
             "                          (default: answer them UNAVAILABLE)\n"
             "  --shutdown-grace-ms N   on SIGTERM, longest wait for jobs to finish [%d]\n"
             "  --metrics ADDRESS:PORT  serve Prometheus metrics at http://ADDRESS:PORT/metrics\n"
             "  --endpoints-file PATH   write the bound endpoints there (useful with port *)\n"
             "  --config FILE           read settings from FILE (zconfig format): every\n"
             "                          option here is a setting, under 'broker', e.g.\n"
             "                            broker\n"
             "                                heartbeat-ms = 500\n"
             "                          flags on the command line win over the file\n"
             "  --log-syslog            log to syslog (daemon facility), not stderr\n"
             "  --log-level LEVEL       error, warn, info or debug [info]\n"
             "  -h, --help              show this help\n"
             "\n"
             "Endpoints are ZeroMQ endpoints, e.g. tcp://*:5555 or tcp://127.0.0.1:*.\n"
             "SIGINT or SIGTERM: take no new jobs, answer the queued ones UNAVAILABLE (or\n"
             "serve them, --drain), wait for the jobs workers hold, exit 0.  A second\n"
             "signal stops at once.\n",
             d->frontend, d->backend, d->control, d->heartbeat_ms, d->liveness, d->max_message,
             d->max_queue, d->max_lost, d->max_client_jobs, d->shutdown_grace_ms);
}

int main (int argc, char *argv[])
{
    broker_config_t config;
    broker_config_defaults (&config);
    int level = LOG_LEVEL_INFO;
    bool syslog = false;
    static const struct option options[] = {{"frontend", required_argument, 0, 'f'},
                                            {"backend", required_argument, 0, 'b'},
                                            {"control", required_argument, 0, 'C'},
                                            {"heartbeat-ms", required_argument, 0, 'H'},
                                            {"liveness", required_argument, 0, 'L'},
                                            {"max-message", required_argument, 0, 'M'},
                                            {"max-queue", required_argument, 0, 'Q'},
                                            {"max-lost", required_argument, 0, 'R'},
                                            {"endpoints-file", required_argument, 0, 'E'},
                                            {"drain", no_argument, 0, 'D'},
                                            {"max-client-jobs", required_argument, 0, 'J'},
                                            {"curve-cert", required_argument, 0, 'K'},
                                            {"clients", required_argument, 0, '1'},
                                            {"workers", required_argument, 0, '2'},
                                            {"operators", required_argument, 0, '3'},
                                            {"acl", required_argument, 0, 'A'},
                                            {"shutdown-grace-ms", required_argument, 0, 'G'},
                                            {"metrics", required_argument, 0, 'P'},
                                            {"log-level", required_argument, 0, 'l'},
                                            {"log-syslog", no_argument, 0, 'Y'},
                                            {"config", required_argument, 0, 'F'},
                                            {"help", no_argument, 0, 'h'},
                                            {0, 0, 0, 0}};
    argv = options_with_config ("amaas-broker", "broker", &argc, argv);
    if (!argv)
        return 2;
    long long n; //  an option's value
    int c;
    while ((c = getopt_long (argc, argv, "h", options, NULL)) != -1) {
        switch (c) {
        case 'f': config.frontend = optarg; break;
        case 'b': config.backend = optarg; break;
        case 'C': config.control = optarg; break;
        case 'H':
            if ((n = options_positive ("amaas-broker", "heartbeat-ms", optarg, 3600000)) < 0)
                return 2;
            config.heartbeat_ms = (int)n;
            break;
        case 'L':
            if ((n = options_positive ("amaas-broker", "liveness", optarg, 1000)) < 0)
                return 2;
            config.liveness = (int)n;
            break;
        case 'M':
            if ((n = options_positive ("amaas-broker", "max-message", optarg, 1LL << 31)) < 0)
                return 2;
            config.max_message = (size_t)n;
            break;
        case 'Q':
            if ((n = options_positive ("amaas-broker", "max-queue", optarg, 100000000)) < 0)
                return 2;
            config.max_queue = (size_t)n;
            break;
        case 'R':
            if ((n = options_positive ("amaas-broker", "max-lost", optarg, 1000)) < 0)
                return 2;
            config.max_lost = (uint32_t)n;
            break;
        case 'D': config.drain = true; break;
        case 'J':
            if ((n = options_positive ("amaas-broker", "max-client-jobs", optarg, 100000000)) < 0)
                return 2;
            config.max_client_jobs = (size_t)n;
            break;
        case 'K': config.auth.cert = optarg; break;
        case '1': config.auth.clients = optarg; break;
        case '2': config.auth.workers = optarg; break;
        case '3': config.auth.operators = optarg; break;
        case 'A': config.auth.acl = optarg; break;
        case 'G':
            if ((n = options_positive ("amaas-broker", "shutdown-grace-ms", optarg, 3600000)) < 0)
                return 2;
            config.shutdown_grace_ms = (int)n;
            break;
        case 'E': config.endpoints_file = optarg; break;
        case 'P': config.metrics = optarg; break;
        case 'Y': syslog = true; break;
        case 'F': break; //  read by options_with_config
        case 'l':
            if ((level = options_log_level ("amaas-broker", optarg)) < 0)
                return 2;
            break;
        case 'h': s_usage (stdout, &config); return 0;
        default: fprintf (stderr, "Try 'amaas-broker --help'.\n"); return 2;
        }
    }
    if (optind < argc) {
        fprintf (stderr, "amaas-broker: unexpected argument '%s'\nTry 'amaas-broker --help'.\n",
                 argv[optind]);
        return 2;
    }
    log_setup ("amaas-broker", (log_level_t)level);
    if (syslog)
        log_to_syslog ();
    //  One way to handle signals, util/signals.c: it keeps czmq's handler
    //  out of the way, so that SIGINT and SIGTERM count as stop requests
    //  that the event loop reads (a first one stops gracefully)
    signals_catch_stop ();
    zsys_init ();
    return broker_run (&config) == 0 ? 0 : 1;
}
