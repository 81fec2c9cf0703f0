/*  gateway.h - amaas-gateway: the HTTP front of an amaas broker.

    The gateway serves the KServe v2 REST protocol and the Flask route
    /predict/{name} over libmicrohttpd (docs/openapi.yaml), and turns each
    inference request into a libamaas job.  Its threads: libmicrohttpd's
    pool decodes and encodes bodies (gateway/infer.h); one dispatcher
    thread owns the libamaas clients and moves jobs to and from the
    broker (dispatch.h); one thread keeps the broker's model list fresh;
    the main thread waits for signals and sweeps slow requests.
*/
#ifndef AMAAS_GATEWAY_H_INCLUDED
#define AMAAS_GATEWAY_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>

//  Settings of one gateway (gateway_config_defaults, then the command line)
typedef struct {
    const char *listen;         //  HOST:PORT the HTTP server binds (port 0: any)
    const char *port_file;      //  write the bound port there, or NULL
    const char *broker;         //  the broker's frontend endpoint
    int timeout_ms;             //  default deadline of a job, connect timeout
    int threads;                //  libmicrohttpd's thread pool
    size_t max_body;            //  largest request body, bytes (413 beyond)
    unsigned max_connections;   //  connections at once
    unsigned idle_timeout_s;    //  a connection idle this long is closed
    unsigned request_timeout_s; //  a request must arrive whole within this (408)
    size_t max_header;          //  memory for a request's headers (431 beyond)
    const char *tls_cert;       //  HTTPS with this certificate (PEM), or NULL
    const char *tls_key;        //  and this key (PEM)
    const char *api_keys;       //  file of 'NAME: TOKEN' lines, or NULL: no keys
    const char *server_key;     //  CURVE: the broker's public certificate, or NULL
    const char *cert;           //  CURVE: the gateway's key pair (keys off)
    const char *client_keys;    //  CURVE: DIR/NAME key pairs, one per API key NAME
    const char *docs_dir;       //  swagger-ui-dist's files for /docs
} gateway_config_t;

//  Fills the defaults.  Cannot fail.
void gateway_config_defaults (gateway_config_t *config);

//  Runs the gateway until SIGINT or SIGTERM (signals_catch_stop first),
//  then answers the requests in flight and returns 0; returns -1 (with the
//  reason logged) when it cannot start.
int gateway_run (const gateway_config_t *config);

#endif
