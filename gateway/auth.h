/*  auth.h - the gateway's API keys: a file of 'NAME: TOKEN' lines.

    Each caller presents `Authorization: Bearer TOKEN`; the key's NAME
    picks the broker connection its jobs go on (and, with CURVE, the key
    pair that connection authenticates with), so that the broker's fair
    share and ACL apply per NAME.
*/
#ifndef AMAAS_GATEWAY_AUTH_H_INCLUDED
#define AMAAS_GATEWAY_AUTH_H_INCLUDED

#include <stddef.h>

#define AUTH_NAME_MAX 64   //  bytes of a key's NAME, NUL included
#define AUTH_TOKEN_MAX 256 //  bytes of a TOKEN, NUL included
#define AUTH_KEYS_MAX 1024 //  keys in a file

typedef struct {
    char name[AUTH_NAME_MAX];   //  [A-Za-z0-9._-], a file name under --client-keys
    char token[AUTH_TOKEN_MAX]; //  printable, no spaces
} auth_key_t;

typedef struct {
    auth_key_t *keys;
    size_t n_keys;
} auth_keys_t;

//  Reads the keys file: lines 'NAME: TOKEN', blank lines and '#' comments
//  skipped.  Returns 0, or -1 with the file, line and reason in err (then
//  *keys is empty).  A name or token given twice is an error.
int auth_keys_load (const char *path, auth_keys_t *keys, char *err, size_t err_size);

//  Frees the keys.  Cannot fail.
void auth_keys_free (auth_keys_t *keys);

//  The index of the key an Authorization header value ('Bearer TOKEN')
//  presents, or -1 when the header is NULL, malformed or names no key.
//  Compares every token in full, whatever matches.
int auth_keys_find (const auth_keys_t *keys, const char *authorization);

#endif
