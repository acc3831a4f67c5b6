/* modules/mod_blocking.c: XEP-0191 simple communications blocking. The
 * blocklist (map store "blocking.list": host, user, blocked JID -> "")
 * with get/block/unblock and pushes, and its effect on traffic: stanzas
 * from a blocked address to the user are refused or dropped (§3.3), the
 * user's own stanzas to it get <not-acceptable/><blocked/>, and presence
 * never flows either way. Subscriptions and rosters are not touched
 * ("polite blocking", §5). */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <palaver/module.h>
#include <palaver/roster.h>

#define NS_BLOCKING "urn:xmpp:blocking"
#define NS_BLOCKING_ERRORS "urn:xmpp:blocking:errors"

typedef struct {
    long long max_items;      /* PV_COUNT_OFF: no limit */
} blk_conf_t;

typedef struct {
    int has_requested;        /* sent a blocklist get: wants pushes */
} blk_session_t;

/* A JID list (prepared strings), kept sorted for lookups and output. */
typedef struct {
    char **v;
    size_t n;
} blk_list_t;

/* The list of a user whose changes are not all committed yet: lookups
 * use it instead of the store, so a block is in force from the moment
 * it is accepted and not only after its commit. */
typedef struct blk_pending_s {
    char *user;
    blk_list_t list;
    unsigned n_ops;           /* IQs whose writes are in flight */
    struct blk_pending_s *next;
} blk_pending_t;

/* Per host; refcounted because store callbacks may outlive host_fini. */
typedef struct {
    unsigned refs;
    int is_dead;
    pv_module_t *m;
    pv_host_t *h;
    pv_store_t *store;
    unsigned long seq;
    blk_pending_t *pending;
} blk_host_t;

/* --- lists --------------------------------------------------------- */

static int
cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void
list_clear(blk_list_t *l)
{
    size_t i;

    for (i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

static int
list_has(const blk_list_t *l, const char *jid)
{
    return l->n > 0 &&
           bsearch(&jid, l->v, l->n, sizeof(*l->v), cmp_str) != NULL;
}

/* Adds jid unless present; keeps the list sorted. */
static void
list_add(blk_list_t *l, const char *jid)
{
    if (list_has(l, jid))
        return;
    l->v = pv_xrealloc(l->v, (l->n + 1) * sizeof(*l->v));
    l->v[l->n++] = pv_xstrdup(jid);
    qsort(l->v, l->n, sizeof(*l->v), cmp_str);
}

static void
list_remove(blk_list_t *l, const char *jid)
{
    size_t i;

    for (i = 0; i < l->n; i++) {
        if (strcmp(l->v[i], jid) == 0) {
            free(l->v[i]);
            memmove(&l->v[i], &l->v[i + 1], (l->n - i - 1) * sizeof(*l->v));
            l->n--;
            return;
        }
    }
}

static void
list_copy(blk_list_t *dst, const blk_list_t *src)
{
    size_t i;

    dst->n = src->n;
    dst->v = src->n ? pv_xcalloc(src->n, sizeof(*dst->v)) : NULL;
    for (i = 0; i < src->n; i++)
        dst->v[i] = pv_xstrdup(src->v[i]);
}

/* --- host state ---------------------------------------------------- */

static blk_host_t *
bh_ref(blk_host_t *bh)
{
    bh->refs++;
    return bh;
}

static void
bh_unref(blk_host_t *bh)
{
    blk_pending_t *p, *next;

    if (--bh->refs > 0)
        return;
    for (p = bh->pending; p != NULL; p = next) {
        next = p->next;
        list_clear(&p->list);
        free(p->user);
        free(p);
    }
    free(bh);
}

static blk_pending_t *
pending_find(blk_host_t *bh, const char *user)
{
    blk_pending_t *p;

    for (p = bh->pending; p != NULL; p = p->next)
        if (strcmp(p->user, user) == 0)
            return p;
    return NULL;
}

static void
pending_drop(blk_host_t *bh, blk_pending_t *p)
{
    blk_pending_t **pp;

    for (pp = &bh->pending; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == p) {
            *pp = p->next;
            break;
        }
    }
    list_clear(&p->list);
    free(p->user);
    free(p);
}

static int
load_item(const char *key, size_t key_len, const void *val, size_t val_len,
          void *arg)
{
    blk_list_t *l = arg;

    (void)key_len;
    (void)val;
    (void)val_len;
    /* map order is the key encoding's order, not strcmp's: append, then
     * sort once at the end */
    l->v = pv_xrealloc(l->v, (l->n + 1) * sizeof(*l->v));
    l->v[l->n++] = pv_xstrdup(key);
    return 0;
}

/* The current list of user (uncommitted changes included) into *out,
 * which the caller clears. PV_ERROR when the store cannot be read. */
static int
list_load(blk_host_t *bh, const char *user, blk_list_t *out)
{
    blk_pending_t *p = pending_find(bh, user);

    memset(out, 0, sizeof(*out));
    if (p != NULL) {
        list_copy(out, &p->list);
        return PV_OK;
    }
    if (pv_store_map_each(bh->store, pv_host_name(bh->h), user, load_item,
                          out) != PV_OK) {
        list_clear(out);
        return PV_ERROR;
    }
    if (out->n > 1)
        qsort(out->v, out->n, sizeof(*out->v), cmp_str);
    return PV_OK;
}

/* --- matching ------------------------------------------------------ */

/* Is jid (one candidate form) on the list of host/user? Uses the
 * uncommitted list when the user belongs to this module instance. */
static int
list_contains(blk_host_t *bh, const char *host, const char *user,
              const char *jid)
{
    void *val = NULL;
    size_t len;

    if (strcmp(host, pv_host_name(bh->h)) == 0) {
        blk_pending_t *p = pending_find(bh, user);
        if (p != NULL)
            return list_has(&p->list, jid);
    }
    if (pv_store_get(bh->store, host, user, jid, &val, &len) != PV_OK)
        return 0;
    free(val);
    return 1;
}

/* XEP-0191 §3.4 (the XEP-0016 order): the full JID, the bare JID,
 * domain/resource, then the domain and every parent domain (a blocked
 * domain covers its subdomains). */
static int
is_blocked(blk_host_t *bh, const char *host, const char *user,
           const pv_jid_t *j)
{
    const char *d;
    char *dr;
    int hit;

    if (bh->store == NULL || user == NULL)
        return 0;
    if (j->resource != NULL && list_contains(bh, host, user, j->full))
        return 1;
    if (j->node != NULL && list_contains(bh, host, user, j->bare))
        return 1;
    if (j->resource != NULL) {
        dr = pv_xasprintf("%s/%s", j->domain, j->resource);
        hit = list_contains(bh, host, user, dr);
        free(dr);
        if (hit)
            return 1;
    }
    for (d = j->domain; d != NULL; d = strchr(d, '.')) {
        if (*d == '.')
            d++;
        if (*d != '\0' && list_contains(bh, host, user, d))
            return 1;
    }
    return 0;
}

/* --- sending ------------------------------------------------------- */

typedef struct {
    const char *full;
    pv_session_t *found;
} find_t;

static void
find_session(void *arg, pv_session_t *s)
{
    find_t *f = arg;

    if (strcmp(pv_session_jid(s)->full, f->full) == 0)
        f->found = s;
}

typedef struct {
    blk_host_t *bh;
    const char *user;
    const char *name;         /* "block" or "unblock" */
    const blk_list_t *items;
} push_t;

static void
push_one(void *arg, pv_session_t *s)
{
    push_t *p = arg;
    blk_session_t *bs = pv_session_data(s, p->bh->m);
    pv_stanza_t *st;
    pv_node_t *el, *it;
    char id[48];
    size_t i;

    if (bs == NULL || !bs->has_requested)
        return;
    st = pv_stanza_build("iq");
    snprintf(id, sizeof(id), "blkpush%lu", ++p->bh->seq);
    pv_node_set_attr(st->arena, st->root, "type", "set");
    pv_node_set_attr(st->arena, st->root, "id", id);
    pv_node_set_attr(st->arena, st->root, "to", pv_session_jid(s)->full);
    el = pv_node_new(st->arena, p->name, NS_BLOCKING, st->root);
    for (i = 0; i < p->items->n; i++) {
        it = pv_node_new(st->arena, "item", NULL, el);
        pv_node_set_attr(st->arena, it, "jid", p->items->v[i]);
    }
    pv_stanza_touch(st);
    pv_session_send(s, st);
    pv_stanza_unref(st);
}

/* Whether contact (a bare JID) may receive the user's presence (RFC 6121
 * subscription 'from' or 'both'), asked of the roster module through its
 * event; no roster module means no subscriptions. */
static int
contact_gets_presence(pv_host_t *h, const char *user, const char *contact)
{
    return (pv_roster_state(h, user, contact) & PV_SUB_FROM) != 0;
}

typedef struct {
    pv_host_t *h;
    const char *to;
} presence_t;

/* XEP-0191 §3.3: the blocked contact sees the user go offline. */
static void
send_unavailable(void *arg, pv_session_t *s)
{
    presence_t *p = arg;
    pv_stanza_t *st;

    if (!pv_session_is_available(s))
        return;
    st = pv_stanza_build("presence");
    pv_node_set_attr(st->arena, st->root, "type", "unavailable");
    pv_node_set_attr(st->arena, st->root, "from", pv_session_jid(s)->full);
    pv_node_set_attr(st->arena, st->root, "to", p->to);
    pv_stanza_touch(st);
    pv_host_route(p->h, st);
    pv_stanza_unref(st);
}

/* --- IQ handling --------------------------------------------------- */

/* One block/unblock request whose writes are in flight. */
typedef struct {
    blk_host_t *bh;
    char *user;
    pv_stanza_t *req;
    const char *name;         /* "block" / "unblock" */
    blk_list_t items;         /* for the push (empty: unblock all) */
    unsigned n_left;          /* writes not yet completed */
    int is_failed;
} blk_op_t;

static void
op_finish(blk_op_t *op)
{
    blk_host_t *bh = op->bh;
    blk_pending_t *p;
    pv_stanza_t *st;
    find_t f;

    if (!bh->is_dead) {
        p = pending_find(bh, op->user);
        if (p != NULL && --p->n_ops == 0)
            pending_drop(bh, p);    /* the store is the truth again */
        if (op->is_failed) {
            st = pv_stanza_error(op->req, PV_ERR_WAIT,
                                 "internal-server-error", NULL);
        } else {
            st = pv_iq_result(op->req);
        }
        /* the requesting resource may have gone meanwhile: look it up
         * again rather than keep a pointer */
        f.full = op->req->from->full;
        f.found = NULL;
        pv_host_each_session(bh->h, op->user, find_session, &f);
        if (f.found != NULL && st != NULL)
            pv_session_send(f.found, st);
        pv_stanza_unref(st);
        /* XEP-0191 §3.3, §3.4: pushes to every resource that asked for
         * the list, once the change is durable */
        if (!op->is_failed) {
            push_t push = { bh, op->user, op->name, &op->items };
            pv_host_each_session(bh->h, op->user, push_one, &push);
        }
    }
    bh_unref(bh);
    pv_stanza_unref(op->req);
    list_clear(&op->items);
    free(op->user);
    free(op);
}

static void
op_write_done(void *arg, int rc)
{
    blk_op_t *op = arg;

    if (rc == PV_ERROR) {
        pv_log(PV_LOG_ERROR, "mod_blocking", "writing the blocklist of %s "
               "failed", op->user);
        op->is_failed = 1;
    }
    if (--op->n_left == 0)
        op_finish(op);
}

/* Parses the <item jid=''/> children into prepared JIDs; an error reply
 * has been sent when it returns PV_ERROR. */
static int
parse_items(pv_event_t *ev, blk_list_t *items)
{
    pv_node_t *it = NULL;
    size_t fixed = strlen(pv_host_name(ev->host)) + strlen(ev->to->node) + 6;

    memset(items, 0, sizeof(*items));
    while ((it = pv_node_next_child(ev->payload, it, "item",
                                    NS_BLOCKING)) != NULL) {
        const char *s = pv_node_attr(it, "jid");
        pv_jid_t j;

        if (s == NULL || pv_jid_parse(s, strlen(s), &j, NULL) != PV_OK) {
            pv_event_error(ev, PV_ERR_MODIFY,
                          "jid-malformed", NULL);
            list_clear(items);
            return PV_ERROR;
        }
        /* the JID is a store key: host, user and it must fit one */
        if (fixed + strlen(j.full) > PV_KEY_MAX) {
            pv_jid_clear(&j);
            pv_event_error(ev, PV_ERR_MODIFY,
                          "not-acceptable", "address too long");
            list_clear(items);
            return PV_ERROR;
        }
        list_add(items, j.full);
        pv_jid_clear(&j);
    }
    return PV_OK;
}

/* Only the account itself manages its list (XEP-0191: IQs without 'to',
 * i.e. to the user's bare JID, from one of its own resources). */
static int
is_own_request(const pv_event_t *ev)
{
    return ev->origin != NULL && ev->from != NULL && ev->to->node != NULL &&
           pv_jid_bare_equal(ev->from, ev->to);
}

static pv_rc_t
blk_get(pv_event_t *ev)
{
    blk_host_t *bh = pv_module_host_data(ev->module, ev->host);
    blk_session_t *bs;
    pv_stanza_t *st;
    pv_node_t *list, *it;
    blk_list_t l;
    size_t i;

    if (!is_own_request(ev) || bh == NULL)
        return PV_PASS;
    if (strcmp(ev->payload->name, "blocklist") != 0) {
        pv_event_error(ev, PV_ERR_MODIFY, "bad-request",
                      NULL);
        return PV_HANDLED;
    }
    if (bh->store == NULL || list_load(bh, ev->to->node, &l) != PV_OK) {
        pv_event_error(ev, PV_ERR_WAIT,
                      "internal-server-error", NULL);
        return PV_HANDLED;
    }
    st = pv_iq_result(ev->stanza);
    list = pv_node_new(st->arena, "blocklist", NS_BLOCKING, st->root);
    for (i = 0; i < l.n; i++) {
        it = pv_node_new(st->arena, "item", NULL, list);
        pv_node_set_attr(st->arena, it, "jid", l.v[i]);
    }
    list_clear(&l);
    bs = pv_session_data(ev->origin, ev->module);
    if (bs != NULL)
        bs->has_requested = 1;
    pv_event_reply(ev, st);
    return PV_HANDLED;
}

static blk_op_t *
op_new(blk_host_t *bh, pv_event_t *ev, const char *name)
{
    blk_op_t *op = pv_xcalloc(1, sizeof(*op));

    op->bh = bh_ref(bh);
    op->user = pv_xstrdup(ev->to->node);
    op->req = pv_stanza_ref(ev->stanza);
    op->name = name;
    op->n_left = 1;           /* held until every write is submitted */
    return op;
}

/* Installs the new list for lookups until the op's writes commit. */
static void
pending_set(blk_host_t *bh, const char *user, blk_list_t *list)
{
    blk_pending_t *p = pending_find(bh, user);

    if (p == NULL) {
        p = pv_xcalloc(1, sizeof(*p));
        p->user = pv_xstrdup(user);
        p->next = bh->pending;
        bh->pending = p;
    } else {
        list_clear(&p->list);
    }
    p->list = *list;
    memset(list, 0, sizeof(*list));
    p->n_ops++;
}

static void
op_submitted(blk_op_t *op, pv_rc_t rc)
{
    if (rc == PV_OK)
        op->n_left++;
    else
        op->is_failed = 1;
}

static pv_rc_t
blk_block(pv_event_t *ev)
{
    blk_host_t *bh = pv_module_host_data(ev->module, ev->host);
    const blk_conf_t *conf = pv_module_conf(ev->module, ev->host);
    const char *host = pv_host_name(ev->host);
    const char *user = ev->to->node;
    blk_list_t items, cur, added;
    blk_op_t *op;
    size_t i;

    if (!is_own_request(ev) || bh == NULL)
        return PV_PASS;
    if (parse_items(ev, &items) != PV_OK)
        return PV_HANDLED;
    if (items.n == 0) {
        /* XEP-0191 §3.3: a block without an item is a bad request */
        pv_event_error(ev, PV_ERR_MODIFY, "bad-request",
                      NULL);
        return PV_HANDLED;
    }
    if (bh->store == NULL || list_load(bh, user, &cur) != PV_OK) {
        list_clear(&items);
        pv_event_error(ev, PV_ERR_WAIT,
                      "internal-server-error", NULL);
        return PV_HANDLED;
    }
    memset(&added, 0, sizeof(added));
    for (i = 0; i < items.n; i++) {
        if (!list_has(&cur, items.v[i])) {
            list_add(&added, items.v[i]);
            list_add(&cur, items.v[i]);
        }
    }
    if (conf->max_items != PV_COUNT_OFF &&
        cur.n > (size_t)conf->max_items && added.n > 0) {
        char text[64];

        snprintf(text, sizeof(text), "blocklist is full (%lld items)",
                 conf->max_items);
        pv_event_error(ev, PV_ERR_CANCEL,
                      "policy-violation", text);
        list_clear(&items);
        list_clear(&cur);
        list_clear(&added);
        return PV_HANDLED;
    }
    op = op_new(bh, ev, "block");
    /* every item is written, even one already there: the reply then
     * waits for the commit of any earlier request that added it */
    for (i = 0; i < items.n; i++)
        op_submitted(op, pv_store_put(bh->store, host, user, items.v[i], "",
                                      0, op_write_done, op));
    op->items = items;
    pending_set(bh, user, &cur);
    /* in force now: a newly blocked contact that receives the user's
     * presence sees the user go offline, from every available resource
     * (XEP-0191 §3.3) */
    for (i = 0; i < added.n; i++) {
        pv_jid_t j;

        if (pv_jid_parse(added.v[i], strlen(added.v[i]), &j, NULL) != PV_OK)
            continue;
        if (j.node != NULL && contact_gets_presence(ev->host, user, j.bare)) {
            presence_t p = { ev->host, j.full };
            pv_host_each_session(ev->host, user, send_unavailable, &p);
        }
        pv_jid_clear(&j);
    }
    list_clear(&added);
    op_write_done(op, PV_OK); /* drops the submission hold */
    return PV_HANDLED;
}

/* XEP-0191 §3.4: an unblocked contact gets the user's current presence
 * if its subscription allows. The presence itself (show, status) is the
 * presence module's, so this module asks for it the standard way: a
 * probe from the contact (RFC 6121 §4.3.2), which the presence module
 * answers with the user's current presence. */
static void
send_probe(pv_host_t *h, const char *user, const char *contact)
{
    pv_stanza_t *st;
    pv_jid_t j;
    char *to;

    if (pv_jid_parse(contact, strlen(contact), &j, NULL) != PV_OK)
        return;
    if (j.node == NULL || !contact_gets_presence(h, user, j.bare)) {
        pv_jid_clear(&j);
        return;
    }
    to = pv_xasprintf("%s@%s", user, pv_host_name(h));
    st = pv_stanza_build("presence");
    pv_node_set_attr(st->arena, st->root, "type", "probe");
    pv_node_set_attr(st->arena, st->root, "from", j.bare);
    pv_node_set_attr(st->arena, st->root, "to", to);
    pv_stanza_touch(st);
    pv_host_route(h, st);
    pv_stanza_unref(st);
    free(to);
    pv_jid_clear(&j);
}

static pv_rc_t
blk_unblock(pv_event_t *ev)
{
    blk_host_t *bh = pv_module_host_data(ev->module, ev->host);
    const char *host = pv_host_name(ev->host);
    const char *user = ev->to->node;
    blk_list_t items, cur, removed;
    blk_op_t *op;
    size_t i;

    if (!is_own_request(ev) || bh == NULL)
        return PV_PASS;
    if (parse_items(ev, &items) != PV_OK)
        return PV_HANDLED;
    if (bh->store == NULL || list_load(bh, user, &cur) != PV_OK) {
        list_clear(&items);
        pv_event_error(ev, PV_ERR_WAIT,
                      "internal-server-error", NULL);
        return PV_HANDLED;
    }
    memset(&removed, 0, sizeof(removed));
    op = op_new(bh, ev, "unblock");
    if (items.n == 0) {
        /* XEP-0191 §3.5: an empty unblock clears the list */
        removed = cur;
        memset(&cur, 0, sizeof(cur));
        op_submitted(op, pv_store_delete_user(bh->store, host, user,
                                              op_write_done, op));
    } else {
        for (i = 0; i < items.n; i++) {
            if (list_has(&cur, items.v[i])) {
                list_add(&removed, items.v[i]);
                list_remove(&cur, items.v[i]);
            }
            op_submitted(op, pv_store_delete(bh->store, host, user,
                                             items.v[i], op_write_done, op));
        }
    }
    op->items = items;
    pending_set(bh, user, &cur);
    for (i = 0; i < removed.n; i++)
        send_probe(ev->host, user, removed.v[i]);
    list_clear(&removed);
    op_write_done(op, PV_OK);
    return PV_HANDLED;
}

/* --- enforcement --------------------------------------------------- */

/* Stanzas arriving for a local user (at the destination host, before
 * every other module): from an address the user blocked they are
 * refused per XEP-0191 §3.3; presence the server sends on behalf of a
 * local user to someone that user blocked (broadcasts, probe answers) is
 * dropped here too, since it never passes the sender's PRE hook. */
static pv_rc_t
blk_inbound(pv_event_t *ev)
{
    blk_host_t *bh = pv_module_host_data(ev->module, ev->host);
    pv_stanza_t *st = ev->stanza;
    const pv_jid_t *from = ev->from, *to = ev->to;
    const char *type = st->type ? st->type : "";

    /* never between the user's own resources, nor from the user's own
     * server (whatever the list says about its domain) */
    if (bh == NULL || bh->store == NULL || to->node == NULL ||
        from == NULL || pv_jid_bare_equal(from, to) ||
        (from->node == NULL && strcmp(from->domain, to->domain) == 0))
        return PV_PASS;
    if (is_blocked(bh, to->domain, to->node, from)) {
        switch (st->kind) {
        case PV_STANZA_PRESENCE:
            /* including subscriptions and probes: no answer at all */
            return PV_HANDLED;
        case PV_STANZA_MESSAGE:
            if (strcmp(type, "error") != 0 && strcmp(type, "groupchat") != 0)
                pv_send_error(ev->origin, st, PV_ERR_CANCEL,
                              "service-unavailable", NULL);
            return PV_HANDLED;
        case PV_STANZA_IQ:
            if (strcmp(type, "get") == 0 || strcmp(type, "set") == 0)
                pv_send_error(ev->origin, st, PV_ERR_CANCEL,
                              "service-unavailable", NULL);
            return PV_HANDLED;
        default:
            return PV_HANDLED;
        }
    }
    /* the other direction; unavailable presence is let through: it is
     * what §3.3 wants a newly blocked contact to see */
    if (st->kind == PV_STANZA_PRESENCE && strcmp(type, "unavailable") != 0 &&
        strcmp(type, "error") != 0 && from->node != NULL &&
        pv_host_is_local(ev->server, from->domain) &&
        is_blocked(bh, from->domain, from->node, to))
        return PV_HANDLED;
    return PV_PASS;
}

/* What a local user sends to an address on their own blocklist (PRE:
 * before routing): XEP-0191 §3.3 not-acceptable with <blocked/>. */
static pv_rc_t
blk_outbound(pv_event_t *ev)
{
    blk_host_t *bh = pv_module_host_data(ev->module, ev->host);
    pv_stanza_t *st = ev->stanza, *err;
    const pv_jid_t *me, *to = ev->to;
    pv_node_t *e;

    if (bh == NULL || bh->store == NULL || ev->origin == NULL || to == NULL)
        return PV_PASS;
    me = pv_session_jid(ev->origin);
    /* never between the user and their own account or server, whatever
     * the list says: blocking one's own domain must not lock the user
     * out of unblocking it */
    if (pv_jid_bare_equal(me, to) ||
        (to->node == NULL && strcmp(to->domain, me->domain) == 0))
        return PV_PASS;
    if (!is_blocked(bh, me->domain, me->node, to))
        return PV_PASS;
    err = pv_stanza_error(st, PV_ERR_CANCEL, "not-acceptable", NULL);
    if (err != NULL) {
        e = err->root->last_child;    /* the <error/> just appended */
        pv_node_new(err->arena, "blocked", NS_BLOCKING_ERRORS, e);
        pv_stanza_touch(err);
        pv_event_reply(ev, err);
    }
    return PV_HANDLED;
}

static pv_rc_t
blk_user_deleted(pv_event_t *ev)
{
    blk_host_t *bh = pv_module_host_data(ev->module, ev->host);
    blk_pending_t *p;

    /* the rows are gone; forget uncommitted state with them */
    if (bh != NULL && ev->user != NULL &&
        (p = pending_find(bh, ev->user)) != NULL)
        list_clear(&p->list);
    return PV_PASS;
}

static int
blk_host_init(pv_module_t *m, pv_host_t *h)
{
    blk_host_t *bh = pv_xcalloc(1, sizeof(*bh));

    bh->refs = 1;
    bh->m = m;
    bh->h = h;
    bh->store = pv_store_open(h, m, "list", PV_STORE_MAP);
    if (bh->store == NULL)
        pv_log(PV_LOG_WARN, "mod_blocking", "%s: no storage: blocklists "
               "unavailable", pv_host_name(h));
    pv_module_set_host_data(m, h, bh);
    return PV_OK;
}

static void
blk_host_fini(pv_module_t *m, pv_host_t *h)
{
    blk_host_t *bh = pv_module_host_data(m, h);

    if (bh == NULL)
        return;
    bh->is_dead = 1;
    pv_module_set_host_data(m, h, NULL);
    bh_unref(bh);
}

#define BLK_IN(kind) \
    { kind, PV_TO_BARE, NULL, NULL, blk_inbound, -100, 0 }, \
    { kind, PV_TO_FULL, NULL, NULL, blk_inbound, -100, 0 }
#define BLK_OUT(kind) \
    { kind, PV_TO_ANY, NULL, NULL, blk_outbound, -100, PV_HOOK_PRE }

static const pv_hook_t blk_hooks[] = {
    { PV_IQ_GET, PV_TO_BARE, NS_BLOCKING, NULL, blk_get, 0, 0 },
    { PV_IQ_SET, PV_TO_BARE, NS_BLOCKING, "block", blk_block, 0, 0 },
    { PV_IQ_SET, PV_TO_BARE, NS_BLOCKING, "unblock", blk_unblock, 0, 0 },
    BLK_IN(PV_MESSAGE),
    BLK_IN(PV_PRESENCE),
    BLK_IN(PV_IQ_GET),
    BLK_IN(PV_IQ_SET),
    BLK_IN(PV_IQ_RESULT),
    BLK_IN(PV_IQ_ERROR),
    BLK_OUT(PV_MESSAGE),
    BLK_OUT(PV_PRESENCE),
    BLK_OUT(PV_IQ_GET),
    BLK_OUT(PV_IQ_SET),
    BLK_OUT(PV_IQ_RESULT),
    BLK_OUT(PV_IQ_ERROR),
    { PV_EV_USER_DELETED, PV_TO_ANY, NULL, NULL, blk_user_deleted, 0, 0 },
    PV_HOOKS_END
};

static const pv_directive_t blk_directives[] = {
    { "blocking_max_items", PV_CTX_ANY, pv_conf_count_or_off,
      offsetof(blk_conf_t, max_items), "1000", 0, 0, NULL },
    PV_DIRECTIVES_END
};

PV_MODULE(blocking) = {
    .abi = PV_MODULE_ABI,
    .name = "blocking",
    .features = (const char *const[]){ NS_BLOCKING, NULL },
    .hooks = blk_hooks,
    .directives = blk_directives,
    .conf_size = sizeof(blk_conf_t),
    .session_data_size = sizeof(blk_session_t),
    .host_init = blk_host_init,
    .host_fini = blk_host_fini,
};
