/*  curve.h - the client side of CURVE: workers, libamaas and the CLI use it
    to encrypt their connection to the broker and prove their key.  */
#ifndef AMAAS_CURVE_H_INCLUDED
#define AMAAS_CURVE_H_INCLUDED

#include <czmq.h>

//  Makes sock a CURVE client: it will only talk to the broker whose public
//  certificate is at server_cert, and authenticates with the key pair at
//  cert (the public file; the secret is cert + "_secret").  Call before
//  connecting.  Returns 0, or -1 with a message in err.
int curve_client_apply (zsock_t *sock, const char *server_cert, const char *cert, char *err,
                        size_t err_size);

#endif
