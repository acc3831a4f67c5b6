/* modules/mod_mam.c: XEP-0313 Message Archive Management (urn:xmpp:mam:2
 * and #extended) for local accounts: archives every eligible 1:1 message
 * a user sends or receives in the archive store "mam.archive", marks the
 * recipient's copy with a XEP-0359 stanza-id, answers archive queries with
 * XEP-0059 paging, keeps per-user preferences ("mam.prefs") and applies
 * the retention period. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <palaver/dataform.h>
#include <palaver/datetime.h>
#include <palaver/module.h>
#include <palaver/roster.h>

#define NS_MAM "urn:xmpp:mam:2"
#define NS_MAM_EXT "urn:xmpp:mam:2#extended"
#define NS_SID "urn:xmpp:sid:0"
#define NS_DATA PV_NS_DATA
#define NS_FORWARD "urn:xmpp:forward:0"
#define NS_DELAY "urn:xmpp:delay"
#define NS_HINTS "urn:xmpp:hints"
#define NS_CARBONS "urn:xmpp:carbons:2"
#define NS_OMEMO_OLD "eu.siacs.conversations.axolotl"
#define NS_OMEMO "urn:xmpp:omemo:2"

/* Row layout, version 1: format byte, flags byte, the other party's bare
 * JID and resource (u16 big-endian length + bytes each; resource length 0
 * = none), then the message in the core's packed tree form. The header
 * lets a 'with' query filter without unpacking a single message. */
#define MAM_FORMAT 1
#define MAM_FLAG_OUT 0x01     /* the archive owner sent it */

/* XEP-0359 ids: 12 random bytes, base64url without padding. */
#define MAM_ID_LEN 16

enum { MAM_ALWAYS, MAM_ROSTER, MAM_NEVER };
static const char *const mam_policy_names[] = { "always", "roster", "never",
                                                NULL };

typedef struct {
    long long max_page;
    int default_policy;
    pv_duration_t retention;
} mam_conf_t;

/* Per host. Refcounted because store callbacks may run after host_fini
 * (a reload): they then only free their context. */
struct mam_put_s;

typedef struct {
    unsigned refs;
    int is_dead;
    pv_module_t *m;
    pv_host_t *h;
    pv_store_t *archive;
    pv_store_t *prefs;
    uint64_t last_ts;         /* keeps timestamps strictly rising */
    /* appends not yet committed: reads cannot see them, yet a message
     * may come back for re-routing before its row is committed */
    struct mam_put_s *pending;
} mam_host_t;

static mam_host_t *
mh_ref(mam_host_t *mh)
{
    mh->refs++;
    return mh;
}

static void
mh_unref(mam_host_t *mh)
{
    if (--mh->refs == 0)
        free(mh);
}

/* --- small helpers -------------------------------------------------- */

static uint64_t
now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}


static void
mam_make_id(char *out)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    uint8_t raw[12];
    size_t got = 0, i;

    while (got < sizeof(raw)) {
        ssize_t n = getrandom(raw + got, sizeof(raw) - got, 0);
        if (n <= 0) {
            /* never expected; ids need uniqueness, not secrecy: fall
             * back to the clock */
            uint64_t t = now_us();
            for (; got < sizeof(raw); got++)
                raw[got] = (uint8_t)(t >> (8 * (got % 8))) ^ (uint8_t)got;
            break;
        }
        got += (size_t)n;
    }
    for (i = 0; i < 4; i++) {
        uint32_t v = (uint32_t)raw[3 * i] << 16 |
                     (uint32_t)raw[3 * i + 1] << 8 | raw[3 * i + 2];
        out[4 * i] = alphabet[(v >> 18) & 63];
        out[4 * i + 1] = alphabet[(v >> 12) & 63];
        out[4 * i + 2] = alphabet[(v >> 6) & 63];
        out[4 * i + 3] = alphabet[v & 63];
    }
    out[MAM_ID_LEN] = '\0';
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

/* Header fields of a row; pointers into the row. PV_ERROR: corrupt. */
typedef struct {
    unsigned flags;
    const char *bare;
    size_t bare_len;
    const char *res;
    size_t res_len;
    const uint8_t *packed;
    size_t packed_len;
} mam_row_t;

static pv_rc_t
row_parse(const void *val, size_t len, mam_row_t *r)
{
    const uint8_t *p = val;
    size_t off = 2, n;

    if (len < 6 || p[0] != MAM_FORMAT)
        return PV_ERROR;
    r->flags = p[1];
    n = (size_t)p[off] << 8 | p[off + 1];
    off += 2;
    if (off + n + 2 > len)
        return PV_ERROR;
    r->bare = (const char *)p + off;
    r->bare_len = n;
    off += n;
    n = (size_t)p[off] << 8 | p[off + 1];
    off += 2;
    if (off + n > len)
        return PV_ERROR;
    r->res = (const char *)p + off;
    r->res_len = n;
    off += n;
    r->packed = p + off;
    r->packed_len = len - off;
    return PV_OK;
}

/* --- preferences (XEP-0313 §6) ---------------------------------------
 * Stored per user in "mam.prefs" as text: the default policy on the first
 * line, then one line per JID, "+jid" (always) or "-jid" (never). */

typedef struct {
    int def;
    char **always;
    size_t n_always;
    char **never;
    size_t n_never;
} mam_prefs_t;

static void
prefs_free(mam_prefs_t *p)
{
    size_t i;

    for (i = 0; i < p->n_always; i++)
        free(p->always[i]);
    for (i = 0; i < p->n_never; i++)
        free(p->never[i]);
    free(p->always);
    free(p->never);
    memset(p, 0, sizeof(*p));
}

static void
prefs_add(char ***list, size_t *n, const char *s, size_t len)
{
    *list = pv_xrealloc(*list, (*n + 1) * sizeof(**list));
    (*list)[(*n)++] = pv_xstrndup(s, len);
}

/* Loads user's prefs (the configured default when none are stored). */
static void
prefs_load(mam_host_t *mh, const char *user, mam_prefs_t *p)
{
    const mam_conf_t *conf = pv_module_conf(mh->m, mh->h);
    void *val = NULL;
    size_t len = 0;
    const char *s, *end, *nl;
    int i;

    memset(p, 0, sizeof(*p));
    p->def = conf->default_policy;
    if (mh->prefs == NULL ||
        pv_store_get(mh->prefs, pv_host_name(mh->h), user, NULL, &val,
                     &len) != PV_OK)
        return;
    s = val;
    end = s + len;
    nl = memchr(s, '\n', len);
    if (nl == NULL)
        nl = end;
    for (i = 0; mam_policy_names[i] != NULL; i++)
        if (strlen(mam_policy_names[i]) == (size_t)(nl - s) &&
            memcmp(mam_policy_names[i], s, (size_t)(nl - s)) == 0)
            p->def = i;
    for (s = nl < end ? nl + 1 : end; s < end; s = nl + 1) {
        nl = memchr(s, '\n', (size_t)(end - s));
        if (nl == NULL)
            nl = end;
        if (nl - s > 1 && *s == '+')
            prefs_add(&p->always, &p->n_always, s + 1, (size_t)(nl - s - 1));
        else if (nl - s > 1 && *s == '-')
            prefs_add(&p->never, &p->n_never, s + 1, (size_t)(nl - s - 1));
        if (nl == end)
            break;
    }
    free(val);
}

static int
prefs_has(char *const *list, size_t n, const char *jid)
{
    size_t i;

    for (i = 0; i < n; i++)
        if (strcmp(list[i], jid) == 0)
            return 1;
    return 0;
}

static void
roster_found(void *arg, const pv_roster_item_t *item)
{
    if (item->is_listed)
        *(int *)arg = 1;
}

/* XEP-0313 §6: whether user's archive takes a message with contact (a
 * prepared bare JID). 'never' wins over 'always' for a JID in both. */
static int
prefs_allow(mam_host_t *mh, const char *user, const char *contact)
{
    mam_prefs_t p;
    int allow;

    prefs_load(mh, user, &p);
    if (prefs_has(p.never, p.n_never, contact))
        allow = 0;
    else if (prefs_has(p.always, p.n_always, contact))
        allow = 1;
    else if (p.def == MAM_ALWAYS)
        allow = 1;
    else if (p.def == MAM_NEVER)
        allow = 0;
    else {
        /* 'roster': ask mod_roster; no roster module = empty roster */
        int listed = 0;

        pv_roster_get(mh->h, user, contact, roster_found, &listed);
        allow = listed;
    }
    prefs_free(&p);
    return allow;
}

/* --- archiving ------------------------------------------------------ */

/* XEP-0313 §5.1.1 user archives: 'normal' and 'chat' messages with
 * content a user would want back on another device. Chat states,
 * receipt requests and the like alone are not kept; XEP-0334 <store/>
 * forces, <no-store/> and <no-permanent-store/> refuse; carbons and
 * MAM results are copies of messages archived elsewhere. */
static int
is_archivable(const pv_stanza_t *st)
{
    static const struct {
        const char *name;     /* NULL: any element of xmlns */
        const char *xmlns;
    } keep[] = {
        { "body", PV_NS_CLIENT },
        { "encrypted", NS_OMEMO_OLD },
        { "encrypted", NS_OMEMO },
        { "x", "jabber:x:oob" },                   /* XEP-0066 */
        { "received", "urn:xmpp:receipts" },       /* XEP-0184 */
        { NULL, "urn:xmpp:chat-markers:0" },       /* XEP-0333 */
        { "reactions", "urn:xmpp:reactions:0" },   /* XEP-0444 */
        { "retract", "urn:xmpp:message-retract:1" }, /* XEP-0424 */
        { "apply-to", "urn:xmpp:fasten:0" },       /* XEP-0422 */
        { "store", NS_HINTS },                     /* XEP-0334 */
    };
    const pv_node_t *c;
    const char *type = st->type;
    size_t i;

    if (type != NULL && strcmp(type, "chat") != 0 &&
        strcmp(type, "normal") != 0)
        return 0;
    if (pv_node_child(st->root, "no-store", NS_HINTS) != NULL ||
        pv_node_child(st->root, "no-permanent-store", NS_HINTS) != NULL)
        return 0;
    if (pv_node_child(st->root, "received", NS_CARBONS) != NULL ||
        pv_node_child(st->root, "sent", NS_CARBONS) != NULL ||
        pv_node_child(st->root, "result", NS_MAM) != NULL)
        return 0;
    for (c = st->root->children; c != NULL; c = c->next) {
        if (c->name == NULL)
            continue;
        for (i = 0; i < sizeof(keep) / sizeof(keep[0]); i++)
            if (strcmp(c->xmlns, keep[i].xmlns) == 0 &&
                (keep[i].name == NULL || strcmp(c->name, keep[i].name) == 0))
                return 1;
    }
    return 0;
}

/* The store wants a callback even where only the result matters. */
static int
ignore_row(uint64_t ts_us, const char *id, const void *val, size_t len,
           void *arg)
{
    (void)ts_us;
    (void)id;
    (void)val;
    (void)len;
    (void)arg;
    return 0;
}

typedef struct mam_put_s {
    mam_host_t *mh;
    char *user;
    char id[MAM_ID_LEN + 1];
    struct mam_put_s *prev, *next;   /* mh->pending */
} mam_put_t;

static int
is_pending(const mam_host_t *mh, const char *user, const char *id)
{
    const mam_put_t *p;

    for (p = mh->pending; p != NULL; p = p->next)
        if (strcmp(p->id, id) == 0 && strcmp(p->user, user) == 0)
            return 1;
    return 0;
}

/* Newest committed timestamp of user's archive, 0 when empty. */
static uint64_t
archive_last_ts(mam_host_t *mh, const char *user)
{
    pv_archive_query_t q;
    pv_archive_result_t res;
    uint64_t ts = 0;

    memset(&q, 0, sizeof(q));
    memset(&res, 0, sizeof(res));
    q.limit = 1;
    q.is_reverse = 1;
    if (pv_store_archive_query(mh->archive, pv_host_name(mh->h), user, &q,
                               ignore_row, NULL, &res) == PV_OK &&
        res.count > 0)
        ts = res.last_ts;
    pv_archive_result_clear(&res);
    return ts;
}

/* Strictly rising per user: archive order is arrival order even when
 * two messages share a microsecond or the clock stepped back, also
 * across a restart (the committed newest item is the floor; uncommitted
 * ones are below mh->last_ts). */
static uint64_t
mam_next_ts(mam_host_t *mh, const char *user)
{
    uint64_t now = now_us(), floor = archive_last_ts(mh, user);

    if (floor < mh->last_ts)
        floor = mh->last_ts;
    if (now <= floor)
        now = floor + 1;
    mh->last_ts = now;
    return now;
}

static void
mam_stored(void *arg, int rc)
{
    mam_put_t *put = arg;
    mam_host_t *mh = put->mh;

    if (put->prev != NULL)
        put->prev->next = put->next;
    else
        mh->pending = put->next;
    if (put->next != NULL)
        put->next->prev = put->prev;

    /* the write is the archive's durability point: nothing may vanish
     * silently */
    if (rc != PV_OK)
        pv_log(PV_LOG_ERROR, "mod_mam", "archiving message %s for %s@%s "
               "failed (rc %d)", put->id, put->user,
               put->mh->is_dead ? "?" : pv_host_name(put->mh->h), rc);
    mh_unref(put->mh);
    free(put->user);
    free(put);
}

/* Appends root (the message as archived) to user's archive with a fresh
 * id (written to id_out). with is the other party. */
static pv_rc_t
mam_append(mam_host_t *mh, const char *user, const pv_jid_t *with,
           unsigned flags, const pv_node_t *root, char *id_out)
{
    pv_buf_t buf = { 0 };
    mam_put_t *put;
    uint64_t ts;
    pv_rc_t rc;

    mam_make_id(id_out);
    ts = mam_next_ts(mh, user);
    pv_buf_append(&buf, (const uint8_t[]){ MAM_FORMAT, (uint8_t)flags }, 2);
    put_str16(&buf, with->bare);
    put_str16(&buf, with->resource);
    pv_node_pack(root, &buf);
    put = pv_xcalloc(1, sizeof(*put));
    put->mh = mh_ref(mh);
    put->user = pv_xstrdup(user);
    memcpy(put->id, id_out, MAM_ID_LEN + 1);
    rc = pv_store_archive_append(mh->archive, pv_host_name(mh->h), user, ts,
                                 id_out, buf.data, buf.len, mam_stored, put);
    pv_buf_free(&buf);
    if (rc != PV_OK) {
        pv_log(PV_LOG_ERROR, "mod_mam", "cannot archive a message for "
               "%s@%s", user, pv_host_name(mh->h));
        mh_unref(mh);
        free(put->user);
        free(put);
        return rc;
    }
    put->next = mh->pending;
    if (put->next != NULL)
        put->next->prev = put;
    mh->pending = put;
    return rc;
}

/* True when id is a committed item of user's archive. */
static int
archive_has(mam_host_t *mh, const char *user, const char *id, uint64_t *ts)
{
    pv_archive_query_t q;
    pv_archive_result_t res;
    const char *ids[1] = { id };
    int found;

    memset(&q, 0, sizeof(q));
    memset(&res, 0, sizeof(res));
    q.ids = ids;
    q.n_ids = 1;
    q.limit = 1;
    found = pv_store_archive_query(mh->archive, pv_host_name(mh->h), user,
                                   &q, ignore_row, NULL, &res) == PV_OK &&
            res.count > 0;
    if (found && ts != NULL)
        *ts = res.first_ts;
    pv_archive_result_clear(&res);
    return found;
}

/* Recipient side: archive for the local account ev->to names and mark the
 * delivered copy with our stanza-id (XEP-0359 §3). */
static pv_rc_t
mam_incoming(pv_event_t *ev)
{
    mam_host_t *mh = pv_module_host_data(ev->module, ev->host);
    pv_stanza_t *st = ev->stanza, *copy = NULL;
    const pv_node_t *archived;
    pv_node_t *c, *next, *sid;
    const char *user = ev->to->node;
    const char *bare = ev->to->bare;
    int is_rerouted = 0, n_forged = 0;
    char id[MAM_ID_LEN + 1];

    if (mh == NULL || mh->archive == NULL || user == NULL ||
        ev->from == NULL || !pv_user_exists(ev->host, user))
        return PV_PASS;
    /* XEP-0359 §4: a stanza-id claiming to be by this archive must be
     * ours. One that is in the archive means the message was archived
     * already and is being routed again (XEP-0198 session that could not
     * be resumed): keep it and do not archive twice. Any other is forged
     * and is removed. */
    for (c = st->root->children; c != NULL; c = c->next) {
        const char *by, *sid_id;

        if (c->name == NULL || strcmp(c->name, "stanza-id") != 0 ||
            strcmp(c->xmlns, NS_SID) != 0)
            continue;
        by = pv_node_attr(c, "by");
        if (by == NULL || strcmp(by, bare) != 0)
            continue;
        sid_id = pv_node_attr(c, "id");
        if (sid_id != NULL && (is_pending(mh, user, sid_id) ||
                               archive_has(mh, user, sid_id, NULL)))
            is_rerouted = 1;
        else
            n_forged++;
    }
    if (is_rerouted)
        return PV_PASS;
    if (n_forged > 0) {
        pv_node_t *root;

        if (st->refs == 1) {
            root = st->root;
        } else {
            /* shared: the routed copy cannot change; at least the
             * archive must not carry the forgery */
            copy = pv_stanza_copy(st);
            root = copy->root;
        }
        for (c = root->children; c != NULL; c = next) {
            next = c->next;
            if (c->name != NULL && strcmp(c->name, "stanza-id") == 0 &&
                strcmp(c->xmlns, NS_SID) == 0 &&
                pv_node_attr(c, "by") != NULL &&
                strcmp(pv_node_attr(c, "by"), bare) == 0)
                pv_node_remove(c);
        }
        if (copy == NULL)
            pv_stanza_touch(st);
        else
            pv_log(PV_LOG_DEBUG, "mod_mam", "forged stanza-id on a shared "
                   "message to %s left in the delivered copy", bare);
    }
    if (!is_archivable(st) || !prefs_allow(mh, user, ev->from->bare)) {
        pv_stanza_unref(copy);
        return PV_PASS;
    }
    archived = copy != NULL ? copy->root : st->root;
    if (mam_append(mh, user, ev->from, 0, archived, id) == PV_OK &&
        st->refs == 1) {
        sid = pv_node_new(st->arena, "stanza-id", NS_SID, st->root);
        pv_node_set_attr(st->arena, sid, "id", id);
        pv_node_set_attr(st->arena, sid, "by", bare);
        pv_stanza_touch(st);
    }
    pv_stanza_unref(copy);
    return PV_PASS;
}

/* Sender side: a local client's message goes into its own archive. A
 * message to the sender's own account is archived once, on arrival. */
static pv_rc_t
mam_outgoing(pv_event_t *ev)
{
    mam_host_t *mh = pv_module_host_data(ev->module, ev->host);
    const pv_jid_t *me;
    char id[MAM_ID_LEN + 1];

    if (mh == NULL || mh->archive == NULL || ev->origin == NULL ||
        ev->to == NULL)
        return PV_PASS;
    me = pv_session_jid(ev->origin);
    if (me->node == NULL || strcmp(me->bare, ev->to->bare) == 0)
        return PV_PASS;
    if (!is_archivable(ev->stanza) || !prefs_allow(mh, me->node,
                                                   ev->to->bare))
        return PV_PASS;
    mam_append(mh, me->node, ev->to, MAM_FLAG_OUT, ev->stanza->root, id);
    return PV_PASS;
}

/* --- requests that wait for the commit barrier ---------------------- */

/* A request answered once every write submitted before it is committed,
 * so a query sees every message delivered before it was sent (reads see
 * committed data only) and a prefs result means the prefs are stored. */
typedef struct mam_req_s {
    mam_host_t *mh;
    pv_stanza_t *req;
    char *full;               /* the requesting session */
    char *user;
    void (*run)(struct mam_req_s *r, pv_session_t *s);
} mam_req_t;

typedef struct {
    const char *full;
    pv_session_t *found;
} mam_find_t;

static void
find_session(void *arg, pv_session_t *s)
{
    mam_find_t *f = arg;

    if (strcmp(pv_session_jid(s)->full, f->full) == 0)
        f->found = s;
}

static void
req_free(mam_req_t *r)
{
    mh_unref(r->mh);
    pv_stanza_unref(r->req);
    free(r->full);
    free(r->user);
    free(r);
}

static void
req_committed(void *arg, int rc)
{
    mam_req_t *r = arg;
    mam_find_t f = { r->full, NULL };

    if (!r->mh->is_dead) {
        pv_host_each_session(r->mh->h, r->user, find_session, &f);
        if (f.found != NULL) {
            if (rc == PV_OK)
                r->run(r, f.found);
            else
                pv_send_error(f.found, r->req, PV_ERR_WAIT,
                              "internal-server-error", NULL);
        }
    }
    req_free(r);
}

static void
req_defer(pv_event_t *ev, mam_host_t *mh,
          void (*run)(mam_req_t *r, pv_session_t *s))
{
    mam_req_t *r = pv_xcalloc(1, sizeof(*r));
    const pv_jid_t *me = pv_session_jid(ev->origin);

    r->mh = mh_ref(mh);
    r->req = pv_stanza_ref(ev->stanza);
    r->full = pv_xstrdup(me->full);
    r->user = pv_xstrdup(me->node);
    r->run = run;
    pv_host_after_commit(ev->host, req_committed, r);
}

/* Only the account itself may use its archive (XEP-0313 §4). */
static int
is_own_archive(pv_event_t *ev)
{
    const pv_jid_t *me;

    if (ev->origin == NULL || ev->to->node == NULL)
        return 0;
    me = pv_session_jid(ev->origin);
    return me->node != NULL && strcmp(me->bare, ev->to->bare) == 0;
}

/* Common checks; PV_HANDLED when it answered with an error. */
static pv_rc_t
mam_check(pv_event_t *ev, mam_host_t **mhp)
{
    mam_host_t *mh = pv_module_host_data(ev->module, ev->host);

    if (!is_own_archive(ev)) {
        pv_event_error(ev, PV_ERR_CANCEL, "forbidden",
                      NULL);
        return PV_HANDLED;
    }
    if (mh == NULL || mh->archive == NULL) {
        pv_event_error(ev, PV_ERR_WAIT,
                      "internal-server-error", "no archive storage");
        return PV_HANDLED;
    }
    *mhp = mh;
    return PV_PASS;
}

/* --- queries (XEP-0313 §4, XEP-0059) -------------------------------- */

typedef struct {
    uint64_t ts;
    char *id;
    void *val;
    size_t len;
} mam_item_t;

typedef struct {
    const char *with_bare;    /* NULL: no 'with' filter */
    const char *with_res;     /* NULL: any resource */
    size_t want;              /* items to collect: page size + 1 */
    mam_item_t *items;
    size_t n;
    int is_corrupt;
} mam_scan_t;

static int
scan_row(uint64_t ts_us, const char *id, const void *val, size_t len,
         void *arg)
{
    mam_scan_t *sc = arg;
    mam_item_t *it;
    mam_row_t row;

    if (sc->n >= sc->want)
        return 1;
    if (sc->with_bare != NULL) {
        if (row_parse(val, len, &row) != PV_OK)
            return 0;
        if (row.bare_len != strlen(sc->with_bare) ||
            memcmp(row.bare, sc->with_bare, row.bare_len) != 0)
            return 0;
        if (sc->with_res != NULL &&
            (row.res_len != strlen(sc->with_res) ||
             memcmp(row.res, sc->with_res, row.res_len) != 0))
            return 0;
    }
    it = &sc->items[sc->n++];
    it->ts = ts_us;
    it->id = pv_xstrdup(id);
    it->val = pv_xmalloc(len ? len : 1);
    memcpy(it->val, val, len);
    it->len = len;
    return sc->n >= sc->want;
}

static void
scan_free(mam_scan_t *sc)
{
    size_t i;

    for (i = 0; i < sc->n; i++) {
        free(sc->items[i].id);
        free(sc->items[i].val);
    }
    free(sc->items);
}

/* The parsed query. Strings borrow from the request's arena. */
typedef struct {
    pv_jid_t with;
    int has_with;
    uint64_t start, end;      /* 0: open */
    const char *after[2];     /* RSM <after/>, form after-id */
    const char *before[2];    /* RSM <before/>, form before-id */
    int is_last_page;         /* RSM <before/> present */
    const char **ids;
    size_t n_ids;
    size_t max;
    int is_flip;
} mam_query_t;

/* Fills q from the <query/>; on error sets *cond and *text. */
static pv_rc_t
query_parse(pv_stanza_t *req, const pv_node_t *query, size_t max_page,
            mam_query_t *q, const char **cond, const char **text)
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
            if (q->n_ids == 0) {
                /* an empty ids field selects nothing */
                q->ids = pv_arena_alloc(a, sizeof(*q->ids));
                q->ids[0] = "";
                q->n_ids = 1;
            }
            continue;
        }
        if (val == NULL || *val == '\0')
            continue;     /* an empty field is no constraint */
        if (strcmp(var, "FORM_TYPE") == 0) {
            if (strcmp(val, NS_MAM) != 0) {
                *text = "FORM_TYPE is not " NS_MAM;
                return PV_ERROR;
            }
        } else if (strcmp(var, "with") == 0) {
            if (pv_jid_parse(val, strlen(val), &q->with, a) != PV_OK) {
                *cond = "jid-malformed";
                return PV_ERROR;
            }
            q->has_with = 1;
        } else if (strcmp(var, "start") == 0) {
            if (pv_datetime_parse(val, &q->start) != PV_OK) {
                *text = "bad start";
                return PV_ERROR;
            }
            if (q->start == 0)
                q->start = 1;
        } else if (strcmp(var, "end") == 0) {
            if (pv_datetime_parse(val, &q->end) != PV_OK) {
                *text = "bad end";
                return PV_ERROR;
            }
            if (q->end == 0) {
                /* the epoch itself: nothing can match */
                q->ids = pv_arena_alloc(a, sizeof(*q->ids));
                q->ids[0] = "";
                q->n_ids = 1;
            }
        } else if (strcmp(var, "after-id") == 0) {
            q->after[1] = val;
        } else if (strcmp(var, "before-id") == 0) {
            q->before[1] = val;
        } else {
            /* XEP-0313 §4.1.1: unknown fields */
            *cond = "feature-not-implemented";
            *text = "unknown field";
            return PV_ERROR;
        }
    }
    switch (pv_rsm_parse(query, a, &rsm, cond, text)) {
    case PV_NOTFOUND:
        break;
    case PV_OK:
        if (rsm.has_max && rsm.max < max_page)
            q->max = rsm.max;
        if (rsm.after != NULL) {
            if (*rsm.after == '\0') {
                *text = "empty after";
                return PV_ERROR;
            }
            q->after[0] = rsm.after;
        }
        if (rsm.before != NULL) {
            q->is_last_page = 1;
            q->before[0] = *rsm.before != '\0' ? rsm.before : NULL;
        }
        break;
    default:
        return PV_ERROR;
    }
    q->is_flip = pv_node_child(query, "flip-page", NULL) != NULL;
    return PV_OK;
}

/* Resolves the id bounds: the latest of the 'after' ids and the earliest
 * of the 'before' ids. PV_NOTFOUND when one is not in the archive. */
static pv_rc_t
resolve_bounds(mam_host_t *mh, const char *user, const mam_query_t *q,
               const char **after, const char **before)
{
    uint64_t ts, best_after = 0, best_before = 0;
    int i;

    *after = *before = NULL;
    for (i = 0; i < 2; i++) {
        if (q->after[i] == NULL)
            continue;
        if (!archive_has(mh, user, q->after[i], &ts))
            return PV_NOTFOUND;
        if (*after == NULL || ts > best_after) {
            *after = q->after[i];
            best_after = ts;
        }
    }
    for (i = 0; i < 2; i++) {
        if (q->before[i] == NULL)
            continue;
        if (!archive_has(mh, user, q->before[i], &ts))
            return PV_NOTFOUND;
        if (*before == NULL || ts < best_before) {
            *before = q->before[i];
            best_before = ts;
        }
    }
    return PV_OK;
}

/* One result message (XEP-0313 §4.2), or NULL when the row is corrupt. */
static pv_stanza_t *
result_message(pv_session_t *s, const char *owner_bare, const char *queryid,
               const mam_item_t *it)
{
    pv_stanza_t *st;
    pv_node_t *res, *fwd, *delay;
    mam_row_t row;
    char stamp[48];

    if (row_parse(it->val, it->len, &row) != PV_OK)
        return NULL;
    st = pv_stanza_build("message");
    pv_node_set_attr(st->arena, st->root, "to", pv_session_jid(s)->full);
    pv_node_set_attr(st->arena, st->root, "from", owner_bare);
    res = pv_node_new(st->arena, "result", NS_MAM, st->root);
    if (queryid != NULL)
        pv_node_set_attr(st->arena, res, "queryid", queryid);
    pv_node_set_attr(st->arena, res, "id", it->id);
    fwd = pv_node_new(st->arena, "forwarded", NS_FORWARD, res);
    delay = pv_node_new(st->arena, "delay", NS_DELAY, fwd);
    /* microseconds: a stamp fed back as start/end selects exactly it */
    pv_datetime_format(it->ts, 6, stamp, sizeof(stamp));
    pv_node_set_attr(st->arena, delay, "stamp", stamp);
    if (pv_node_unpack(st->arena, row.packed, row.packed_len, fwd) == NULL) {
        pv_stanza_unref(st);
        return NULL;
    }
    st->to = pv_arena_calloc(st->arena, sizeof(pv_jid_t));
    pv_jid_copy(pv_session_jid(s), st->to, st->arena);
    pv_stanza_touch(st);
    return st;
}

static void
query_run(mam_req_t *r, pv_session_t *s)
{
    mam_host_t *mh = r->mh;
    const mam_conf_t *conf = pv_module_conf(mh->m, mh->h);
    const pv_node_t *query = pv_node_first_element(r->req->root);
    const char *queryid = pv_node_attr(query, "queryid");
    const char *host = pv_host_name(mh->h);
    const char *cond, *text, *after, *before;
    char owner[PV_JID_PART_MAX * 2 + 2];
    mam_query_t mq;
    mam_scan_t sc;
    pv_archive_query_t q;
    pv_archive_result_t res;
    char *cursor = NULL;
    pv_stanza_t *st;
    pv_node_t *fin;
    size_t i, page;
    int is_complete, is_error = 0;
    pv_rc_t rc;

    if (query_parse(r->req, query, (size_t)conf->max_page, &mq, &cond,
                    &text) != PV_OK) {
        pv_send_error(s, r->req, strcmp(cond, "bad-request") == 0 ||
                      strcmp(cond, "jid-malformed") == 0
                      ? PV_ERR_MODIFY : PV_ERR_CANCEL, cond, text);
        return;
    }
    rc = resolve_bounds(mh, r->user, &mq, &after, &before);
    if (rc != PV_OK) {
        /* XEP-0313 §4.3 / XEP-0059 §2.6 */
        pv_send_error(s, r->req, PV_ERR_CANCEL, "item-not-found", NULL);
        return;
    }
    snprintf(owner, sizeof(owner), "%s@%s", r->user, host);
    memset(&sc, 0, sizeof(sc));
    if (mq.has_with) {
        sc.with_bare = mq.with.bare;
        sc.with_res = mq.with.resource;
    }
    /* one more than the page: whether it exists is 'complete' */
    sc.want = mq.max + 1;
    sc.items = pv_xcalloc(sc.want, sizeof(*sc.items));
    memset(&q, 0, sizeof(q));
    q.start_us = mq.start;
    q.end_us = mq.end;
    q.after_id = after;
    q.before_id = before;
    q.ids = mq.ids;
    q.n_ids = mq.n_ids;
    q.is_reverse = mq.is_last_page;
    /* a filtered scan goes on in chunks until the page is full or the
     * range is exhausted; the chunk ends become the next bound */
    for (;;) {
        size_t left = sc.want - sc.n;

        q.limit = sc.with_bare != NULL || left > PV_ARCHIVE_MAX_LIMIT
                  ? PV_ARCHIVE_MAX_LIMIT : left;
        memset(&res, 0, sizeof(res));
        rc = pv_store_archive_query(mh->archive, host, r->user, &q,
                                    scan_row, &sc, &res);
        if (rc != PV_OK) {
            pv_archive_result_clear(&res);
            is_error = 1;
            break;
        }
        if (sc.n >= sc.want || res.is_complete || res.count == 0 ||
            res.last_id == NULL) {
            pv_archive_result_clear(&res);
            break;
        }
        free(cursor);
        cursor = res.last_id;
        res.last_id = NULL;
        pv_archive_result_clear(&res);
        if (q.is_reverse)
            q.before_id = cursor;
        else
            q.after_id = cursor;
    }
    free(cursor);
    if (is_error) {
        pv_log(PV_LOG_ERROR, "mod_mam", "archive query of %s failed",
               owner);
        scan_free(&sc);
        pv_send_error(s, r->req, PV_ERR_WAIT, "internal-server-error",
                      NULL);
        return;
    }
    is_complete = sc.n < sc.want;
    page = sc.n < mq.max ? sc.n : mq.max;
    /* the scan ran newest first for <before/>: pages are always sent in
     * chronological order (XEP-0313 §4.3), flipped only on request */
    if (q.is_reverse != mq.is_flip) {
        for (i = 0; i < page / 2; i++) {
            mam_item_t tmp = sc.items[i];
            sc.items[i] = sc.items[page - 1 - i];
            sc.items[page - 1 - i] = tmp;
        }
    }
    for (i = 0; i < page; i++) {
        st = result_message(s, owner, queryid, &sc.items[i]);
        if (st == NULL) {
            pv_log(PV_LOG_ERROR, "mod_mam", "archived message %s of %s "
                   "is corrupt: skipped", sc.items[i].id, owner);
            continue;
        }
        pv_session_send(s, st);
        pv_stanza_unref(st);
    }
    st = pv_iq_result(r->req);
    fin = pv_node_new(st->arena, "fin", NS_MAM, st->root);
    if (is_complete)
        pv_node_set_attr(st->arena, fin, "complete", "true");
    if (page > 0) {
        /* <first/> and <last/> in RSM order (chronological), whatever
         * order the page was sent in */
        size_t lo = mq.is_flip ? page - 1 : 0;
        size_t hi = mq.is_flip ? 0 : page - 1;

        pv_rsm_answer(st->arena, fin, sc.items[lo].id, sc.items[hi].id, -1);
    } else {
        /* max 0 with matches: the count is unknown */
        pv_rsm_answer(st->arena, fin, NULL, NULL, is_complete ? 0 : -1);
    }
    pv_send(s, st);
    scan_free(&sc);
}

static pv_rc_t
mam_query_set(pv_event_t *ev)
{
    mam_host_t *mh;

    if (mam_check(ev, &mh) == PV_HANDLED)
        return PV_HANDLED;
    req_defer(ev, mh, query_run);
    return PV_HANDLED;
}

/* XEP-0313 §4.1.1: the search form. */
static pv_rc_t
mam_query_get(pv_event_t *ev)
{
    mam_host_t *mh;
    pv_stanza_t *st;
    pv_arena_t *a;
    pv_node_t *q, *x;

    if (mam_check(ev, &mh) == PV_HANDLED)
        return PV_HANDLED;
    st = pv_iq_result(ev->stanza);
    a = st->arena;
    q = pv_node_new(a, "query", NS_MAM, st->root);
    x = pv_node_new(a, "x", NS_DATA, q);
    pv_node_set_attr(a, x, "type", "form");
    pv_form_add_field(a, x, "FORM_TYPE", "hidden", NULL, NS_MAM);
    pv_form_add_field(a, x, "with", "jid-single", NULL, NULL);
    pv_form_add_field(a, x, "start", "text-single", NULL, NULL);
    pv_form_add_field(a, x, "end", "text-single", NULL, NULL);
    pv_form_add_field(a, x, "before-id", "text-single", NULL, NULL);
    pv_form_add_field(a, x, "after-id", "text-single", NULL, NULL);
    pv_form_add_field(a, x, "ids", "text-multi", NULL, NULL);
    pv_event_reply(ev, st);
    return PV_HANDLED;
}

/* XEP-0313 §5 (#extended): first and last item of the archive. */
static void
add_edge(mam_host_t *mh, const char *user, pv_stanza_t *st, pv_node_t *md,
         const char *name, int is_reverse)
{
    pv_archive_query_t q;
    pv_archive_result_t res;
    pv_node_t *n;
    char stamp[48];

    memset(&q, 0, sizeof(q));
    memset(&res, 0, sizeof(res));
    q.limit = 1;
    q.is_reverse = is_reverse;
    if (pv_store_archive_query(mh->archive, pv_host_name(mh->h), user, &q,
                               ignore_row, NULL, &res) == PV_OK &&
        res.count > 0) {
        n = pv_node_new(st->arena, name, NULL, md);
        pv_node_set_attr(st->arena, n, "id", res.first_id);
        pv_datetime_format(res.first_ts, 6, stamp, sizeof(stamp));
        pv_node_set_attr(st->arena, n, "timestamp", stamp);
    }
    pv_archive_result_clear(&res);
}

static void
metadata_run(mam_req_t *r, pv_session_t *s)
{
    pv_stanza_t *st = pv_iq_result(r->req);
    pv_node_t *md = pv_node_new(st->arena, "metadata", NS_MAM, st->root);

    add_edge(r->mh, r->user, st, md, "start", 0);
    add_edge(r->mh, r->user, st, md, "end", 1);
    pv_send(s, st);
}

static pv_rc_t
mam_metadata(pv_event_t *ev)
{
    mam_host_t *mh;

    if (mam_check(ev, &mh) == PV_HANDLED)
        return PV_HANDLED;
    req_defer(ev, mh, metadata_run);
    return PV_HANDLED;
}

/* --- preferences IQ (XEP-0313 §6) ----------------------------------- */

static void
prefs_add_list(pv_stanza_t *st, pv_node_t *prefs, const char *name,
               char *const *jids, size_t n)
{
    pv_node_t *l = pv_node_new(st->arena, name, NULL, prefs);
    size_t i;

    for (i = 0; i < n; i++)
        pv_node_add_text(st->arena, pv_node_new(st->arena, "jid", NULL, l),
                         jids[i], strlen(jids[i]));
}

static void
prefs_reply(mam_req_t *r, pv_session_t *s)
{
    pv_stanza_t *st = pv_iq_result(r->req);
    pv_node_t *prefs = pv_node_new(st->arena, "prefs", NS_MAM, st->root);
    mam_prefs_t p;

    prefs_load(r->mh, r->user, &p);
    pv_node_set_attr(st->arena, prefs, "default", mam_policy_names[p.def]);
    prefs_add_list(st, prefs, "always", p.always, p.n_always);
    prefs_add_list(st, prefs, "never", p.never, p.n_never);
    prefs_free(&p);
    pv_send(s, st);
}

static pv_rc_t
mam_prefs_get(pv_event_t *ev)
{
    mam_host_t *mh;

    if (mam_check(ev, &mh) == PV_HANDLED)
        return PV_HANDLED;
    req_defer(ev, mh, prefs_reply);
    return PV_HANDLED;
}

/* Appends the JIDs of <always/> or <never/> as "+jid"/"-jid" lines. */
static pv_rc_t
prefs_encode_list(pv_stanza_t *req, const pv_node_t *prefs,
                  const char *name, char mark, pv_buf_t *b)
{
    const pv_node_t *l = pv_node_child(prefs, name, NS_MAM), *j;

    for (j = l ? pv_node_child(l, "jid", NULL) : NULL; j != NULL;
         j = pv_node_next_child(l, j, "jid", NULL)) {
        const char *t = pv_node_text(j, req->arena);
        pv_jid_t jid;

        if (pv_jid_parse(t, strlen(t), &jid, req->arena) != PV_OK)
            return PV_ERROR;
        pv_buf_append(b, &mark, 1);
        pv_buf_puts(b, jid.bare);
        pv_buf_append(b, "\n", 1);
    }
    return PV_OK;
}

static pv_rc_t
mam_prefs_set(pv_event_t *ev)
{
    mam_host_t *mh;
    const char *def = pv_node_attr(ev->payload, "default");
    pv_buf_t b = { 0 };
    mam_req_t *r;
    int i, policy = -1;

    if (mam_check(ev, &mh) == PV_HANDLED)
        return PV_HANDLED;
    for (i = 0; def != NULL && mam_policy_names[i] != NULL; i++)
        if (strcmp(def, mam_policy_names[i]) == 0)
            policy = i;
    if (policy < 0) {
        pv_event_error(ev, PV_ERR_MODIFY, "bad-request",
                      "default must be always, never or roster");
        return PV_HANDLED;
    }
    pv_buf_puts(&b, mam_policy_names[policy]);
    pv_buf_append(&b, "\n", 1);
    if (prefs_encode_list(ev->stanza, ev->payload, "always", '+', &b) !=
            PV_OK ||
        prefs_encode_list(ev->stanza, ev->payload, "never", '-', &b) !=
            PV_OK) {
        pv_buf_free(&b);
        pv_event_error(ev, PV_ERR_MODIFY,
                      "jid-malformed", NULL);
        return PV_HANDLED;
    }
    if (mh->prefs == NULL) {
        pv_buf_free(&b);
        pv_event_error(ev, PV_ERR_WAIT,
                      "internal-server-error", NULL);
        return PV_HANDLED;
    }
    r = pv_xcalloc(1, sizeof(*r));
    r->mh = mh_ref(mh);
    r->req = pv_stanza_ref(ev->stanza);
    r->full = pv_xstrdup(pv_session_jid(ev->origin)->full);
    r->user = pv_xstrdup(pv_session_jid(ev->origin)->node);
    r->run = prefs_reply;
    /* answered after the commit: the result means the prefs apply */
    if (pv_store_put(mh->prefs, pv_host_name(ev->host), r->user, NULL,
                     b.data, b.len, req_committed, r) != PV_OK) {
        req_free(r);
        pv_event_error(ev, PV_ERR_WAIT,
                      "internal-server-error", NULL);
    }
    pv_buf_free(&b);
    return PV_HANDLED;
}

/* --- retention ------------------------------------------------------ */

static void
retention_done(void *arg, int rc)
{
    mam_host_t *mh = arg;

    if (rc != PV_OK && rc != PV_NOTFOUND)
        pv_log(PV_LOG_ERROR, "mod_mam", "archive retention cleanup "
               "failed (rc %d)", rc);
    mh_unref(mh);
}

static void
retention_tick(void *arg)
{
    mam_host_t *mh = arg;
    const mam_conf_t *conf;
    uint64_t now = now_us(), keep;

    if (mh->is_dead || mh->archive == NULL)
        return;
    conf = pv_module_conf(mh->m, mh->h);
    if (conf->retention == PV_DURATION_OFF)
        return;
    keep = conf->retention * 1000u;
    if (keep >= now)
        return;
    mh_ref(mh);
    if (pv_store_archive_delete_before(mh->archive, pv_host_name(mh->h),
                                       NULL, now - keep, retention_done,
                                       mh) != PV_OK) {
        pv_log(PV_LOG_ERROR, "mod_mam", "cannot submit the retention "
               "cleanup of %s", pv_host_name(mh->h));
        mh_unref(mh);
    }
}

/* --- lifecycle ------------------------------------------------------ */

static int
mam_host_init(pv_module_t *m, pv_host_t *h)
{
    const mam_conf_t *conf = pv_module_conf(m, h);
    mam_host_t *mh = pv_xcalloc(1, sizeof(*mh));

    mh->refs = 1;
    mh->m = m;
    mh->h = h;
    mh->archive = pv_store_open(h, m, "archive", PV_STORE_ARCHIVE);
    mh->prefs = pv_store_open(h, m, "prefs", PV_STORE_KEYVAL);
    if (mh->archive == NULL)
        pv_log(PV_LOG_WARN, "mod_mam", "%s: no storage: messages are not "
               "archived", pv_host_name(h));
    pv_module_set_host_data(m, h, mh);
    if (conf->retention != PV_DURATION_OFF) {
        /* a tenth of the period, between 1 s and 1 h: old items go away
         * within 10% of the retention time */
        uint64_t every = conf->retention / 10;

        if (every < 1000)
            every = 1000;
        if (every > 3600 * 1000)
            every = 3600 * 1000;
        /* the timer is the module's: cancelled when it leaves the host */
        pv_module_timer(m, h, 1000, every, retention_tick, mh);
    }
    return PV_OK;
}

static void
mam_host_fini(pv_module_t *m, pv_host_t *h)
{
    mam_host_t *mh = pv_module_host_data(m, h);

    if (mh == NULL)
        return;
    mh->is_dead = 1;
    pv_module_set_host_data(m, h, NULL);
    mh_unref(mh);
}

/* XEP-0313 §7: an account's archive is announced on its bare JID. */
static pv_rc_t
mam_account_disco(pv_event_t *ev)
{
    static const char *const feats[] = { NS_MAM, NS_MAM_EXT };
    size_t i;

    for (i = 0; i < sizeof(feats) / sizeof(feats[0]); i++) {
        pv_node_t *f = pv_node_new(ev->stanza->arena, "feature", NULL,
                                   ev->data);
        pv_node_set_attr(ev->stanza->arena, f, "var", feats[i]);
    }
    return PV_PASS;
}

static const pv_hook_t mam_hooks[] = {
    { PV_MESSAGE, PV_TO_BARE, NULL, NULL, mam_incoming, 20, 0 },
    { PV_MESSAGE, PV_TO_FULL, NULL, NULL, mam_incoming, 20, 0 },
    { PV_MESSAGE, PV_TO_ANY, NULL, NULL, mam_outgoing, 20, PV_HOOK_PRE },
    { PV_IQ_SET, PV_TO_BARE, NS_MAM, "query", mam_query_set, 0, 0 },
    { PV_IQ_GET, PV_TO_BARE, NS_MAM, "query", mam_query_get, 0, 0 },
    { PV_IQ_GET, PV_TO_BARE, NS_MAM, "metadata", mam_metadata, 0, 0 },
    { PV_IQ_GET, PV_TO_BARE, NS_MAM, "prefs", mam_prefs_get, 0, 0 },
    { PV_IQ_SET, PV_TO_BARE, NS_MAM, "prefs", mam_prefs_set, 0, 0 },
    { PV_EV_ACCOUNT_DISCO_INFO, PV_TO_ANY, NULL, NULL, mam_account_disco,
      0, 0 },
    PV_HOOKS_END
};

static const pv_directive_t mam_directives[] = {
    { "mam_max_page", PV_CTX_ANY, pv_conf_int,
      offsetof(mam_conf_t, max_page), "50", 1, PV_ARCHIVE_MAX_LIMIT, NULL },
    { "mam_default", PV_CTX_ANY, pv_conf_enum,
      offsetof(mam_conf_t, default_policy), "always", 0, 0,
      mam_policy_names },
    { "mam_retention", PV_CTX_ANY, pv_conf_duration,
      offsetof(mam_conf_t, retention), "off", 1000, 0, NULL },
    PV_DIRECTIVES_END
};

PV_MODULE(mam) = {
    .abi = PV_MODULE_ABI,
    .name = "mam",
    /* the archive features are the account's (mam_account_disco) */
    .features = (const char *const[]){ NS_SID, NULL },
    .hooks = mam_hooks,
    .directives = mam_directives,
    .conf_size = sizeof(mam_conf_t),
    .host_init = mam_host_init,
    .host_fini = mam_host_fini,
};
