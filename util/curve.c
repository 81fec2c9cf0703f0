/*  curve.c - the client side of CURVE.  */
#include "curve.h"

#include <stdio.h>

int curve_client_apply (zsock_t *sock, const char *server_cert, const char *cert, char *err,
                        size_t err_size)
{
    char secret[4096];
    snprintf (secret, sizeof secret, "%s_secret", cert ? cert : "");
    if (!server_cert || !cert) {
        snprintf (err, err_size,
                  "CURVE needs both the broker's public certificate and a key "
                  "pair of ours");
        return -1;
    }
    if (!zsys_file_exists (cert) || !zsys_file_exists (secret)) {
        snprintf (err, err_size, "key pair %s (with its secret %s) not found: 'amaas keygen'", cert,
                  secret);
        return -1;
    }
    zcert_t *server = zcert_load (server_cert);
    zcert_t *own = zcert_load (cert);
    if (!server || !own) {
        snprintf (err, err_size, "cannot read certificate %s", !server ? server_cert : cert);
        zcert_destroy (&server);
        zcert_destroy (&own);
        return -1;
    }
    zcert_apply (own, sock);
    zsock_set_curve_serverkey (sock, zcert_public_txt (server));
    zcert_destroy (&server);
    zcert_destroy (&own);
    return 0;
}
