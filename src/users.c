/* src/users.c: account operations with the events modules rely on
 * (created, deleting, deleted), used by modules through the module API and
 * by admin.c. Hashing runs on worker threads; the rows are accounts.c's. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "accounts.h"
#include "palaver.h"

typedef struct {
    pv_host_t *host;        /* reference for the job's lifetime */
    char *user;
    char *password;         /* cleansed and freed after hashing */
    unsigned iterations;
    pv_account_record_t rec;
    int built;
    int create;             /* create, or replace the credentials */
    int has_record;         /* rec given by the caller (palaverctl) */
    pv_user_done_fn cb;
    void *arg;
    char *deleting_key;     /* entry in srv->deleting while deleting */
} user_job_t;

static void
component_fire(void *arg, const char *domain)
{
    pv_event_t *vev = arg, ev = *vev;

    ev.host = pv_host_find(pv_host_server(vev->host), domain);
    if (ev.host == NULL)
        return;
    ev.data = (void *)pv_host_name(vev->host);
    pv_event_fire(&ev);
}

static void
user_fire(pv_host_t *h, const char *user, pv_event_kind_t kind)
{
    pv_event_t ev;

    memset(&ev, 0, sizeof(ev));
    ev.kind = kind;
    ev.host = h;
    ev.user = user;
    pv_event_fire(&ev);
    if (kind == PV_EV_USER_CREATED)
        return;
    /* Service components of the vhost (MUC affiliations, uploaded files)
     * hold data of the account too: they hear of its removal with
     * ev->data = the account's domain. */
    pv_host_each_component(h, component_fire, &ev);
}

static void
user_job_free(user_job_t *j)
{
    if (j->deleting_key != NULL) {
        pv_map_del(&j->host->server->deleting, j->deleting_key);
        free(j->deleting_key);
    }
    if (j->password != NULL) {
        OPENSSL_cleanse(j->password, strlen(j->password));
        free(j->password);
    }
    OPENSSL_cleanse(&j->rec, sizeof(j->rec));
    pv_host_unref(j->host);
    free(j->user);
    free(j);
}

int
pv_user_exists(pv_host_t *h, const char *user)
{
    char key[2048];

    /* from PV_EV_USER_DELETING on the account is gone for modules, so
     * nothing writes new rows for it while its rows are being removed */
    snprintf(key, sizeof(key), "%s@%s", user, h->name);
    if (pv_map_get(&h->server->deleting, key) != NULL)
        return 0;
    return h->server->storage != NULL &&
           pv_account_exists(h->server->storage, h->name, user) == PV_OK;
}

static void
user_stored(void *arg, int rc)
{
    user_job_t *j = arg;

    if (rc == PV_OK && j->create)
        user_fire(j->host, j->user, PV_EV_USER_CREATED);
    if (j->cb != NULL)
        j->cb(j->arg, rc);
    user_job_free(j);
}

static void
user_store(user_job_t *j)
{
    pv_storage_t *st = j->host->server->storage;
    pv_rc_t rc;

    if (!j->built || st == NULL) {
        user_stored(j, PV_ERROR);
        return;
    }
    rc = j->create
             ? pv_account_create_record(st, j->host->name, j->user, &j->rec,
                                        user_stored, j)
             : pv_account_set_record(st, j->host->name, j->user, &j->rec,
                                     user_stored, j);
    if (rc != PV_OK)
        user_stored(j, PV_ERROR);
}

static void
user_hash_work(void *arg)
{
    user_job_t *j = arg;

    j->built = pv_account_record_build(j->password, j->iterations,
                                       &j->rec) == PV_OK;
}

static void
user_hash_done(void *arg, int cancelled)
{
    user_job_t *j = arg;

    if (cancelled)
        j->built = 0;
    user_store(j);
}

static void
user_start(pv_host_t *h, const char *user, const char *password,
           const pv_account_record_t *rec, int create, pv_user_done_fn cb,
           void *arg)
{
    user_job_t *j = pv_xcalloc(1, sizeof(*j));

    j->host = pv_host_ref(h);
    j->user = pv_xstrdup(user);
    j->create = create;
    j->cb = cb;
    j->arg = arg;
    j->iterations = (unsigned)h->conf->core.scram_iterations;
    if (rec != NULL) {
        j->rec = *rec;
        j->built = 1;
        user_store(j);
        return;
    }
    j->password = pv_xstrdup(password);
    if (h->server->in_process) {
        user_hash_work(j);
        user_hash_done(j, 0);
    } else {
        pv_loop_work(h->server->loop, user_hash_work, user_hash_done, j);
    }
}

void
pv_user_create(pv_host_t *h, const char *user, const char *password,
               pv_user_done_fn cb, void *arg)
{
    user_start(h, user, password, NULL, 1, cb, arg);
}

void
pv_user_set_password(pv_host_t *h, const char *user, const char *password,
                     pv_user_done_fn cb, void *arg)
{
    user_start(h, user, password, NULL, 0, cb, arg);
}

void
pv_user_store_record(pv_host_t *h, const char *user,
                     const pv_account_record_t *rec, int create,
                     pv_user_done_fn cb, void *arg)
{
    user_start(h, user, NULL, rec, create, cb, arg);
}

static void
close_session(void *arg, pv_session_t *s)
{
    (void)arg;
    pv_session_close(s, "not-authorized");
}

static void
user_deleted(void *arg, int rc)
{
    user_job_t *j = arg;

    if (rc == PV_OK) {
        user_fire(j->host, j->user, PV_EV_USER_DELETED);
        pv_host_each_session(j->host, j->user, close_session, NULL);
    }
    if (j->cb != NULL)
        j->cb(j->arg, rc);
    user_job_free(j);
}

void
pv_user_delete(pv_host_t *h, const char *user, pv_user_done_fn cb,
               void *arg)
{
    user_job_t *j;

    if (!pv_user_exists(h, user)) {
        if (cb != NULL)
            cb(arg, PV_NOTFOUND);
        return;
    }
    j = pv_xcalloc(1, sizeof(*j));
    j->host = pv_host_ref(h);
    j->user = pv_xstrdup(user);
    j->cb = cb;
    j->arg = arg;
    j->deleting_key = pv_xasprintf("%s@%s", user, h->name);
    user_fire(h, user, PV_EV_USER_DELETING);
    pv_map_put(&h->server->deleting, j->deleting_key, j);
    if (pv_account_delete(h->server->storage, h->name, user, user_deleted,
                          j) != PV_OK)
        user_deleted(j, PV_ERROR);
}

void
pv_host_work(pv_host_t *h, void (*work)(void *arg),
             void (*done)(void *arg, int cancelled), void *arg)
{
    pv_loop_work(h->server->loop, work, done, arg);
}
