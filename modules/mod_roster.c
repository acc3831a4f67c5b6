/* modules/mod_roster.c: rosters (RFC 6121 §2): get, set and remove,
 * pushes to interested resources, versioning (§2.6), limits, and the
 * roster events (roster.h) through which mod_presence reads and sets
 * subscription state; the state machine itself is mod_presence's. The
 * store is the truth: a roster stays in memory only while in use or while
 * its writes are uncommitted (reads see committed data only). */
#include <inttypes.h>
#include <search.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <palaver/module.h>
#include <palaver/roster.h>

#define NS_ROSTERVER "urn:xmpp:features:rosterver"
#define ROSTER_FORMAT 1
/* Removed items kept (as tombstones) so that a client with an older
 * version gets the removals as pushes; past this many, they are purged
 * and older versions get the full roster (RFC 6121 §2.6.3 allows it). */
#define ROSTER_TOMB_MAX 128

typedef struct {
    long long max_items;        /* PV_COUNT_OFF: no limit */
    long long max_groups;       /* per item; PV_COUNT_OFF: no limit */
    long long max_name_len;     /* bytes, for names and group names */
} roster_conf_t;

typedef struct {
    int is_interested;          /* asked for the roster (RFC 6121 §2.1.6) */
} roster_session_t;

typedef struct {
    char *jid;
    char *name;
    char **groups;              /* NULL-terminated, never NULL */
    unsigned state;             /* PV_SUB_* */
    uint64_t ver;               /* roster version of its last change */
    unsigned is_listed : 1;
    unsigned is_removed : 1;    /* tombstone */
} ritem_t;

typedef struct {
    char *user;
    ritem_t **items;
    size_t n, cap;
    size_t n_live;              /* items not removed (listed or not) */
    size_t n_tomb;
    uint64_t epoch, ver, floor; /* versions below floor cannot be diffed */
    unsigned busy;              /* handlers using it now */
    unsigned pending;           /* writes not committed yet (+1 while the
                                 * account is being deleted) */
    int is_deleted;
} roster_t;

typedef struct {
    pv_module_t *m;
    pv_host_t *h;
    pv_store_t *items;          /* MAP user, contact -> item */
    pv_store_t *meta;           /* KEYVAL user -> epoch, version, floor */
    void *tree;                 /* tsearch tree of roster_t by user */
    unsigned refs;              /* the host + every write in flight */
    int is_dead;                /* host_fini ran */
    unsigned long push_seq;
} roster_host_t;

typedef struct {
    roster_host_t *rh;
    char *user;
    char *reply_to;             /* full JID awaiting the IQ result, or NULL */
    char *reply_id;
} roster_write_t;

static const char *const no_groups[] = { NULL };

/* --- items in memory ------------------------------------------------- */

static void
ritem_free(ritem_t *it)
{
    char **g;

    if (it == NULL)
        return;
    for (g = it->groups; g != NULL && *g != NULL; g++)
        free(*g);
    free(it->groups);
    free(it->name);
    free(it->jid);
    free(it);
}

static void
ritem_clear_details(ritem_t *it)
{
    char **g;

    for (g = it->groups; *g != NULL; g++)
        free(*g);
    it->groups[0] = NULL;
    free(it->name);
    it->name = NULL;
}

static ritem_t *
ritem_new(const char *jid)
{
    ritem_t *it = pv_xcalloc(1, sizeof(*it));

    it->jid = pv_xstrdup(jid);
    it->groups = pv_xcalloc(1, sizeof(char *));
    return it;
}

static void
roster_free(roster_t *r)
{
    size_t i;

    for (i = 0; i < r->n; i++)
        ritem_free(r->items[i]);
    free(r->items);
    free(r->user);
    free(r);
}

static int
roster_cmp(const void *a, const void *b)
{
    return strcmp(((const roster_t *)a)->user, ((const roster_t *)b)->user);
}

static ritem_t *
roster_find(const roster_t *r, const char *jid)
{
    size_t i;

    for (i = 0; i < r->n; i++)
        if (strcmp(r->items[i]->jid, jid) == 0)
            return r->items[i];
    return NULL;
}

static void
roster_append(roster_t *r, ritem_t *it)
{
    if (r->n == r->cap) {
        r->cap = r->cap ? r->cap * 2 : 16;
        r->items = pv_xrealloc(r->items, r->cap * sizeof(*r->items));
    }
    r->items[r->n++] = it;
}

static void
roster_unlink(roster_t *r, ritem_t *it)
{
    size_t i;

    for (i = 0; i < r->n; i++) {
        if (r->items[i] == it) {
            memmove(&r->items[i], &r->items[i + 1],
                    (r->n - i - 1) * sizeof(*r->items));
            r->n--;
            return;
        }
    }
}

/* --- serialisation ---------------------------------------------------
 * item: u8 format, u8 flags (1 listed, 2 removed), u8 state, u64 ver,
 * str name, u16 n_groups, str groups...; meta: u8 format, u64 epoch,
 * u64 ver, u64 floor. Integers big-endian, str = u16 length + bytes. */

static void
put_u8(pv_buf_t *b, unsigned v)
{
    unsigned char c = (unsigned char)v;

    pv_buf_append(b, &c, 1);
}

static void
put_u16(pv_buf_t *b, size_t v)
{
    unsigned char c[2] = { (unsigned char)(v >> 8), (unsigned char)v };

    pv_buf_append(b, c, 2);
}

static void
put_u64(pv_buf_t *b, uint64_t v)
{
    unsigned char c[8];
    int i;

    for (i = 7; i >= 0; i--, v >>= 8)
        c[i] = (unsigned char)v;
    pv_buf_append(b, c, 8);
}

static void
put_str(pv_buf_t *b, const char *s)
{
    size_t len = s ? strlen(s) : 0;

    if (len > 65535)
        len = 65535;    /* never happens: lengths are checked on input */
    put_u16(b, len);
    pv_buf_append(b, s ? s : "", len);
}

typedef struct {
    const unsigned char *p;
    size_t left;
    int is_bad;
} rd_t;

static uint64_t
get_n(rd_t *rd, size_t n)
{
    uint64_t v = 0;
    size_t i;

    if (rd->left < n) {
        rd->is_bad = 1;
        return 0;
    }
    for (i = 0; i < n; i++)
        v = (v << 8) | rd->p[i];
    rd->p += n;
    rd->left -= n;
    return v;
}

/* NULL for an empty string (no name) or a truncated record. */
static char *
get_str(rd_t *rd)
{
    size_t len = (size_t)get_n(rd, 2);
    char *s;

    if (rd->is_bad || rd->left < len) {
        rd->is_bad = 1;
        return NULL;
    }
    s = len ? pv_xstrndup((const char *)rd->p, len) : NULL;
    rd->p += len;
    rd->left -= len;
    return s;
}

static void
ritem_encode(const ritem_t *it, pv_buf_t *b)
{
    size_t n = 0;
    char **g;

    put_u8(b, ROSTER_FORMAT);
    put_u8(b, (it->is_listed ? 1u : 0u) | (it->is_removed ? 2u : 0u));
    put_u8(b, it->state & PV_SUB_MASK);
    put_u64(b, it->ver);
    put_str(b, it->name);
    for (g = it->groups; *g != NULL; g++)
        n++;
    put_u16(b, n);
    for (g = it->groups; *g != NULL; g++)
        put_str(b, *g);
}

static ritem_t *
ritem_decode(const char *jid, const void *val, size_t len)
{
    rd_t rd = { val, len, 0 };
    ritem_t *it;
    unsigned flags;
    size_t n, i;

    if (get_n(&rd, 1) != ROSTER_FORMAT)
        return NULL;
    it = ritem_new(jid);
    flags = (unsigned)get_n(&rd, 1);
    it->is_listed = (flags & 1u) != 0;
    it->is_removed = (flags & 2u) != 0;
    it->state = (unsigned)get_n(&rd, 1) & PV_SUB_MASK;
    it->ver = get_n(&rd, 8);
    it->name = get_str(&rd);
    n = (size_t)get_n(&rd, 2);
    if (!rd.is_bad) {
        it->groups = pv_xrealloc(it->groups, (n + 1) * sizeof(char *));
        for (i = 0; i < n; i++) {
            it->groups[i] = get_str(&rd);
            if (it->groups[i] == NULL) {
                rd.is_bad = 1;
                break;
            }
        }
        it->groups[i] = NULL;
    }
    if (rd.is_bad || rd.left != 0) {
        ritem_free(it);
        return NULL;
    }
    return it;
}

/* --- loading and releasing ------------------------------------------- */

static int
load_item(const char *key, size_t key_len, const void *val, size_t val_len,
          void *arg)
{
    roster_t *r = arg;
    ritem_t *it;

    (void)key_len;
    it = ritem_decode(key, val, val_len);
    if (it == NULL) {
        pv_log(PV_LOG_ERROR, "mod_roster", "corrupt roster item %s of %s "
               "skipped", key, r->user);
        return 0;
    }
    roster_append(r, it);
    if (it->is_removed)
        r->n_tomb++;
    else
        r->n_live++;
    return 0;
}

static roster_t *
roster_load(roster_host_t *rh, const char *user)
{
    const char *host = pv_host_name(rh->h);
    roster_t *r = pv_xcalloc(1, sizeof(*r));
    void *val;
    size_t len;

    r->user = pv_xstrdup(user);
    if (pv_store_get(rh->meta, host, user, NULL, &val, &len) == PV_OK) {
        rd_t rd = { val, len, 0 };
        if (get_n(&rd, 1) == ROSTER_FORMAT) {
            r->epoch = get_n(&rd, 8);
            r->ver = get_n(&rd, 8);
            r->floor = get_n(&rd, 8);
        }
        if (rd.is_bad) {
            pv_log(PV_LOG_ERROR, "mod_roster", "corrupt roster version of "
                   "%s: clients get the full roster", user);
            r->epoch = r->ver = r->floor = 0;
        }
        free(val);
    }
    if (pv_store_map_each(rh->items, host, user, load_item, r) != PV_OK)
        pv_log(PV_LOG_ERROR, "mod_roster", "cannot read the roster of %s",
               user);
    return r;
}

/* Every use is acquire ... release; nested uses (a handler firing an
 * event that reads the same roster) share the object. */
static roster_t *
roster_acquire(roster_host_t *rh, const char *user)
{
    roster_t key, *r;
    void *found;

    key.user = (char *)user;
    found = tfind(&key, &rh->tree, roster_cmp);
    if (found != NULL) {
        r = *(roster_t **)found;
    } else {
        r = roster_load(rh, user);
        tsearch(r, &rh->tree, roster_cmp);
    }
    r->busy++;
    return r;
}

static void
roster_maybe_drop(roster_host_t *rh, roster_t *r)
{
    if (r->busy == 0 && r->pending == 0) {
        tdelete(r, &rh->tree, roster_cmp);
        roster_free(r);
    }
}

static void
roster_release(roster_host_t *rh, roster_t *r)
{
    r->busy--;
    roster_maybe_drop(rh, r);
}

static void
rh_unref(roster_host_t *rh)
{
    if (--rh->refs > 0)
        return;
    while (rh->tree != NULL) {
        roster_t *r = *(roster_t **)rh->tree;
        tdelete(r, &rh->tree, roster_cmp);
        roster_free(r);
    }
    free(rh);
}

/* --- writes ------------------------------------------------------------ */

static void
send_iq_reply(roster_host_t *rh, const char *user, const char *to,
              const char *id, int ok);

static void
write_done(void *arg, int rc)
{
    roster_write_t *w = arg;
    roster_host_t *rh = w->rh;
    roster_t key, *r;
    void *found;

    if (rc != PV_OK && rc != PV_NOTFOUND)
        pv_log(PV_LOG_ERROR, "mod_roster", "roster write for %s failed",
               w->user);
    if (!rh->is_dead) {
        key.user = w->user;
        found = tfind(&key, &rh->tree, roster_cmp);
        if (found != NULL) {
            r = *(roster_t **)found;
            r->pending--;
            roster_maybe_drop(rh, r);
        }
        if (w->reply_to != NULL)
            send_iq_reply(rh, w->user, w->reply_to, w->reply_id,
                          rc == PV_OK || rc == PV_NOTFOUND);
    }
    free(w->user);
    free(w->reply_to);
    free(w->reply_id);
    free(w);
    rh_unref(rh);
}

static roster_write_t *
write_new(roster_host_t *rh, roster_t *r, const pv_stanza_t *reply_for)
{
    roster_write_t *w = pv_xcalloc(1, sizeof(*w));

    w->rh = rh;
    w->user = pv_xstrdup(r->user);
    if (reply_for != NULL) {
        w->reply_to = pv_xstrdup(pv_node_attr(reply_for->root, "from"));
        w->reply_id = pv_xstrdup(reply_for->id ? reply_for->id : "");
    }
    return w;
}

/* Accounts for a submitted write, or answers at once when nothing could
 * be queued. */
static void
write_submitted(roster_host_t *rh, roster_t *r, roster_write_t *w, int rc)
{
    if (rc == PV_OK) {
        r->pending++;
        rh->refs++;
        return;
    }
    pv_log(PV_LOG_ERROR, "mod_roster", "cannot queue a roster write for %s",
           r->user);
    if (w->reply_to != NULL)
        send_iq_reply(rh, w->user, w->reply_to, w->reply_id, 0);
    free(w->user);
    free(w->reply_to);
    free(w->reply_id);
    free(w);
}

static void
write_item(roster_host_t *rh, roster_t *r, const ritem_t *it)
{
    pv_buf_t b = {0};
    roster_write_t *w;
    int rc;

    if (r->is_deleted)
        return;
    ritem_encode(it, &b);
    w = write_new(rh, r, NULL);
    rc = pv_store_put(rh->items, pv_host_name(rh->h), r->user, it->jid,
                      b.data, b.len, write_done, w);
    write_submitted(rh, r, w, rc);
    pv_buf_free(&b);
}

static void
delete_item(roster_host_t *rh, roster_t *r, const char *jid)
{
    roster_write_t *w;
    int rc;

    if (r->is_deleted)
        return;
    w = write_new(rh, r, NULL);
    rc = pv_store_delete(rh->items, pv_host_name(rh->h), r->user, jid,
                         write_done, w);
    write_submitted(rh, r, w, rc);
}

/* The meta write goes last, so its completion (in submission order) is
 * the durability point of the whole change: the IQ result waits for it. */
static void
write_meta(roster_host_t *rh, roster_t *r, const pv_stanza_t *reply_for)
{
    pv_buf_t b = {0};
    roster_write_t *w;
    int rc;

    if (r->is_deleted)
        return;
    if (r->epoch == 0) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        r->epoch = (uint64_t)ts.tv_sec * 1000000u +
                   (uint64_t)ts.tv_nsec / 1000u;
    }
    put_u8(&b, ROSTER_FORMAT);
    put_u64(&b, r->epoch);
    put_u64(&b, r->ver);
    put_u64(&b, r->floor);
    w = write_new(rh, r, reply_for);
    rc = pv_store_put(rh->meta, pv_host_name(rh->h), r->user, NULL, b.data,
                      b.len, write_done, w);
    write_submitted(rh, r, w, rc);
    pv_buf_free(&b);
}

static void
purge_tombstones(roster_host_t *rh, roster_t *r)
{
    size_t i = 0;

    if (r->n_tomb <= ROSTER_TOMB_MAX)
        return;
    while (i < r->n) {
        ritem_t *it = r->items[i];
        if (!it->is_removed) {
            i++;
            continue;
        }
        delete_item(rh, r, it->jid);
        roster_unlink(r, it);
        ritem_free(it);
    }
    r->n_tomb = 0;
    r->floor = r->ver;
}

/* --- XML ---------------------------------------------------------------- */

static const char *
sub_name(unsigned state)
{
    switch (state & (PV_SUB_TO | PV_SUB_FROM)) {
    case PV_SUB_TO:
        return "to";
    case PV_SUB_FROM:
        return "from";
    case PV_SUB_TO | PV_SUB_FROM:
        return "both";
    default:
        return "none";
    }
}

static void
item_node(pv_arena_t *a, pv_node_t *query, const ritem_t *it)
{
    pv_node_t *n = pv_node_new(a, "item", NULL, query);
    char **g;

    pv_node_set_attr(a, n, "jid", it->jid);
    if (it->is_removed) {
        pv_node_set_attr(a, n, "subscription", "remove");
        return;
    }
    pv_node_set_attr(a, n, "subscription", sub_name(it->state));
    if (it->name != NULL)
        pv_node_set_attr(a, n, "name", it->name);
    /* RFC 6121 §3.1.2: ask='subscribe' for pending out; §3.4.1:
     * approved='true' while a pre-approval is unused */
    if ((it->state & PV_SUB_ASK) && !(it->state & PV_SUB_TO))
        pv_node_set_attr(a, n, "ask", "subscribe");
    if ((it->state & PV_SUB_APPROVED) && !(it->state & PV_SUB_FROM))
        pv_node_set_attr(a, n, "approved", "true");
    for (g = it->groups; *g != NULL; g++) {
        pv_node_t *gn = pv_node_new(a, "group", NULL, n);
        pv_node_add_text(a, gn, *g, strlen(*g));
    }
}

static void
ver_string(const roster_t *r, uint64_t ver, char *out, size_t len)
{
    snprintf(out, len, "%" PRIx64 "-%" PRIu64, r->epoch, ver);
}

/* Parses our own "<epoch hex>-<version>"; anything else is unknown. */
static int
ver_parse(const roster_t *r, const char *s, uint64_t *ver)
{
    char *end;
    unsigned long long e, v;

    if (*s == '\0' || *s == '-' || *s == '+' || *s == ' ')
        return PV_ERROR;
    e = strtoull(s, &end, 16);
    if (*end != '-' || end[1] < '0' || end[1] > '9')
        return PV_ERROR;
    v = strtoull(end + 1, &end, 10);
    if (*end != '\0' || e != r->epoch)
        return PV_ERROR;
    *ver = v;
    return PV_OK;
}

static pv_stanza_t *
push_build(roster_host_t *rh, const roster_t *r, const ritem_t *it,
           const char *to)
{
    pv_stanza_t *st = pv_stanza_build("iq");
    pv_node_t *q;
    char id[32], ver[64];

    snprintf(id, sizeof(id), "rp%lu", ++rh->push_seq);
    pv_node_set_attr(st->arena, st->root, "type", "set");
    pv_node_set_attr(st->arena, st->root, "id", id);
    pv_node_set_attr(st->arena, st->root, "to", to);
    q = pv_node_new(st->arena, "query", PV_NS_ROSTER, st->root);
    ver_string(r, it->ver, ver, sizeof(ver));
    pv_node_set_attr(st->arena, q, "ver", ver);
    item_node(st->arena, q, it);
    pv_stanza_touch(st);
    return st;
}

typedef struct {
    roster_host_t *rh;
    const roster_t *r;
    const ritem_t *it;
} push_ctx_t;

static void
push_one(void *arg, pv_session_t *s)
{
    push_ctx_t *p = arg;
    roster_session_t *rs = pv_session_data(s, p->rh->m);
    pv_stanza_t *st;

    if (rs == NULL || !rs->is_interested)
        return;
    st = push_build(p->rh, p->r, p->it, pv_session_jid(s)->full);
    pv_session_send(s, st);
    pv_stanza_unref(st);
}

/* RFC 6121 §2.1.6: every interested resource of the user. */
static void
roster_push(roster_host_t *rh, const roster_t *r, const ritem_t *it)
{
    push_ctx_t p = { rh, r, it };

    if (!r->is_deleted)
        pv_host_each_session(rh->h, r->user, push_one, &p);
}

typedef struct {
    const char *to;
    pv_session_t *found;
} find_ctx_t;

static void
find_session(void *arg, pv_session_t *s)
{
    find_ctx_t *f = arg;

    if (strcmp(pv_session_jid(s)->full, f->to) == 0)
        f->found = s;
}

static void
send_iq_reply(roster_host_t *rh, const char *user, const char *to,
              const char *id, int ok)
{
    find_ctx_t f = { to, NULL };
    pv_stanza_t *st;

    pv_host_each_session(rh->h, user, find_session, &f);
    if (f.found == NULL)
        return;         /* the requester is gone: nobody to tell */
    st = pv_stanza_build("iq");
    pv_node_set_attr(st->arena, st->root, "type", ok ? "result" : "error");
    pv_node_set_attr(st->arena, st->root, "id", id);
    pv_node_set_attr(st->arena, st->root, "to", to);
    if (!ok) {
        pv_node_t *e = pv_node_new(st->arena, "error", NULL, st->root);
        pv_node_set_attr(st->arena, e, "type", "wait");
        pv_node_new(st->arena, "internal-server-error",
                    "urn:ietf:params:xml:ns:xmpp-stanzas", e);
    }
    pv_stanza_touch(st);
    pv_session_send(f.found, st);
    pv_stanza_unref(st);
}

/* --- changes --------------------------------------------------------- */

static void
fire_changed(roster_host_t *rh, const roster_t *r, const char *contact,
             unsigned old_state, unsigned new_state, int is_removed,
             int by_client)
{
    pv_roster_change_t ch = { contact, old_state, new_state, is_removed,
                              by_client };
    pv_event_t ev;

    memset(&ev, 0, sizeof(ev));
    ev.kind = PV_EV_ROSTER_CHANGED;
    ev.host = rh->h;
    ev.user = r->user;
    ev.data = &ch;
    pv_event_fire(&ev);
}

static void
bump(roster_t *r, ritem_t *it)
{
    it->ver = ++r->ver;
}

/* Turns a listed item into a tombstone (RFC 6121 §2.5) and pushes the
 * removal. The caller writes the meta record. */
static void
remove_listed(roster_host_t *rh, roster_t *r, ritem_t *it)
{
    ritem_clear_details(it);
    it->state = 0;
    it->is_removed = 1;
    it->is_listed = 0;
    r->n_live--;
    r->n_tomb++;
    bump(r, it);
    write_item(rh, r, it);
    roster_push(rh, r, it);
}

/* Items the user made (listed) and records of requests others made
 * (unlisted) have separate budgets of roster_max_items each, so that
 * strangers' requests can never fill the user's roster. */
static int
over_limit(roster_host_t *rh, const roster_t *r, int listed)
{
    const roster_conf_t *conf = pv_module_conf(rh->m, rh->h);
    long long n = 0;
    size_t i;

    if (conf->max_items == PV_COUNT_OFF)
        return 0;
    for (i = 0; i < r->n; i++)
        if (!r->items[i]->is_removed &&
            (r->items[i]->is_listed != 0) == (listed != 0))
            n++;
    return n >= conf->max_items;
}

/* --- IQ handlers ------------------------------------------------------ */

static roster_host_t *
host_of(pv_event_t *ev)
{
    return pv_module_host_data(ev->module, ev->host);
}

/* RFC 6121 §2.1.5: only the user may read or change a roster. */
static int
is_own_roster(const pv_event_t *ev)
{
    return ev->origin != NULL && ev->to->node != NULL &&
           strcmp(pv_session_jid(ev->origin)->bare, ev->to->bare) == 0;
}

static int
cmp_ver(const void *a, const void *b)
{
    const ritem_t *x = *(ritem_t *const *)a, *y = *(ritem_t *const *)b;

    return x->ver < y->ver ? -1 : x->ver > y->ver;
}

static pv_rc_t
roster_iq_get(pv_event_t *ev)
{
    roster_host_t *rh = host_of(ev);
    roster_session_t *rs;
    const char *cver;
    pv_stanza_t *st;
    pv_node_t *q;
    roster_t *r;
    uint64_t since;
    size_t i;
    char ver[64];

    if (!is_own_roster(ev)) {
        pv_event_error(ev, PV_ERR_AUTH, "forbidden",
                      NULL);
        return PV_HANDLED;
    }
    rs = pv_session_data(ev->origin, ev->module);
    if (rs != NULL)
        rs->is_interested = 1;
    r = roster_acquire(rh, ev->to->node);
    cver = pv_node_attr(ev->payload, "ver");
    st = pv_iq_result(ev->stanza);
    if (cver != NULL && ver_parse(r, cver, &since) == PV_OK &&
        since <= r->ver && since >= r->floor) {
        /* RFC 6121 §2.6.3: an empty result, then the changes as pushes
         * to this resource only, oldest first */
        ritem_t **changed = pv_xcalloc(r->n + 1, sizeof(*changed));
        size_t n = 0;

        for (i = 0; i < r->n; i++)
            if (r->items[i]->ver > since &&
                (r->items[i]->is_listed || r->items[i]->is_removed))
                changed[n++] = r->items[i];
        qsort(changed, n, sizeof(*changed), cmp_ver);
        pv_event_reply(ev, st);
        for (i = 0; i < n; i++) {
            pv_stanza_t *p = push_build(rh, r, changed[i],
                                        pv_session_jid(ev->origin)->full);
            pv_session_send(ev->origin, p);
            pv_stanza_unref(p);
        }
        free(changed);
        roster_release(rh, r);
        return PV_HANDLED;
    }
    q = pv_node_new(st->arena, "query", PV_NS_ROSTER, st->root);
    if (cver != NULL) {
        ver_string(r, r->ver, ver, sizeof(ver));
        pv_node_set_attr(st->arena, q, "ver", ver);
    }
    for (i = 0; i < r->n; i++)
        if (r->items[i]->is_listed && !r->items[i]->is_removed)
            item_node(st->arena, q, r->items[i]);
    pv_event_reply(ev, st);
    roster_release(rh, r);
    return PV_HANDLED;
}

/* Checks a roster set (RFC 6121 §2.1.5, §2.3.3); returns the error
 * condition or NULL, and the single item in *item. */
static const char *
check_set(const roster_conf_t *conf, pv_event_t *ev, pv_node_t **item,
          pv_jid_t *jid, const char **text)
{
    pv_arena_t *a = ev->stanza->arena;
    pv_node_t *it, *g, *g2;
    const char *j, *name;
    size_t n_groups = 0;

    *item = pv_node_child(ev->payload, "item", PV_NS_ROSTER);
    if (*item == NULL ||
        pv_node_next_child(ev->payload, *item, "item", PV_NS_ROSTER)) {
        *text = "a roster set carries exactly one item";
        return "bad-request";
    }
    it = *item;
    j = pv_node_attr(it, "jid");
    if (j == NULL) {
        *text = "the item has no jid";
        return "bad-request";
    }
    if (pv_jid_parse(j, strlen(j), jid, a) != PV_OK)
        return "jid-malformed";
    name = pv_node_attr(it, "name");
    if (name != NULL && (long long)strlen(name) > conf->max_name_len) {
        *text = "the name is too long";
        return "not-acceptable";
    }
    for (g = pv_node_child(it, "group", PV_NS_ROSTER); g != NULL;
         g = pv_node_next_child(it, g, "group", PV_NS_ROSTER)) {
        const char *gt = pv_node_text(g, a);
        if (*gt == '\0') {
            *text = "empty group name";
            return "not-acceptable";
        }
        if ((long long)strlen(gt) > conf->max_name_len) {
            *text = "the group name is too long";
            return "not-acceptable";
        }
        for (g2 = pv_node_child(it, "group", PV_NS_ROSTER); g2 != g;
             g2 = pv_node_next_child(it, g2, "group", PV_NS_ROSTER)) {
            if (strcmp(pv_node_text(g2, a), gt) == 0) {
                *text = "duplicate group";
                return "bad-request";
            }
        }
        n_groups++;
    }
    if (conf->max_groups != PV_COUNT_OFF &&
        (long long)n_groups > conf->max_groups) {
        *text = "too many groups";
        return "not-acceptable";
    }
    return NULL;
}

static void
set_details(pv_arena_t *a, ritem_t *it, pv_node_t *item)
{
    const char *name = pv_node_attr(item, "name");
    pv_node_t *g;
    size_t n = 0;

    ritem_clear_details(it);
    if (name != NULL && *name != '\0')
        it->name = pv_xstrdup(name);
    for (g = pv_node_child(item, "group", PV_NS_ROSTER); g != NULL;
         g = pv_node_next_child(item, g, "group", PV_NS_ROSTER))
        n++;
    it->groups = pv_xrealloc(it->groups, (n + 1) * sizeof(char *));
    n = 0;
    for (g = pv_node_child(item, "group", PV_NS_ROSTER); g != NULL;
         g = pv_node_next_child(item, g, "group", PV_NS_ROSTER))
        it->groups[n++] = pv_xstrdup(pv_node_text(g, a));
    it->groups[n] = NULL;
}

static pv_rc_t
roster_iq_set(pv_event_t *ev)
{
    roster_host_t *rh = host_of(ev);
    const roster_conf_t *conf = pv_module_conf(ev->module, ev->host);
    const char *cond, *text = NULL, *sub;
    pv_node_t *item;
    pv_jid_t jid;
    roster_t *r;
    ritem_t *it;
    unsigned old;

    if (!is_own_roster(ev)) {
        pv_event_error(ev, PV_ERR_AUTH, "forbidden",
                      NULL);
        return PV_HANDLED;
    }
    cond = check_set(conf, ev, &item, &jid, &text);
    if (cond != NULL) {
        pv_event_error(ev,
                       strcmp(cond, "not-acceptable") == 0 ? PV_ERR_CANCEL
                                                           : PV_ERR_MODIFY,
                       cond, text);
        return PV_HANDLED;
    }
    r = roster_acquire(rh, ev->to->node);
    it = roster_find(r, jid.full);
    /* RFC 6121 §2.1.5: any subscription value but "remove" is ignored */
    sub = pv_node_attr(item, "subscription");
    if (sub != NULL && strcmp(sub, "remove") == 0) {
        if (it == NULL || !it->is_listed || it->is_removed) {
            pv_event_error(ev, PV_ERR_CANCEL,
                          "item-not-found", NULL);
            roster_release(rh, r);
            return PV_HANDLED;
        }
        old = it->state;
        remove_listed(rh, r, it);
        purge_tombstones(rh, r);
        write_meta(rh, r, ev->stanza);
        /* RFC 6121 §2.5.2: the presence side cancels both directions */
        fire_changed(rh, r, jid.full, old, 0, 1, 1);
        roster_release(rh, r);
        return PV_HANDLED;
    }
    if (it == NULL || it->is_removed || !it->is_listed) {
        if (over_limit(rh, r, 1)) {
            char msg[80];
            snprintf(msg, sizeof(msg), "the roster is limited to %lld "
                     "items", conf->max_items);
            pv_event_error(ev, PV_ERR_CANCEL,
                          "not-acceptable", msg);
            roster_release(rh, r);
            return PV_HANDLED;
        }
        if (it == NULL) {
            it = ritem_new(jid.full);
            roster_append(r, it);
            r->n_live++;
        } else if (it->is_removed) {
            r->n_tomb--;
            r->n_live++;
            it->is_removed = 0;
            it->state = 0;
        }
    }
    it->is_listed = 1;
    set_details(ev->stanza->arena, it, item);
    bump(r, it);
    write_item(rh, r, it);
    write_meta(rh, r, ev->stanza);
    roster_push(rh, r, it);
    fire_changed(rh, r, jid.full, it->state, it->state, 0, 1);
    roster_release(rh, r);
    return PV_HANDLED;
}

/* --- roster events (roster.h) ---------------------------------------- */

static void
export_item(const ritem_t *it, pv_roster_item_t *out)
{
    out->jid = it->jid;
    out->name = it->name;
    out->groups = it->groups[0] ? (const char *const *)it->groups
                                : no_groups;
    out->state = it->state;
    out->is_listed = it->is_listed;
}

static pv_rc_t
roster_ev_get(pv_event_t *ev)
{
    roster_host_t *rh = host_of(ev);
    pv_roster_get_t *q = ev->data;
    pv_roster_item_t out;
    roster_t *r;
    size_t i;

    if (ev->user == NULL || q == NULL)
        return PV_PASS;
    q->n_found = 0;
    r = roster_acquire(rh, ev->user);
    for (i = 0; i < r->n; i++) {
        const ritem_t *it = r->items[i];
        if (it->is_removed ||
            (q->contact != NULL && strcmp(it->jid, q->contact) != 0))
            continue;
        export_item(it, &out);
        q->n_found++;
        if (q->cb != NULL)
            q->cb(q->arg, &out);
    }
    roster_release(rh, r);
    return PV_HANDLED;
}

static pv_rc_t
roster_ev_set_state(pv_event_t *ev)
{
    roster_host_t *rh = host_of(ev);
    pv_roster_state_t *q = ev->data;
    unsigned nstate, old = 0;
    const unsigned visible = PV_SUB_TO | PV_SUB_FROM | PV_SUB_ASK |
                             PV_SUB_APPROVED;
    int was_listed = 0;
    roster_t *r;
    ritem_t *it;

    if (ev->user == NULL || q == NULL || q->contact == NULL)
        return PV_PASS;
    nstate = q->state & PV_SUB_MASK;
    r = roster_acquire(rh, ev->user);
    q->rc = PV_OK;
    if (r->is_deleted) {
        q->rc = PV_ERROR;
        roster_release(rh, r);
        return PV_HANDLED;
    }
    it = roster_find(r, q->contact);
    if (it == NULL || it->is_removed) {
        if (nstate == 0) {
            roster_release(rh, r);
            return PV_HANDLED;
        }
        if (over_limit(rh, r, (nstate & visible) != 0)) {
            q->rc = PV_AGAIN;
            roster_release(rh, r);
            return PV_HANDLED;
        }
        if (it == NULL) {
            it = ritem_new(q->contact);
            roster_append(r, it);
        } else {
            it->is_removed = 0;
            r->n_tomb--;
        }
        r->n_live++;
        it->state = 0;
    } else {
        old = it->state;
        was_listed = it->is_listed;
    }
    if (old == nstate && it->state == nstate) {
        roster_release(rh, r);
        return PV_HANDLED;
    }
    it->state = nstate;
    if (!it->is_listed && (nstate & visible))
        it->is_listed = 1;
    if (!it->is_listed && nstate == 0) {
        /* only a stored request was left, and it is answered */
        delete_item(rh, r, it->jid);
        roster_unlink(r, it);
        r->n_live--;
        fire_changed(rh, r, q->contact, old, 0, 1, 0);
        ritem_free(it);
        roster_release(rh, r);
        return PV_HANDLED;
    }
    if (it->is_listed &&
        (!was_listed || (old & visible) != (nstate & visible))) {
        bump(r, it);
        write_item(rh, r, it);
        write_meta(rh, r, NULL);
        roster_push(rh, r, it);
    } else {
        write_item(rh, r, it);
    }
    fire_changed(rh, r, q->contact, old, nstate, 0, 0);
    roster_release(rh, r);
    return PV_HANDLED;
}

/* --- accounts ------------------------------------------------------------ */

/* Removes user@host from the roster of a contact on this host. No
 * tombstone: nothing of a deleted account stays behind, so versions
 * before this change can no longer be diffed and get the full roster. */
/* This module's state on the local vhost serving jid, or NULL. */
static roster_host_t *
other_host(roster_host_t *rh, const pv_jid_t *jid)
{
    pv_host_t *oh = pv_host_find(pv_host_server(rh->h), jid->domain);

    return oh != NULL ? pv_module_host_data(rh->m, oh) : NULL;
}

static void
drop_from_contact(roster_host_t *rh, const char *contact_user,
                  const char *gone_bare)
{
    roster_t *c = roster_acquire(rh, contact_user);
    ritem_t *it = roster_find(c, gone_bare);

    if (it != NULL && !it->is_removed) {
        unsigned old = it->state;
        int was_listed = it->is_listed;

        delete_item(rh, c, it->jid);
        roster_unlink(c, it);
        c->n_live--;
        if (was_listed) {
            ritem_clear_details(it);
            it->state = 0;
            it->is_removed = 1;
            it->is_listed = 0;
            bump(c, it);
            c->floor = c->ver;
            write_meta(rh, c, NULL);
            roster_push(rh, c, it);
        }
        fire_changed(rh, c, gone_bare, old, 0, 1, 0);
        ritem_free(it);
    }
    roster_release(rh, c);
}

static void
send_sub(roster_host_t *rh, const char *from, const char *to,
         const char *type)
{
    pv_stanza_t *st = pv_stanza_build("presence");

    pv_node_set_attr(st->arena, st->root, "type", type);
    pv_node_set_attr(st->arena, st->root, "from", from);
    pv_node_set_attr(st->arena, st->root, "to", to);
    pv_stanza_touch(st);
    pv_host_route(rh->h, st);
    pv_stanza_unref(st);
}

/* The account's rows go with pv_user_delete; contacts on this host lose
 * its item (with a push), remote ones are told the subscriptions are
 * cancelled (RFC 6121 §3.2, §3.3). */
static pv_rc_t
roster_user_deleting(pv_event_t *ev)
{
    roster_host_t *rh = host_of(ev), *orh;
    const char *host = pv_host_name(ev->host);
    char *bare;
    roster_t *r;
    size_t i;

    if (ev->user == NULL)
        return PV_PASS;
    bare = pv_xasprintf("%s@%s", ev->user, host);
    r = roster_acquire(rh, ev->user);
    for (i = 0; i < r->n; i++) {
        const ritem_t *it = r->items[i];
        pv_jid_t cj;

        if (it->is_removed ||
            pv_jid_parse(it->jid, strlen(it->jid), &cj, NULL) != PV_OK)
            continue;
        if (cj.node != NULL && strcmp(cj.domain, host) == 0) {
            if (strcmp(cj.node, ev->user) != 0)
                drop_from_contact(rh, cj.node, bare);
        } else if (cj.node != NULL && (orh = other_host(rh, &cj)) != NULL) {
            /* a contact on another local vhost with rosters */
            drop_from_contact(orh, cj.node, bare);
        } else {
            /* remote (or roster-less) contacts hear it from us */
            if (it->state & (PV_SUB_TO | PV_SUB_ASK))
                send_sub(rh, bare, cj.bare, "unsubscribe");
            if (it->state & (PV_SUB_FROM | PV_SUB_PENDING_IN))
                send_sub(rh, bare, cj.bare, "unsubscribed");
        }
        pv_jid_clear(&cj);
    }
    /* keep an empty, pinned roster until the rows are gone, so that no
     * read in between sees them */
    for (i = 0; i < r->n; i++)
        ritem_free(r->items[i]);
    r->n = r->n_live = r->n_tomb = 0;
    if (!r->is_deleted) {
        r->is_deleted = 1;
        r->pending++;
    }
    roster_release(rh, r);
    free(bare);
    return PV_PASS;
}

static pv_rc_t
roster_user_deleted(pv_event_t *ev)
{
    roster_host_t *rh = host_of(ev);
    roster_t key, *r;
    void *found;

    if (ev->user == NULL)
        return PV_PASS;
    key.user = (char *)ev->user;
    found = tfind(&key, &rh->tree, roster_cmp);
    if (found != NULL) {
        r = *(roster_t **)found;
        if (r->is_deleted) {
            r->is_deleted = 0;
            r->pending--;
            roster_maybe_drop(rh, r);
        }
    }
    return PV_PASS;
}

/* RFC 6121 §2.6.1: roster versioning is a stream feature. */
static pv_rc_t
roster_features(pv_event_t *ev)
{
    pv_node_t *f = ev->data;

    if (ev->user == NULL || f == NULL)
        return PV_PASS;
    pv_node_new(ev->stanza->arena, "ver", NS_ROSTERVER, f);
    return PV_PASS;
}

/* --- module ------------------------------------------------------------ */

static int
roster_host_init(pv_module_t *m, pv_host_t *h)
{
    roster_host_t *rh = pv_xcalloc(1, sizeof(*rh));

    rh->m = m;
    rh->h = h;
    rh->refs = 1;
    rh->items = pv_store_open(h, m, "items", PV_STORE_MAP);
    rh->meta = pv_store_open(h, m, "meta", PV_STORE_KEYVAL);
    if (rh->items == NULL || rh->meta == NULL) {
        pv_log(PV_LOG_ERROR, pv_host_name(h), "mod_roster: cannot open "
               "the roster stores");
        free(rh);
        return PV_ERROR;
    }
    pv_module_set_host_data(m, h, rh);
    return PV_OK;
}

static void
roster_host_fini(pv_module_t *m, pv_host_t *h)
{
    roster_host_t *rh = pv_module_host_data(m, h);

    if (rh == NULL)
        return;
    /* writes still in flight keep rh until their completion runs */
    rh->is_dead = 1;
    pv_module_set_host_data(m, h, NULL);
    rh_unref(rh);
}

static const pv_hook_t roster_hooks[] = {
    { PV_IQ_GET, PV_TO_BARE, PV_NS_ROSTER, "query", roster_iq_get, 0, 0 },
    { PV_IQ_SET, PV_TO_BARE, PV_NS_ROSTER, "query", roster_iq_set, 0, 0 },
    { PV_EV_ROSTER_GET, PV_TO_ANY, NULL, NULL, roster_ev_get, 0, 0 },
    { PV_EV_ROSTER_SET_STATE, PV_TO_ANY, NULL, NULL, roster_ev_set_state, 0,
      0 },
    { PV_EV_USER_DELETING, PV_TO_ANY, NULL, NULL, roster_user_deleting, 0,
      0 },
    { PV_EV_USER_DELETED, PV_TO_ANY, NULL, NULL, roster_user_deleted, 0, 0 },
    { PV_EV_STREAM_FEATURES, PV_TO_ANY, NULL, NULL, roster_features, 0, 0 },
    PV_HOOKS_END
};

static const pv_directive_t roster_directives[] = {
    { "roster_max_items", PV_CTX_ANY, pv_conf_count_or_off,
      offsetof(roster_conf_t, max_items), "1000", 0, 0, NULL },
    { "roster_max_groups", PV_CTX_ANY, pv_conf_count_or_off,
      offsetof(roster_conf_t, max_groups), "64", 0, 0, NULL },
    { "roster_max_name_length", PV_CTX_ANY, pv_conf_int,
      offsetof(roster_conf_t, max_name_len), "1023", 1, 65535, NULL },
    PV_DIRECTIVES_END
};

PV_MODULE(roster) = {
    .abi = PV_MODULE_ABI,
    .name = "roster",
    .hooks = roster_hooks,
    .directives = roster_directives,
    .conf_size = sizeof(roster_conf_t),
    .session_data_size = sizeof(roster_session_t),
    .host_init = roster_host_init,
    .host_fini = roster_host_fini,
};
