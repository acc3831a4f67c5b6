/* src/admin.c: account administration (add, change password, delete,
 * list) on the store, with the events modules expect; used by the control
 * socket (control.c) and by palaverctl when no daemon runs. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "accounts.h"
#include "palaver.h"

typedef struct {
    pv_server_t *srv;
    pv_admin_done_fn done;
    void *arg;
    char *jid;
    char *host;
    char *user;
    int kind;     /* 'a'dd, 'p'asswd, 'd'elete */
} admin_job_t;

char *
pv_admin_hex(const void *data, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = data;
    char *out = pv_xmalloc(2 * len + 1);
    size_t i;

    for (i = 0; i < len; i++) {
        out[2 * i] = hex[p[i] >> 4];
        out[2 * i + 1] = hex[p[i] & 15];
    }
    out[2 * len] = '\0';
    return out;
}

static int
unhex(const char *s, pv_account_record_t *rec)
{
    size_t n = strlen(s), i;

    if (n % 2 != 0 || n / 2 > sizeof(rec->data))
        return PV_ERROR;
    for (i = 0; i < n / 2; i++) {
        unsigned v;
        if (sscanf(s + 2 * i, "%2x", &v) != 1)
            return PV_ERROR;
        rec->data[i] = (uint8_t)v;
    }
    rec->len = n / 2;
    return PV_OK;
}

/* Parses an account JID: node@domain of a configured vhost. */
static int
admin_parse_jid(pv_server_t *srv, const char *in, pv_jid_t *j,
                char *err, size_t errlen)
{
    pv_host_t *h;

    if (pv_jid_parse(in, strlen(in), j, NULL) != PV_OK) {
        snprintf(err, errlen, "'%s' is not a valid JID", in);
        return PV_ERROR;
    }
    if (j->node == NULL || j->resource != NULL) {
        snprintf(err, errlen, "'%s' is not an account JID (user@domain)",
                 in);
        pv_jid_clear(j);
        return PV_ERROR;
    }
    h = pv_server_host(srv, j->domain);
    if (h == NULL || h->conf->is_component) {
        snprintf(err, errlen, "%s is not a virtual host of this server",
                 j->domain);
        pv_jid_clear(j);
        return PV_ERROR;
    }
    return PV_OK;
}

static void
admin_job_done(void *arg, int rc)
{
    admin_job_t *j = arg;
    char msg[1200];
    int ok = rc == PV_OK;

    switch (j->kind) {
    case 'a':
        snprintf(msg, sizeof(msg), ok ? "%s created"
                 : rc == PV_AGAIN ? "%s already exists"
                 : "%s could not be created", j->jid);
        break;
    case 'p':
        snprintf(msg, sizeof(msg), ok ? "password of %s changed"
                 : rc == PV_NOTFOUND ? "%s does not exist"
                 : "password of %s could not be changed", j->jid);
        break;
    default:
        snprintf(msg, sizeof(msg), ok ? "%s deleted"
                 : rc == PV_NOTFOUND ? "%s does not exist"
                 : "%s could not be deleted", j->jid);
        break;
    }
    j->done(j->arg, ok, msg);
    free(j->jid);
    free(j->host);
    free(j->user);
    free(j);
}

typedef struct {
    pv_buf_t out;
    size_t n;
} users_list_t;

static int
users_cb(const char *user, size_t len, void *arg)
{
    users_list_t *l = arg;

    if (l->n++)
        pv_buf_puts(&l->out, "\n");
    pv_buf_append(&l->out, user, len);
    return 0;
}

void
pv_admin_run(pv_server_t *srv, char **f, size_t n, pv_admin_done_fn done,
             void *arg)
{
    char err[1200];
    pv_account_record_t rec;
    admin_job_t *j;
    pv_jid_t jid;
    pv_host_t *h;

    if (n == 2 && strcmp(f[0], "users") == 0) {
        users_list_t l = { {0}, 0 };
        char *d = pv_jid_prep_domain(f[1], strlen(f[1]));
        if (d == NULL || pv_server_host(srv, d) == NULL) {
            snprintf(err, sizeof(err), "%s is not a host of this server",
                     f[1]);
            done(arg, 0, err);
        } else if (pv_account_each(srv->storage, d, users_cb, &l) != PV_OK) {
            done(arg, 0, "cannot read the accounts");
        } else {
            done(arg, 1, l.out.data ? l.out.data : "");
        }
        free(d);
        pv_buf_free(&l.out);
        return;
    }
    if (!((n == 3 && (!strcmp(f[0], "adduser") || !strcmp(f[0], "passwd"))) ||
          (n == 2 && !strcmp(f[0], "deluser")))) {
        done(arg, 0, "unknown command");
        return;
    }
    if (admin_parse_jid(srv, f[1], &jid, err, sizeof(err)) != PV_OK) {
        done(arg, 0, err);
        return;
    }
    if (n == 3 && unhex(f[2], &rec) != PV_OK) {
        pv_jid_clear(&jid);
        done(arg, 0, "malformed credentials");
        return;
    }
    j = pv_xcalloc(1, sizeof(*j));
    j->srv = srv;
    j->done = done;
    j->arg = arg;
    j->jid = pv_xstrdup(jid.bare);
    j->host = pv_xstrdup(jid.domain);
    j->user = pv_xstrdup(jid.node);
    j->kind = f[0][0] == 'a' ? 'a' : f[0][0] == 'p' ? 'p' : 'd';
    pv_jid_clear(&jid);
    h = pv_server_host(srv, j->host);
    if (j->kind == 'd')
        pv_user_delete(h, j->user, admin_job_done, j);
    else
        pv_user_store_record(h, j->user, &rec, j->kind == 'a',
                             admin_job_done, j);
}
