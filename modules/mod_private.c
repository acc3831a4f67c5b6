/* modules/mod_private.c: XEP-0049 private XML storage (jabber:iq:private),
 * which XEP-0048 bookmarks ride on. One row per user and stored element in
 * the map store "private.data", keyed by "name namespace", in a compact
 * tree encoding (below); only the owner reads or writes. Rows go with the
 * account (the core deletes every row of a user). */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <palaver/module.h>

#define NS_PRIVATE "jabber:iq:private"

typedef struct {
    size_t max_size;          /* serialized XML bytes per user */
} private_conf_t;

typedef struct private_job_s private_job_t;

typedef struct {
    pv_module_t *m;
    pv_host_t *h;
    pv_store_t *store;
    private_job_t *jobs;      /* sets waiting for their commits */
} private_host_t;

/* A set waiting for its commits; answered by JID from the last one,
 * because the sending session may be gone by then. */
struct private_job_s {
    private_host_t *ph;       /* NULL once the host went away */
    pv_stanza_t *req;         /* our reference */
    unsigned n_pending;
    int failed;
    private_job_t *prev, *next;
};

/* --- requests ------------------------------------------------------ */

/* XEP-0049 §2.3: reserved namespaces are refused. 'jabber:' and the
 * vCard's own namespace (mod_vcard's data); 'http://jabber.org/' is left
 * open, since clients store their own data under it. */
static int
private_ns_reserved(const char *ns)
{
    return strncmp(ns, "jabber:", 7) == 0 || strcmp(ns, "vcard-temp") == 0;
}

/* Map key of a stored element: "name namespace". */
static char *
private_key(pv_arena_t *arena, const pv_node_t *el)
{
    return pv_arena_printf(arena, "%s %s", el->name, el->xmlns);
}

/* Checks the children of <query/>: at least one, each an element in a
 * namespace of its own that is not reserved, with a key that fits the
 * store. Returns NULL, or the condition to answer with and *text. */
static const char *
private_check(const pv_event_t *ev, pv_arena_t *arena, const char **text)
{
    const pv_node_t *c;
    size_t n = 0;
    size_t base = 6 + strlen(pv_host_name(ev->host)) +
                  strlen(ev->to->node);

    *text = NULL;
    for (c = ev->payload->children; c != NULL; c = c->next) {
        if (c->name == NULL)
            continue;
        n++;
        if (c->xmlns[0] == '\0' || strcmp(c->xmlns, NS_PRIVATE) == 0) {
            *text = "each stored element needs a namespace of its own";
            return "bad-request";
        }
        if (private_ns_reserved(c->xmlns)) {
            *text = "reserved namespace";
            return "not-acceptable";
        }
        if (base + strlen(private_key(arena, c)) > PV_KEY_MAX) {
            *text = "element name and namespace are too long";
            return "not-acceptable";
        }
    }
    if (n == 0) {
        /* XEP-0049 §2.3 "Bad Format" (400), bad-request in XMPP terms */
        *text = "the query must hold the element to get or store";
        return "bad-request";
    }
    return NULL;
}

static pv_rc_t
private_get(pv_event_t *ev, private_host_t *ph)
{
    const char *host = pv_host_name(ev->host);
    pv_stanza_t *st = pv_iq_result(ev->stanza);
    pv_node_t *q = pv_node_new(st->arena, "query", NS_PRIVATE, st->root);
    const pv_node_t *c;

    for (c = ev->payload->children; c != NULL; c = c->next) {
        void *val = NULL;
        size_t len = 0;
        pv_rc_t rc;

        if (c->name == NULL)
            continue;
        rc = pv_store_get(ph->store, host, ev->to->node,
                          private_key(st->arena, c), &val, &len);
        if (rc == PV_OK) {
            pv_node_t *el = pv_node_unpack(st->arena, val, len, NULL);
            free(val);
            if (el == NULL) {
                pv_log(PV_LOG_ERROR, host, "mod_private: damaged row "
                       "%s of %s", private_key(st->arena, c),
                       ev->to->bare);
                rc = PV_ERROR;
            } else {
                pv_node_append(q, el);
            }
        } else if (rc == PV_NOTFOUND) {
            /* nothing stored: the empty element, as clients expect
             * for bookmarks they have never saved */
            pv_node_new(st->arena, c->name, c->xmlns, q);
        }
        if (rc == PV_ERROR) {
            pv_stanza_unref(st);
            pv_event_error(ev, PV_ERR_WAIT,
                          "internal-server-error", NULL);
            return PV_HANDLED;
        }
    }
    pv_event_reply(ev, st);
    return PV_HANDLED;
}

static void
private_job_done(void *arg, int rc)
{
    private_job_t *job = arg;
    private_host_t *ph = job->ph;
    pv_stanza_t *st;

    if (rc != PV_OK)
        job->failed = 1;
    if (--job->n_pending > 0)
        return;
    if (ph != NULL) {
        if (job->prev != NULL)
            job->prev->next = job->next;
        else
            ph->jobs = job->next;
        if (job->next != NULL)
            job->next->prev = job->prev;
        if (!job->failed)
            st = pv_iq_result(job->req);
        else
            st = pv_stanza_error(job->req, PV_ERR_WAIT,
                                 "internal-server-error", NULL);
        if (st != NULL) {
            pv_host_route(ph->h, st);
            pv_stanza_unref(st);
        }
    }
    pv_stanza_unref(job->req);
    free(job);
}

typedef struct {
    const pv_node_t *query;   /* the set's query: rows it replaces */
    pv_arena_t *arena;
    size_t total;
} private_usage_t;

/* Sums the rows a set keeps (those it does not replace). The stored
 * form is close to the XML size, so the row length stands in for it. */
static int
private_add_usage(const char *key, size_t key_len, const void *val,
                  size_t val_len, void *arg)
{
    private_usage_t *u = arg;
    const pv_node_t *c;

    (void)val;
    for (c = u->query->children; c != NULL; c = c->next)
        if (c->name != NULL && strlen(private_key(u->arena, c)) ==
                                   key_len &&
            memcmp(private_key(u->arena, c), key, key_len) == 0)
            return 0;
    u->total += val_len;
    return 0;
}

static pv_rc_t
private_set(pv_event_t *ev, private_host_t *ph)
{
    const private_conf_t *conf = pv_module_conf(ev->module, ev->host);
    const char *host = pv_host_name(ev->host);
    pv_arena_t *arena = ev->stanza->arena;
    private_job_t *job;
    const pv_node_t *c;

    if (conf->max_size != PV_SIZE_OFF) {
        private_usage_t u = { ev->payload, arena, 0 };
        pv_buf_t b = {0};

        if (pv_store_map_each(ph->store, host, ev->to->node,
                              private_add_usage, &u) != PV_OK) {
            pv_event_error(ev, PV_ERR_WAIT,
                          "internal-server-error", NULL);
            return PV_HANDLED;
        }
        for (c = ev->payload->children; c != NULL; c = c->next)
            if (c->name != NULL)
                pv_node_serialize(c, &b, NULL);
        u.total += b.len;
        pv_buf_free(&b);
        if (u.total > conf->max_size) {
            char text[80];

            /* not-acceptable, as for a vCard over vcard_max_size: the
             * request is valid but over the server's size criterion
             * (RFC 6120 §8.3.3.10, XEP-0060 §7.1.3.4) */
            snprintf(text, sizeof(text), "private storage is limited to "
                     "%zu bytes per account", conf->max_size);
            pv_event_error(ev, PV_ERR_MODIFY,
                          "not-acceptable", text);
            return PV_HANDLED;
        }
    }
    job = pv_xcalloc(1, sizeof(*job));
    job->req = pv_stanza_ref(ev->stanza);
    /* one extra count so that a completion run early cannot answer
     * before every row is queued; dropped below */
    job->n_pending = 1;
    for (c = ev->payload->children; c != NULL; c = c->next) {
        pv_buf_t b = {0};

        if (c->name == NULL)
            continue;
        pv_node_pack(c, &b);
        job->n_pending++;
        if (pv_store_put(ph->store, host, ev->to->node,
                         private_key(arena, c), b.data, b.len,
                         private_job_done, job) != PV_OK) {
            job->n_pending--;
            job->failed = 1;
        }
        pv_buf_free(&b);
        if (job->failed)
            break;
    }
    job->ph = ph;
    job->next = ph->jobs;
    if (ph->jobs != NULL)
        ph->jobs->prev = job;
    ph->jobs = job;
    private_job_done(job, job->failed ? PV_ERROR : PV_OK);
    return PV_HANDLED;
}

static pv_rc_t
private_query(pv_event_t *ev)
{
    private_host_t *ph = pv_module_host_data(ev->module, ev->host);
    const char *cond, *text;

    /* an account being deleted no longer exists here (the core hides
     * it), so no row can be written behind its deletion */
    if (ph == NULL || !pv_user_exists(ev->host, ev->to->node))
        return PV_PASS;
    /* XEP-0049 §2.3: another user's data is forbidden */
    if (ev->from == NULL || strcmp(ev->from->bare, ev->to->bare) != 0) {
        pv_event_error(ev, PV_ERR_AUTH, "forbidden",
                      NULL);
        return PV_HANDLED;
    }
    cond = private_check(ev, ev->stanza->arena, &text);
    if (cond != NULL) {
        pv_event_error(ev, PV_ERR_MODIFY, cond, text);
        return PV_HANDLED;
    }
    if (ev->kind == PV_IQ_GET)
        return private_get(ev, ph);
    return private_set(ev, ph);
}

/* --- lifecycle ----------------------------------------------------- */

static int
private_host_init(pv_module_t *m, pv_host_t *h)
{
    private_host_t *ph;
    pv_store_t *store = pv_store_open(h, m, "data", PV_STORE_MAP);

    if (store == NULL) {
        pv_log(PV_LOG_ERROR, pv_host_name(h), "mod_private: cannot open "
               "store private.data");
        return PV_ERROR;
    }
    ph = pv_xcalloc(1, sizeof(*ph));
    ph->m = m;
    ph->h = h;
    ph->store = store;
    pv_module_set_host_data(m, h, ph);
    return PV_OK;
}

static void
private_host_fini(pv_module_t *m, pv_host_t *h)
{
    private_host_t *ph = pv_module_host_data(m, h);
    private_job_t *job;

    if (ph == NULL)
        return;
    /* writes in flight free themselves later, without answering */
    for (job = ph->jobs; job != NULL; job = job->next)
        job->ph = NULL;
    free(ph);
    pv_module_set_host_data(m, h, NULL);
}

static const pv_hook_t private_hooks[] = {
    { PV_IQ_GET, PV_TO_BARE, NS_PRIVATE, "query", private_query, 0, 0 },
    { PV_IQ_SET, PV_TO_BARE, NS_PRIVATE, "query", private_query, 0, 0 },
    PV_HOOKS_END
};

static const pv_directive_t private_directives[] = {
    { "private_max_size", PV_CTX_ANY, pv_conf_size,
      offsetof(private_conf_t, max_size), "64K", 0, 0, NULL },
    PV_DIRECTIVES_END
};

PV_MODULE(private) = {
    .abi = PV_MODULE_ABI,
    .name = "private",
    .features = (const char *const[]){ NS_PRIVATE, NULL },
    .hooks = private_hooks,
    .directives = private_directives,
    .conf_size = sizeof(private_conf_t),
    .host_init = private_host_init,
    .host_fini = private_host_fini,
};
