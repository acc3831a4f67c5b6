/* modules/muc_archive.c: mod_muc's rows in LMDB (muc.rooms,
 * muc.affiliations, muc.history, muc.vcards), loading them at start,
 * MUC MAM (XEP-0313 on the room JID, XEP-0059 paging) and XEP-0425
 * moderation, which replaces an archived message by a tombstone.
 * Row formats are described where they are written. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <palaver/dataform.h>

#include "muc_room.h"

#define ROOM_FORMAT 1
#define HIST_FORMAT 1

/* room row flags */
#define RF_PERSISTENT 0x01
#define RF_PUBLIC 0x02
#define RF_MEMBERS 0x04
#define RF_MODERATED 0x08
#define RF_PASSWORD 0x10
#define RF_WHOIS 0x20
#define RF_INVITES 0x40
#define RF_SUBJECT 0x80

/* --- small helpers -------------------------------------------------- */

uint64_t
muc_now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

void
muc_make_id(char *out)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    uint8_t raw[MUC_ID_LEN];
    size_t got = 0, i;

    while (got < sizeof(raw)) {
        ssize_t n = getrandom(raw + got, sizeof(raw) - got, 0);
        if (n <= 0) {
            /* ids need uniqueness, not secrecy: the clock will do */
            uint64_t t = muc_now_us();
            for (; got < sizeof(raw); got++)
                raw[got] = (uint8_t)(t >> (8 * (got % 8))) ^ (uint8_t)got;
            break;
        }
        got += (size_t)n;
    }
    for (i = 0; i < MUC_ID_LEN; i++)
        out[i] = alphabet[raw[i] & 63];
    out[MUC_ID_LEN] = '\0';
}

static void
put_str16(pv_buf_t *b, const char *s)
{
    size_t len = s ? strlen(s) : 0;
    uint8_t hdr[2];

    if (len > 65535)
        len = 65535;
    hdr[0] = (uint8_t)(len >> 8);
    hdr[1] = (uint8_t)len;
    pv_buf_append(b, hdr, 2);
    if (len > 0)
        pv_buf_append(b, s, len);
}

static void
put_u32(pv_buf_t *b, uint32_t v)
{
    uint8_t x[4] = { (uint8_t)(v >> 24), (uint8_t)(v >> 16),
                     (uint8_t)(v >> 8), (uint8_t)v };

    pv_buf_append(b, x, 4);
}

typedef struct {
    const uint8_t *p;
    size_t left;
    int is_bad;
} reader_t;

static const uint8_t *
take(reader_t *rd, size_t n)
{
    const uint8_t *p = rd->p;

    if (rd->is_bad || rd->left < n) {
        rd->is_bad = 1;
        return NULL;
    }
    rd->p += n;
    rd->left -= n;
    return p;
}

static uint32_t
get_u32(reader_t *rd)
{
    const uint8_t *p = take(rd, 4);

    return p ? (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
               (uint32_t)p[2] << 8 | p[3] : 0;
}

/* A malloc'd string, or NULL for an empty one. */
static char *
get_str16(reader_t *rd)
{
    const uint8_t *h = take(rd, 2), *s;
    size_t n;

    if (h == NULL)
        return NULL;
    n = (size_t)h[0] << 8 | h[1];
    s = take(rd, n);
    if (s == NULL || n == 0)
        return NULL;
    return pv_xstrndup((const char *)s, n);
}

static void
log_write(void *arg, int rc)
{
    (void)arg;
    if (rc != PV_OK && rc != PV_NOTFOUND)
        pv_log(PV_LOG_ERROR, "mod_muc", "a room write failed (rc %d)", rc);
}

/* --- replies after the commit ---------------------------------------- */

typedef struct {
    muc_host_t *mh;
    pv_stanza_t *st;
} after_t;

static void
after_commit(void *arg, int rc)
{
    after_t *af = arg;

    if (!af->mh->is_dead) {
        if (rc == PV_OK) {
            pv_host_route(af->mh->h, af->st);
        } else {
            /* the answer was a result; turn it into an error for the
             * requester (same addresses, same id) */
            pv_stanza_t *err = pv_stanza_build("iq");
            const char *to = pv_node_attr(af->st->root, "to");
            const char *from = pv_node_attr(af->st->root, "from");
            pv_node_t *e;

            pv_node_set_attr(err->arena, err->root, "type", "error");
            pv_node_set_attr(err->arena, err->root, "id", af->st->id);
            pv_node_set_attr(err->arena, err->root, "to", to);
            pv_node_set_attr(err->arena, err->root, "from", from);
            e = pv_node_new(err->arena, "error", NULL, err->root);
            pv_node_set_attr(err->arena, e, "type", "wait");
            pv_node_new(err->arena, "internal-server-error",
                        "urn:ietf:params:xml:ns:xmpp-stanzas", e);
            pv_stanza_touch(err);
            pv_host_route(af->mh->h, err);
            pv_stanza_unref(err);
        }
    }
    pv_stanza_unref(af->st);
    muc_host_unref(af->mh);
    free(af);
}

void
muc_reply_after_commit(muc_host_t *mh, pv_stanza_t *st)
{
    after_t *af = pv_xcalloc(1, sizeof(*af));

    af->mh = muc_host_ref(mh);
    af->st = st;
    pv_host_after_commit(mh->h, after_commit, af);
}

/* --- room rows ------------------------------------------------------ */

/* muc.rooms (KEYVAL: service, room) holds: u8 format, u8 flags (RF_*),
 * u8 allowpm, u8 member-list roles, u32 maxusers, u32 historylength, the
 * 32-byte occupant-id secret, then str16 name, desc, password, subject,
 * subject nick. muc.affiliations (MAP: service, room, bare JID) holds one
 * u8 affiliation. */
static void
room_encode(const muc_room_t *r, pv_buf_t *b)
{
    const muc_config_t *c = &r->cfg;
    uint8_t hdr[4];

    hdr[0] = ROOM_FORMAT;
    hdr[1] = (uint8_t)((c->is_persistent ? RF_PERSISTENT : 0) |
                       (c->is_public ? RF_PUBLIC : 0) |
                       (c->is_members_only ? RF_MEMBERS : 0) |
                       (c->is_moderated ? RF_MODERATED : 0) |
                       (c->is_password ? RF_PASSWORD : 0) |
                       (c->is_whois_anyone ? RF_WHOIS : 0) |
                       (c->allow_invites ? RF_INVITES : 0) |
                       (c->change_subject ? RF_SUBJECT : 0));
    hdr[2] = (uint8_t)c->allow_pm;
    hdr[3] = (uint8_t)c->member_list_roles;
    pv_buf_append(b, hdr, 4);
    put_u32(b, (uint32_t)c->max_users);
    put_u32(b, (uint32_t)c->history_length);
    pv_buf_append(b, r->secret, sizeof(r->secret));
    put_str16(b, c->name);
    put_str16(b, c->desc);
    put_str16(b, c->password);
    put_str16(b, r->subject);
    put_str16(b, r->subject_nick);
}

static pv_rc_t
room_decode(muc_room_t *r, const void *val, size_t len)
{
    reader_t rd = { val, len, 0 };
    muc_config_t *c = &r->cfg;
    const uint8_t *h = take(&rd, 4), *sec;
    long long hmax = muc_conf(r->mh)->history_max;

    if (h == NULL || h[0] != ROOM_FORMAT)
        return PV_ERROR;
    c->is_persistent = !!(h[1] & RF_PERSISTENT);
    c->is_public = !!(h[1] & RF_PUBLIC);
    c->is_members_only = !!(h[1] & RF_MEMBERS);
    c->is_moderated = !!(h[1] & RF_MODERATED);
    c->is_password = !!(h[1] & RF_PASSWORD);
    c->is_whois_anyone = !!(h[1] & RF_WHOIS);
    c->allow_invites = !!(h[1] & RF_INVITES);
    c->change_subject = !!(h[1] & RF_SUBJECT);
    c->allow_pm = h[2] <= PM_NONE ? h[2] : PM_ANYONE;
    c->member_list_roles = h[3];
    c->max_users = get_u32(&rd);
    c->history_length = get_u32(&rd);
    if (c->history_length > hmax)
        c->history_length = hmax;
    sec = take(&rd, MUC_SECRET_LEN);
    if (sec != NULL)
        memcpy(r->secret, sec, MUC_SECRET_LEN);
    c->name = get_str16(&rd);
    c->desc = get_str16(&rd);
    c->password = get_str16(&rd);
    r->subject = get_str16(&rd);
    r->subject_nick = get_str16(&rd);
    return rd.is_bad ? PV_ERROR : PV_OK;
}

void
muc_store_aff(muc_room_t *r, const char *jid, int aff)
{
    muc_host_t *mh = r->mh;
    uint8_t v = (uint8_t)aff;

    if (!r->cfg.is_persistent)
        return;
    if (aff == AFF_NONE)
        pv_store_delete(mh->affs, pv_host_name(mh->h), r->node, jid,
                        log_write, NULL);
    else
        pv_store_put(mh->affs, pv_host_name(mh->h), r->node, jid, &v, 1,
                     log_write, NULL);
}

void
muc_store_room(muc_room_t *r, pv_store_done_t *cb, void *arg)
{
    muc_host_t *mh = r->mh;
    const char *host = pv_host_name(mh->h);
    pv_buf_t b = { 0 };
    muc_aff_t *a;

    if (!r->cfg.is_persistent) {
        /* a room made temporary keeps its archive until it ends, but no
         * longer survives a restart */
        pv_store_delete(mh->rooms, host, r->node, NULL, log_write, NULL);
        pv_store_delete_user(mh->affs, host, r->node, log_write, NULL);
        if (cb != NULL)
            pv_host_after_commit(mh->h, cb, arg);
        return;
    }
    room_encode(r, &b);
    pv_store_put(mh->rooms, host, r->node, NULL, b.data, b.len,
                 cb ? cb : log_write, arg);
    pv_buf_free(&b);
    for (a = r->affs; a != NULL; a = a->next)
        muc_store_aff(r, a->jid, a->aff);
}

void
muc_store_vcard(muc_room_t *r, pv_store_done_t *cb, void *arg)
{
    muc_host_t *mh = r->mh;
    pv_buf_t b = { 0 };

    if (r->vcard == NULL)
        return;
    pv_node_pack(r->vcard, &b);
    pv_store_put(mh->vcards, pv_host_name(mh->h), r->node, NULL, b.data,
                 b.len, cb ? cb : log_write, arg);
    pv_buf_free(&b);
}

void
muc_store_forget(muc_room_t *r, pv_store_done_t *cb, void *arg)
{
    muc_host_t *mh = r->mh;
    const char *host = pv_host_name(mh->h);

    pv_store_delete_user(mh->rooms, host, r->node, log_write, NULL);
    pv_store_delete_user(mh->affs, host, r->node, log_write, NULL);
    pv_store_delete_user(mh->vcards, host, r->node, log_write, NULL);
    pv_store_delete_user(mh->archive, host, r->node, cb ? cb : log_write,
                         arg);
}

/* --- loading -------------------------------------------------------- */

typedef struct {
    char **names;
    size_t n, cap;
} names_t;

static int
collect_name(const char *user, size_t len, void *arg)
{
    names_t *nl = arg;

    if (nl->n == nl->cap) {
        nl->cap = nl->cap ? 2 * nl->cap : 16;
        nl->names = pv_xrealloc(nl->names, nl->cap * sizeof(char *));
    }
    nl->names[nl->n++] = pv_xstrndup(user, len);
    return 0;
}

static void
names_free(names_t *nl)
{
    size_t i;

    for (i = 0; i < nl->n; i++)
        free(nl->names[i]);
    free(nl->names);
}

static int
load_aff(const char *key, size_t key_len, const void *val, size_t len,
         void *arg)
{
    muc_room_t *r = arg;
    uint8_t aff = len == 1 ? *(const uint8_t *)val : 0xff;

    (void)key_len;
    if (aff <= AFF_OWNER && aff != AFF_NONE)
        muc_aff_set_mem(r, key, aff);
    return 0;
}

typedef struct {
    muc_hist_t *items;
    size_t n, cap;
} hist_load_t;

/* A stored message as a stanza of its own (history ring, moderation). */
static pv_stanza_t *
row_stanza(const void *val, size_t len)
{
    const uint8_t *p = val;
    pv_arena_t *a;
    pv_node_t *root;

    if (len < 3 || p[0] != HIST_FORMAT)
        return NULL;
    a = pv_arena_new(len * 2 + 256);
    root = pv_node_unpack(a, p + 2, len - 2, NULL);
    if (root == NULL) {
        pv_arena_free(a);
        return NULL;
    }
    return pv_stanza_new(a, root);
}

static int
load_hist(uint64_t ts, const char *id, const void *val, size_t len,
          void *arg)
{
    hist_load_t *hl = arg;
    pv_stanza_t *st = row_stanza(val, len);

    if (st == NULL)
        return 0;
    if (hl->n < hl->cap) {
        hl->items[hl->n].st = st;
        hl->items[hl->n].ts_us = ts;
        snprintf(hl->items[hl->n].id, sizeof(hl->items[hl->n].id), "%s",
                 id);
        hl->n++;
    } else {
        pv_stanza_unref(st);
    }
    return hl->n >= hl->cap;
}

static void
load_room(muc_host_t *mh, const char *node)
{
    const char *host = pv_host_name(mh->h);
    pv_archive_query_t q;
    hist_load_t hl;
    muc_room_t *r;
    void *val;
    size_t len, i;

    if (pv_store_get(mh->rooms, host, node, NULL, &val, &len) != PV_OK)
        return;
    r = muc_room_new(mh, node);
    memset(&r->cfg, 0, sizeof(r->cfg));
    if (room_decode(r, val, len) != PV_OK)
        pv_log(PV_LOG_ERROR, host, "mod_muc: room %s has a damaged row; "
               "loaded what could be read", node);
    free(val);
    muc_hist_resize(r);
    pv_store_map_each(mh->affs, host, node, load_aff, r);
    if (pv_store_get(mh->vcards, host, node, NULL, &val, &len) == PV_OK) {
        r->vcard_arena = pv_arena_new(len * 2 + 256);
        r->vcard = pv_node_unpack(r->vcard_arena, val, len, NULL);
        free(val);
        muc_avatar_update(r);
    }
    /* the history ring: the newest historylength messages */
    memset(&hl, 0, sizeof(hl));
    hl.cap = r->hist_cap;
    if (hl.cap > 0) {
        hl.items = pv_xcalloc(hl.cap, sizeof(*hl.items));
        memset(&q, 0, sizeof(q));
        q.limit = hl.cap;
        q.is_reverse = 1;
        pv_store_archive_query(mh->archive, host, node, &q, load_hist, &hl,
                               NULL);
        for (i = hl.n; i-- > 0;) {
            muc_hist_push(r, hl.items[i].st, hl.items[i].ts_us,
                          hl.items[i].id);
            pv_stanza_unref(hl.items[i].st);
            if (hl.items[i].ts_us > mh->last_ts)
                mh->last_ts = hl.items[i].ts_us;
        }
        free(hl.items);
    }
}

void
muc_store_load(muc_host_t *mh)
{
    const char *host = pv_host_name(mh->h);
    names_t nl = { 0 };
    size_t i;

    pv_store_users(mh->rooms, host, collect_name, &nl);
    for (i = 0; i < nl.n; i++)
        load_room(mh, nl.names[i]);
    names_free(&nl);
    /* archives of temporary rooms that ended with the last process */
    memset(&nl, 0, sizeof(nl));
    pv_store_users(mh->archive, host, collect_name, &nl);
    for (i = 0; i < nl.n; i++) {
        muc_room_t *r;

        for (r = mh->list; r != NULL; r = r->next)
            if (strcmp(r->node, nl.names[i]) == 0)
                break;
        if (r == NULL)
            pv_store_delete_user(mh->archive, host, nl.names[i], log_write,
                                 NULL);
    }
    names_free(&nl);
}

/* --- archive -------------------------------------------------------- */

/* Strictly rising timestamps, also across a restart (the ring's newest
 * loaded item is the floor). */
static uint64_t
next_ts(muc_host_t *mh)
{
    uint64_t now = muc_now_us();

    if (now <= mh->last_ts)
        now = mh->last_ts + 1;
    mh->last_ts = now;
    return now;
}

/* muc.history (ARCHIVE: service, room, timestamp, stanza-id) holds: u8
 * format, u8 flags (unused, 0), then the message as broadcast (from
 * room/nick, no 'to') in pv_node_pack form. */
static pv_rc_t
archive_put(muc_room_t *r, const pv_node_t *root, uint64_t ts,
            const char *id)
{
    muc_host_t *mh = r->mh;
    pv_buf_t b = { 0 };
    pv_rc_t rc;

    pv_buf_append(&b, (const uint8_t[]){ HIST_FORMAT, 0 }, 2);
    pv_node_pack(root, &b);
    rc = pv_store_archive_append(mh->archive, pv_host_name(mh->h), r->node,
                                 ts, id, b.data, b.len, log_write, NULL);
    pv_buf_free(&b);
    return rc;
}

void
muc_archive_add(muc_room_t *r, pv_stanza_t *st, const char *id)
{
    uint64_t ts = next_ts(r->mh);

    if (archive_put(r, st->root, ts, id) != PV_OK)
        pv_log(PV_LOG_ERROR, "mod_muc", "cannot archive a message of %s",
               r->jid);
    muc_hist_push(r, st, ts, id);
}

/* --- deferred requests (MAM, moderation) ----------------------------- */

typedef struct req_s {
    muc_host_t *mh;
    pv_stanza_t *req;
    char *room;
    void (*run)(struct req_s *q, muc_room_t *r);
} req_t;

static void
req_error(req_t *q, pv_err_type_t type, const char *cond, const char *text)
{
    pv_stanza_t *err = pv_stanza_error(q->req, type, cond, text);

    if (err != NULL) {
        pv_host_route(q->mh->h, err);
        pv_stanza_unref(err);
    }
}

static void
req_run(void *arg, int rc)
{
    req_t *q = arg;

    if (!q->mh->is_dead) {
        muc_room_t *r;

        for (r = q->mh->list; r != NULL; r = r->next)
            if (strcmp(r->node, q->room) == 0)
                break;
        if (rc != PV_OK)
            req_error(q, PV_ERR_WAIT, "internal-server-error", NULL);
        else if (r == NULL)
            req_error(q, PV_ERR_CANCEL, "item-not-found", NULL);
        else
            q->run(q, r);
    }
    muc_host_unref(q->mh);
    pv_stanza_unref(q->req);
    free(q->room);
    free(q);
}

/* Runs run() once what was written so far is committed: a query sees
 * every message already reflected, a moderation finds its row. */
static void
req_defer(pv_event_t *ev, muc_room_t *r,
          void (*run)(req_t *q, muc_room_t *r))
{
    req_t *q = pv_xcalloc(1, sizeof(*q));

    q->mh = muc_host_ref(r->mh);
    q->req = pv_stanza_ref(ev->stanza);
    q->room = pv_xstrdup(r->node);
    q->run = run;
    pv_host_after_commit(ev->host, req_run, q);
}

/* --- MUC MAM (XEP-0313 §5 on a room) --------------------------------- */

void
muc_mam_form(pv_event_t *ev)
{
    pv_stanza_t *st = pv_iq_result(ev->stanza);
    pv_arena_t *a = st->arena;
    pv_node_t *q = pv_node_new(a, "query", NS_MAM, st->root);
    pv_node_t *x = pv_node_new(a, "x", NS_DATA, q);

    pv_node_set_attr(a, x, "type", "form");
    pv_form_add_field(a, x, "FORM_TYPE", "hidden", NULL, NS_MAM);
    pv_form_add_field(a, x, "start", "text-single", NULL, NULL);
    pv_form_add_field(a, x, "end", "text-single", NULL, NULL);
    pv_form_add_field(a, x, "before-id", "text-single", NULL, NULL);
    pv_form_add_field(a, x, "after-id", "text-single", NULL, NULL);
    pv_form_add_field(a, x, "ids", "text-multi", NULL, NULL);
    pv_event_reply(ev, st);
}

typedef struct {
    uint64_t ts;
    char *id;
    void *val;
    size_t len;
} item_t;

typedef struct {
    item_t *items;
    size_t n, want;
} scan_t;

static int
scan_row(uint64_t ts, const char *id, const void *val, size_t len,
         void *arg)
{
    scan_t *sc = arg;
    item_t *it;

    if (sc->n >= sc->want)
        return 1;
    it = &sc->items[sc->n++];
    it->ts = ts;
    it->id = pv_xstrdup(id);
    it->val = pv_xmalloc(len ? len : 1);
    memcpy(it->val, val, len);
    it->len = len;
    return sc->n >= sc->want;
}

static void
scan_free(scan_t *sc)
{
    size_t i;

    for (i = 0; i < sc->n; i++) {
        free(sc->items[i].id);
        free(sc->items[i].val);
    }
    free(sc->items);
}

typedef struct {
    uint64_t start, end;
    const char *after, *before;
    int is_last_page, is_flip;
    const char **ids;
    size_t n_ids;
    size_t max;
} query_t;

static pv_rc_t
query_parse(pv_stanza_t *req, const pv_node_t *query, size_t max_page,
            query_t *q, const char **cond, const char **text)
{
    pv_arena_t *a = req->arena;
    const pv_node_t *x, *f;
    pv_rsm_t rsm;

    memset(q, 0, sizeof(*q));
    q->max = max_page;
    *cond = "bad-request";
    *text = NULL;
    x = pv_node_child(query, "x", NS_DATA);
    for (f = x ? pv_node_child(x, "field", NULL) : NULL; f != NULL;
         f = pv_node_next_child(x, f, "field", NULL)) {
        const char *var = pv_node_attr(f, "var");
        const char *val;

        val = pv_form_field_value(f, a);
        if (var == NULL)
            continue;
        if (strcmp(var, "ids") == 0) {
            if (pv_form_field_values(f, a, PV_ARCHIVE_MAX_LIMIT, &q->ids,
                                     &q->n_ids) != PV_OK) {
                *text = "too many ids";
                return PV_ERROR;
            }
            continue;
        }
        if (val == NULL || *val == '\0')
            continue;
        if (strcmp(var, "FORM_TYPE") == 0) {
            if (strcmp(val, NS_MAM) != 0) {
                *text = "FORM_TYPE is not " NS_MAM;
                return PV_ERROR;
            }
        } else if (strcmp(var, "start") == 0) {
            if (pv_datetime_parse(val, &q->start) != PV_OK) {
                *text = "bad start";
                return PV_ERROR;
            }
            if (q->start == 0)
                q->start = 1;
        } else if (strcmp(var, "end") == 0) {
            if (pv_datetime_parse(val, &q->end) != PV_OK || q->end == 0) {
                *text = "bad end";
                return PV_ERROR;
            }
        } else if (strcmp(var, "after-id") == 0) {
            q->after = val;
        } else if (strcmp(var, "before-id") == 0) {
            q->before = val;
        } else {
            /* 'with' and others: a room archive is one conversation */
            *cond = "feature-not-implemented";
            *text = "unsupported field";
            return PV_ERROR;
        }
    }
    switch (pv_rsm_parse(query, a, &rsm, cond, text)) {
    case PV_NOTFOUND:
        break;
    case PV_OK:
        if (rsm.has_max && rsm.max < max_page)
            q->max = rsm.max;
        if (rsm.after != NULL && *rsm.after != '\0')
            q->after = rsm.after;
        if (rsm.before != NULL) {
            q->is_last_page = 1;
            if (*rsm.before != '\0')
                q->before = rsm.before;
        }
        break;
    default:
        return PV_ERROR;
    }
    q->is_flip = pv_node_child(query, "flip-page", NULL) != NULL;
    return PV_OK;
}

static pv_stanza_t *
result_message(muc_room_t *r, const char *to, const char *queryid,
               const item_t *it)
{
    pv_stanza_t *st;
    pv_node_t *res, *fwd, *delay;
    const uint8_t *p = it->val;
    char stamp[48];

    if (it->len < 3 || p[0] != HIST_FORMAT)
        return NULL;
    st = pv_stanza_build("message");
    pv_node_set_attr(st->arena, st->root, "to", to);
    pv_node_set_attr(st->arena, st->root, "from", r->jid);
    res = pv_node_new(st->arena, "result", NS_MAM, st->root);
    if (queryid != NULL)
        pv_node_set_attr(st->arena, res, "queryid", queryid);
    pv_node_set_attr(st->arena, res, "id", it->id);
    fwd = pv_node_new(st->arena, "forwarded", NS_FORWARD, res);
    delay = pv_node_new(st->arena, "delay", NS_DELAY, fwd);
    pv_datetime_format(it->ts, 6, stamp, sizeof(stamp));
    pv_node_set_attr(st->arena, delay, "stamp", stamp);
    if (pv_node_unpack(st->arena, p + 2, it->len - 2, fwd) == NULL) {
        pv_stanza_unref(st);
        return NULL;
    }
    pv_stanza_touch(st);
    return st;
}

static int
archive_has(muc_room_t *r, const char *id)
{
    pv_archive_query_t q;
    pv_archive_result_t res;
    int found;

    memset(&q, 0, sizeof(q));
    memset(&res, 0, sizeof(res));
    q.ids = &id;
    q.n_ids = 1;
    q.limit = 1;
    found = pv_store_archive_query(r->mh->archive, pv_host_name(r->mh->h),
                                   r->node, &q, NULL, NULL, &res) == PV_OK
            && res.count == 1;
    pv_archive_result_clear(&res);
    return found;
}

static void
mam_run(req_t *rq, muc_room_t *r)
{
    muc_host_t *mh = r->mh;
    const pv_node_t *query = pv_node_first_element(rq->req->root);
    const char *queryid = pv_node_attr(query, "queryid");
    const char *to = pv_node_attr(rq->req->root, "from");
    const char *cond, *text;
    pv_archive_query_t q;
    pv_archive_result_t res;
    query_t mq;
    scan_t sc;
    pv_stanza_t *st;
    pv_node_t *fin;
    size_t i, page;
    int is_complete;

    if (to == NULL)
        return;
    if (query_parse(rq->req, query, (size_t)muc_conf(mh)->max_page, &mq,
                    &cond, &text) != PV_OK) {
        req_error(rq, strcmp(cond, "bad-request") == 0 ? PV_ERR_MODIFY
                  : PV_ERR_CANCEL, cond, text);
        return;
    }
    if ((mq.after && !archive_has(r, mq.after)) ||
        (mq.before && !archive_has(r, mq.before))) {
        req_error(rq, PV_ERR_CANCEL, "item-not-found", NULL);
        return;
    }
    memset(&sc, 0, sizeof(sc));
    sc.want = mq.max + 1;
    sc.items = pv_xcalloc(sc.want, sizeof(*sc.items));
    memset(&q, 0, sizeof(q));
    memset(&res, 0, sizeof(res));
    q.start_us = mq.start;
    q.end_us = mq.end;
    q.after_id = mq.after;
    q.before_id = mq.before;
    q.ids = mq.ids;
    q.n_ids = mq.n_ids;
    q.is_reverse = mq.is_last_page;
    q.limit = sc.want > PV_ARCHIVE_MAX_LIMIT ? PV_ARCHIVE_MAX_LIMIT
                                             : sc.want;
    if (pv_store_archive_query(mh->archive, pv_host_name(mh->h), r->node,
                               &q, scan_row, &sc, &res) != PV_OK) {
        pv_archive_result_clear(&res);
        scan_free(&sc);
        req_error(rq, PV_ERR_WAIT, "internal-server-error", NULL);
        return;
    }
    pv_archive_result_clear(&res);
    is_complete = sc.n < sc.want;
    page = sc.n < mq.max ? sc.n : mq.max;
    /* a <before/> scan runs newest first: pages go out in time order
     * (XEP-0313 §4.3), reversed only on <flip-page/> */
    if (q.is_reverse != mq.is_flip) {
        for (i = 0; i < page / 2; i++) {
            item_t tmp = sc.items[i];
            sc.items[i] = sc.items[page - 1 - i];
            sc.items[page - 1 - i] = tmp;
        }
    }
    for (i = 0; i < page; i++) {
        st = result_message(r, to, queryid, &sc.items[i]);
        if (st == NULL)
            continue;
        pv_host_route(mh->h, st);
        pv_stanza_unref(st);
    }
    st = pv_iq_result(rq->req);
    fin = pv_node_new(st->arena, "fin", NS_MAM, st->root);
    if (is_complete)
        pv_node_set_attr(st->arena, fin, "complete", "true");
    if (page > 0) {
        size_t lo = mq.is_flip ? page - 1 : 0;
        size_t hi = mq.is_flip ? 0 : page - 1;

        pv_rsm_answer(st->arena, fin, sc.items[lo].id, sc.items[hi].id, -1);
    } else {
        pv_rsm_answer(st->arena, fin, NULL, NULL, is_complete ? 0 : -1);
    }
    pv_host_route(mh->h, st);
    pv_stanza_unref(st);
    scan_free(&sc);
}

void
muc_mam_query(pv_event_t *ev, muc_room_t *r)
{
    req_defer(ev, r, mam_run);
}

/* --- moderation (XEP-0425) ------------------------------------------- */

/* The retracted message's id: v1 <moderate id=/>, v0 <apply-to id=/>
 * around <moderate xmlns=':0'/>. NULL when the request is malformed. */
static const char *
moderate_target(const pv_node_t *p, const pv_node_t **reason)
{
    const pv_node_t *m = p;

    if (strcmp(p->xmlns, NS_FASTEN) == 0) {
        m = pv_node_child(p, "moderate", NS_MOD0);
        if (m == NULL || pv_node_child(m, "retract", NS_RETRACT0) == NULL)
            return NULL;
    } else if (pv_node_child(p, "retract", NS_RETRACT1) == NULL) {
        return NULL;
    }
    *reason = pv_node_child(m, "reason", NULL);
    return pv_node_attr(p, "id");
}

typedef struct {
    uint64_t ts;
    void *val;
    size_t len;
} found_t;

static int
found_row(uint64_t ts, const char *id, const void *val, size_t len,
          void *arg)
{
    found_t *f = arg;

    (void)id;
    f->ts = ts;
    f->val = pv_xmalloc(len ? len : 1);
    memcpy(f->val, val, len);
    f->len = len;
    return 1;
}

/* The archived row's replacement: who wrote it, its ids, and who
 * retracted it when (XEP-0425 §5: the archive keeps a tombstone, not the
 * text), in both namespaces clients read. */
static pv_stanza_t *
tombstone(const pv_stanza_t *orig, const char *by, const char *stamp,
          const char *reason)
{
    pv_stanza_t *tomb = pv_stanza_build("message");
    pv_arena_t *a = tomb->arena;
    pv_node_t *n, *m, *c;

    pv_node_set_attr(a, tomb->root, "from", pv_node_attr(orig->root,
                                                         "from"));
    pv_node_set_attr(a, tomb->root, "type", "groupchat");
    n = pv_node_new(a, "retracted", NS_RETRACT1, tomb->root);
    pv_node_set_attr(a, n, "stamp", stamp);
    m = pv_node_new(a, "moderated", NS_MOD1, n);
    pv_node_set_attr(a, m, "by", by);
    if (reason != NULL)
        pv_node_add_text(a, pv_node_new(a, "reason", NULL, n), reason,
                         strlen(reason));
    m = pv_node_new(a, "moderated", NS_MOD0, tomb->root);
    pv_node_set_attr(a, m, "by", by);
    n = pv_node_new(a, "retracted", NS_RETRACT0, m);
    pv_node_set_attr(a, n, "stamp", stamp);
    for (c = orig->root->children; c != NULL; c = c->next)
        if (c->name != NULL && (strcmp(c->xmlns, NS_SID) == 0 ||
                                strcmp(c->xmlns, NS_OID) == 0))
            pv_node_append(tomb->root, pv_node_copy(a, c));
    pv_stanza_touch(tomb);
    return tomb;
}

/* The retraction every occupant gets (v1 and v0 in one message). */
static pv_stanza_t *
retraction(muc_room_t *r, muc_occ_t *mod, const char *id, const char *by,
           const char *reason, char *nid)
{
    pv_stanza_t *st = pv_stanza_build("message");
    pv_arena_t *a = st->arena;
    pv_node_t *n, *m, *c;

    pv_node_set_attr(a, st->root, "from", r->jid);
    pv_node_set_attr(a, st->root, "type", "groupchat");
    muc_make_id(nid);
    pv_node_set_attr(a, st->root, "id", nid);
    n = pv_node_new(a, "retract", NS_RETRACT1, st->root);
    pv_node_set_attr(a, n, "id", id);
    m = pv_node_new(a, "moderated", NS_MOD1, n);
    pv_node_set_attr(a, m, "by", by);
    c = pv_node_new(a, "occupant-id", NS_OID, m);
    pv_node_set_attr(a, c, "id", mod->oid);
    if (reason != NULL)
        pv_node_add_text(a, pv_node_new(a, "reason", NULL, n), reason,
                         strlen(reason));
    n = pv_node_new(a, "apply-to", NS_FASTEN, st->root);
    pv_node_set_attr(a, n, "id", id);
    m = pv_node_new(a, "moderated", NS_MOD0, n);
    pv_node_set_attr(a, m, "by", by);
    pv_node_new(a, "retract", NS_RETRACT0, m);
    if (reason != NULL)
        pv_node_add_text(a, pv_node_new(a, "reason", NULL, m), reason,
                         strlen(reason));
    n = pv_node_new(a, "stanza-id", NS_SID, st->root);
    pv_node_set_attr(a, n, "id", nid);
    pv_node_set_attr(a, n, "by", r->jid);
    pv_stanza_touch(st);
    return st;
}

static void
moderate_run(req_t *rq, muc_room_t *r)
{
    muc_host_t *mh = r->mh;
    const pv_node_t *p = pv_node_first_element(rq->req->root), *reason_n;
    const char *from = pv_node_attr(rq->req->root, "from");
    const char *id = moderate_target(p, &reason_n);
    const char *reason = reason_n ? pv_node_text(reason_n,
                                                 rq->req->arena) : NULL;
    muc_occ_t *mod = from ? muc_occ_by_real(r, from) : NULL;
    pv_archive_query_t q;
    found_t f;
    pv_stanza_t *orig, *tomb, *st;
    char stamp[48], by[1024], nid[MUC_ID_LEN + 1];
    size_t i;

    if (id == NULL) {
        req_error(rq, PV_ERR_MODIFY, "bad-request", NULL);
        return;
    }
    if (mod == NULL || mod->role != ROLE_MODERATOR) {
        req_error(rq, PV_ERR_AUTH, "forbidden", NULL);
        return;
    }
    memset(&q, 0, sizeof(q));
    memset(&f, 0, sizeof(f));
    q.ids = &id;
    q.n_ids = 1;
    q.limit = 1;
    if (pv_store_archive_query(mh->archive, pv_host_name(mh->h), r->node,
                               &q, found_row, &f, NULL) != PV_OK ||
        f.val == NULL) {
        free(f.val);
        req_error(rq, PV_ERR_CANCEL, "item-not-found", NULL);
        return;
    }
    orig = row_stanza(f.val, f.len);
    free(f.val);
    if (orig == NULL) {
        req_error(rq, PV_ERR_WAIT, "internal-server-error", NULL);
        return;
    }
    snprintf(by, sizeof(by), "%s/%s", r->jid, mod->nick);
    pv_datetime_format(muc_now_us(), 6, stamp, sizeof(stamp));
    tomb = tombstone(orig, by, stamp, reason);
    pv_stanza_unref(orig);
    /* queued in order, committed in one group: the row goes and its
     * tombstone takes its place under the same id and time */
    pv_store_archive_delete_id(mh->archive, pv_host_name(mh->h), r->node,
                               id, log_write, NULL);
    archive_put(r, tomb->root, f.ts, id);
    for (i = 0; i < r->hist_n; i++) {
        muc_hist_t *e = &r->hist[(r->hist_head + i) % r->hist_cap];
        if (strcmp(e->id, id) == 0) {
            pv_stanza_unref(e->st);
            e->st = pv_stanza_ref(tomb);
        }
    }
    pv_stanza_unref(tomb);
    st = retraction(r, mod, id, by, reason, nid);
    muc_archive_add(r, st, nid);
    muc_broadcast(r, st);
    pv_stanza_unref(st);
    muc_reply_after_commit(mh, pv_iq_result(rq->req));
}

void
muc_moderate(pv_event_t *ev, muc_room_t *r, muc_occ_t *mod)
{
    const pv_node_t *reason;

    if (moderate_target(ev->payload, &reason) == NULL) {
        pv_event_error(ev, PV_ERR_MODIFY, "bad-request", NULL);
        return;
    }
    if (mod == NULL || mod->role != ROLE_MODERATOR) {
        pv_event_error(ev, PV_ERR_AUTH, "forbidden", NULL);
        return;
    }
    req_defer(ev, r, moderate_run);
}
