/*  auth.c - the broker's security: CURVE encryption, three roles, model ACLs.

    zauth takes one folder of certificates; the broker gives it a private
    folder holding links to the three allow-lists, so that zauth admits the
    union and still sees changes to any list (czmq's certificate store
    reloads a folder when it changes).  The role of a key comes from three
    certificate stores of its own, one per list.

    Roles are looked up by the key that zauth authenticated (the message's
    "User-Id"), never by the ROUTER routing id: peers choose their routing
    ids, and a new connection may take the id of one that has gone.  The
    answers are kept in a table by key, dropped whole every AUTH_CACHE_MS,
    so a key taken off a list loses its rights within that time.
*/
#include "auth.h"

#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CACHE_MAX 65536 //  keys whose roles are remembered

typedef struct {
    int roles;      //  auth_role_t bits the key holds
    char name[128]; //  for logs and ACLs
} peer_t;

struct auth_t {
    zcert_t *cert;            //  the broker's key pair
    zactor_t *zauth;          //  czmq's ZAP handler
    zcertstore_t *stores[3];  //  client, worker, operator keys
    char union_dir[PATH_MAX]; //  links to the three folders, for zauth
    zhashx_t *peers;          //  peer_t * by CURVE key (Z85)
    int64_t peers_since_ms;   //  when peers was last emptied
    zhashx_t *acl;            //  client name -> " model model " (or " * ")
};

static const char *s_role_dirs[3] = {"clients", "workers", "operators"};

static void s_peer_destructor (void **item)
{
    free (*item);
    *item = NULL;
}

//  Reads the ACL file: lines "NAME: MODEL MODEL ..." ("*" = every model);
//  '#' starts a comment.  Returns 0, or -1 with a message.
static int s_load_acl (auth_t *self, const char *path, char *err, size_t err_size)
{
    FILE *f = fopen (path, "r");
    if (!f) {
        snprintf (err, err_size, "cannot read ACL file %s: %s", path, strerror (errno));
        return -1;
    }
    self->acl = zhashx_new ();
    if (!self->acl) {
        snprintf (err, err_size, "out of memory reading ACL file %s", path);
        fclose (f);
        return -1;
    }
    zhashx_set_destructor (self->acl, (zhashx_destructor_fn *)zstr_free);
    char line[4096];
    int number = 0;
    while (fgets (line, sizeof line, f)) {
        number++;
        char *hash = strchr (line, '#');
        if (hash)
            *hash = 0;
        char *colon = strchr (line, ':');
        char name[128], *p = line;
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p == 0 || *p == '\n')
            continue;
        if (!colon || sscanf (p, "%127[^: \t]", name) != 1) {
            snprintf (err, err_size, "%s:%d: want 'NAME: MODEL MODEL ...'", path, number);
            fclose (f);
            return -1;
        }
        char models[4096 + 2];
        snprintf (models, sizeof models, " %s ", colon + 1);
        for (char *c = models; *c; c++)
            if (*c == '\t' || *c == '\n' || *c == ',')
                *c = ' ';
        char *copy = strdup (models);
        if (!copy) {
            snprintf (err, err_size, "out of memory reading ACL file %s", path);
            fclose (f);
            return -1;
        }
        zhashx_update (self->acl, name, copy);
    }
    fclose (f);
    return 0;
}

auth_t *auth_new (const auth_config_t *config, char *err, size_t err_size)
{
    auth_t *self = calloc (1, sizeof *self);
    if (!self) {
        snprintf (err, err_size, "out of memory");
        return NULL;
    }
    char secret[PATH_MAX];
    snprintf (secret, sizeof secret, "%s_secret", config->cert);
    if (!zsys_file_exists (config->cert) || !zsys_file_exists (secret)) {
        snprintf (err, err_size,
                  "broker certificate %s (and its secret %s) not found; make one with "
                  "'amaas keygen'",
                  config->cert, secret);
        goto err;
    }
    self->cert = zcert_load (config->cert);
    if (!self->cert) {
        snprintf (err, err_size, "cannot read the broker certificate %s", config->cert);
        goto err;
    }
    const char *dirs[3] = {config->clients, config->workers, config->operators};
    snprintf (self->union_dir, sizeof self->union_dir, "/tmp/amaas-keys-XXXXXX");
    if (!mkdtemp (self->union_dir)) {
        snprintf (err, err_size, "cannot make a private folder in /tmp: %s", strerror (errno));
        self->union_dir[0] = 0;
        goto err;
    }
    for (int i = 0; i < 3; i++) {
        char real[PATH_MAX], link[PATH_MAX + 32];
        if (!dirs[i] || !realpath (dirs[i], real) || !zsys_file_exists (real)) {
            snprintf (err, err_size, "the %s allow-list folder %s cannot be read", s_role_dirs[i],
                      dirs[i] ? dirs[i]
                              : "(none: --clients, --workers and --operators are "
                                "required with --curve-cert)");
            goto err;
        }
        snprintf (link, sizeof link, "%s/%s", self->union_dir, s_role_dirs[i]);
        if (symlink (real, link)) {
            snprintf (err, err_size, "cannot link %s: %s", link, strerror (errno));
            goto err;
        }
        self->stores[i] = zcertstore_new (real);
        if (!self->stores[i]) {
            snprintf (err, err_size, "cannot load the %s allow-list folder %s", s_role_dirs[i],
                      real);
            goto err;
        }
    }
    if (config->acl && s_load_acl (self, config->acl, err, err_size))
        goto err;
    self->peers = zhashx_new ();
    if (!self->peers) {
        snprintf (err, err_size, "out of memory");
        goto err;
    }
    zhashx_set_destructor (self->peers, s_peer_destructor);
    self->zauth = zactor_new (zauth, NULL);
    if (!self->zauth) {
        snprintf (err, err_size, "cannot start czmq's authenticator (zauth)");
        goto err;
    }
    zstr_sendx (self->zauth, "CURVE", self->union_dir, NULL);
    zsock_wait (self->zauth);
    return self;
err:
    auth_destroy (&self);
    return NULL;
}

void auth_destroy (auth_t **self_p)
{
    auth_t *self = *self_p;
    if (!self)
        return;
    zactor_destroy (&self->zauth);
    for (int i = 0; i < 3; i++) {
        zcertstore_destroy (&self->stores[i]);
        if (*self->union_dir) {
            char link[PATH_MAX + 32];
            snprintf (link, sizeof link, "%s/%s", self->union_dir, s_role_dirs[i]);
            unlink (link);
        }
    }
    if (*self->union_dir)
        rmdir (self->union_dir);
    zcert_destroy (&self->cert);
    zhashx_destroy (&self->peers);
    zhashx_destroy (&self->acl);
    free (self);
    *self_p = NULL;
}

void auth_apply (auth_t *self, zsock_t *sock)
{
    assert (self);
    zcert_apply (self->cert, sock);
    zsock_set_curve_server (sock, 1);
    zsock_set_zap_domain (sock, "amaas");
}

bool auth_check (auth_t *self, const char *user_id, auth_role_t role, int64_t now_ms,
                 const char **name)
{
    assert (self);
    *name = "(no key)";
    if (!user_id || !*user_id)
        return false;
    //  Forget every answer now and then: the lists change at run time
    if (now_ms - self->peers_since_ms >= AUTH_CACHE_MS || now_ms < self->peers_since_ms ||
        zhashx_size (self->peers) >= CACHE_MAX) {
        zhashx_purge (self->peers);
        self->peers_since_ms = now_ms;
    }
    peer_t *peer = zhashx_lookup (self->peers, user_id);
    if (!peer) {
        peer = calloc (1, sizeof *peer);
        if (!peer)
            return false;
        snprintf (peer->name, sizeof peer->name, "%s", user_id);
        for (int i = 0; i < 3; i++) {
            zcert_t *cert = zcertstore_lookup (self->stores[i], user_id);
            if (cert) {
                peer->roles |= 1 << i;
                const char *cert_name = zcert_meta (cert, "name");
                if (cert_name && *cert_name)
                    snprintf (peer->name, sizeof peer->name, "%s", cert_name);
            }
        }
        if (zhashx_insert (self->peers, user_id, peer)) {
            free (peer);
            return false;
        }
    }
    *name = peer->name;
    return (peer->roles & role) != 0;
}

bool auth_model_allowed (auth_t *self, const char *name, const char *model)
{
    assert (self);
    if (!self->acl)
        return true;
    const char *models = zhashx_lookup (self->acl, name);
    if (!models)
        return false;
    char needle[160];
    snprintf (needle, sizeof needle, " %s ", model);
    return strstr (models, " * ") || strstr (models, needle);
}
