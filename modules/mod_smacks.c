/* modules/mod_smacks.c: XEP-0198 Stream Management (urn:xmpp:sm:3) for
 * client sessions: enable (also inline in XEP-0386 Bind2), acks both ways
 * with durable <a/> answers, the unacknowledged queue, hibernation of a
 * dropped session, resumption (also inline in XEP-0388 SASL2), and the
 * re-routing of what was never acknowledged when a session ends for good,
 * so that no message is dropped. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <palaver/module.h>

#define NS_SM "urn:xmpp:sm:3"
#define NS_STANZAS "urn:ietf:params:xml:ns:xmpp-stanzas"
#define NS_STREAM_ERR "urn:ietf:params:xml:ns:xmpp-streams"
#define NS_CARBONS "urn:xmpp:carbons:2"
#define NS_MAM "urn:xmpp:mam:2"

/* The server asks for an ack (<r/>) once this many stanzas are unacked,
 * else after SMACKS_R_DELAY_MS; never while one <r/> is unanswered, so a
 * busy stream costs one <r/> per round trip, not one per stanza. */
#define SMACKS_R_BATCH 5
#define SMACKS_R_DELAY_MS 1000
#define SMACKS_ID_BYTES 16
#define SMACKS_Q_MIN 8

typedef struct {
    pv_duration_t hibernation;  /* PV_DURATION_OFF: no resumption */
    long long max_unacked;      /* PV_COUNT_OFF: no limit */
} smacks_conf_t;

typedef struct smacks_s smacks_t;

/* Per-session state, allocated at <enable/> only (the session slot is
 * one pointer). Refcounted: pending durability barriers hold a
 * reference and find s == NULL once the session is gone. */
struct smacks_s {
    unsigned refs;
    pv_session_t *s;            /* NULL once the session ended */
    pv_module_t *m;
    smacks_t *next;             /* resumption id hash chain */
    pv_mtimer_t *end_timer;     /* hibernation expiry or deferred end */
    pv_mtimer_t *r_timer;       /* our next <r/> */
    pv_stanza_t **q;            /* ring of unacknowledged stanzas */
    uint32_t q_cap, q_head, q_len;
    uint32_t in_base;           /* pv_session_stanzas_in() at enable */
    uint32_t out_acked;         /* last h the client acknowledged */
    uint32_t ack_h;             /* h of the <a/> waiting for a commit */
    uint32_t resume_h;          /* h of the <resumed/> waiting likewise */
    uint32_t max_s;             /* resumption window, seconds */
    unsigned resume_waits;      /* resumption barriers outstanding */
    unsigned resumable : 1;
    unsigned r_out : 1;         /* our <r/> is unanswered */
    unsigned r_soon : 1;        /* r_timer is the immediate kind */
    unsigned ack_pending : 1;   /* a barrier for <a/> is outstanding */
    unsigned ack_again : 1;     /* another <r/> came meanwhile */
    unsigned resuming : 1;      /* <resumed/> waits for its barrier */
    unsigned doomed : 1;        /* end_timer ends the session */
    char id[SMACKS_ID_BYTES * 2 + 1];
};

/* Resumption ids of a host's resumable sessions. */
typedef struct {
    smacks_t **buckets;
    size_t n_buckets, count;
} smacks_host_t;

/* --- small helpers ---------------------------------------------------- */

static smacks_t *
sm_ref(smacks_t *sm)
{
    sm->refs++;
    return sm;
}

static void
sm_unref(smacks_t *sm)
{
    if (--sm->refs == 0)
        free(sm);
}

static smacks_t *
sm_get(pv_module_t *m, pv_session_t *s)
{
    smacks_t **slot = s ? pv_session_data(s, m) : NULL;

    return slot ? *slot : NULL;
}

static uint32_t
sm_in_h(const smacks_t *sm)
{
    /* XEP-0198 §4: h wraps at 2^32 */
    return pv_session_stanzas_in(sm->s) - sm->in_base;
}

static int
parse_u32(const char *s, uint32_t *out)
{
    char *end;
    unsigned long long v;

    if (s == NULL || *s < '0' || *s > '9')
        return PV_ERROR;
    v = strtoull(s, &end, 10);
    if (*end != '\0' || v > UINT32_MAX)
        return PV_ERROR;
    *out = (uint32_t)v;
    return PV_OK;
}

static int
is_true(const char *v)
{
    /* XML Schema boolean */
    return v != NULL && (strcmp(v, "true") == 0 || strcmp(v, "1") == 0);
}

static void
stream_puts(pv_stream_t *c, const char *xml)
{
    pv_stream_write(c, xml, strlen(xml));
}

static void
write_failed(pv_stream_t *c, const char *cond)
{
    char buf[160];

    snprintf(buf, sizeof(buf), "<failed xmlns='" NS_SM "'><%s xmlns='"
             NS_STANZAS "'/></failed>", cond);
    stream_puts(c, buf);
}

/* --- resumption id map -------------------------------------------------- */

static size_t
id_hash(const char *id, size_t n)
{
    uint64_t h = 1469598103934665603ULL;

    while (*id)
        h = (h ^ (unsigned char)*id++) * 1099511628211ULL;
    return (size_t)(h % n);
}

static void
map_put(smacks_host_t *hd, smacks_t *sm)
{
    size_t i;

    if (hd->count + 1 > hd->n_buckets) {
        size_t n = hd->n_buckets ? hd->n_buckets * 2 : 64;
        smacks_t **b = pv_xcalloc(n, sizeof(*b));

        for (i = 0; i < hd->n_buckets; i++) {
            smacks_t *e = hd->buckets[i], *next;
            for (; e != NULL; e = next) {
                size_t k = id_hash(e->id, n);
                next = e->next;
                e->next = b[k];
                b[k] = e;
            }
        }
        free(hd->buckets);
        hd->buckets = b;
        hd->n_buckets = n;
    }
    i = id_hash(sm->id, hd->n_buckets);
    sm->next = hd->buckets[i];
    hd->buckets[i] = sm;
    hd->count++;
}

static smacks_t *
map_get(smacks_host_t *hd, const char *id)
{
    smacks_t *e;

    if (hd == NULL || hd->n_buckets == 0 || id == NULL)
        return NULL;
    for (e = hd->buckets[id_hash(id, hd->n_buckets)]; e; e = e->next)
        if (strcmp(e->id, id) == 0)
            return e;
    return NULL;
}

static void
map_del(smacks_host_t *hd, smacks_t *sm)
{
    smacks_t **pp;

    if (hd == NULL || hd->n_buckets == 0)
        return;
    for (pp = &hd->buckets[id_hash(sm->id, hd->n_buckets)]; *pp;
         pp = &(*pp)->next) {
        if (*pp == sm) {
            *pp = sm->next;
            hd->count--;
            return;
        }
    }
}

/* --- the unacknowledged queue ------------------------------------------ */

static void
q_push(smacks_t *sm, pv_stanza_t *st)
{
    if (sm->q_len == sm->q_cap) {
        uint32_t cap = sm->q_cap ? sm->q_cap * 2 : SMACKS_Q_MIN;
        pv_stanza_t **q = pv_xmalloc(cap * sizeof(*q));
        uint32_t i;

        for (i = 0; i < sm->q_len; i++)
            q[i] = sm->q[(sm->q_head + i) % sm->q_cap];
        free(sm->q);
        sm->q = q;
        sm->q_cap = cap;
        sm->q_head = 0;
    }
    sm->q[(sm->q_head + sm->q_len) % sm->q_cap] = pv_stanza_ref(st);
    sm->q_len++;
}

static pv_stanza_t *
q_at(const smacks_t *sm, uint32_t i)
{
    return sm->q[(sm->q_head + i) % sm->q_cap];
}

static void
q_drop(smacks_t *sm, uint32_t n)
{
    while (n-- > 0 && sm->q_len > 0) {
        pv_stanza_unref(sm->q[sm->q_head]);
        sm->q_head = (sm->q_head + 1) % sm->q_cap;
        sm->q_len--;
    }
    /* idle sessions must stay small: give a large empty ring back */
    if (sm->q_len == 0 && sm->q_cap > 4 * SMACKS_Q_MIN) {
        free(sm->q);
        sm->q = NULL;
        sm->q_cap = 0;
        sm->q_head = 0;
    }
}

/* Applies the client's h. Returns PV_ERROR when h acknowledges more than
 * was sent (XEP-0198 §4 handled-count-too-high); an h behind the last one
 * (a late duplicate) changes nothing. */
static int
apply_h(smacks_t *sm, uint32_t h)
{
    uint32_t n = h - sm->out_acked;

    if (n > sm->q_len) {
        if (sm->out_acked - h < 0x80000000u)
            return PV_OK;       /* behind: stale */
        return PV_ERROR;
    }
    q_drop(sm, n);
    sm->out_acked = h;
    return PV_OK;
}

static void
too_high(smacks_t *sm, pv_stream_t *c, uint32_t h)
{
    char buf[400];

    pv_log(PV_LOG_INFO, "mod_smacks", "%s acknowledged %u stanzas, only "
           "%u were sent", sm->s ? pv_session_jid(sm->s)->full : "-",
           (unsigned)h, (unsigned)(sm->out_acked + sm->q_len));
    /* XEP-0198 §4: undefined-condition with the application condition */
    snprintf(buf, sizeof(buf), "<stream:error><undefined-condition xmlns='"
             NS_STREAM_ERR "'/><text xmlns='" NS_STREAM_ERR "'>"
             "handled-count-too-high</text><handled-count-too-high xmlns='"
             NS_SM "' h='%u' send-count='%u'/></stream:error>", (unsigned)h,
             (unsigned)(sm->out_acked + sm->q_len));
    stream_puts(c, buf);
    pv_stream_close(c, NULL);
}

/* --- timers --------------------------------------------------------- */

static void request_ack(smacks_t *sm);

static void
r_timer_fire(void *arg)
{
    smacks_t *sm = arg;
    pv_stream_t *c;

    sm->r_timer = NULL;
    sm->r_soon = 0;
    c = sm->s ? pv_session_stream(sm->s) : NULL;
    if (c == NULL || sm->resuming || sm->r_out || sm->q_len == 0)
        return;
    sm->r_out = 1;
    stream_puts(c, "<r xmlns='" NS_SM "'/>");
}

/* Schedules our <r/>: soon when SMACKS_R_BATCH stanzas are unacked, else
 * after a quiet second. The timer runs after the stanza being sent now
 * went out, so the <r/> follows it on the wire. */
static void
request_ack(smacks_t *sm)
{
    int soon = sm->q_len >= SMACKS_R_BATCH;

    if (sm->r_out || sm->q_len == 0 || sm->resuming || sm->doomed ||
        !pv_session_is_connected(sm->s))
        return;
    if (sm->r_timer != NULL) {
        if (!soon || sm->r_soon)
            return;
        pv_module_timer_cancel(sm->r_timer);
    }
    sm->r_soon = soon;
    sm->r_timer = pv_module_timer(sm->m, pv_session_host(sm->s),
                                  soon ? 0 : SMACKS_R_DELAY_MS, 0,
                                  r_timer_fire, sm);
}

static void
end_timer_fire(void *arg)
{
    smacks_t *sm = arg;
    pv_session_t *s = sm->s;

    sm->end_timer = NULL;
    if (s == NULL)
        return;
    if (pv_session_is_connected(s)) {
        /* too many unacknowledged stanzas on a live stream: the client
         * does not ack; ending it re-routes what it did not confirm */
        pv_session_close(s, "policy-violation");
        return;
    }
    pv_log(PV_LOG_INFO, "mod_smacks", "%s: %s", pv_session_jid(s)->full,
           sm->doomed ? "too many unacknowledged stanzas while hibernated"
                      : "resumption window expired");
    pv_session_end(s);      /* session_fini frees sm's queue */
}

/* Ends the session from a fresh loop turn: never inside the router's
 * walk over the user's sessions. */
static void
doom(smacks_t *sm)
{
    if (sm->doomed)
        return;
    sm->doomed = 1;
    if (sm->end_timer != NULL)
        pv_module_timer_cancel(sm->end_timer);
    sm->end_timer = pv_module_timer(sm->m, pv_session_host(sm->s), 0, 0,
                                    end_timer_fire, sm);
}

/* --- enabling ------------------------------------------------------- */

/* Enables stream management on session s; resume asks for resumption,
 * client_max is the client's preferred window (0: none). Returns NULL when
 * it is already enabled. */
static smacks_t *
sm_enable(pv_module_t *m, pv_session_t *s, int resume, uint32_t client_max)
{
    smacks_t **slot = pv_session_data(s, m);
    const smacks_conf_t *conf = pv_module_conf(m, pv_session_host(s));
    smacks_host_t *hd = pv_module_host_data(m, pv_session_host(s));
    smacks_t *sm;

    if (slot == NULL || *slot != NULL)
        return NULL;
    sm = pv_xcalloc(1, sizeof(*sm));
    sm->refs = 1;
    sm->s = s;
    sm->m = m;
    sm->in_base = pv_session_stanzas_in(s);
    if (resume && conf->hibernation != PV_DURATION_OFF && hd != NULL) {
        unsigned char r[SMACKS_ID_BYTES];
        uint64_t secs = (conf->hibernation + 999) / 1000;
        size_t i;

        if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r)) {
            pv_log(PV_LOG_ERROR, "mod_smacks", "getrandom failed");
        } else {
            for (i = 0; i < sizeof(r); i++)
                snprintf(sm->id + 2 * i, 3, "%02x", r[i]);
            if (secs > UINT32_MAX)
                secs = UINT32_MAX;
            /* the smaller of the client's wish and our limit */
            if (client_max > 0 && client_max < secs)
                secs = client_max;
            sm->max_s = (uint32_t)secs;
            sm->resumable = 1;
            map_put(hd, sm);
        }
    }
    *slot = sm;
    return sm;
}

static void
enabled_xml(const smacks_t *sm, char *buf, size_t len)
{
    if (sm->resumable)
        snprintf(buf, len, "<enabled xmlns='" NS_SM "' id='%s' "
                 "resume='true' max='%u'/>", sm->id, (unsigned)sm->max_s);
    else
        snprintf(buf, len, "<enabled xmlns='" NS_SM "'/>");
}

static void
enabled_node(const smacks_t *sm, pv_arena_t *a, pv_node_t *parent)
{
    pv_node_t *n = pv_node_new(a, "enabled", NS_SM, parent);
    char max[16];

    if (!sm->resumable)
        return;
    snprintf(max, sizeof(max), "%u", (unsigned)sm->max_s);
    pv_node_set_attr(a, n, "id", sm->id);
    pv_node_set_attr(a, n, "resume", "true");
    pv_node_set_attr(a, n, "max", max);
}

static void
parse_enable(const pv_node_t *n, int *resume, uint32_t *max)
{
    *resume = is_true(pv_node_attr(n, "resume"));
    if (parse_u32(pv_node_attr(n, "max"), max) != PV_OK)
        *max = 0;
}

/* --- acks -------------------------------------------------------------- */

static void ack_committed(void *arg, int rc);

/* DESIGN.md §1: <a/> only once everything the stanzas it counts caused
 * is committed. One barrier at a time; <r/>s that arrive meanwhile are
 * answered together by the next one. */
static void
ack_submit(smacks_t *sm)
{
    sm->ack_pending = 1;
    sm->ack_h = sm_in_h(sm);
    pv_host_after_commit(pv_session_host(sm->s), ack_committed, sm_ref(sm));
}

static void
ack_committed(void *arg, int rc)
{
    smacks_t *sm = arg;
    pv_stream_t *c;
    char buf[80];

    (void)rc;
    sm->ack_pending = 0;
    c = sm->s ? pv_session_stream(sm->s) : NULL;
    /* a stream that is resuming gets its h in <resumed/> first */
    if (c != NULL && !sm->resuming) {
        snprintf(buf, sizeof(buf), "<a xmlns='" NS_SM "' h='%u'/>",
                 (unsigned)sm->ack_h);
        stream_puts(c, buf);
        if (sm->ack_again) {
            sm->ack_again = 0;
            ack_submit(sm);
        }
    } else {
        sm->ack_again = 0;
    }
    sm_unref(sm);
}

/* --- resumption ----------------------------------------------------- */

/* The session a <resume/> names, if the stream's user owns it. */
static smacks_t *
resume_lookup(pv_module_t *m, pv_stream_t *c, const char *previd)
{
    pv_host_t *h = pv_stream_host(c);
    smacks_t *sm = h ? map_get(pv_module_host_data(m, h), previd) : NULL;
    const char *user = pv_stream_user(c);

    if (sm == NULL || sm->s == NULL || sm->doomed || user == NULL ||
        strcmp(pv_session_jid(sm->s)->node, user) != 0)
        return NULL;
    return sm;
}

static void
replay(smacks_t *sm)
{
    uint32_t i;

    /* in order; they stay queued until the client acknowledges them */
    for (i = 0; i < sm->q_len; i++)
        pv_session_write(sm->s, q_at(sm, i));
}

static void
resume_committed(void *arg, int rc)
{
    smacks_t *sm = arg;
    pv_stream_t *c;
    char buf[160];

    (void)rc;
    sm->resume_waits--;
    c = sm->s ? pv_session_stream(sm->s) : NULL;
    if (c != NULL && sm->resuming && sm->resume_waits == 0) {
        sm->resuming = 0;
        snprintf(buf, sizeof(buf), "<resumed xmlns='" NS_SM "' previd='%s' "
                 "h='%u'/>", sm->id, (unsigned)sm->resume_h);
        stream_puts(c, buf);
        replay(sm);
        request_ack(sm);
    }
    sm_unref(sm);
}

/* Moves sm's session onto stream c after the client's h was checked.
 * Returns PV_ERROR when the core refuses (then nothing changed). */
static int
do_resume(smacks_t *sm, pv_stream_t *c, uint32_t h)
{
    if (pv_stream_resume(c, sm->s) != PV_OK)
        return PV_ERROR;
    apply_h(sm, h);
    if (sm->end_timer != NULL) {
        pv_module_timer_cancel(sm->end_timer);
        sm->end_timer = NULL;
    }
    if (sm->r_timer != NULL) {
        pv_module_timer_cancel(sm->r_timer);
        sm->r_timer = NULL;
    }
    sm->r_out = 0;
    sm->r_soon = 0;
    return PV_OK;
}

static void
handle_resume(pv_event_t *ev, const pv_node_t *n)
{
    const char *previd = pv_node_attr(n, "previd");
    smacks_t *sm;
    uint32_t h = 0;

    if (ev->session != NULL) {
        write_failed(ev->stream, "unexpected-request");
        return;
    }
    sm = resume_lookup(ev->module, ev->stream, previd);
    if (sm == NULL) {
        write_failed(ev->stream, "item-not-found");
        return;
    }
    if (pv_node_attr(n, "h") != NULL &&
        parse_u32(pv_node_attr(n, "h"), &h) != PV_OK) {
        write_failed(ev->stream, "bad-request");
        return;
    }
    if (pv_node_attr(n, "h") == NULL)
        h = sm->out_acked;
    if (h - sm->out_acked > sm->q_len &&
        sm->out_acked - h >= 0x80000000u) {
        too_high(sm, ev->stream, h);
        return;
    }
    if (do_resume(sm, ev->stream, h) != PV_OK) {
        write_failed(ev->stream, "unexpected-request");
        return;
    }
    /* the <resumed/> h acknowledges the client's stanzas: durable first;
     * meanwhile output is only queued (resuming) */
    sm->resuming = 1;
    sm->resume_h = sm_in_h(sm);
    sm->resume_waits++;
    pv_host_after_commit(pv_session_host(sm->s), resume_committed,
                         sm_ref(sm));
}

/* --- event handlers ---------------------------------------------------- */

static pv_rc_t
smacks_element(pv_event_t *ev)
{
    const pv_node_t *n = ev->data;
    smacks_t *sm;
    uint32_t h;

    if (n == NULL || n->name == NULL || strcmp(n->xmlns, NS_SM) != 0)
        return PV_PASS;
    sm = sm_get(ev->module, ev->session);
    if (strcmp(n->name, "enable") == 0) {
        char buf[160];
        uint32_t max;
        int resume;

        /* XEP-0198 §3: only after binding, and only once */
        if (ev->session == NULL || sm != NULL) {
            write_failed(ev->stream, "unexpected-request");
            return PV_HANDLED;
        }
        parse_enable(n, &resume, &max);
        sm = sm_enable(ev->module, ev->session, resume, max);
        if (sm == NULL) {
            write_failed(ev->stream, "unexpected-request");
            return PV_HANDLED;
        }
        enabled_xml(sm, buf, sizeof(buf));
        stream_puts(ev->stream, buf);
    } else if (strcmp(n->name, "r") == 0) {
        if (sm == NULL || sm->resuming)
            return PV_HANDLED;
        if (sm->ack_pending)
            sm->ack_again = 1;
        else
            ack_submit(sm);
    } else if (strcmp(n->name, "a") == 0) {
        if (sm == NULL)
            return PV_HANDLED;
        if (parse_u32(pv_node_attr(n, "h"), &h) != PV_OK) {
            pv_stream_close(ev->stream, "invalid-xml");
            return PV_HANDLED;
        }
        if (apply_h(sm, h) != PV_OK) {
            too_high(sm, ev->stream, h);
            return PV_HANDLED;
        }
        sm->r_out = 0;
        request_ack(sm);
    } else if (strcmp(n->name, "resume") == 0) {
        handle_resume(ev, n);
    } else {
        return PV_PASS;
    }
    return PV_HANDLED;
}

static pv_rc_t
smacks_send(pv_event_t *ev)
{
    smacks_t *sm = sm_get(ev->module, ev->session);
    const smacks_conf_t *conf;

    if (sm == NULL || ev->stanza == NULL ||
        ev->stanza->kind == PV_STANZA_OTHER)
        return PV_PASS;
    q_push(sm, ev->stanza);
    conf = pv_module_conf(ev->module, ev->host);
    if (conf->max_unacked != PV_COUNT_OFF &&
        sm->q_len > (unsigned long long)conf->max_unacked) {
        /* kept in the queue: the end re-routes it with the others */
        doom(sm);
        return PV_HANDLED;
    }
    if (!pv_session_is_connected(ev->session) || sm->resuming)
        return PV_HANDLED;      /* held for the resumption */
    request_ack(sm);
    return PV_PASS;
}

/* A backlog sender (offline messages) waits while half the unacknowledged
 * limit is used, so that the limit never ends the session and nothing is
 * re-routed out of order. */
static pv_rc_t
smacks_room(pv_event_t *ev)
{
    smacks_t *sm = sm_get(ev->module, ev->session);
    const smacks_conf_t *conf = pv_module_conf(ev->module, ev->host);

    if (sm == NULL || conf == NULL || conf->max_unacked == PV_COUNT_OFF)
        return PV_PASS;
    if (sm->q_len >= (unsigned long long)conf->max_unacked / 2) {
        request_ack(sm);
        *(size_t *)ev->data = 0;
    }
    return PV_PASS;
}

static pv_rc_t
smacks_disconnected(pv_event_t *ev)
{
    smacks_t *sm = sm_get(ev->module, ev->session);
    uint64_t ms;

    if (sm == NULL || !sm->resumable || sm->doomed)
        return PV_PASS;
    if (sm->r_timer != NULL) {
        pv_module_timer_cancel(sm->r_timer);
        sm->r_timer = NULL;
    }
    sm->r_out = 0;
    sm->r_soon = 0;
    sm->resuming = 0;
    if (sm->end_timer != NULL)
        pv_module_timer_cancel(sm->end_timer);
    ms = (uint64_t)sm->max_s * 1000;
    sm->end_timer = pv_module_timer(ev->module, ev->host, ms, 0,
                                    end_timer_fire, sm);
    pv_log(PV_LOG_DEBUG, "mod_smacks", "%s hibernated for %us with %u "
           "unacknowledged", pv_session_jid(ev->session)->full,
           (unsigned)sm->max_s, (unsigned)sm->q_len);
    return PV_HANDLED;
}

static pv_rc_t
smacks_features(pv_event_t *ev)
{
    pv_node_t *f = ev->data;

    /* offered once authenticated: resume before bind, enable after */
    if (ev->user == NULL || f == NULL || ev->stanza == NULL)
        return PV_PASS;
    pv_node_new(ev->stanza->arena, "sm", NS_SM, f);
    return PV_PASS;
}

static pv_rc_t
smacks_sasl2_features(pv_event_t *ev)
{
    pv_inline_t *in = ev->data;

    if (in != NULL && in->node != NULL)
        pv_node_new(in->arena, "sm", NS_SM, in->node);
    return PV_PASS;
}

static pv_rc_t
smacks_bind2_features(pv_event_t *ev)
{
    pv_inline_t *in = ev->data;
    pv_node_t *f;

    if (in == NULL || in->node == NULL)
        return PV_PASS;
    f = pv_node_new(in->arena, "feature", NULL, in->node);
    pv_node_set_attr(in->arena, f, "var", NS_SM);
    return PV_PASS;
}

/* XEP-0388 §6.3 / XEP-0198 inline resumption: <resumed/> goes into the
 * <success/>; the core holds stream output until <success/> is written,
 * so the replay lands after it. The <resumed/> h is not behind a commit
 * barrier here (the <success/> cannot wait): the stanzas it counts were
 * accepted on the previous connection, normally long committed. */
static pv_rc_t
smacks_sasl2_inline(pv_event_t *ev)
{
    pv_inline_t *in = ev->data;
    const pv_node_t *n;
    pv_node_t *r, *f;
    smacks_t *sm;
    uint32_t h = 0;
    char hs[16];

    if (in == NULL || in->request == NULL || in->node == NULL ||
        ev->stream == NULL)
        return PV_PASS;
    n = pv_node_child(in->request, "resume", NS_SM);
    if (n == NULL)
        return PV_PASS;
    sm = resume_lookup(ev->module, ev->stream, pv_node_attr(n, "previd"));
    if (sm != NULL && pv_node_attr(n, "h") != NULL &&
        parse_u32(pv_node_attr(n, "h"), &h) != PV_OK)
        sm = NULL;
    if (sm != NULL && pv_node_attr(n, "h") == NULL)
        h = sm->out_acked;
    if (sm != NULL && h - sm->out_acked > sm->q_len &&
        sm->out_acked - h >= 0x80000000u)
        sm = NULL;
    if (sm == NULL || do_resume(sm, ev->stream, h) != PV_OK) {
        /* XEP-0388: the failure is reported and Bind2 goes on */
        f = pv_node_new(in->arena, "failed", NS_SM, in->node);
        pv_node_new(in->arena, "item-not-found", NS_STANZAS, f);
        return PV_PASS;
    }
    sm->resuming = 0;
    r = pv_node_new(in->arena, "resumed", NS_SM, in->node);
    snprintf(hs, sizeof(hs), "%u", (unsigned)sm_in_h(sm));
    pv_node_set_attr(in->arena, r, "previd", sm->id);
    pv_node_set_attr(in->arena, r, "h", hs);
    replay(sm);
    request_ack(sm);
    return PV_HANDLED;
}

/* XEP-0386 §3: <enable/> inside the Bind2 request. */
static pv_rc_t
smacks_bind2(pv_event_t *ev)
{
    pv_inline_t *in = ev->data;
    const pv_node_t *n;
    smacks_t *sm;
    uint32_t max;
    int resume;

    if (in == NULL || in->request == NULL || in->node == NULL ||
        ev->session == NULL)
        return PV_PASS;
    n = pv_node_child(in->request, "enable", NS_SM);
    if (n == NULL)
        return PV_PASS;
    parse_enable(n, &resume, &max);
    sm = sm_enable(ev->module, ev->session, resume, max);
    if (sm == NULL) {
        pv_node_t *f = pv_node_new(in->arena, "failed", NS_SM, in->node);
        pv_node_new(in->arena, "unexpected-request", NS_STANZAS, f);
        return PV_PASS;
    }
    enabled_node(sm, in->arena, in->node);
    return PV_PASS;
}

/* --- ending ------------------------------------------------------------ */

static int
is_wrapper(const pv_stanza_t *st)
{
    const pv_node_t *c;

    /* carbons and MAM results are copies: the original has its own path */
    for (c = st->root->children; c != NULL; c = c->next) {
        if (c->name == NULL)
            continue;
        if (strcmp(c->xmlns, NS_CARBONS) == 0 &&
            (strcmp(c->name, "received") == 0 ||
             strcmp(c->name, "sent") == 0))
            return 1;
        if (strcmp(c->xmlns, NS_MAM) == 0 && strcmp(c->name, "result") == 0)
            return 1;
    }
    return 0;
}

/* What the client never acknowledged must not vanish with the session:
 * messages are routed again (to its dead full JID, which the router
 * treats as the bare JID: another resource or mod_offline, which adds its
 * XEP-0203 delay), IQ requests are answered with an error. */
static void
reroute(pv_host_t *h, pv_stanza_t *st)
{
    const char *type = st->type;

    if (st->kind == PV_STANZA_MESSAGE) {
        if (type != NULL && (strcmp(type, "groupchat") == 0 ||
                             strcmp(type, "headline") == 0 ||
                             strcmp(type, "error") == 0))
            return;
        if (is_wrapper(st))
            return;
        pv_host_route(h, st);
    } else if (st->kind == PV_STANZA_IQ && type != NULL &&
               (strcmp(type, "get") == 0 || strcmp(type, "set") == 0)) {
        pv_stanza_t *e = pv_stanza_error(st, PV_ERR_CANCEL,
                                         "service-unavailable", NULL);
        if (e != NULL) {
            pv_host_route(h, e);
            pv_stanza_unref(e);
        }
    }
}

static void
smacks_session_fini(pv_module_t *m, pv_session_t *s, void *data)
{
    smacks_t **slot = data;
    smacks_t *sm = *slot;
    pv_host_t *h = pv_session_host(s);
    pv_stanza_t **q;
    uint32_t i, len, head, cap;

    if (sm == NULL)
        return;
    *slot = NULL;
    if (sm->resumable)
        map_del(pv_module_host_data(m, h), sm);
    if (sm->end_timer != NULL)
        pv_module_timer_cancel(sm->end_timer);
    if (sm->r_timer != NULL)
        pv_module_timer_cancel(sm->r_timer);
    sm->end_timer = sm->r_timer = NULL;
    sm->s = NULL;
    /* take the queue first: routing must not see it half freed */
    q = sm->q;
    len = sm->q_len;
    head = sm->q_head;
    cap = sm->q_cap;
    sm->q = NULL;
    sm->q_len = sm->q_cap = sm->q_head = 0;
    if (len > 0)
        pv_log(PV_LOG_DEBUG, "mod_smacks", "%s ended with %u "
               "unacknowledged stanzas", pv_session_jid(s)->full,
               (unsigned)len);
    for (i = 0; i < len; i++) {
        pv_stanza_t *st = q[(head + i) % cap];
        reroute(h, st);
        pv_stanza_unref(st);
    }
    free(q);
    sm_unref(sm);
}

static int
smacks_host_init(pv_module_t *m, pv_host_t *h)
{
    pv_module_set_host_data(m, h, pv_xcalloc(1, sizeof(smacks_host_t)));
    return PV_OK;
}

static void
smacks_host_fini(pv_module_t *m, pv_host_t *h)
{
    smacks_host_t *hd = pv_module_host_data(m, h);

    pv_module_set_host_data(m, h, NULL);
    if (hd != NULL) {
        free(hd->buckets);
        free(hd);
    }
}

static const pv_hook_t smacks_hooks[] = {
    { PV_EV_STREAM_ELEMENT, PV_TO_ANY, NULL, NULL, smacks_element, 100, 0 },
    { PV_EV_SESSION_SEND, PV_TO_ANY, NULL, NULL, smacks_send, 100, 0 },
    { PV_EV_SESSION_ROOM, PV_TO_ANY, NULL, NULL, smacks_room, 0, 0 },
    { PV_EV_SESSION_DISCONNECTED, PV_TO_ANY, NULL, NULL,
      smacks_disconnected, 100, 0 },
    { PV_EV_STREAM_FEATURES, PV_TO_ANY, NULL, NULL, smacks_features, 100,
      0 },
    { PV_EV_SASL2_FEATURES, PV_TO_ANY, NULL, NULL, smacks_sasl2_features,
      100, 0 },
    { PV_EV_BIND2_FEATURES, PV_TO_ANY, NULL, NULL, smacks_bind2_features,
      100, 0 },
    { PV_EV_SASL2_INLINE, PV_TO_ANY, NULL, NULL, smacks_sasl2_inline, 100,
      0 },
    { PV_EV_BIND2, PV_TO_ANY, NULL, NULL, smacks_bind2, 100, 0 },
    PV_HOOKS_END
};

static const pv_directive_t smacks_directives[] = {
    { "smacks_hibernation_timeout", PV_CTX_ANY, pv_conf_duration,
      offsetof(smacks_conf_t, hibernation), "5m", 1000, 0, NULL },
    { "smacks_max_unacked", PV_CTX_ANY, pv_conf_count_or_off,
      offsetof(smacks_conf_t, max_unacked), "2000", 1, 0, NULL },
    PV_DIRECTIVES_END
};

PV_MODULE(smacks) = {
    .abi = PV_MODULE_ABI,
    .name = "smacks",
    .hooks = smacks_hooks,
    .directives = smacks_directives,
    .conf_size = sizeof(smacks_conf_t),
    .session_data_size = sizeof(smacks_t *),
    .host_init = smacks_host_init,
    .host_fini = smacks_host_fini,
    .session_fini = smacks_session_fini,
};
