/* modules/mod_bookmarks.c: bookmarks conversion (XEP-0402 §compat with
 * #compat-pep, XEP-0411). The three places clients keep group chat
 * bookmarks are kept in step: XEP-0049 private XML <storage
 * xmlns='storage:bookmarks'/> (mod_private's), the legacy PEP node
 * storage:bookmarks and the XEP-0402 PEP node urn:xmpp:bookmarks:1 (one
 * item per room; mod_pep's). A successful change to one is copied to the
 * others by IQs this module routes on the user's behalf; it stores
 * nothing itself. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <palaver/dataform.h>
#include <palaver/module.h>

#define NS_PUBSUB "http://jabber.org/protocol/pubsub"
#define NS_OWNER NS_PUBSUB "#owner"
#define NS_DATA "jabber:x:data"
#define NS_PRIVATE "jabber:iq:private"
#define NS_LEGACY "storage:bookmarks"
#define NS_B2 "urn:xmpp:bookmarks:1"

#define BM_ID_PREFIX "pvbm-"  /* ids of the IQs this module routes */
#define BM_TIMEOUT_MS 60000   /* requests nobody answered are dropped */
#define BM_SWEEP_MS 10000
#define BM_WATCH_MAX 1024     /* client requests waiting per host */
#define BM_ID_MAX 128         /* mod_pep's item id limit */

typedef struct bm_host_s bm_host_t;

/* Completion of a request this module routed: res is the result or error
 * (borrowed), NULL when nobody answered in time or the host goes away. */
typedef void bm_done_fn(bm_host_t *bh, const char *user,
                        const pv_stanza_t *res, void *ctx);

typedef struct bm_req_s {
    char *id;
    char *user;
    uint64_t ms;
    bm_done_fn *done;
    void *ctx;                /* freed by done */
    struct bm_req_s *next;
} bm_req_t;

enum { W_PRIVATE, W_LEGACY, W_B2 };

/* A client's request whose success we act on once its result goes back
 * to the client. Errors are answered straight to the session, so
 * unmatched entries just age out. */
typedef struct bm_watch_s {
    int kind;
    char *full;
    char *id;
    pv_stanza_t *req;         /* our reference */
    uint64_t ms;
    struct bm_watch_s *next;
} bm_watch_t;

struct bm_host_s {
    pv_module_t *m;
    pv_host_t *h;
    bm_req_t *reqs;
    bm_watch_t *watches;
    size_t n_watches;
    unsigned long seq;
};

/* A conversion's state between its steps: a <storage/> in its own
 * arena. */
typedef struct {
    pv_arena_t *a;
    pv_node_t *storage;
} bm_job_t;

static bm_job_t *
job_new(const pv_node_t *storage)
{
    bm_job_t *j = pv_xcalloc(1, sizeof(*j));

    j->a = pv_arena_new(0);
    if (storage != NULL)
        j->storage = pv_node_copy(j->a, storage);
    return j;
}

static void
job_free(bm_job_t *j)
{
    if (j == NULL)
        return;
    pv_arena_free(j->a);
    free(j);
}

/* --- requests routed on the user's behalf ------------------------------ */

/* New IQ from the account to itself: mod_pep and mod_private take it as
 * the owner's own request. Its origin is the server, so no pre- hook
 * (ours included) sees it: a conversion never triggers another. */
static pv_stanza_t *
req_build(bm_host_t *bh, const char *user, const char *type,
          bm_done_fn *done, void *ctx)
{
    pv_stanza_t *st = pv_stanza_build("iq");
    const char *bare = pv_arena_printf(st->arena, "%s@%s", user,
                                       pv_host_name(bh->h));
    bm_req_t *r = pv_xcalloc(1, sizeof(*r));

    r->id = pv_xasprintf(BM_ID_PREFIX "%lu", ++bh->seq);
    r->user = pv_xstrdup(user);
    r->ms = pv_now_ms(pv_host_server(bh->h));
    r->done = done;
    r->ctx = ctx;
    r->next = bh->reqs;
    bh->reqs = r;
    pv_node_set_attr(st->arena, st->root, "type", type);
    pv_node_set_attr(st->arena, st->root, "id", r->id);
    pv_node_set_attr(st->arena, st->root, "from", bare);
    pv_node_set_attr(st->arena, st->root, "to", bare);
    return st;
}

/* Routes st; the answer may come back before this returns, so the caller
 * must not touch the request's ctx afterwards. */
static void
req_send(bm_host_t *bh, pv_stanza_t *st)
{
    pv_stanza_touch(st);
    pv_host_route(bh->h, st);
    pv_stanza_unref(st);
}

static void
req_free(bm_req_t *r)
{
    free(r->id);
    free(r->user);
    free(r);
}

static int
is_result(const pv_stanza_t *res)
{
    return res != NULL && res->type != NULL &&
           strcmp(res->type, "result") == 0;
}

/* An error answer saying the node does not exist (yet). */
static int
is_no_node(const pv_stanza_t *res)
{
    const pv_node_t *err = res ? pv_node_child(res->root, "error", NULL)
                               : NULL;

    return !is_result(res) && err != NULL &&
           pv_node_child(err, "item-not-found", NULL) != NULL;
}

static pv_rc_t
bm_answer(pv_event_t *ev)
{
    bm_host_t *bh = pv_module_host_data(ev->module, ev->host);
    const char *id = ev->stanza->id;
    bm_req_t **pp, *r;

    if (bh == NULL || id == NULL || strncmp(id, BM_ID_PREFIX,
                                            strlen(BM_ID_PREFIX)) != 0)
        return PV_PASS;
    /* only the account answers what we asked on its behalf: a forged
     * answer from anyone else must not feed a conversion */
    if (ev->from == NULL || ev->to->node == NULL ||
        strcmp(ev->from->bare, ev->to->bare) != 0)
        return PV_HANDLED;
    for (pp = &bh->reqs; (r = *pp) != NULL; pp = &r->next) {
        if (strcmp(r->id, id) != 0 || strcmp(r->user, ev->to->node) != 0)
            continue;
        *pp = r->next;
        r->done(bh, r->user, ev->stanza, r->ctx);
        req_free(r);
        break;
    }
    return PV_HANDLED;
}

static void
log_failure(bm_host_t *bh, const char *user, const pv_stanza_t *res,
            void *ctx)
{
    const char *what = ctx;

    if (!is_result(res))
        pv_log(PV_LOG_WARN, pv_host_name(bh->h), "mod_bookmarks: %s of "
               "%s failed", what, user);
}

/* --- PEP helpers ----------------------------------------------------- */

/* A publish of one item with XEP-0223 publish-options. Private data:
 * whitelist, nobody but the owner (XEP-0411 §6, XEP-0402 §5). A node
 * that exists already is only required to be private, so that one a
 * client configured otherwise (max_items) still takes our items. */
static pv_node_t *
publish_build(pv_stanza_t *st, const char *node, const char *id,
              int is_new, int is_multi)
{
    pv_arena_t *a = st->arena;
    pv_node_t *ps = pv_node_new(a, "pubsub", NS_PUBSUB, st->root);
    pv_node_t *pub = pv_node_new(a, "publish", NULL, ps);
    pv_node_t *item = pv_node_new(a, "item", NULL, pub);
    pv_node_t *x;

    pv_node_set_attr(a, pub, "node", node);
    pv_node_set_attr(a, item, "id", id);
    x = pv_node_new(a, "x", NS_DATA, pv_node_new(a, "publish-options", NULL,
                                                 ps));
    pv_node_set_attr(a, x, "type", "submit");
    pv_form_add_field(a, x, "FORM_TYPE", "hidden", NULL,
                      NS_PUBSUB "#publish-options");
    pv_form_add_field(a, x, "pubsub#access_model", NULL, NULL, "whitelist");
    if (is_new) {
        pv_form_add_field(a, x, "pubsub#persist_items", NULL, NULL, "true");
        if (is_multi) {
            pv_form_add_field(a, x, "pubsub#max_items", NULL, NULL, "max");
            pv_form_add_field(a, x, "pubsub#send_last_published_item",
                              NULL, NULL, "never");
        }
    }
    return item;
}

/* The items of a PEP node from an items result; NULL when none. */
static const pv_node_t *
result_items(const pv_stanza_t *res)
{
    const pv_node_t *ps = res ? pv_node_child(res->root, "pubsub", NS_PUBSUB)
                              : NULL;

    return ps ? pv_node_child(ps, "items", NS_PUBSUB) : NULL;
}

static void
items_request(bm_host_t *bh, const char *user, const char *node,
              bm_done_fn *done, void *ctx)
{
    pv_stanza_t *st = req_build(bh, user, "get", done, ctx);
    pv_node_t *ps = pv_node_new(st->arena, "pubsub", NS_PUBSUB, st->root);

    pv_node_set_attr(st->arena, pv_node_new(st->arena, "items", NULL, ps),
                     "node", node);
    req_send(bh, st);
}

static int
is_true(const char *v)
{
    return v != NULL && (strcmp(v, "true") == 0 || strcmp(v, "1") == 0);
}

/* Text of child name (in ns) of n, or NULL when absent. */
static const char *
child_text(const pv_node_t *n, const char *name, const char *ns,
           pv_arena_t *a)
{
    const pv_node_t *c = pv_node_child(n, name, ns);

    return c ? pv_node_text(c, a) : NULL;
}

static void
add_text_child(pv_arena_t *a, pv_node_t *parent, const char *name,
               const char *text)
{
    if (text != NULL)
        pv_node_add_text(a, pv_node_new(a, name, NULL, parent), text,
                         strlen(text));
}

/* --- the legacy copies (private XML and PEP storage:bookmarks) ---------- */

static void
legacy_write(bm_host_t *bh, const char *user, const pv_node_t *storage,
             int to_private, int to_pep)
{
    pv_stanza_t *st;

    if (to_private) {
        st = req_build(bh, user, "set", log_failure,
                       "copying bookmarks to private XML");
        pv_node_append(pv_node_new(st->arena, "query", NS_PRIVATE,
                                   st->root),
                       pv_node_copy(st->arena, storage));
        req_send(bh, st);
    }
    if (to_pep) {
        pv_node_t *item;

        st = req_build(bh, user, "set", log_failure,
                       "copying bookmarks to PEP storage:bookmarks");
        /* XEP-0048 §3.2: one item, 'current' */
        item = publish_build(st, NS_LEGACY, "current", 1, 0);
        pv_node_append(item, pv_node_copy(st->arena, storage));
        req_send(bh, st);
    }
}

/* XEP-0402 items to a legacy <storage/>: the item id is the jid
 * (XEP-0402 §compat); the URL bookmarks XEP-0402 dropped are kept from
 * the old storage. */
static void
b2_items_got(bm_host_t *bh, const char *user, const pv_stanza_t *res,
             void *ctx)
{
    bm_job_t *j = ctx;
    const pv_node_t *items = result_items(res);
    const pv_node_t *it, *c;
    pv_arena_t *a = j->a;
    pv_node_t *storage = pv_node_new(a, "storage", NS_LEGACY, NULL);

    if (!is_result(res) && !is_no_node(res)) {
        job_free(j);
        return;       /* no answer, or a real failure: leave the copies */
    }
    for (it = items ? pv_node_child(items, "item", NS_PUBSUB) : NULL;
         it != NULL; it = pv_node_next_child(items, it, "item", NS_PUBSUB)) {
        const pv_node_t *conf = pv_node_child(it, "conference", NS_B2);
        const char *jid = pv_node_attr(it, "id");
        const char *name;
        pv_node_t *lc;

        if (conf == NULL || jid == NULL)
            continue;
        lc = pv_node_new(a, "conference", NULL, storage);
        pv_node_set_attr(a, lc, "jid", jid);
        name = pv_node_attr(conf, "name");
        if (name != NULL)
            pv_node_set_attr(a, lc, "name", name);
        pv_node_set_attr(a, lc, "autojoin",
                         is_true(pv_node_attr(conf, "autojoin")) ? "true"
                                                                 : "false");
        add_text_child(a, lc, "nick", child_text(conf, "nick", NS_B2, a));
        add_text_child(a, lc, "password", child_text(conf, "password", NS_B2,
                                                     a));
    }
    for (c = j->storage ? pv_node_child(j->storage, "url", NS_LEGACY) : NULL;
         c != NULL; c = pv_node_next_child(j->storage, c, "url", NS_LEGACY))
        pv_node_append(storage, pv_node_copy(a, c));
    legacy_write(bh, user, storage, 1, 1);
    job_free(j);
}

static void
private_got(bm_host_t *bh, const char *user, const pv_stanza_t *res,
            void *ctx)
{
    bm_job_t *j = ctx;
    const pv_node_t *q = res ? pv_node_child(res->root, "query", NS_PRIVATE)
                             : NULL;
    const pv_node_t *s = q ? pv_node_child(q, "storage", NS_LEGACY) : NULL;

    if (res == NULL) {
        job_free(j);
        return;
    }
    if (s != NULL)
        j->storage = pv_node_copy(j->a, s);
    items_request(bh, user, NS_B2, b2_items_got, j);
}

/* A client changed urn:xmpp:bookmarks:1: rebuild the legacy copies from
 * the node as it is now. */
static void
b2_changed(bm_host_t *bh, const char *user)
{
    pv_stanza_t *st = req_build(bh, user, "get", private_got, job_new(NULL));

    pv_node_new(st->arena, "storage", NS_LEGACY,
                pv_node_new(st->arena, "query", NS_PRIVATE, st->root));
    req_send(bh, st);
}

/* --- legacy to XEP-0402 (XEP-0402 §compat, "publishing via the old
 * specification") ---------------------------------------------------- */

/* The XEP-0402 form of a legacy <conference/>; extensions of the item it
 * replaces are kept (XEP-0048 has no place for them). */
static pv_node_t *
b2_conference(pv_arena_t *a, const pv_node_t *lc, const pv_node_t *old)
{
    pv_node_t *c = pv_node_new(a, "conference", NS_B2, NULL);
    const char *name = pv_node_attr(lc, "name");
    const pv_node_t *ext = old ? pv_node_child(old, "extensions", NS_B2)
                               : NULL;

    if (name != NULL)
        pv_node_set_attr(a, c, "name", name);
    if (is_true(pv_node_attr(lc, "autojoin")))
        pv_node_set_attr(a, c, "autojoin", "true");
    add_text_child(a, c, "nick", child_text(lc, "nick", NS_LEGACY, a));
    add_text_child(a, c, "password", child_text(lc, "password", NS_LEGACY,
                                                a));
    if (ext != NULL)
        pv_node_append(c, pv_node_copy(a, ext));
    return c;
}

/* Is id a conference jid the storage lists (before index stop)? */
static const pv_node_t *
storage_find(const pv_node_t *storage, const char *jid,
             const pv_node_t *stop)
{
    const pv_node_t *c;

    for (c = pv_node_child(storage, "conference", NS_LEGACY);
         c != NULL && c != stop;
         c = pv_node_next_child(storage, c, "conference", NS_LEGACY)) {
        const char *cj = pv_node_attr(c, "jid");
        if (cj != NULL && strcmp(cj, jid) == 0)
            return c;
    }
    return NULL;
}

static int
valid_id(const char *s)
{
    return s != NULL && *s != '\0' && strlen(s) <= BM_ID_MAX;
}

/* With the node's items in hand: publish what is new or changed, retract
 * what the legacy list no longer has, leave the rest alone so that
 * unchanged items cause no notifications. */
static void
b2_sync_got(bm_host_t *bh, const char *user, const pv_stanza_t *res,
            void *ctx)
{
    bm_job_t *j = ctx;
    const pv_node_t *items = result_items(res);
    const pv_node_t *lc, *it;
    int is_new;

    if (res == NULL) {
        job_free(j);
        return;
    }
    if (!is_result(res)) {
        /* item-not-found: no node yet, created by the first publish */
        if (!is_no_node(res)) {
            pv_log(PV_LOG_WARN, pv_host_name(bh->h), "mod_bookmarks: cannot "
                   "read %s of %s", NS_B2, user);
            job_free(j);
            return;
        }
        items = NULL;
    }
    is_new = items == NULL;
    for (lc = pv_node_child(j->storage, "conference", NS_LEGACY); lc != NULL;
         lc = pv_node_next_child(j->storage, lc, "conference", NS_LEGACY)) {
        const char *jid = pv_node_attr(lc, "jid");
        const pv_node_t *old = NULL;
        pv_stanza_t *st;
        pv_node_t *conf;

        if (!valid_id(jid) ||
            storage_find(j->storage, jid, lc) != NULL)
            continue;     /* a later duplicate: the first one counts */
        for (it = items ? pv_node_child(items, "item", NS_PUBSUB) : NULL;
             it != NULL;
             it = pv_node_next_child(items, it, "item", NS_PUBSUB)) {
            const char *id = pv_node_attr(it, "id");
            if (id != NULL && strcmp(id, jid) == 0) {
                old = pv_node_child(it, "conference", NS_B2);
                break;
            }
        }
        conf = b2_conference(j->a, lc, old);
        if (old != NULL && pv_node_equal(old, conf))
            continue;
        st = req_build(bh, user, "set", log_failure,
                       "copying a bookmark to " NS_B2);
        pv_node_append(publish_build(st, NS_B2, jid, is_new, 1),
                       pv_node_copy(st->arena, conf));
        /* later publishes find the node the first one creates */
        is_new = 0;
        req_send(bh, st);
    }
    for (it = items ? pv_node_child(items, "item", NS_PUBSUB) : NULL;
         it != NULL; it = pv_node_next_child(items, it, "item", NS_PUBSUB)) {
        const char *id = pv_node_attr(it, "id");
        pv_stanza_t *st;
        pv_node_t *ret;

        if (id == NULL || storage_find(j->storage, id, NULL) != NULL)
            continue;
        st = req_build(bh, user, "set", log_failure,
                       "retracting a bookmark from " NS_B2);
        ret = pv_node_new(st->arena, "retract", NULL,
                          pv_node_new(st->arena, "pubsub", NS_PUBSUB,
                                      st->root));
        pv_node_set_attr(st->arena, ret, "node", NS_B2);
        pv_node_set_attr(st->arena, ret, "notify", "true");
        pv_node_set_attr(st->arena, pv_node_new(st->arena, "item", NULL,
                                                ret), "id", id);
        req_send(bh, st);
    }
    job_free(j);
}

/* A legacy list was stored through one legacy interface: copy it to the
 * other and to urn:xmpp:bookmarks:1. */
static void
legacy_changed(bm_host_t *bh, const char *user, const pv_node_t *storage,
               int kind)
{
    legacy_write(bh, user, storage, kind == W_LEGACY, kind == W_PRIVATE);
    items_request(bh, user, NS_B2, b2_sync_got, job_new(storage));
}

/* --- accounts older than the conversion (XEP-0411 §5) ------------------ */

/* The node does not exist yet: everything in private XML goes to it
 * (and to the legacy node) before the client asks, so that PEP-only
 * clients see bookmarks stored before this module was enabled. */
static void
migrate_b2_got(bm_host_t *bh, const char *user, const pv_stanza_t *res,
               void *ctx)
{
    bm_job_t *j = ctx;

    if (!is_no_node(res)) {
        job_free(j);
        return;
    }
    legacy_write(bh, user, j->storage, 0, 1);
    b2_sync_got(bh, user, res, j);
}

static void
migrate_private_got(bm_host_t *bh, const char *user, const pv_stanza_t *res,
                    void *ctx)
{
    const pv_node_t *q = res ? pv_node_child(res->root, "query", NS_PRIVATE)
                             : NULL;
    const pv_node_t *s = q ? pv_node_child(q, "storage", NS_LEGACY) : NULL;

    (void)ctx;
    if (!is_result(res) || s == NULL ||
        pv_node_child(s, "conference", NS_LEGACY) == NULL)
        return;
    items_request(bh, user, NS_B2, migrate_b2_got, job_new(s));
}

/* Two synchronous reads per login; nothing is written once the node
 * exists. */
static pv_rc_t
bm_session_bound(pv_event_t *ev)
{
    bm_host_t *bh = pv_module_host_data(ev->module, ev->host);
    const pv_jid_t *j = ev->session ? pv_session_jid(ev->session) : NULL;
    pv_stanza_t *st;

    if (bh == NULL || j == NULL || j->node == NULL)
        return PV_PASS;
    st = req_build(bh, j->node, "get", migrate_private_got, NULL);
    pv_node_new(st->arena, "storage", NS_LEGACY,
                pv_node_new(st->arena, "query", NS_PRIVATE, st->root));
    req_send(bh, st);
    return PV_PASS;
}

/* --- watching the user's own requests ------------------------------------ */

static void
watch_free(bm_watch_t *w)
{
    free(w->full);
    free(w->id);
    pv_stanza_unref(w->req);
    free(w);
}

static void
watch_add(bm_host_t *bh, pv_event_t *ev, int kind)
{
    bm_watch_t *w, **pp;

    if (ev->stanza->id == NULL)
        return;
    if (bh->n_watches >= BM_WATCH_MAX) {
        for (pp = &bh->watches; (*pp)->next != NULL; pp = &(*pp)->next)
            ;
        watch_free(*pp);
        *pp = NULL;
        bh->n_watches--;
    }
    w = pv_xcalloc(1, sizeof(*w));
    w->kind = kind;
    w->full = pv_xstrdup(pv_session_jid(ev->origin)->full);
    w->id = pv_xstrdup(ev->stanza->id);
    w->req = pv_stanza_ref(ev->stanza);
    w->ms = pv_now_ms(ev->server);
    w->next = bh->watches;
    bh->watches = w;
    bh->n_watches++;
}

static int
own_request(const pv_event_t *ev)
{
    return ev->origin != NULL && ev->to != NULL && ev->to->node != NULL &&
           ev->to->resource == NULL &&
           strcmp(ev->to->bare, pv_session_jid(ev->origin)->bare) == 0;
}

/* The node a pubsub request acts on, and whether it changes items. */
static const char *
pubsub_target(const pv_node_t *ps)
{
    const pv_node_t *act = pv_node_first_element(ps);

    if (act == NULL)
        return NULL;
    if (strcmp(ps->xmlns, NS_PUBSUB) == 0 &&
        (strcmp(act->name, "publish") == 0 ||
         strcmp(act->name, "retract") == 0))
        return pv_node_attr(act, "node");
    if (strcmp(ps->xmlns, NS_OWNER) == 0 &&
        (strcmp(act->name, "delete") == 0 || strcmp(act->name, "purge") == 0))
        return pv_node_attr(act, "node");
    return NULL;
}

static pv_rc_t
bm_pubsub_pre(pv_event_t *ev)
{
    bm_host_t *bh = pv_module_host_data(ev->module, ev->host);
    const char *node;

    if (bh == NULL || !own_request(ev))
        return PV_PASS;
    node = pubsub_target(ev->payload);
    if (node == NULL)
        return PV_PASS;
    if (strcmp(node, NS_B2) == 0)
        watch_add(bh, ev, W_B2);
    else if (strcmp(node, NS_LEGACY) == 0 &&
             strcmp(ev->payload->xmlns, NS_PUBSUB) == 0 &&
             strcmp(pv_node_first_element(ev->payload)->name, "publish") == 0)
        watch_add(bh, ev, W_LEGACY);
    return PV_PASS;
}

static pv_rc_t
bm_private_pre(pv_event_t *ev)
{
    bm_host_t *bh = pv_module_host_data(ev->module, ev->host);

    if (bh != NULL && own_request(ev) &&
        pv_node_child(ev->payload, "storage", NS_LEGACY) != NULL)
        watch_add(bh, ev, W_PRIVATE);
    return PV_PASS;
}

/* The request succeeded: copy what it stored. */
static void
watch_act(bm_host_t *bh, const bm_watch_t *w)
{
    const pv_node_t *p = pv_node_first_element(w->req->root);
    const char *user = w->req->from->node;
    const pv_node_t *s = NULL;

    if (p == NULL || user == NULL)
        return;
    switch (w->kind) {
    case W_PRIVATE:
        s = pv_node_child(p, "storage", NS_LEGACY);
        break;
    case W_LEGACY: {
        const pv_node_t *pub = pv_node_child(p, "publish", NS_PUBSUB);
        const pv_node_t *it = pub ? pv_node_child(pub, "item", NS_PUBSUB)
                                  : NULL;
        s = it ? pv_node_child(it, "storage", NS_LEGACY) : NULL;
        break;
    }
    default:
        b2_changed(bh, user);
        return;
    }
    if (s != NULL)
        legacy_changed(bh, user, s, w->kind);
}

static pv_rc_t
bm_client_answer(pv_event_t *ev)
{
    bm_host_t *bh = pv_module_host_data(ev->module, ev->host);
    const char *id = ev->stanza->id;
    bm_watch_t **pp, *w;

    if (bh == NULL || id == NULL || bh->watches == NULL)
        return PV_PASS;
    for (pp = &bh->watches; (w = *pp) != NULL; pp = &w->next) {
        if (strcmp(w->id, id) != 0 || strcmp(w->full, ev->to->full) != 0)
            continue;
        /* only the account answers the user's own request */
        if (ev->from != NULL && strcmp(ev->from->bare, ev->to->bare) != 0)
            return PV_PASS;
        *pp = w->next;
        bh->n_watches--;
        if (ev->kind == PV_IQ_RESULT)
            watch_act(bh, w);
        watch_free(w);
        break;
    }
    return PV_PASS;
}

/* --- disco, lifecycle ---------------------------------------------------- */

static pv_rc_t
bm_account_info(pv_event_t *ev)
{
    static const char *const features[] = {
        NS_B2 "#compat",          /* XEP-0402: private XML in step */
        NS_B2 "#compat-pep",      /* and the legacy PEP node too */
        "urn:xmpp:bookmarks-conversion:0",  /* XEP-0411 §2 */
        NULL
    };
    pv_node_t *q = ev->data;
    pv_arena_t *a = ev->stanza->arena;
    const char *const *f;

    for (f = features; *f != NULL; f++)
        pv_node_set_attr(a, pv_node_new(a, "feature", NULL, q), "var", *f);
    return PV_PASS;
}

static void
bm_sweep(void *arg)
{
    bm_host_t *bh = arg;
    uint64_t now = pv_now_ms(pv_host_server(bh->h));
    bm_watch_t **wp, *w;
    bm_req_t **rp, *r;

    for (wp = &bh->watches; (w = *wp) != NULL;) {
        if (now - w->ms > BM_TIMEOUT_MS) {
            *wp = w->next;
            bh->n_watches--;
            watch_free(w);
        } else {
            wp = &w->next;
        }
    }
    for (rp = &bh->reqs; (r = *rp) != NULL;) {
        if (now - r->ms > BM_TIMEOUT_MS) {
            *rp = r->next;
            pv_log(PV_LOG_WARN, pv_host_name(bh->h), "mod_bookmarks: no "
                   "answer to %s for %s", r->id, r->user);
            r->done(bh, r->user, NULL, r->ctx);
            req_free(r);
        } else {
            rp = &r->next;
        }
    }
}

static int
bm_host_init(pv_module_t *m, pv_host_t *h)
{
    bm_host_t *bh = pv_xcalloc(1, sizeof(*bh));

    bh->m = m;
    bh->h = h;
    pv_module_set_host_data(m, h, bh);
    /* the core cancels module timers with the host */
    pv_module_timer(m, h, BM_SWEEP_MS, BM_SWEEP_MS, bm_sweep, bh);
    return PV_OK;
}

static void
bm_host_fini(pv_module_t *m, pv_host_t *h)
{
    bm_host_t *bh = pv_module_host_data(m, h);
    bm_watch_t *w;
    bm_req_t *r;

    if (bh == NULL)
        return;
    pv_module_set_host_data(m, h, NULL);
    while ((w = bh->watches) != NULL) {
        bh->watches = w->next;
        watch_free(w);
    }
    while ((r = bh->reqs) != NULL) {
        bh->reqs = r->next;
        r->done(bh, r->user, NULL, r->ctx);
        req_free(r);
    }
    free(bh);
}

static const pv_hook_t bm_hooks[] = {
    /* observers of the user's own requests; they always pass */
    { PV_IQ_SET, PV_TO_ANY, NS_PUBSUB, "pubsub", bm_pubsub_pre, -50,
      PV_HOOK_PRE },
    { PV_IQ_SET, PV_TO_ANY, NS_OWNER, "pubsub", bm_pubsub_pre, -50,
      PV_HOOK_PRE },
    { PV_IQ_SET, PV_TO_ANY, NS_PRIVATE, "query", bm_private_pre, -50,
      PV_HOOK_PRE },
    { PV_IQ_RESULT, PV_TO_FULL, NULL, NULL, bm_client_answer, -50, 0 },
    { PV_IQ_ERROR, PV_TO_FULL, NULL, NULL, bm_client_answer, -50, 0 },
    /* answers to our own requests */
    { PV_IQ_RESULT, PV_TO_BARE, NULL, NULL, bm_answer, -100, 0 },
    { PV_IQ_ERROR, PV_TO_BARE, NULL, NULL, bm_answer, -100, 0 },
    { PV_EV_ACCOUNT_DISCO_INFO, PV_TO_ANY, NULL, NULL, bm_account_info, 0,
      0 },
    { PV_EV_SESSION_BOUND, PV_TO_ANY, NULL, NULL, bm_session_bound, 0, 0 },
    PV_HOOKS_END
};

PV_MODULE(bookmarks) = {
    .abi = PV_MODULE_ABI,
    .name = "bookmarks",
    .depends = (const char *const[]){ "pep", "private", NULL },
    .hooks = bm_hooks,
    .host_init = bm_host_init,
    .host_fini = bm_host_fini,
};
