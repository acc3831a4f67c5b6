/* modules/mod_push.c: XEP-0357 push notifications: <enable/>/<disable/>,
 * the registrations (store "push.registrations": app server JID and node
 * -> publish-options form) and the summary publishes sent from the bare
 * JID when a message that matters arrives for an account without any
 * session, or for a XEP-0198-hibernated session that enabled push. A
 * cancel or auth error from the app server removes its registration. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <palaver/module.h>

#define NS_PUSH "urn:xmpp:push:0"
#define NS_PUBSUB "http://jabber.org/protocol/pubsub"
#define NS_DATA "jabber:x:data"
#define NS_CARBONS "urn:xmpp:carbons:2"
#define NS_FORWARD "urn:xmpp:forward:0"
#define NS_MAM "urn:xmpp:mam:2"
#define NS_OMEMO_OLD "eu.siacs.conversations.axolotl"
#define NS_OMEMO "urn:xmpp:omemo:2"
#define NS_JMI "urn:xmpp:jingle-message:0"
#define FORM_PUBLISH_OPTIONS \
    "http://jabber.org/protocol/pubsub#publish-options"
#define FORM_SUMMARY "urn:xmpp:push:summary"

#define PUSH_FORMAT 1           /* row: this byte, then a packed tree */
#define PUSH_VALUE_MAX 4096     /* a publish-options form is a few fields */
#define PUSH_BODY_MAX 1024      /* last-message-body is a preview */
#define PUSH_IQ_TIMEOUT_MS 120000 /* unanswered publishes are forgotten */
#define PUSH_IQ_MAX 4096        /* outstanding publishes per host */
#define PUSH_REGS_READ_MAX 64   /* registrations read for one message */

typedef struct {
    int include_body;
    int include_sender;
    long long max_registrations;  /* PV_COUNT_OFF: no limit */
    pv_duration_t throttle;       /* PV_DURATION_OFF or 0: none */
} push_conf_t;

/* Per session: the registration this resource enabled. */
typedef struct {
    char *key;                /* jid "\n" node, malloc'd, or NULL */
    int has_count;            /* it was notified while hibernated */
} push_session_t;

/* Notification state of one registration since the account was last
 * online: the summary counts every message, the throttle decides when
 * the next publish may go out. */
typedef struct push_reg_s {
    char *user;
    char *key;
    unsigned long count;
    uint64_t last_sent_ms;    /* 0: nothing sent yet */
    int is_due;               /* a publish waits for the throttle */
    char *sender;             /* last-message-sender, or NULL */
    char *body;               /* last-message-body, or NULL */
    pv_stanza_t *last_st;     /* last stanza counted (ref): the same
                               * message fanned out to two hibernated
                               * resources is one message */
    struct push_reg_s *next;
} push_reg_t;

/* A publish waiting for its result or error. */
typedef struct push_iq_s {
    char *id;
    char *user;
    char *key;
    char *to;                 /* prepared app server JID */
    uint64_t sent_ms;
    struct push_iq_s *next;
} push_iq_t;

/* An <enable/> whose row is not committed yet: counted against the
 * per-account limit, which reads committed rows only. */
typedef struct push_inflight_s {
    char *user;
    char *key;
    struct push_inflight_s *next;
} push_inflight_t;

/* Per host; refcounted because store callbacks may run after host_fini
 * (a reload), and then only free their context. */
typedef struct {
    unsigned refs;
    int is_dead;
    pv_module_t *m;
    pv_host_t *h;
    pv_store_t *store;
    push_reg_t *regs;
    push_iq_t *iqs;           /* newest first */
    size_t n_iqs;
    push_inflight_t *inflight;
    /* the throttle timer; the core cancels module timers at reload and
     * shutdown, so we never cancel it ourselves */
    pv_mtimer_t *timer;
    unsigned long seq;
} push_host_t;

/* --- host state ------------------------------------------------------ */

static push_host_t *
ph_ref(push_host_t *ph)
{
    ph->refs++;
    return ph;
}

static void
reg_free(push_reg_t *r)
{
    pv_stanza_unref(r->last_st);
    free(r->user);
    free(r->key);
    free(r->sender);
    free(r->body);
    free(r);
}

static void
iq_free(push_iq_t *q)
{
    free(q->id);
    free(q->user);
    free(q->key);
    free(q->to);
    free(q);
}

static void
ph_unref(push_host_t *ph)
{
    push_reg_t *r, *rn;
    push_iq_t *q, *qn;
    push_inflight_t *f, *fn;

    if (--ph->refs > 0)
        return;
    for (r = ph->regs; r != NULL; r = rn) {
        rn = r->next;
        reg_free(r);
    }
    for (q = ph->iqs; q != NULL; q = qn) {
        qn = q->next;
        iq_free(q);
    }
    for (f = ph->inflight; f != NULL; f = fn) {
        fn = f->next;
        free(f->user);
        free(f->key);
        free(f);
    }
    free(ph);
}

static push_reg_t *
reg_find(push_host_t *ph, const char *user, const char *key, int create)
{
    push_reg_t *r;

    for (r = ph->regs; r != NULL; r = r->next)
        if (strcmp(r->user, user) == 0 && strcmp(r->key, key) == 0)
            return r;
    if (!create)
        return NULL;
    r = pv_xcalloc(1, sizeof(*r));
    r->user = pv_xstrdup(user);
    r->key = pv_xstrdup(key);
    r->next = ph->regs;
    ph->regs = r;
    return r;
}

/* Forgets the notification state of user's registration key, or of all
 * of user's registrations when key is NULL. */
static void
reg_forget(push_host_t *ph, const char *user, const char *key)
{
    push_reg_t **pp = &ph->regs, *r;

    while ((r = *pp) != NULL) {
        if (strcmp(r->user, user) == 0 &&
            (key == NULL || strcmp(r->key, key) == 0)) {
            *pp = r->next;
            reg_free(r);
        } else {
            pp = &r->next;
        }
    }
}

/* --- registrations in the store -------------------------------------- */

/* The map key: the prepared JID cannot hold a control character (PRECIS
 * FreeformClass, RFC 7622 §3), so the first '\n' separates it from the
 * node, which may hold anything. */
static char *
reg_key(const char *jid, const char *node)
{
    return pv_xasprintf("%s\n%s", jid, node);
}

/* A stored registration, unpacked in arena. */
typedef struct {
    const char *jid;
    const char *node;
    const pv_node_t *options;   /* the publish-options form or NULL */
} push_stored_t;

static pv_rc_t
reg_decode(pv_arena_t *arena, const void *val, size_t len,
           push_stored_t *out)
{
    const uint8_t *p = val;
    pv_node_t *n;

    memset(out, 0, sizeof(*out));
    if (len < 2 || p[0] != PUSH_FORMAT)
        return PV_ERROR;
    n = pv_node_unpack(arena, p + 1, len - 1, NULL);
    if (n == NULL || strcmp(n->name, "registration") != 0)
        return PV_ERROR;
    out->jid = pv_node_attr(n, "jid");
    out->node = pv_node_attr(n, "node");
    out->options = pv_node_child(n, "x", NS_DATA);
    return out->jid != NULL && out->node != NULL ? PV_OK : PV_ERROR;
}

/* Reads user's registration key into arena: PV_OK, PV_NOTFOUND (also
 * for a damaged row, which is logged) or PV_ERROR. */
static pv_rc_t
reg_load(push_host_t *ph, const char *user, const char *key,
         pv_arena_t *arena, push_stored_t *out)
{
    void *val = NULL;
    size_t len = 0;
    pv_rc_t rc;

    rc = pv_store_get(ph->store, pv_host_name(ph->h), user, key, &val,
                      &len);
    if (rc != PV_OK)
        return rc;
    rc = reg_decode(arena, val, len, out);
    free(val);
    if (rc != PV_OK) {
        pv_log(PV_LOG_ERROR, "mod_push", "damaged push registration of "
               "%s@%s ignored", user, pv_host_name(ph->h));
        return PV_NOTFOUND;
    }
    return PV_OK;
}

typedef struct {
    char **keys;
    size_t n;
    size_t max;
    const char *jid_prefix;   /* only keys of this app server, or NULL */
    int is_damaged;
} push_keys_t;

static int
collect_key(const char *key, size_t key_len, const void *val,
            size_t val_len, void *arg)
{
    push_keys_t *k = arg;
    size_t pl;

    (void)val;
    (void)val_len;
    if (memchr(key, '\n', key_len) == NULL)
        return 0;
    if (k->jid_prefix != NULL) {
        pl = strlen(k->jid_prefix);
        if (key_len <= pl || memcmp(key, k->jid_prefix, pl) != 0 ||
            key[pl] != '\n')
            return 0;
    }
    k->keys = pv_xrealloc(k->keys, (k->n + 1) * sizeof(*k->keys));
    k->keys[k->n++] = pv_xstrndup(key, key_len);
    return k->max > 0 && k->n >= k->max;
}

static void
keys_free(push_keys_t *k)
{
    size_t i;

    for (i = 0; i < k->n; i++)
        free(k->keys[i]);
    free(k->keys);
}

/* --- what deserves a notification ------------------------------------ */

/* A message the user's phone must not miss: a body, an OMEMO payload or
 * a Jingle call proposal (XEP-0353). Errors, headlines, chat states and
 * MAM results a client asked for do not count; a received carbon counts
 * as the message it carries, a sent carbon does not (the user wrote
 * it). On 1, *msg is the message to summarise. */
static int
message_matters(const pv_node_t *root, const pv_node_t **msg)
{
    const char *type = pv_node_attr(root, "type");
    const pv_node_t *c, *fwd;

    if (strcmp(root->name, "message") != 0)
        return 0;
    if (type != NULL && (strcmp(type, "error") == 0 ||
                         strcmp(type, "headline") == 0))
        return 0;
    if (pv_node_child(root, "result", NS_MAM) != NULL ||
        pv_node_child(root, "sent", NS_CARBONS) != NULL)
        return 0;
    c = pv_node_child(root, "received", NS_CARBONS);
    if (c != NULL) {
        fwd = pv_node_child(c, "forwarded", NS_FORWARD);
        c = fwd ? pv_node_child(fwd, "message", NULL) : NULL;
        if (c == NULL || pv_node_child(c, "received", NS_CARBONS) != NULL)
            return 0;
        return message_matters(c, msg);
    }
    if (pv_node_child(root, "body", root->xmlns) != NULL ||
        pv_node_child(root, "encrypted", NS_OMEMO_OLD) != NULL ||
        pv_node_child(root, "encrypted", NS_OMEMO) != NULL ||
        pv_node_child(root, "propose", NS_JMI) != NULL) {
        *msg = root;
        return 1;
    }
    return 0;
}

/* --- publishing ------------------------------------------------------ */

static void
add_field(pv_arena_t *a, pv_node_t *form, const char *var, const char *value)
{
    pv_node_t *f = pv_node_new(a, "field", NULL, form);
    pv_node_t *v = pv_node_new(a, "value", NULL, f);

    pv_node_set_attr(a, f, "var", var);
    pv_node_add_text(a, v, value, strlen(value));
}

static void
iq_track(push_host_t *ph, const char *id, const char *user, const char *key,
         const char *to)
{
    uint64_t now = pv_now_ms(pv_host_server(ph->h));
    push_iq_t **pp, *q;
    size_t n = 0;

    /* forget publishes nobody answered (a remote app server we cannot
     * reach) and keep the list bounded */
    for (pp = &ph->iqs; (q = *pp) != NULL;) {
        if (now - q->sent_ms > PUSH_IQ_TIMEOUT_MS || n >= PUSH_IQ_MAX - 1) {
            *pp = q->next;
            iq_free(q);
            ph->n_iqs--;
        } else {
            pp = &q->next;
            n++;
        }
    }
    q = pv_xcalloc(1, sizeof(*q));
    q->id = pv_xstrdup(id);
    q->user = pv_xstrdup(user);
    q->key = pv_xstrdup(key);
    q->to = pv_xstrdup(to);
    q->sent_ms = now;
    q->next = ph->iqs;
    ph->iqs = q;
    ph->n_iqs++;
}

/* XEP-0357 "Publishing Notifications": publishes r's summary to its app
 * server from the account's bare JID. Returns 0 when the registration is
 * gone (r is then stale). */
static int
push_publish(push_host_t *ph, push_reg_t *r)
{
    const push_conf_t *conf = pv_module_conf(ph->m, ph->h);
    const char *host = pv_host_name(ph->h);
    pv_stanza_t *st;
    pv_arena_t *a;
    pv_node_t *pubsub, *publish, *item, *notif, *form, *po;
    push_stored_t reg;
    char id[64], count[32];

    st = pv_stanza_build("iq");
    a = st->arena;
    if (reg_load(ph, r->user, r->key, a, &reg) != PV_OK) {
        pv_stanza_unref(st);
        return 0;
    }
    snprintf(id, sizeof(id), "push-%lx-%llx", ++ph->seq,
             (unsigned long long)pv_now_ms(pv_host_server(ph->h)));
    snprintf(count, sizeof(count), "%lu", r->count);
    pv_node_set_attr(a, st->root, "type", "set");
    pv_node_set_attr(a, st->root, "id", id);
    pv_node_set_attr(a, st->root, "from",
                     pv_arena_printf(a, "%s@%s", r->user, host));
    pv_node_set_attr(a, st->root, "to", reg.jid);
    pubsub = pv_node_new(a, "pubsub", NS_PUBSUB, st->root);
    publish = pv_node_new(a, "publish", NULL, pubsub);
    pv_node_set_attr(a, publish, "node", reg.node);
    item = pv_node_new(a, "item", NULL, publish);
    notif = pv_node_new(a, "notification", NS_PUSH, item);
    form = pv_node_new(a, "x", NS_DATA, notif);
    pv_node_set_attr(a, form, "type", "submit");
    add_field(a, form, "FORM_TYPE", FORM_SUMMARY);
    add_field(a, form, "message-count", count);
    if (conf->include_sender && r->sender != NULL)
        add_field(a, form, "last-message-sender", r->sender);
    if (conf->include_body && r->body != NULL)
        add_field(a, form, "last-message-body", r->body);
    /* XEP-0357 "Enabling Notifications": the options given at enable go
     * with every publish */
    if (reg.options != NULL) {
        po = pv_node_new(a, "publish-options", NULL, pubsub);
        pv_node_append(po, pv_node_copy(a, reg.options));
    }
    pv_stanza_touch(st);
    iq_track(ph, id, r->user, r->key, reg.jid);
    pv_log(PV_LOG_DEBUG, "mod_push", "notifying %s for %s@%s (%lu)",
           reg.jid, r->user, host, r->count);
    pv_host_route(ph->h, st);
    pv_stanza_unref(st);
    r->last_sent_ms = pv_now_ms(pv_host_server(ph->h));
    r->is_due = 0;
    return 1;
}

static void push_timer_fire(void *arg);

static void
push_timer_arm(push_host_t *ph, uint64_t delay_ms)
{
    if (ph->timer != NULL || ph->is_dead)
        return;
    ph->timer = pv_module_timer(ph->m, ph->h, delay_ms ? delay_ms : 1, 0,
                                push_timer_fire, ph);
}

static uint64_t
conf_throttle(const push_conf_t *conf)
{
    return conf->throttle == PV_DURATION_OFF ? 0 : conf->throttle;
}

/* Publishes every due summary whose throttle interval has passed. */
static void
push_timer_fire(void *arg)
{
    push_host_t *ph = arg;
    const push_conf_t *conf = pv_module_conf(ph->m, ph->h);
    uint64_t now = pv_now_ms(pv_host_server(ph->h));
    uint64_t throttle = conf_throttle(conf), next = 0;
    push_reg_t **pp = &ph->regs, *r;

    ph->timer = NULL;         /* one-shot: the core freed it */
    while ((r = *pp) != NULL) {
        if (r->is_due) {
            if (now - r->last_sent_ms >= throttle) {
                if (!push_publish(ph, r)) {
                    *pp = r->next;
                    reg_free(r);
                    continue;
                }
            } else {
                uint64_t left = r->last_sent_ms + throttle - now;

                if (next == 0 || left < next)
                    next = left;
            }
        }
        pp = &r->next;
    }
    if (next > 0)
        push_timer_arm(ph, next);
}

/* Counts message st (summarised by msg) for user's registration key and
 * publishes now, or when the throttle interval ends. */
static void
push_note(push_host_t *ph, const char *user, const char *key,
          pv_stanza_t *st, const pv_node_t *msg)
{
    const push_conf_t *conf = pv_module_conf(ph->m, ph->h);
    uint64_t now = pv_now_ms(pv_host_server(ph->h));
    uint64_t throttle = conf_throttle(conf);
    push_reg_t *r = reg_find(ph, user, key, 1);
    const char *from;
    const pv_node_t *body;

    if (r->last_st == st)
        return;
    pv_stanza_unref(r->last_st);
    r->last_st = pv_stanza_ref(st);
    r->count++;
    free(r->sender);
    free(r->body);
    r->sender = r->body = NULL;
    from = pv_node_attr(msg, "from");
    if (conf->include_sender && from != NULL)
        r->sender = pv_xstrdup(from);
    body = pv_node_child(msg, "body", msg->xmlns);
    if (conf->include_body && body != NULL) {
        pv_arena_t *a = pv_arena_new(256);
        const char *text = pv_node_text(body, a);
        size_t n = strlen(text);

        if (n > PUSH_BODY_MAX) {
            /* cut on a UTF-8 character boundary */
            n = PUSH_BODY_MAX;
            while (n > 0 && ((unsigned char)text[n] & 0xC0) == 0x80)
                n--;
        }
        r->body = pv_xstrndup(text, n);
        pv_arena_free(a);
    }
    if (!r->is_due &&
        (r->last_sent_ms == 0 || now - r->last_sent_ms >= throttle)) {
        if (!push_publish(ph, r))
            reg_forget(ph, user, key);
        return;
    }
    if (!r->is_due) {
        r->is_due = 1;
        push_timer_arm(ph, r->last_sent_ms + throttle - now);
    }
}

/* --- (a) a message for an account without any session ----------------- */

static void
count_session(void *arg, pv_session_t *s)
{
    (void)s;
    (*(size_t *)arg)++;
}

static pv_rc_t
push_message(pv_event_t *ev)
{
    push_host_t *ph = pv_module_host_data(ev->module, ev->host);
    const char *user = ev->to->node;
    const pv_node_t *msg = NULL;
    push_keys_t keys;
    size_t n_sessions = 0, i;

    if (ph == NULL || ph->store == NULL || user == NULL)
        return PV_PASS;
    if (!message_matters(ev->stanza->root, &msg))
        return PV_PASS;
    /* a session, even hibernated or unavailable, means the message is
     * delivered or queued for it: hibernated ones notify on send */
    pv_host_each_session(ev->host, user, count_session, &n_sessions);
    if (n_sessions > 0 || !pv_user_exists(ev->host, user))
        return PV_PASS;
    memset(&keys, 0, sizeof(keys));
    keys.max = PUSH_REGS_READ_MAX;
    if (pv_store_map_each(ph->store, pv_host_name(ev->host), user,
                          collect_key, &keys) != PV_OK) {
        keys_free(&keys);
        return PV_PASS;
    }
    for (i = 0; i < keys.n; i++)
        push_note(ph, user, keys.keys[i], ev->stanza, msg);
    keys_free(&keys);
    return PV_PASS;
}

/* --- (b) a stanza written to a hibernated session ----------------------- */

static pv_rc_t
push_session_send(pv_event_t *ev)
{
    pv_session_t *s = ev->session;
    push_session_t *ps;
    push_host_t *ph;
    const pv_node_t *msg = NULL;
    const char *user;

    if (s == NULL || ev->stanza == NULL)
        return PV_PASS;
    ps = pv_session_data(s, ev->module);
    if (ps == NULL || ps->key == NULL)
        return PV_PASS;
    ph = pv_module_host_data(ev->module, pv_session_host(s));
    if (ph == NULL || ph->store == NULL)
        return PV_PASS;
    user = pv_session_jid(s)->node;
    if (pv_session_is_connected(s)) {
        /* the client is back (XEP-0198 resumption): the summary starts
         * again from zero */
        if (ps->has_count) {
            reg_forget(ph, user, ps->key);
            ps->has_count = 0;
        }
        return PV_PASS;
    }
    if (!message_matters(ev->stanza->root, &msg))
        return PV_PASS;
    ps->has_count = 1;
    push_note(ph, user, ps->key, ev->stanza, msg);
    return PV_PASS;
}

/* --- <enable/> and <disable/> ---------------------------------------- */

/* XEP-0357 "Enabling"/"Disabling": only the account itself manages its
 * registrations. */
static int
is_own_account(const pv_event_t *ev)
{
    return ev->origin != NULL && ev->from != NULL &&
           ev->to->node != NULL && ev->to->resource == NULL &&
           strcmp(ev->from->bare, ev->to->bare) == 0 &&
           pv_jid_bare_equal(pv_session_jid(ev->origin), ev->to);
}

/* The FORM_TYPE of a data form, or NULL. */
static const char *
form_type(const pv_node_t *x, pv_arena_t *a)
{
    const pv_node_t *f = NULL, *v;

    while ((f = pv_node_next_child(x, f, "field", NS_DATA)) != NULL) {
        const char *var = pv_node_attr(f, "var");

        if (var != NULL && strcmp(var, "FORM_TYPE") == 0) {
            v = pv_node_child(f, "value", NS_DATA);
            return v ? pv_node_text(v, a) : NULL;
        }
    }
    return NULL;
}

typedef struct {
    push_host_t *ph;
    pv_stanza_t *req;
    char *user;
    char *key;
} push_enable_t;

static void
inflight_remove(push_host_t *ph, const char *user, const char *key)
{
    push_inflight_t **pp, *f;

    for (pp = &ph->inflight; (f = *pp) != NULL; pp = &f->next) {
        if (strcmp(f->user, user) == 0 && strcmp(f->key, key) == 0) {
            *pp = f->next;
            free(f->user);
            free(f->key);
            free(f);
            return;
        }
    }
}

static void
reply_by_address(push_host_t *ph, pv_stanza_t *st)
{
    /* the requesting session may be gone by the commit: route by
     * address, which drops the reply for a vanished resource */
    if (st == NULL)
        return;
    pv_host_route(ph->h, st);
    pv_stanza_unref(st);
}

static void
enable_done(void *arg, int rc)
{
    push_enable_t *en = arg;
    push_host_t *ph = en->ph;

    if (!ph->is_dead) {
        inflight_remove(ph, en->user, en->key);
        if (rc == PV_OK) {
            reply_by_address(ph, pv_iq_result(en->req));
        } else {
            pv_log(PV_LOG_ERROR, "mod_push", "storing a push registration "
                   "of %s@%s failed", en->user, pv_host_name(ph->h));
            reply_by_address(ph, pv_stanza_error(en->req, PV_ERR_WAIT,
                                                 "internal-server-error",
                                                 NULL));
        }
    }
    ph_unref(ph);
    pv_stanza_unref(en->req);
    free(en->user);
    free(en->key);
    free(en);
}

/* Registrations of user other than key, committed or being committed. */
static size_t
count_other_regs(push_host_t *ph, const char *user, const char *key)
{
    push_keys_t keys;
    push_inflight_t *f;
    size_t n = 0, i, j;

    memset(&keys, 0, sizeof(keys));
    pv_store_map_each(ph->store, pv_host_name(ph->h), user, collect_key,
                      &keys);
    for (i = 0; i < keys.n; i++)
        if (strcmp(keys.keys[i], key) != 0)
            n++;
    for (f = ph->inflight; f != NULL; f = f->next) {
        int is_known = strcmp(f->key, key) == 0;

        if (strcmp(f->user, user) != 0)
            continue;
        for (j = 0; j < keys.n && !is_known; j++)
            is_known = strcmp(keys.keys[j], f->key) == 0;
        if (!is_known)
            n++;
    }
    keys_free(&keys);
    return n;
}

static pv_rc_t
push_enable(pv_event_t *ev)
{
    push_host_t *ph = pv_module_host_data(ev->module, ev->host);
    const push_conf_t *conf = pv_module_conf(ev->module, ev->host);
    pv_stanza_t *st = ev->stanza;
    const char *jid_attr = pv_node_attr(ev->payload, "jid");
    const char *node = pv_node_attr(ev->payload, "node");
    const char *user = ev->to->node;
    const pv_node_t *x;
    push_session_t *ps;
    push_enable_t *en;
    push_inflight_t *f;
    pv_node_t *row;
    pv_arena_t *a;
    pv_buf_t buf = { 0 };
    pv_jid_t app;
    char *key;
    const char *ft;

    if (!is_own_account(ev)) {
        pv_send_error(ev->origin, st, PV_ERR_AUTH, "forbidden", NULL);
        return PV_HANDLED;
    }
    if (ph == NULL || ph->store == NULL) {
        pv_send_error(ev->origin, st, PV_ERR_WAIT, "internal-server-error",
                      "push storage unavailable");
        return PV_HANDLED;
    }
    if (jid_attr == NULL ||
        pv_jid_parse(jid_attr, strlen(jid_attr), &app, st->arena) != PV_OK) {
        pv_send_error(ev->origin, st, PV_ERR_MODIFY, "bad-request",
                      "missing or invalid jid");
        return PV_HANDLED;
    }
    if (node == NULL || *node == '\0') {
        pv_send_error(ev->origin, st, PV_ERR_MODIFY, "bad-request",
                      "missing node");
        return PV_HANDLED;
    }
    x = pv_node_child(ev->payload, "x", NS_DATA);
    if (x != NULL) {
        ft = form_type(x, st->arena);
        if (ft == NULL || strcmp(ft, FORM_PUBLISH_OPTIONS) != 0) {
            pv_send_error(ev->origin, st, PV_ERR_MODIFY, "bad-request",
                          "the form must be pubsub#publish-options");
            return PV_HANDLED;
        }
    }
    key = reg_key(app.full, node);
    /* the map key must fit LMDB's key limit with host and user */
    if (strlen(key) + strlen(user) + strlen(pv_host_name(ev->host)) + 16 >
        PV_KEY_MAX) {
        free(key);
        pv_send_error(ev->origin, st, PV_ERR_MODIFY, "not-acceptable",
                      "jid and node too long");
        return PV_HANDLED;
    }
    if (conf->max_registrations != PV_COUNT_OFF &&
        count_other_regs(ph, user, key) >=
            (size_t)conf->max_registrations) {
        free(key);
        pv_send_error(ev->origin, st, PV_ERR_WAIT, "resource-constraint",
                      "too many push registrations");
        return PV_HANDLED;
    }
    a = pv_arena_new(1024);
    row = pv_node_new(a, "registration", NS_PUSH, NULL);
    pv_node_set_attr(a, row, "jid", app.full);
    pv_node_set_attr(a, row, "node", node);
    if (x != NULL)
        pv_node_append(row, pv_node_copy(a, x));
    pv_buf_append(&buf, (const uint8_t[]){ PUSH_FORMAT }, 1);
    pv_node_pack(row, &buf);
    pv_arena_free(a);
    if (buf.len > PUSH_VALUE_MAX) {
        pv_buf_free(&buf);
        free(key);
        pv_send_error(ev->origin, st, PV_ERR_MODIFY, "not-acceptable",
                      "publish options too large");
        return PV_HANDLED;
    }
    en = pv_xcalloc(1, sizeof(*en));
    en->ph = ph_ref(ph);
    en->req = pv_stanza_ref(st);
    en->user = pv_xstrdup(user);
    en->key = pv_xstrdup(key);
    /* XEP-0357 "Enabling Notifications": enabling the same JID and node
     * again replaces its publish options */
    if (pv_store_put(ph->store, pv_host_name(ev->host), user, key, buf.data,
                     buf.len, enable_done, en) != PV_OK) {
        ph_unref(ph);
        pv_stanza_unref(en->req);
        free(en->user);
        free(en->key);
        free(en);
        pv_buf_free(&buf);
        free(key);
        pv_send_error(ev->origin, st, PV_ERR_WAIT, "internal-server-error",
                      NULL);
        return PV_HANDLED;
    }
    pv_buf_free(&buf);
    f = pv_xcalloc(1, sizeof(*f));
    f->user = pv_xstrdup(user);
    f->key = pv_xstrdup(key);
    f->next = ph->inflight;
    ph->inflight = f;
    /* this resource's registration: a hibernated session notifies it */
    ps = pv_session_data(ev->origin, ev->module);
    if (ps != NULL) {
        free(ps->key);
        ps->key = key;
        ps->has_count = 0;
    } else {
        free(key);
    }
    return PV_HANDLED;
}

typedef struct {
    push_host_t *ph;
    pv_stanza_t *req;
    unsigned left;
} push_disable_t;

static void
disable_done(void *arg, int rc)
{
    push_disable_t *d = arg;

    (void)rc;                 /* PV_NOTFOUND: already gone, fine */
    if (--d->left > 0)
        return;
    if (!d->ph->is_dead)
        reply_by_address(d->ph, pv_iq_result(d->req));
    ph_unref(d->ph);
    pv_stanza_unref(d->req);
    free(d);
}

/* Sessions of a user whose slot names one of keys lose that reference. */
typedef struct {
    pv_module_t *m;
    const char *const *keys;
    size_t n;
} push_clear_t;

static void
clear_slot(void *arg, pv_session_t *s)
{
    const push_clear_t *c = arg;
    push_session_t *ps;
    size_t i;

    ps = pv_session_data(s, c->m);
    if (ps == NULL || ps->key == NULL)
        return;
    for (i = 0; i < c->n; i++) {
        if (strcmp(ps->key, c->keys[i]) == 0) {
            free(ps->key);
            ps->key = NULL;
            ps->has_count = 0;
            return;
        }
    }
}

static pv_rc_t
push_disable(pv_event_t *ev)
{
    push_host_t *ph = pv_module_host_data(ev->module, ev->host);
    pv_stanza_t *st = ev->stanza;
    const char *jid_attr = pv_node_attr(ev->payload, "jid");
    const char *node = pv_node_attr(ev->payload, "node");
    const char *user = ev->to->node;
    const char *host = pv_host_name(ev->host);
    push_keys_t keys;
    push_disable_t *d;
    push_clear_t clear;
    pv_jid_t app;
    size_t i;

    if (!is_own_account(ev)) {
        pv_send_error(ev->origin, st, PV_ERR_AUTH, "forbidden", NULL);
        return PV_HANDLED;
    }
    if (ph == NULL || ph->store == NULL) {
        pv_send_error(ev->origin, st, PV_ERR_WAIT, "internal-server-error",
                      "push storage unavailable");
        return PV_HANDLED;
    }
    if (jid_attr == NULL ||
        pv_jid_parse(jid_attr, strlen(jid_attr), &app, st->arena) != PV_OK) {
        pv_send_error(ev->origin, st, PV_ERR_MODIFY, "bad-request",
                      "missing or invalid jid");
        return PV_HANDLED;
    }
    memset(&keys, 0, sizeof(keys));
    if (node != NULL) {
        /* XEP-0357 "Disabling Notifications": just this JID and node */
        keys.keys = pv_xmalloc(sizeof(*keys.keys));
        keys.keys[0] = reg_key(app.full, node);
        keys.n = 1;
    } else {
        /* every node of that app server */
        keys.jid_prefix = app.full;
        pv_store_map_each(ph->store, host, user, collect_key, &keys);
    }
    d = pv_xcalloc(1, sizeof(*d));
    d->ph = ph_ref(ph);
    d->req = pv_stanza_ref(st);
    d->left = 1;              /* our own, dropped below */
    for (i = 0; i < keys.n; i++) {
        reg_forget(ph, user, keys.keys[i]);
        d->left++;
        if (pv_store_delete(ph->store, host, user, keys.keys[i],
                            disable_done, d) != PV_OK)
            d->left--;
    }
    /* the sessions that enabled what is removed notify nothing more */
    clear.m = ev->module;
    clear.keys = (const char *const *)keys.keys;
    clear.n = keys.n;
    pv_host_each_session(ev->host, user, clear_slot, &clear);
    keys_free(&keys);
    disable_done(d, PV_OK);
    return PV_HANDLED;
}

/* --- answers of app servers ------------------------------------------ */

static const char *
error_type(const pv_node_t *root)
{
    const pv_node_t *e = pv_node_child(root, "error", root->xmlns);

    return e ? pv_node_attr(e, "type") : NULL;
}

typedef struct {
    push_host_t *ph;
    char *user;
    char *key;
} push_removed_t;

static void
removed_done(void *arg, int rc)
{
    push_removed_t *r = arg;

    (void)rc;
    ph_unref(r->ph);
    free(r->user);
    free(r->key);
    free(r);
}

static pv_rc_t
push_iq_answer(pv_event_t *ev)
{
    push_host_t *ph = pv_module_host_data(ev->module, ev->host);
    const char *id = ev->stanza->id;
    const char *type;
    push_iq_t **pp, *q;
    push_removed_t *rm;
    push_clear_t clear;
    const char *keys[1];

    if (ph == NULL || id == NULL || ev->from == NULL ||
        ev->to->node == NULL)
        return PV_PASS;
    for (pp = &ph->iqs; (q = *pp) != NULL; pp = &q->next)
        if (strcmp(q->id, id) == 0 && strcmp(q->user, ev->to->node) == 0)
            break;
    /* only the app server we published to may answer (RFC 6120 §8.2.3) */
    if (q == NULL || strcmp(q->to, ev->from->full) != 0)
        return PV_PASS;
    *pp = q->next;
    ph->n_iqs--;
    if (ev->kind == PV_IQ_ERROR) {
        type = error_type(ev->stanza->root);
        /* XEP-0357 "Publish Errors": the service refuses us for good;
         * wait and modify errors may pass, so the registration stays */
        if (type != NULL && (strcmp(type, "cancel") == 0 ||
                             strcmp(type, "auth") == 0)) {
            pv_log(PV_LOG_INFO, "mod_push", "%s refused a notification "
                   "(%s): push registration of %s@%s removed", q->to, type,
                   q->user, pv_host_name(ev->host));
            reg_forget(ph, q->user, q->key);
            rm = pv_xcalloc(1, sizeof(*rm));
            rm->ph = ph_ref(ph);
            rm->user = pv_xstrdup(q->user);
            rm->key = pv_xstrdup(q->key);
            if (pv_store_delete(ph->store, pv_host_name(ev->host), q->user,
                                q->key, removed_done, rm) != PV_OK)
                removed_done(rm, PV_ERROR);
            keys[0] = q->key;
            clear.m = ev->module;
            clear.keys = keys;
            clear.n = 1;
            pv_host_each_session(ev->host, q->user, clear_slot, &clear);
        }
    }
    iq_free(q);
    return PV_HANDLED;
}

/* --- lifecycle ------------------------------------------------------- */

/* A new session of the account: its messages are read from now on, so
 * the summary counts start again. */
static pv_rc_t
push_session_bound(pv_event_t *ev)
{
    push_host_t *ph;
    const char *user;

    if (ev->session == NULL)
        return PV_PASS;
    ph = pv_module_host_data(ev->module, pv_session_host(ev->session));
    user = pv_session_jid(ev->session)->node;
    if (ph != NULL && user != NULL)
        reg_forget(ph, user, NULL);
    return PV_PASS;
}

static pv_rc_t
push_user_deleted(pv_event_t *ev)
{
    push_host_t *ph = pv_module_host_data(ev->module, ev->host);

    /* the core removed the rows; the counters are ours */
    if (ph != NULL && ev->user != NULL)
        reg_forget(ph, ev->user, NULL);
    return PV_PASS;
}

static void
push_session_fini(pv_module_t *m, pv_session_t *s, void *data)
{
    push_session_t *ps = data;

    (void)m;
    (void)s;
    free(ps->key);
    ps->key = NULL;
}

static int
push_host_init(pv_module_t *m, pv_host_t *h)
{
    push_host_t *ph = pv_xcalloc(1, sizeof(*ph));

    ph->refs = 1;
    ph->m = m;
    ph->h = h;
    ph->store = pv_store_open(h, m, "registrations", PV_STORE_MAP);
    if (ph->store == NULL)
        pv_log(PV_LOG_WARN, "mod_push", "%s: no storage: push "
               "notifications are disabled", pv_host_name(h));
    pv_module_set_host_data(m, h, ph);
    return PV_OK;
}

static void
push_host_fini(pv_module_t *m, pv_host_t *h)
{
    push_host_t *ph = pv_module_host_data(m, h);

    if (ph == NULL)
        return;
    /* the core has cancelled our timer already */
    ph->timer = NULL;
    ph->is_dead = 1;
    pv_module_set_host_data(m, h, NULL);
    ph_unref(ph);
}

/* XEP-0357 §5: the account advertises push, not the server. */
static pv_rc_t
push_account_disco(pv_event_t *ev)
{
    pv_node_t *f = pv_node_new(ev->stanza->arena, "feature", NULL,
                               ev->data);

    pv_node_set_attr(ev->stanza->arena, f, "var", NS_PUSH);
    return PV_PASS;
}

static const pv_hook_t push_hooks[] = {
    { PV_IQ_SET, PV_TO_BARE, NS_PUSH, "enable", push_enable, 0, 0 },
    { PV_IQ_SET, PV_TO_BARE, NS_PUSH, "disable", push_disable, 0, 0 },
    { PV_IQ_RESULT, PV_TO_BARE, NULL, NULL, push_iq_answer, 50, 0 },
    { PV_IQ_ERROR, PV_TO_BARE, NULL, NULL, push_iq_answer, 50, 0 },
    /* after mam (20) and carbons (60), before offline (100) takes it */
    { PV_MESSAGE, PV_TO_BARE, NULL, NULL, push_message, 90, 0 },
    { PV_MESSAGE, PV_TO_FULL, NULL, NULL, push_message, 90, 0 },
    /* after csi (10) held what can wait, before smacks (100) queues */
    { PV_EV_SESSION_SEND, PV_TO_ANY, NULL, NULL, push_session_send, 50, 0 },
    { PV_EV_SESSION_BOUND, PV_TO_ANY, NULL, NULL, push_session_bound, 0,
      0 },
    { PV_EV_USER_DELETED, PV_TO_ANY, NULL, NULL, push_user_deleted, 0, 0 },
    { PV_EV_ACCOUNT_DISCO_INFO, PV_TO_ANY, NULL, NULL, push_account_disco,
      0, 0 },
    PV_HOOKS_END
};

static const pv_directive_t push_directives[] = {
    { "push_include_body", PV_CTX_ANY, pv_conf_bool,
      offsetof(push_conf_t, include_body), "false", 0, 0, NULL },
    { "push_include_sender", PV_CTX_ANY, pv_conf_bool,
      offsetof(push_conf_t, include_sender), "false", 0, 0, NULL },
    { "push_max_registrations", PV_CTX_ANY, pv_conf_count_or_off,
      offsetof(push_conf_t, max_registrations), "5", 0, 0, NULL },
    { "push_throttle", PV_CTX_ANY, pv_conf_duration,
      offsetof(push_conf_t, throttle), "5s", 0, 0, NULL },
    PV_DIRECTIVES_END
};

PV_MODULE(push) = {
    .abi = PV_MODULE_ABI,
    .name = "push",
    .hooks = push_hooks,
    .directives = push_directives,
    .conf_size = sizeof(push_conf_t),
    .session_data_size = sizeof(push_session_t),
    .host_init = push_host_init,
    .host_fini = push_host_fini,
    .session_fini = push_session_fini,
};
