/*  auth.h - the broker's security: CURVE encryption, three roles, model ACLs.

    With security on, the broker's three sockets are CURVE servers and
    czmq's zauth admits only the public keys found in the allow-lists (the
    clients, workers and operators folders of czmq certificates).  zauth
    knows one list; the three roles are told apart here: every message
    carries its peer's public key (ZeroMQ's "User-Id" property, set by
    zauth), and each socket accepts only the keys of its own role.  Every
    decision is made on that key, never on the connection's routing id,
    which the peer chooses.  The roles of a key are remembered for about a
    second, so a key added to or removed from a list counts within one.

    Optionally, an ACL file says which models each client key (by its
    certificate's name) may call.
*/
#ifndef AMAAS_AUTH_H_INCLUDED
#define AMAAS_AUTH_H_INCLUDED

#include <czmq.h>
#include <stdbool.h>
#include <stdint.h>

//  How long the roles of a key are remembered, in milliseconds
#define AUTH_CACHE_MS 1000

//  The roles a key may hold (bits): one per socket of the broker
typedef enum { AUTH_ROLE_CLIENT = 1, AUTH_ROLE_WORKER = 2, AUTH_ROLE_OPERATOR = 4 } auth_role_t;

typedef struct auth_t auth_t;

typedef struct {
    const char *cert;      //  broker's certificate (public file; the secret is FILE_secret)
    const char *clients;   //  folder of client public certificates
    const char *workers;   //  folder of worker public certificates
    const char *operators; //  folder of operator public certificates
    const char *acl;       //  per-client model ACL file, or NULL: every model
} auth_config_t;

//  Starts zauth and loads the keys.  Returns NULL, with a message in err,
//  when a file or folder cannot be read, zauth cannot start, or memory
//  runs out; then nothing is left behind.
auth_t *auth_new (const auth_config_t *config, char *err, size_t err_size);

//  Stops zauth, removes the private folder and frees everything.  Nulls
//  *self_p.  Cannot fail.
void auth_destroy (auth_t **self_p);

//  Makes sock a CURVE server with the broker's key, checked by zauth.  Call
//  before binding.  Cannot fail.
void auth_apply (auth_t *self, zsock_t *sock);

//  Whether the CURVE key `user_id` (the "User-Id" property of the message,
//  set by zauth) holds a key of `role`; now_ms is the monotonic time in
//  milliseconds.  The answer is remembered by key for AUTH_CACHE_MS at
//  most.  *name is set to the key's name (its certificate's "name", else
//  the key) for logs and ACLs; it stays valid until the next call.  A NULL
//  or empty user_id (a message without a key) is refused, with *name
//  "(no key)"; so is every key when memory runs out.
bool auth_check (auth_t *self, const char *user_id, auth_role_t role, int64_t now_ms,
                 const char **name);

//  Whether the client named `name` may call `model` (true without an ACL).
//  Cannot fail.
bool auth_model_allowed (auth_t *self, const char *name, const char *model);

#endif
