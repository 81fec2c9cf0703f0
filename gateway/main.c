/*  main.c - amaas-gateway: command line of the HTTP gateway.  */
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <czmq.h>

#include "gateway.h"
#include "log.h"
#include "options.h"
#include "signals.h"

static void s_usage (FILE *out, const gateway_config_t *d)
{
    fprintf (out,
             "Usage: amaas-gateway [OPTIONS]\n"
             "\n"
             "Serves the models of an amaas broker over HTTP: KServe v2 REST\n"
             "(/v2/models/NAME/infer, health, metadata) and POST /predict/NAME {\"X\": ...}.\n"
             "GET /docs shows the API, GET /openapi.json describes it, GET /metrics counts.\n"
             "\n"
             "Options (default in brackets):\n"
             "  --listen HOST:PORT      serve HTTP there (tcp://HOST:PORT too); port 0: any\n"
             "                          free port [%s]\n"
             "  --port-file FILE        write the port it got there, once listening\n"
             "  --broker ENDPOINT       the broker's frontend [%s]\n"
             "  --timeout-ms N          a job's deadline unless the request sets a shorter\n"
             "                          one (X-Amaas-Deadline-Ms, parameters.deadline_ms) [%d]\n"
             "  --threads N             HTTP threads [%d, the CPUs]\n"
             "  --max-body BYTES        largest request body (413 beyond) [%zu]\n"
             "  --max-connections N     connections at once [%u]\n"
             "  --idle-timeout-s N      close a connection idle this long [%u]\n"
             "  --request-timeout-s N   a request must arrive whole within N s (408) [%u]\n"
             "  --max-header BYTES      memory for a request's headers (431 beyond) [%zu]\n"
             "  --tls-cert FILE         serve HTTPS with this certificate (PEM) ...\n"
             "  --tls-key FILE          ... and this key (PEM)\n"
             "  --api-keys FILE         require 'Authorization: Bearer TOKEN': lines\n"
             "                          'NAME: TOKEN' ('#' comments); every route but\n"
             "                          /v2/health/*, /metrics, /openapi.json and /docs.\n"
             "                          Each NAME has a broker connection of its own\n"
             "  --server-key FILE       CURVE to a secured broker: its public certificate\n"
             "  --cert FILE             CURVE: the gateway's key pair (FILE, FILE_secret),\n"
             "                          without --api-keys\n"
             "  --client-keys DIR       CURVE with --api-keys: DIR/NAME and DIR/NAME_secret,\n"
             "                          a key pair per API-key NAME (the broker's ACL applies)\n"
             "  --docs-dir DIR          swagger-ui-dist's files for /docs\n"
             "                          [%s]\n"
             "  --config FILE           read settings from FILE (zconfig format): every\n"
             "                          option here is a setting, under 'gateway', e.g.\n"
             "                            gateway\n"
             "                                listen = \"0.0.0.0:8080\"\n"
             "                          flags on the command line win over the file\n"
             "  --log-syslog            log to syslog (daemon facility), not stderr\n"
             "  --log-level LEVEL       error, warn, info or debug [info]\n"
             "  -h, --help              show this help\n"
             "\n"
             "SIGINT or SIGTERM: take no new connection, answer the requests in flight,\n"
             "exit 0.  A second signal stops at once.\n",
             d->listen, d->broker, d->timeout_ms, d->threads, d->max_body, d->max_connections,
             d->idle_timeout_s, d->request_timeout_s, d->max_header, d->docs_dir);
}

int main (int argc, char *argv[])
{
    gateway_config_t config;
    gateway_config_defaults (&config);
    int level = LOG_LEVEL_INFO;
    bool syslog = false;
    static const struct option options[] = {{"listen", required_argument, 0, 'L'},
                                            {"port-file", required_argument, 0, 'p'},
                                            {"broker", required_argument, 0, 'b'},
                                            {"timeout-ms", required_argument, 0, 't'},
                                            {"threads", required_argument, 0, 'T'},
                                            {"max-body", required_argument, 0, 'B'},
                                            {"max-connections", required_argument, 0, 'c'},
                                            {"idle-timeout-s", required_argument, 0, 'i'},
                                            {"request-timeout-s", required_argument, 0, 'r'},
                                            {"max-header", required_argument, 0, 'H'},
                                            {"tls-cert", required_argument, 0, 'C'},
                                            {"tls-key", required_argument, 0, 'K'},
                                            {"api-keys", required_argument, 0, 'a'},
                                            {"server-key", required_argument, 0, 's'},
                                            {"cert", required_argument, 0, 'e'},
                                            {"client-keys", required_argument, 0, 'k'},
                                            {"docs-dir", required_argument, 0, 'd'},
                                            {"log-level", required_argument, 0, 'l'},
                                            {"log-syslog", no_argument, 0, 'Y'},
                                            {"config", required_argument, 0, 'F'},
                                            {"help", no_argument, 0, 'h'},
                                            {0, 0, 0, 0}};
    argv = options_with_config ("amaas-gateway", "gateway", &argc, argv);
    if (!argv)
        return 2;
    long long n; //  an option's value
    int c;
    while ((c = getopt_long (argc, argv, "h", options, NULL)) != -1) {
        switch (c) {
        case 'L': config.listen = optarg; break;
        case 'p': config.port_file = optarg; break;
        case 'b': config.broker = optarg; break;
        case 't':
            if ((n = options_positive ("amaas-gateway", "timeout-ms", optarg, 86400000)) < 0)
                return 2;
            config.timeout_ms = (int)n;
            break;
        case 'T':
            if ((n = options_positive ("amaas-gateway", "threads", optarg, 256)) < 0)
                return 2;
            config.threads = (int)n;
            break;
        case 'B':
            if ((n = options_positive ("amaas-gateway", "max-body", optarg, 1LL << 31)) < 0)
                return 2;
            config.max_body = (size_t)n;
            break;
        case 'c':
            if ((n = options_positive ("amaas-gateway", "max-connections", optarg, 1000000)) < 0)
                return 2;
            config.max_connections = (unsigned)n;
            break;
        case 'i':
            if ((n = options_positive ("amaas-gateway", "idle-timeout-s", optarg, 86400)) < 0)
                return 2;
            config.idle_timeout_s = (unsigned)n;
            break;
        case 'r':
            if ((n = options_positive ("amaas-gateway", "request-timeout-s", optarg, 86400)) < 0)
                return 2;
            config.request_timeout_s = (unsigned)n;
            break;
        case 'H':
            if ((n = options_positive ("amaas-gateway", "max-header", optarg, 1 << 24)) < 0)
                return 2;
            config.max_header = (size_t)n;
            break;
        case 'C': config.tls_cert = optarg; break;
        case 'K': config.tls_key = optarg; break;
        case 'a': config.api_keys = optarg; break;
        case 's': config.server_key = optarg; break;
        case 'e': config.cert = optarg; break;
        case 'k': config.client_keys = optarg; break;
        case 'd': config.docs_dir = optarg; break;
        case 'Y': syslog = true; break;
        case 'F': break; //  read by options_with_config
        case 'l':
            if ((level = options_log_level ("amaas-gateway", optarg)) < 0)
                return 2;
            break;
        case 'h': s_usage (stdout, &config); return 0;
        default: fprintf (stderr, "Try 'amaas-gateway --help'.\n"); return 2;
        }
    }
    if (optind < argc) {
        fprintf (stderr, "amaas-gateway: unexpected argument '%s'\nTry 'amaas-gateway --help'.\n",
                 argv[optind]);
        return 2;
    }
    if (config.max_header < 1024) {
        fprintf (stderr, "amaas-gateway: --max-header must be at least 1024\n");
        return 2;
    }
    log_setup ("amaas-gateway", (log_level_t)level);
    if (syslog)
        log_to_syslog ();
    signals_catch_stop ();
    zsys_init ();
    return gateway_run (&config) == 0 ? 0 : 1;
}
