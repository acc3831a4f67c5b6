/* modules/mod_offline.c: offline messages (XEP-0160, RFC 6121 §8.5.2):
 * normal and chat messages for an account with no available resource of
 * non-negative priority are stamped (XEP-0203), committed to the archive
 * store "offline.queue" and delivered once, in order, when the account
 * next becomes available. Delivery to online resources and the errors for
 * what is not stored stay the router's job. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <palaver/module.h>

#define NS_DELAY "urn:xmpp:delay"
#define NS_HINTS "urn:xmpp:hints"
#define NS_CHATSTATES "http://jabber.org/protocol/chatstates"

/* Rows are read and delivered in pages of this many messages, so one
 * flush never holds the whole queue in memory. */
#define OFFLINE_PAGE 100
/* Encoded trees deeper than this are refused (the stream parser's own
 * limit is far lower; this only guards against a corrupt row). */
#define OFFLINE_FORMAT 2    /* 1: the module's own tree encoding */

typedef struct {
    long long max_messages;   /* PV_COUNT_OFF: no limit */
} offline_conf_t;

typedef struct {
    int is_receiving;         /* available with priority >= 0 */
} offline_session_t;

/* A user with writes in flight: stores not yet committed (their messages
 * must not be overtaken) and deletions not yet committed (their rows must
 * not be delivered twice). */
typedef struct offline_user_s {
    char *user;
    unsigned n_puts;
    char **deleting;          /* ids delivered, deletion not committed */
    size_t n_deleting;
    struct offline_user_s *next;
} offline_user_t;

/* Per host. Refcounted because store callbacks may run after host_fini
 * (a reload): they then only free their context. */
typedef struct {
    unsigned refs;
    int is_dead;
    pv_module_t *m;
    pv_host_t *h;
    pv_store_t *store;
    uint64_t last_ts;         /* keeps archive timestamps strictly rising */
    unsigned long seq;
    offline_user_t *users;
} offline_host_t;

/* --- host and user state ------------------------------------------- */

static offline_host_t *
oh_ref(offline_host_t *oh)
{
    oh->refs++;
    return oh;
}

static void
oh_unref(offline_host_t *oh)
{
    offline_user_t *u, *next;
    size_t i;

    if (--oh->refs > 0)
        return;
    for (u = oh->users; u != NULL; u = next) {
        next = u->next;
        for (i = 0; i < u->n_deleting; i++)
            free(u->deleting[i]);
        free(u->deleting);
        free(u->user);
        free(u);
    }
    free(oh);
}

static offline_user_t *
user_find(offline_host_t *oh, const char *user, int create)
{
    offline_user_t *u;

    for (u = oh->users; u != NULL; u = u->next)
        if (strcmp(u->user, user) == 0)
            return u;
    if (!create)
        return NULL;
    u = pv_xcalloc(1, sizeof(*u));
    u->user = pv_xstrdup(user);
    u->next = oh->users;
    oh->users = u;
    return u;
}

/* Forgets a user with nothing in flight. */
static void
user_gc(offline_host_t *oh, offline_user_t *u)
{
    offline_user_t **pp;

    if (u->n_puts > 0 || u->n_deleting > 0)
        return;
    for (pp = &oh->users; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == u) {
            *pp = u->next;
            break;
        }
    }
    free(u->deleting);
    free(u->user);
    free(u);
}

static int
user_is_deleting(const offline_user_t *u, const char *id)
{
    size_t i;

    for (i = 0; u != NULL && i < u->n_deleting; i++)
        if (strcmp(u->deleting[i], id) == 0)
            return 1;
    return 0;
}

static void
user_add_deleting(offline_user_t *u, const char *id)
{
    u->deleting = pv_xrealloc(u->deleting,
                              (u->n_deleting + 1) * sizeof(*u->deleting));
    u->deleting[u->n_deleting++] = pv_xstrdup(id);
}

static void
user_remove_deleting(offline_user_t *u, const char *id)
{
    size_t i;

    for (i = 0; i < u->n_deleting; i++) {
        if (strcmp(u->deleting[i], id) == 0) {
            free(u->deleting[i]);
            u->deleting[i] = u->deleting[--u->n_deleting];
            return;
        }
    }
}

/* --- the stored form ----------------------------------------------- */

/* A row is a format byte and the message in the core's packed tree form
 * (pv_node_pack): names, namespaces, attributes and text round-trip
 * exactly, so end-to-end encrypted payloads (OMEMO) come back byte for
 * byte. */

/* The stanza of a stored row (refs 1), or NULL when the row is corrupt. */
static pv_stanza_t *
offline_decode(const void *val, size_t len)
{
    pv_arena_t *arena;
    pv_node_t *root;

    if (len < 1 || *(const uint8_t *)val != OFFLINE_FORMAT)
        return NULL;
    arena = pv_arena_new(len + 512);
    root = pv_node_unpack(arena, (const uint8_t *)val + 1, len - 1, NULL);
    if (root == NULL || strcmp(root->name, "message") != 0) {
        pv_arena_free(arena);
        return NULL;
    }
    return pv_stanza_new(arena, root);
}

/* --- delivery ------------------------------------------------------ */

typedef struct {
    offline_host_t *oh;
    char *user;
    char *id;
} offline_del_t;

static void
offline_deleted(void *arg, int rc)
{
    offline_del_t *del = arg;
    offline_host_t *oh = del->oh;
    offline_user_t *u;

    if (rc == PV_ERROR)
        pv_log(PV_LOG_ERROR, "mod_offline", "deleting delivered message %s "
               "of %s failed: it may be delivered again", del->id,
               del->user);
    if (!oh->is_dead) {
        u = user_find(oh, del->user, 0);
        if (u != NULL) {
            user_remove_deleting(u, del->id);
            user_gc(oh, u);
        }
    }
    oh_unref(oh);
    free(del->user);
    free(del->id);
    free(del);
}

typedef struct {
    char *id;
    void *val;
    size_t len;
} offline_row_t;

/* The paging cursor is the (timestamp, id) of the last row seen, not an
 * RSM after-id: the row it names may be one whose deletion the writer
 * thread commits while we page, and an after-id that vanished is an
 * error. A timestamp stays a valid place to resume from. */
typedef struct {
    offline_user_t *u;
    offline_row_t rows[OFFLINE_PAGE];
    size_t n;
    size_t n_new;             /* rows past the cursor in this page */
    uint64_t last_ts;
    char *last_id;            /* malloc'd; NULL before the first row */
} offline_page_t;

/* Archive key order of ids: shorter first, then bytes (CONTRACTS.md §4). */
static int
id_cmp(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);

    if (la != lb)
        return la < lb ? -1 : 1;
    return memcmp(a, b, la);
}

static int
collect_row(uint64_t ts_us, const char *id, const void *val, size_t len,
            void *arg)
{
    offline_page_t *pg = arg;

    if (pg->last_id != NULL && ts_us == pg->last_ts &&
        id_cmp(id, pg->last_id) <= 0)
        return 0;   /* seen on the previous page */
    pg->n_new++;
    pg->last_ts = ts_us;
    free(pg->last_id);
    pg->last_id = pv_xstrdup(id);
    if (user_is_deleting(pg->u, id))
        return 0;
    pg->rows[pg->n].id = pv_xstrdup(id);
    pg->rows[pg->n].val = pv_xmalloc(len ? len : 1);
    memcpy(pg->rows[pg->n].val, val, len);
    pg->rows[pg->n].len = len;
    pg->n++;
    return 0;
}

/* Delivers every stored message of user to session s, oldest first.
 * Exactly-once: a row is handed to the session (pv_session_send writes
 * it to the socket or queues it) before its deletion is submitted, and
 * its id is remembered until the deletion commits so that no other flush
 * sends it again. If the process dies between the send and the commit of
 * the deletion the message is delivered again after restart (at least
 * once); it is never lost by us, but bytes still queued in the process
 * (not yet written to the kernel) die with it — XEP-0198 acks are the
 * remedy for that window. */
static void
offline_flush(offline_host_t *oh, const char *user, pv_session_t *s)
{
    const char *host = pv_host_name(oh->h);
    offline_user_t *u = user_find(oh, user, 1);
    offline_page_t pg;
    pv_archive_query_t q;
    pv_archive_result_t res;
    size_t i, n_sent = 0;
    int is_complete = 0;

    memset(&pg, 0, sizeof(pg));
    pg.u = u;
    while (!is_complete) {
        memset(&q, 0, sizeof(q));
        memset(&res, 0, sizeof(res));
        q.start_us = pg.last_id != NULL ? pg.last_ts : 0;
        q.limit = OFFLINE_PAGE;
        pg.n = 0;
        pg.n_new = 0;
        if (pv_store_archive_query(oh->store, host, user, &q, collect_row,
                                   &pg, &res) != PV_OK) {
            pv_log(PV_LOG_ERROR, "mod_offline", "reading the offline "
                   "queue of %s@%s failed", user, host);
            is_complete = 1;
        } else {
            is_complete = res.is_complete || pg.n_new == 0;
        }
        pv_archive_result_clear(&res);
        for (i = 0; i < pg.n; i++) {
            offline_row_t *row = &pg.rows[i];
            pv_stanza_t *st = offline_decode(row->val, row->len);
            offline_del_t *del;

            if (st == NULL) {
                pv_log(PV_LOG_ERROR, "mod_offline", "offline message %s "
                       "of %s@%s is corrupt: removed", row->id, user, host);
            } else {
                pv_session_send(s, st);
                pv_stanza_unref(st);
                n_sent++;
            }
            del = pv_xcalloc(1, sizeof(*del));
            del->oh = oh_ref(oh);
            del->user = pv_xstrdup(user);
            del->id = row->id;
            if (pv_store_archive_delete_id(oh->store, host, user, row->id,
                                           offline_deleted, del) == PV_OK) {
                user_add_deleting(u, row->id);
            } else {
                pv_log(PV_LOG_ERROR, "mod_offline", "cannot delete offline "
                       "message %s of %s@%s", row->id, user, host);
                oh_unref(oh);
                free(del->user);
                free(del->id);
                free(del);
            }
            free(row->val);
        }
    }
    free(pg.last_id);
    if (n_sent > 0)
        pv_log(PV_LOG_DEBUG, "mod_offline", "delivered %zu offline "
               "messages to %s", n_sent, pv_session_jid(s)->full);
    user_gc(oh, u);
}

typedef struct {
    pv_session_t *best;
    const char *full;         /* a full JID to look for, or NULL */
    pv_session_t *found;
} offline_scan_t;

static void
scan_session(void *arg, pv_session_t *s)
{
    offline_scan_t *sc = arg;

    if (sc->full != NULL && strcmp(pv_session_jid(s)->full, sc->full) == 0)
        sc->found = s;
    if (!pv_session_is_available(s) || pv_session_priority(s) < 0)
        return;
    if (sc->best == NULL ||
        pv_session_priority(s) > pv_session_priority(sc->best))
        sc->best = s;
}

/* --- storing ------------------------------------------------------- */

typedef struct {
    offline_host_t *oh;
    char *user;
    pv_stanza_t *msg;         /* the original, for an error to its sender */
} offline_put_t;

static void
offline_stored(void *arg, int rc)
{
    offline_put_t *put = arg;
    offline_host_t *oh = put->oh;
    offline_user_t *u;
    offline_scan_t sc;

    if (!oh->is_dead) {
        if (rc != PV_OK) {
            pv_stanza_t *err;

            pv_log(PV_LOG_ERROR, "mod_offline", "storing a message for "
                   "%s failed", put->user);
            err = pv_stanza_error(put->msg, PV_ERR_WAIT,
                                  "internal-server-error", NULL);
            if (err != NULL) {
                pv_host_route(oh->h, err);
                pv_stanza_unref(err);
            }
        }
        u = user_find(oh, put->user, 0);
        if (u != NULL && u->n_puts > 0)
            u->n_puts--;
        /* the user may have come online while the row was being
         * committed: the flush at that moment could not see it */
        memset(&sc, 0, sizeof(sc));
        pv_host_each_session(oh->h, put->user, scan_session, &sc);
        if (sc.best != NULL && (u == NULL || u->n_puts == 0))
            offline_flush(oh, put->user, sc.best);
        else if (u != NULL)
            user_gc(oh, u);
    }
    oh_unref(oh);
    pv_stanza_unref(put->msg);
    free(put->user);
    free(put);
}

/* Messages that XEP-0160 §3 or XEP-0334 say not to store. */
static int
is_storable(const pv_stanza_t *st)
{
    const pv_node_t *c;
    int has_content = 0;

    if (pv_node_child(st->root, "no-store", NS_HINTS) != NULL)
        return 0;
    if (st->type == NULL || strcmp(st->type, "chat") != 0)
        return 1;
    /* chat with nothing but XEP-0085 chat states (and a thread) */
    for (c = st->root->children; c != NULL; c = c->next) {
        if (c->name == NULL)
            continue;
        if (strcmp(c->xmlns, NS_CHATSTATES) == 0 ||
            (strcmp(c->name, "thread") == 0 &&
             strcmp(c->xmlns, PV_NS_CLIENT) == 0))
            continue;
        has_content = 1;
    }
    return has_content ||
           pv_node_child(st->root, NULL, NS_CHATSTATES) == NULL;
}

typedef struct {
    size_t n;
    size_t max;
} offline_count_t;

static int
count_row(uint64_t ts_us, const char *id, const void *val, size_t len,
          void *arg)
{
    offline_count_t *c = arg;

    (void)ts_us;
    (void)id;
    (void)val;
    (void)len;
    return ++c->n >= c->max;
}

/* Committed rows of user, counting at most max. */
static size_t
offline_count(offline_host_t *oh, const char *user, size_t max)
{
    offline_count_t c = { 0, max };
    pv_archive_query_t q;
    pv_archive_result_t res;
    char *after = NULL;

    while (c.n < max) {
        size_t before = c.n;

        memset(&q, 0, sizeof(q));
        memset(&res, 0, sizeof(res));
        q.after_id = after;
        q.limit = PV_ARCHIVE_MAX_LIMIT;
        if (pv_store_archive_query(oh->store, pv_host_name(oh->h), user, &q,
                                   count_row, &c, &res) != PV_OK) {
            pv_archive_result_clear(&res);
            break;
        }
        free(after);
        after = res.last_id ? pv_xstrdup(res.last_id) : NULL;
        if (res.is_complete || c.n == before || after == NULL) {
            pv_archive_result_clear(&res);
            break;
        }
        pv_archive_result_clear(&res);
    }
    free(after);
    return c.n;
}

static uint64_t
offline_now_us(offline_host_t *oh)
{
    struct timespec ts;
    uint64_t now;

    clock_gettime(CLOCK_REALTIME, &ts);
    now = (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
    /* strictly rising, so that archive order is arrival order even when
     * the clock steps back or two messages share a microsecond */
    if (now <= oh->last_ts)
        now = oh->last_ts + 1;
    oh->last_ts = now;
    return now;
}

/* XEP-0082 DateTime with milliseconds, UTC. */
static void
format_stamp(uint64_t ts_us, char *out, size_t len)
{
    time_t secs = (time_t)(ts_us / 1000000u);
    struct tm tm;
    char base[32];

    gmtime_r(&secs, &tm);
    strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, len, "%s.%03uZ", base,
             (unsigned)((ts_us / 1000u) % 1000u));
}

static void
offline_refuse(pv_event_t *ev, pv_err_type_t type, const char *cond,
               const char *text)
{
    pv_stanza_t *err = pv_stanza_error(ev->stanza, type, cond, text);

    if (err == NULL)
        return;
    if (ev->origin != NULL)
        pv_event_reply(ev, err);
    else {
        pv_host_route(ev->host, err);
        pv_stanza_unref(err);
    }
}

static pv_rc_t
offline_message(pv_event_t *ev)
{
    offline_host_t *oh = pv_module_host_data(ev->module, ev->host);
    const offline_conf_t *conf = pv_module_conf(ev->module, ev->host);
    pv_stanza_t *st = ev->stanza, *copy;
    const char *user = ev->to->node;
    const char *type = st->type;
    offline_user_t *u;
    offline_scan_t sc;
    offline_put_t *put;
    pv_node_t *delay;
    pv_buf_t buf = { 0 };
    uint64_t ts;
    char stamp[48], id[48];
    pv_rc_t rc;

    if (oh == NULL || oh->store == NULL || user == NULL)
        return PV_PASS;
    /* XEP-0160 §3: normal and chat only; groupchat, headline and error
     * follow the router's RFC 6121 §8.5 defaults */
    if (type != NULL && strcmp(type, "normal") != 0 &&
        strcmp(type, "chat") != 0)
        return PV_PASS;
    if (!pv_user_exists(ev->host, user))
        return PV_PASS;
    memset(&sc, 0, sizeof(sc));
    sc.full = ev->addr == PV_TO_FULL ? ev->to->full : NULL;
    pv_host_each_session(ev->host, user, scan_session, &sc);
    if (sc.found != NULL)
        return PV_PASS;       /* that resource exists: the router delivers */
    u = user_find(oh, user, 0);
    /* online: deliver live, unless earlier messages are still being
     * stored (they go out after their commit and must not be overtaken) */
    if (sc.best != NULL && (u == NULL || u->n_puts == 0))
        return PV_PASS;
    if (!is_storable(st))
        return PV_PASS;
    if (conf->max_messages != PV_COUNT_OFF) {
        size_t max = (size_t)conf->max_messages;
        size_t queued = (u ? u->n_puts : 0);

        if (queued >= max ||
            offline_count(oh, user, max - queued) + queued >= max) {
            /* XEP-0160 §2: a full queue answers service-unavailable, the
             * same condition as no storage at all (RFC 6121 §8.5.2.2.1),
             * so the refusal tells a stranger nothing new about the
             * account; the text says why for the sender's client */
            pv_log(PV_LOG_INFO, "mod_offline", "offline queue of %s@%s "
                   "is full", user, pv_host_name(ev->host));
            offline_refuse(ev, PV_ERR_CANCEL, "service-unavailable",
                           "offline message queue full");
            return PV_HANDLED;
        }
    }
    ts = offline_now_us(oh);
    format_stamp(ts, stamp, sizeof(stamp));
    snprintf(id, sizeof(id), "%llx-%lx", (unsigned long long)ts, ++oh->seq);
    /* XEP-0203 §3: our own delay element; the rest stays untouched */
    copy = pv_stanza_copy(st);
    delay = pv_node_new(copy->arena, "delay", NS_DELAY, copy->root);
    pv_node_set_attr(copy->arena, delay, "from", pv_host_name(ev->host));
    pv_node_set_attr(copy->arena, delay, "stamp", stamp);
    pv_node_add_text(copy->arena, delay, "Offline Storage", 15);
    pv_buf_append(&buf, (const uint8_t[]){ OFFLINE_FORMAT }, 1);
    pv_node_pack(copy->root, &buf);
    pv_stanza_unref(copy);

    put = pv_xcalloc(1, sizeof(*put));
    put->oh = oh_ref(oh);
    put->user = pv_xstrdup(user);
    put->msg = pv_stanza_ref(st);
    rc = pv_store_archive_append(oh->store, pv_host_name(ev->host), user, ts,
                                 id, buf.data, buf.len, offline_stored, put);
    pv_buf_free(&buf);
    if (rc != PV_OK) {
        oh_unref(oh);
        pv_stanza_unref(put->msg);
        free(put->user);
        free(put);
        offline_refuse(ev, PV_ERR_WAIT, "internal-server-error", NULL);
        return PV_HANDLED;
    }
    user_find(oh, user, 1)->n_puts++;
    return PV_HANDLED;
}

/* XEP-0160 §2: deliver on the transition to available with a
 * non-negative priority, not on every later presence update. */
static pv_rc_t
offline_presence_changed(pv_event_t *ev)
{
    offline_host_t *oh = pv_module_host_data(ev->module, ev->host);
    offline_session_t *os;
    offline_user_t *u;
    int is_receiving;

    if (oh == NULL || oh->store == NULL || ev->session == NULL)
        return PV_PASS;
    os = pv_session_data(ev->session, ev->module);
    if (os == NULL)
        return PV_PASS;
    is_receiving = pv_session_is_available(ev->session) &&
                   pv_session_priority(ev->session) >= 0;
    if (is_receiving && !os->is_receiving) {
        const char *user = pv_session_jid(ev->session)->node;

        /* rows still being committed are flushed by their callback */
        u = user_find(oh, user, 0);
        if (u == NULL || u->n_puts == 0)
            offline_flush(oh, user, ev->session);
    }
    os->is_receiving = is_receiving;
    return PV_PASS;
}

static int
offline_host_init(pv_module_t *m, pv_host_t *h)
{
    offline_host_t *oh = pv_xcalloc(1, sizeof(*oh));

    oh->refs = 1;
    oh->m = m;
    oh->h = h;
    oh->store = pv_store_open(h, m, "queue", PV_STORE_ARCHIVE);
    if (oh->store == NULL)
        pv_log(PV_LOG_WARN, "mod_offline", "%s: no storage: offline "
               "messages are refused", pv_host_name(h));
    pv_module_set_host_data(m, h, oh);
    return PV_OK;
}

static void
offline_host_fini(pv_module_t *m, pv_host_t *h)
{
    offline_host_t *oh = pv_module_host_data(m, h);

    if (oh == NULL)
        return;
    oh->is_dead = 1;
    pv_module_set_host_data(m, h, NULL);
    oh_unref(oh);
}

static const pv_hook_t offline_hooks[] = {
    /* late: blocking, carbons and the like decide first */
    { PV_MESSAGE, PV_TO_BARE, NULL, NULL, offline_message, 100, 0 },
    { PV_MESSAGE, PV_TO_FULL, NULL, NULL, offline_message, 100, 0 },
    { PV_EV_PRESENCE_CHANGED, PV_TO_ANY, NULL, NULL,
      offline_presence_changed, 0, 0 },
    PV_HOOKS_END
};

static const pv_directive_t offline_directives[] = {
    { "offline_max_messages", PV_CTX_ANY, pv_conf_count_or_off,
      offsetof(offline_conf_t, max_messages), "500", 0, 0, NULL },
    PV_DIRECTIVES_END
};

PV_MODULE(offline) = {
    .abi = PV_MODULE_ABI,
    .name = "offline",
    .features = (const char *const[]){ "msgoffline", NULL },
    .hooks = offline_hooks,
    .directives = offline_directives,
    .conf_size = sizeof(offline_conf_t),
    .session_data_size = sizeof(offline_session_t),
    .host_init = offline_host_init,
    .host_fini = offline_host_fini,
};
