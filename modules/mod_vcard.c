/* modules/mod_vcard.c: XEP-0054 vcard-temp. Each account has at most one
 * vCard, kept in the keyval store "vcard.data" in a compact tree encoding
 * (below); the owner sets it, anyone may read it through the owner's bare
 * JID. Rows go with the account (the core deletes every row of a user);
 * avatars in presence (XEP-0153) are not this module's job. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <palaver/module.h>

#define NS_VCARD "vcard-temp"
/* deeper than any real vCard; bounds the decoder's recursion */

typedef struct {
    size_t max_size;          /* serialized XML bytes; PV_SIZE_OFF */
} vcard_conf_t;

typedef struct vcard_job_s vcard_job_t;

typedef struct {
    pv_module_t *m;
    pv_host_t *h;
    pv_store_t *store;
    vcard_job_t *jobs;        /* writes waiting for their commit */
} vcard_host_t;

/* A set waiting for its commit: the answer goes out from the completion,
 * addressed by JID, because the sending session may be gone by then. */
struct vcard_job_s {
    vcard_host_t *vh;         /* NULL once the host went away */
    pv_stanza_t *req;         /* our reference */
    vcard_job_t *prev, *next;
};

/* --- requests ------------------------------------------------------ */

/* Is the sender the owner of the addressed account? */
static int
vcard_is_self(const pv_event_t *ev)
{
    return ev->from != NULL && ev->from->node != NULL &&
           strcmp(ev->from->bare, ev->to->bare) == 0;
}

static pv_rc_t
vcard_get(pv_event_t *ev)
{
    vcard_host_t *vh = pv_module_host_data(ev->module, ev->host);
    const char *user = ev->to->node;
    pv_stanza_t *st;
    void *val = NULL;
    size_t len = 0;
    pv_rc_t rc;

    /* unknown accounts: the router's RFC 6121 §8.5.1 answer */
    if (vh == NULL || !pv_user_exists(ev->host, user))
        return PV_PASS;
    rc = pv_store_get(vh->store, pv_host_name(ev->host), user, NULL, &val,
                      &len);
    if (rc == PV_ERROR) {
        pv_event_error(ev, PV_ERR_WAIT,
                      "internal-server-error", NULL);
        return PV_HANDLED;
    }
    st = pv_iq_result(ev->stanza);
    if (rc == PV_NOTFOUND) {
        /* XEP-0054 §3.1: no vCard is an empty one, which is what
         * Conversations and Gajim expect (not item-not-found) */
        pv_node_new(st->arena, "vCard", NS_VCARD, st->root);
    } else {
        if (pv_node_unpack(st->arena, val, len, st->root) == NULL) {
            pv_log(PV_LOG_ERROR, pv_host_name(ev->host),
                   "mod_vcard: damaged vCard row of %s", ev->to->bare);
            free(val);
            pv_stanza_unref(st);
            pv_event_error(ev, PV_ERR_WAIT,
                          "internal-server-error", NULL);
            return PV_HANDLED;
        }
    }
    free(val);
    pv_event_reply(ev, st);
    return PV_HANDLED;
}

static void
vcard_job_done(void *arg, int rc)
{
    vcard_job_t *job = arg;
    vcard_host_t *vh = job->vh;
    pv_stanza_t *st;

    if (vh != NULL) {
        if (job->prev != NULL)
            job->prev->next = job->next;
        else
            vh->jobs = job->next;
        if (job->next != NULL)
            job->next->prev = job->prev;
        /* PV_NOTFOUND: an empty vCard replaced none, also a success */
        if (rc == PV_OK || rc == PV_NOTFOUND)
            st = pv_iq_result(job->req);
        else
            st = pv_stanza_error(job->req, PV_ERR_WAIT,
                                 "internal-server-error", NULL);
        if (st != NULL) {
            pv_host_route(vh->h, st);
            pv_stanza_unref(st);
        }
    }
    pv_stanza_unref(job->req);
    free(job);
}

/* A vCard with no element and no text in it: stored as no row. */
static int
vcard_is_empty(const pv_node_t *v)
{
    const pv_node_t *c;
    size_t i;

    for (c = v->children; c != NULL; c = c->next) {
        if (c->name != NULL)
            return 0;
        for (i = 0; i < c->text_len; i++)
            if (!strchr(" \t\r\n", c->text[i]))
                return 0;
    }
    return 1;
}

static pv_rc_t
vcard_set(pv_event_t *ev)
{
    vcard_host_t *vh = pv_module_host_data(ev->module, ev->host);
    const vcard_conf_t *conf = pv_module_conf(ev->module, ev->host);
    const char *user = ev->to->node;
    const char *host = pv_host_name(ev->host);
    vcard_job_t *job;
    pv_buf_t b = {0};
    pv_rc_t rc;

    /* an account being deleted no longer exists here (the core hides
     * it), so no row can be written behind its deletion */
    if (vh == NULL || !pv_user_exists(ev->host, user))
        return PV_PASS;
    if (!vcard_is_self(ev)) {
        /* only the owner writes a vCard (XEP-0054 §3.2) */
        pv_event_error(ev, PV_ERR_AUTH, "forbidden",
                      NULL);
        return PV_HANDLED;
    }
    if (conf->max_size != PV_SIZE_OFF) {
        pv_node_serialize(ev->payload, &b, NULL);
        if (b.len > conf->max_size) {
            char text[80];

            /* not-acceptable, as XEP-0060 §7.1.3.4 answers a payload
             * over the service's size limit: the request is fine, the
             * size does not meet the server's criteria (RFC 6120
             * §8.3.3.10); the client may retry with a smaller photo */
            snprintf(text, sizeof(text), "the vCard is larger than %zu "
                     "bytes", conf->max_size);
            pv_buf_free(&b);
            pv_event_error(ev, PV_ERR_MODIFY,
                          "not-acceptable", text);
            return PV_HANDLED;
        }
        pv_buf_reset(&b);
    }
    job = pv_xcalloc(1, sizeof(*job));
    job->req = pv_stanza_ref(ev->stanza);
    if (vcard_is_empty(ev->payload)) {
        rc = pv_store_delete(vh->store, host, user, NULL, vcard_job_done,
                             job);
    } else {
        pv_node_pack(ev->payload, &b);
        rc = pv_store_put(vh->store, host, user, NULL, b.data, b.len,
                          vcard_job_done, job);
    }
    pv_buf_free(&b);
    if (rc != PV_OK) {
        pv_stanza_unref(job->req);
        free(job);
        pv_event_error(ev, PV_ERR_WAIT,
                      "internal-server-error", NULL);
        return PV_HANDLED;
    }
    job->vh = vh;
    job->next = vh->jobs;
    if (vh->jobs != NULL)
        vh->jobs->prev = job;
    vh->jobs = job;
    return PV_HANDLED;
}

/* --- lifecycle ----------------------------------------------------- */

static int
vcard_host_init(pv_module_t *m, pv_host_t *h)
{
    vcard_host_t *vh;
    pv_store_t *store = pv_store_open(h, m, "data", PV_STORE_KEYVAL);

    if (store == NULL) {
        pv_log(PV_LOG_ERROR, pv_host_name(h), "mod_vcard: cannot open "
               "store vcard.data");
        return PV_ERROR;
    }
    vh = pv_xcalloc(1, sizeof(*vh));
    vh->m = m;
    vh->h = h;
    vh->store = store;
    pv_module_set_host_data(m, h, vh);
    return PV_OK;
}

static void
vcard_host_fini(pv_module_t *m, pv_host_t *h)
{
    vcard_host_t *vh = pv_module_host_data(m, h);
    vcard_job_t *job;

    if (vh == NULL)
        return;
    /* writes still in flight complete later: they free themselves but
     * must not answer through a host that no longer exists */
    for (job = vh->jobs; job != NULL; job = job->next)
        job->vh = NULL;
    free(vh);
    pv_module_set_host_data(m, h, NULL);
}

static const pv_hook_t vcard_hooks[] = {
    { PV_IQ_GET, PV_TO_BARE, NS_VCARD, "vCard", vcard_get, 0, 0 },
    { PV_IQ_SET, PV_TO_BARE, NS_VCARD, "vCard", vcard_set, 0, 0 },
    PV_HOOKS_END
};

static const pv_directive_t vcard_directives[] = {
    { "vcard_max_size", PV_CTX_ANY, pv_conf_size,
      offsetof(vcard_conf_t, max_size), "64K", 0, 0, NULL },
    PV_DIRECTIVES_END
};

PV_MODULE(vcard) = {
    .abi = PV_MODULE_ABI,
    .name = "vcard",
    .features = (const char *const[]){ NS_VCARD, NULL },
    .hooks = vcard_hooks,
    .directives = vcard_directives,
    .conf_size = sizeof(vcard_conf_t),
    .host_init = vcard_host_init,
    .host_fini = vcard_host_fini,
};
