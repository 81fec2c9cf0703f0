/*  auth.c - the gateway's API keys file and the Bearer check.  */
#include "auth.h"

#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static bool s_name_ok (const char *s, size_t len)
{
    if (len == 0 || len >= AUTH_NAME_MAX || s[0] == '.')
        return false;
    for (size_t i = 0; i < len; i++)
        if (!isalnum ((unsigned char)s[i]) && s[i] != '.' && s[i] != '_' && s[i] != '-')
            return false;
    return true;
}

static bool s_token_ok (const char *s, size_t len)
{
    if (len == 0 || len >= AUTH_TOKEN_MAX)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!isgraph ((unsigned char)s[i]))
            return false;
    return true;
}

//  Whether two tokens are equal, in time independent of where they differ
static bool s_token_equal (const char *a, size_t a_len, const char *b)
{
    size_t b_len = strlen (b);
    unsigned char diff = a_len != b_len;
    for (size_t i = 0; i < a_len && i < AUTH_TOKEN_MAX; i++)
        diff |= (unsigned char)a[i] ^ (unsigned char)(i < b_len ? b[i] : 0);
    return diff == 0;
}

int auth_keys_load (const char *path, auth_keys_t *keys, char *err, size_t err_size)
{
    memset (keys, 0, sizeof *keys);
    FILE *f = fopen (path, "r");
    if (!f) {
        snprintf (err, err_size, "cannot read the API keys file %s: %s", path, strerror (errno));
        return -1;
    }
    char line[1024];
    int number = 0;
    size_t capacity = 0;
    while (fgets (line, sizeof line, f)) {
        number++;
        size_t len = strlen (line);
        if (len == sizeof line - 1 && line[len - 1] != '\n') {
            snprintf (err, err_size, "%s:%d: line too long", path, number);
            goto err;
        }
        while (len && isspace ((unsigned char)line[len - 1]))
            line[--len] = 0;
        char *s = line;
        while (isspace ((unsigned char)*s))
            s++;
        if (*s == 0 || *s == '#')
            continue;
        char *colon = strchr (s, ':');
        if (!colon) {
            snprintf (err, err_size, "%s:%d: expected 'NAME: TOKEN'", path, number);
            goto err;
        }
        char *name_end = colon;
        while (name_end > s && isspace ((unsigned char)name_end[-1]))
            name_end--;
        char *token = colon + 1;
        while (isspace ((unsigned char)*token))
            token++;
        size_t name_len = (size_t)(name_end - s), token_len = strlen (token);
        if (!s_name_ok (s, name_len)) {
            snprintf (
                err, err_size,
                "%s:%d: a NAME is 1..%d characters of A-Z a-z 0-9 . _ - (not starting with .)",
                path, number, AUTH_NAME_MAX - 1);
            goto err;
        }
        if (!s_token_ok (token, token_len)) {
            snprintf (err, err_size, "%s:%d: a TOKEN is 1..%d printable characters, no spaces",
                      path, number, AUTH_TOKEN_MAX - 1);
            goto err;
        }
        for (size_t i = 0; i < keys->n_keys; i++) {
            if (strlen (keys->keys[i].name) == name_len &&
                memcmp (keys->keys[i].name, s, name_len) == 0) {
                snprintf (err, err_size, "%s:%d: the name %.*s is given twice", path, number,
                          (int)name_len, s);
                goto err;
            }
            if (strcmp (keys->keys[i].token, token) == 0) {
                snprintf (err, err_size, "%s:%d: this token is given twice", path, number);
                goto err;
            }
        }
        if (keys->n_keys == AUTH_KEYS_MAX) {
            snprintf (err, err_size, "%s: more than %d keys", path, AUTH_KEYS_MAX);
            goto err;
        }
        if (keys->n_keys == capacity) {
            size_t grown = capacity ? capacity * 2 : 8;
            auth_key_t *k = realloc (keys->keys, grown * sizeof *k);
            if (!k) {
                snprintf (err, err_size, "out of memory");
                goto err;
            }
            keys->keys = k;
            capacity = grown;
        }
        auth_key_t *key = &keys->keys[keys->n_keys++];
        memcpy (key->name, s, name_len);
        key->name[name_len] = 0;
        memcpy (key->token, token, token_len + 1);
    }
    if (ferror (f)) {
        snprintf (err, err_size, "cannot read the API keys file %s", path);
        goto err;
    }
    fclose (f);
    if (keys->n_keys == 0) {
        snprintf (err, err_size, "the API keys file %s has no key (lines 'NAME: TOKEN')", path);
        auth_keys_free (keys);
        return -1;
    }
    return 0;
err:
    fclose (f);
    auth_keys_free (keys);
    return -1;
}

void auth_keys_free (auth_keys_t *keys)
{
    if (keys->keys)
        memset (keys->keys, 0, keys->n_keys * sizeof *keys->keys);
    free (keys->keys);
    keys->keys = NULL;
    keys->n_keys = 0;
}

int auth_keys_find (const auth_keys_t *keys, const char *authorization)
{
    if (!authorization || strncasecmp (authorization, "Bearer ", 7) != 0)
        return -1;
    const char *token = authorization + 7;
    while (*token == ' ')
        token++;
    size_t len = strlen (token);
    while (len && token[len - 1] == ' ')
        len--;
    if (len == 0 || len >= AUTH_TOKEN_MAX)
        return -1;
    int found = -1;
    for (size_t i = 0; i < keys->n_keys; i++)
        if (s_token_equal (token, len, keys->keys[i].token) && found < 0)
            found = (int)i;
    return found;
}
