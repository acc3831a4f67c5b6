/* modules/mod_offline.c: offline messages (XEP-0160, RFC 6121 §8.5.2):
 * normal and chat messages for an account with no available resource of
 * non-negative priority are stamped (XEP-0203), committed to the archive
 * store "offline.queue" and delivered once, in order, when the account
 * next becomes available, paced by the room in the client's output queue
 * (messages arriving meanwhile queue up behind the backlog). Delivery to
 * online resources and the errors for what is not stored stay the
 * router's job. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <palaver/datetime.h>
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

/* Delivery is paced by the room left in the client's output queue
 * (pv_session_send_room): room kept free for live traffic (at most a
 * quarter of the limit), the pause before looking again, and the rows one
 * loop turn hands over when the room is unlimited (framed transports), so
 * that a big backlog does not stall the loop. */
#define OFFLINE_MARGIN (64 * 1024)
#define OFFLINE_RETRY_MS 10
/* the pause while the receiving session is hibernated (XEP-0198) */
#define OFFLINE_IDLE_MS 250
#define OFFLINE_TURN_MAX 500
/* A turn this late never comes: a reload cancelled the module's timers on
 * the retired host (the loop clock is cached per iteration, so a busy
 * loop does not make a turn look late). */
#define OFFLINE_STALE_MS 5000

typedef struct {
    int is_receiving;         /* available with priority >= 0 */
} offline_session_t;

typedef struct {
    char *id;
    void *val;
    size_t len;
} offline_row_t;

struct offline_host_s;

/* A paced delivery of a user's stored messages to one session. The
 * paging cursor is the (timestamp, id) of the last row seen, not an RSM
 * after-id: the row it names may be one whose deletion the writer thread
 * commits while we page, and an after-id that vanished is an error. A
 * timestamp stays a valid place to resume from. */
typedef struct {
    struct offline_host_s *oh;
    char *to;                 /* full JID of the receiving session */
    offline_row_t rows[OFFLINE_PAGE];
    size_t n;                 /* rows read */
    size_t pos;               /* rows handed over (or removed) */
    size_t n_new;             /* rows past the cursor in the last page */
    uint64_t last_ts;
    char *last_id;            /* malloc'd; NULL before the first row */
    pv_stanza_t *st;          /* rows[pos] decoded, or NULL */
    size_t best_room;         /* most send room seen for the session */
    size_t n_sent;
    uint64_t due_ms;          /* loop time of the next turn; 0: none */
} offline_flush_t;

/* A user with work in flight: stores not yet committed (their messages
 * must not be overtaken), deletions not yet committed (their rows must
 * not be delivered twice) and a delivery in progress (new messages queue
 * up behind it). */
typedef struct offline_user_s {
    char *user;
    unsigned n_puts;
    char **deleting;          /* ids delivered, deletion not committed */
    size_t n_deleting;
    offline_flush_t *flush;   /* delivery in progress, or NULL */
    struct offline_user_s *next;
} offline_user_t;

/* Per host. Refcounted because store callbacks may run after host_fini
 * (a reload): they then only free their context. */
typedef struct offline_host_s {
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

/* Frees f. A turn is scheduled only when a turn returns, and the flush
 * ends inside a turn, so no timer points to f then (and by host_fini the
 * core has cancelled every timer of the module). */
static void
flush_free(offline_flush_t *f)
{
    size_t i;

    pv_stanza_unref(f->st);
    for (i = f->pos; i < f->n; i++) {
        free(f->rows[i].id);
        free(f->rows[i].val);
    }
    free(f->last_id);
    free(f->to);
    free(f);
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
        if (u->flush != NULL)
            flush_free(u->flush);
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

    if (u->n_puts > 0 || u->n_deleting > 0 || u->flush != NULL)
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
    offline_user_t *u = arg;
    offline_flush_t *f = u->flush;
    offline_row_t *row;

    if (f->last_id != NULL && ts_us == f->last_ts &&
        id_cmp(id, f->last_id) <= 0)
        return 0;   /* seen on the previous page */
    f->n_new++;
    f->last_ts = ts_us;
    free(f->last_id);
    f->last_id = pv_xstrdup(id);
    if (user_is_deleting(u, id))
        return 0;
    row = &f->rows[f->n++];
    row->id = pv_xstrdup(id);
    row->val = pv_xmalloc(len ? len : 1);
    memcpy(row->val, val, len);
    row->len = len;
    return 0;
}

typedef struct {
    pv_session_t *best;
    const char *full;         /* a full JID to look for, or NULL */
    pv_session_t *found;
} offline_scan_t;

static int
is_receiving(const pv_session_t *s)
{
    return pv_session_is_available(s) && pv_session_priority(s) >= 0;
}

static void
scan_session(void *arg, pv_session_t *s)
{
    offline_scan_t *sc = arg;

    if (sc->full != NULL && strcmp(pv_session_jid(s)->full, sc->full) == 0)
        sc->found = s;
    if (!is_receiving(s))
        return;
    if (sc->best == NULL ||
        pv_session_priority(s) > pv_session_priority(sc->best))
        sc->best = s;
}

/* Ends the delivery to u: rows not handed over yet simply stay stored.
 * May free u. */
static void
flush_end(offline_host_t *oh, offline_user_t *u)
{
    offline_flush_t *f = u->flush;

    if (f->n_sent > 0)
        pv_log(PV_LOG_DEBUG, "mod_offline", "delivered %zu offline "
               "messages to %s", f->n_sent, f->to);
    u->flush = NULL;
    flush_free(f);
    user_gc(oh, u);
}

/* Reads the next page past the cursor into the (empty) row buffer: 1 when
 * it holds rows, 0 when the queue has nothing more to deliver. */
static int
flush_read(offline_host_t *oh, offline_user_t *u)
{
    offline_flush_t *f = u->flush;
    const char *host = pv_host_name(oh->h);
    pv_archive_query_t q;
    pv_archive_result_t res;
    int is_complete;

    for (;;) {
        memset(&q, 0, sizeof(q));
        memset(&res, 0, sizeof(res));
        q.start_us = f->last_id != NULL ? f->last_ts : 0;
        q.limit = OFFLINE_PAGE;
        f->n = f->pos = f->n_new = 0;
        if (pv_store_archive_query(oh->store, host, u->user, &q, collect_row,
                                   u, &res) != PV_OK) {
            pv_log(PV_LOG_ERROR, "mod_offline", "reading the offline "
                   "queue of %s@%s failed", u->user, host);
            pv_archive_result_clear(&res);
            return f->n > 0;
        }
        is_complete = res.is_complete || f->n_new == 0;
        pv_archive_result_clear(&res);
        if (f->n > 0)
            return 1;
        if (is_complete)
            return 0;
        /* a page of rows whose deletion is in flight: read on */
    }
}

/* Submits the deletion of a row handed to the session (or corrupt); takes
 * row->id. */
static void
flush_delete(offline_host_t *oh, offline_user_t *u, offline_row_t *row)
{
    const char *host = pv_host_name(oh->h);
    offline_del_t *del = pv_xcalloc(1, sizeof(*del));

    del->oh = oh_ref(oh);
    del->user = pv_xstrdup(u->user);
    del->id = row->id;
    row->id = NULL;
    if (pv_store_archive_delete_id(oh->store, host, u->user, del->id,
                                   offline_deleted, del) == PV_OK) {
        user_add_deleting(u, del->id);
        return;
    }
    pv_log(PV_LOG_ERROR, "mod_offline", "cannot delete offline message %s "
           "of %s@%s", del->id, u->user, host);
    oh_unref(oh);
    free(del->user);
    free(del->id);
    free(del);
}

static void flush_timer(void *arg);

static void
flush_schedule(offline_host_t *oh, offline_user_t *u, uint64_t ms)
{
    u->flush->due_ms = pv_now_ms(pv_host_server(oh->h)) + ms;
    pv_module_timer(oh->m, oh->h, ms, 0, flush_timer, u);
}

/* The user's state, after ending a delivery whose next turn was lost
 * (OFFLINE_STALE_MS): its rows wait stored for the next availability. */
static offline_user_t *
user_find_live(offline_host_t *oh, const char *user)
{
    offline_user_t *u = user_find(oh, user, 0);

    if (u != NULL && u->flush != NULL && u->flush->due_ms != 0 &&
        pv_now_ms(pv_host_server(oh->h)) >
        u->flush->due_ms + OFFLINE_STALE_MS) {
        pv_log(PV_LOG_WARN, "mod_offline", "delivery of offline messages "
               "to %s stalled (reload): the rest stays stored",
               u->flush->to);
        flush_end(oh, u);
        u = user_find(oh, user, 0);
    }
    return u;
}

/* One turn of the delivery of u's stored messages, oldest first, to the
 * flush's session while its client's output queue has room; continues
 * OFFLINE_RETRY_MS later. Sending the whole backlog at once would pass
 * c2s_send_queue_max, and the core then ends the stream with the rows
 * already deleted.
 * Exactly-once: a row is handed to the session (pv_session_send writes
 * it to the socket or queues it) before its deletion is submitted, and
 * its id is remembered until the deletion commits so that no later flush
 * sends it again. If the process dies between the send and the commit of
 * the deletion the message is delivered again after restart (at least
 * once); it is never lost by us, but bytes still queued in the process
 * (not yet written to the kernel) die with it — XEP-0198 acks are the
 * remedy for that window. May free u. */
static void
flush_step(offline_host_t *oh, offline_user_t *u)
{
    offline_flush_t *f = u->flush;
    offline_scan_t sc;
    pv_session_t *s;
    size_t n_turn = 0;

    /* the session may have gone since the last turn: look it up again */
    memset(&sc, 0, sizeof(sc));
    sc.full = f->to;
    pv_host_each_session(oh->h, u->user, scan_session, &sc);
    s = sc.found;
    if (s == NULL || !is_receiving(s)) {
        /* XEP-0160 §2: the backlog is for an available resource; another
         * one takes over (new messages are queued behind the backlog, so
         * stopping would strand them), else it waits stored */
        if (sc.best == NULL) {
            flush_end(oh, u);
            return;
        }
        s = sc.best;
        free(f->to);
        f->to = pv_xstrdup(pv_session_jid(s)->full);
        f->best_room = 0;
    }
    if (!pv_session_is_connected(s)) {
        /* hibernated: what is sent now waits in its XEP-0198 queue,
         * whose limit would end the session; the rest stays stored until
         * it resumes (new messages queue up behind) or ends */
        flush_schedule(oh, u, OFFLINE_IDLE_MS);
        return;
    }
    for (;;) {
        offline_row_t *row;
        pv_stanza_t *st;

        if (f->pos == f->n && !flush_read(oh, u)) {
            flush_end(oh, u);
            return;
        }
        row = &f->rows[f->pos];
        /* decoded once, kept while waiting for room */
        if (f->st == NULL)
            f->st = offline_decode(row->val, row->len);
        st = f->st;
        if (st != NULL) {
            size_t len = 0, room = pv_session_send_room(s), margin;

            pv_stanza_wire(st, &len);
            /* the most room seen is (about) the empty queue: the limit */
            if (room > f->best_room)
                f->best_room = room;
            margin = f->best_room / 4 < OFFLINE_MARGIN ?
                     f->best_room / 4 : OFFLINE_MARGIN;
            /* keep a margin for live traffic; but a queue as empty as it
             * gets takes the next row whatever its size, or a row larger
             * than the limit would hold up the user's messages forever */
            if (n_turn >= OFFLINE_TURN_MAX ||
                ((len > room || room - len < margin) &&
                 room < f->best_room)) {
                flush_schedule(oh, u, OFFLINE_RETRY_MS);
                return;
            }
            if (len > room)
                pv_log(PV_LOG_WARN, "mod_offline", "offline message %s "
                       "of %s@%s is larger than c2s_send_queue_max",
                       row->id, u->user, pv_host_name(oh->h));
            pv_session_send(s, st);
            pv_stanza_unref(st);
            f->st = NULL;
            f->n_sent++;
            n_turn++;
        } else {
            pv_log(PV_LOG_ERROR, "mod_offline", "offline message %s of "
                   "%s@%s is corrupt: removed", row->id, u->user,
                   pv_host_name(oh->h));
        }
        flush_delete(oh, u, row);
        free(row->val);
        row->val = NULL;
        f->pos++;
    }
}

static void
flush_timer(void *arg)
{
    offline_user_t *u = arg;

    u->flush->due_ms = 0;
    flush_step(u->flush->oh, u);
}

/* Starts delivering user's stored messages to s unless a delivery to the
 * account is already running: XEP-0160 §2 gives the backlog to the first
 * resource that becomes available, once. */
static void
offline_flush(offline_host_t *oh, const char *user, pv_session_t *s)
{
    offline_user_t *u = user_find(oh, user, 1);
    offline_flush_t *f;

    if (u->flush != NULL)
        return;
    f = pv_xcalloc(1, sizeof(*f));
    f->oh = oh;
    f->to = pv_xstrdup(pv_session_jid(s)->full);
    u->flush = f;
    flush_step(oh, u);
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
        u = user_find_live(oh, put->user);
        if (u != NULL && u->n_puts > 0)
            u->n_puts--;
        /* the user may have come online while the row was being
         * committed: the flush at that moment could not see it. A flush
         * still running reads the row itself (its cursor is before it) */
        memset(&sc, 0, sizeof(sc));
        pv_host_each_session(oh->h, put->user, scan_session, &sc);
        if (sc.best != NULL &&
            (u == NULL || (u->n_puts == 0 && u->flush == NULL)))
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
    int is_flushing;

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
    u = user_find_live(oh, user);
    is_flushing = u != NULL && u->flush != NULL;
    /* that resource exists: the router delivers, unless it is the one
     * receiving the backlog (the message would overtake it) */
    if (sc.found != NULL &&
        !(is_flushing && is_receiving(sc.found) &&
          strcmp(ev->to->full, u->flush->to) == 0))
        return PV_PASS;
    /* online: deliver live, unless earlier messages are still being
     * stored (they go out after their commit) or delivered (a paced
     * flush is running: this one joins the end of the queue and the same
     * flush delivers it, in order) */
    if (sc.best != NULL && !is_flushing && (u == NULL || u->n_puts == 0))
        return PV_PASS;
    if (!is_storable(st))
        return PV_PASS;
    if (conf->max_messages != PV_COUNT_OFF) {
        size_t max = (size_t)conf->max_messages;
        size_t queued = (u ? u->n_puts : 0);

        /* the queue is draining to an online resource: live messages
         * passing through it are not refused for a backlog that was full
         * (but a flood still meets a limit) */
        if (is_flushing)
            max = max > SIZE_MAX / 2 ? SIZE_MAX : max * 2;

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
    pv_datetime_format(ts, 3, stamp, sizeof(stamp));
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
    int is_now;

    if (oh == NULL || oh->store == NULL || ev->session == NULL)
        return PV_PASS;
    os = pv_session_data(ev->session, ev->module);
    if (os == NULL)
        return PV_PASS;
    is_now = is_receiving(ev->session);
    if (is_now && !os->is_receiving) {
        const char *user = pv_session_jid(ev->session)->node;

        /* rows still being committed are flushed by their callback; a
         * flush already running keeps its resource (XEP-0160 §2: the
         * first one to become available gets the backlog) */
        u = user_find_live(oh, user);
        if (u == NULL || (u->n_puts == 0 && u->flush == NULL))
            offline_flush(oh, user, ev->session);
    }
    os->is_receiving = is_now;
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
