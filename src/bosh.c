/* src/bosh.c: XMPP over BOSH (XEP-0124, XEP-0206) at /http-bind: session
 * ids, request ids, held requests (wait, hold), inactivity, restarts and
 * terminate, running a c2s.c stream as a framed transport whose output
 * waits in the session until a request can carry it. HTTP itself is
 * http.c's; auth, limits and modules are c2s.c's. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <expat.h>
#include <openssl/rand.h>

#include "http.h"
#include "palaver.h"

#define BOSH_PATH "/http-bind"
#define NS_HTTPBIND "http://jabber.org/protocol/httpbind"
#define NS_XBOSH "urn:xmpp:xbosh"
#define NS_XML "http://www.w3.org/XML/1998/namespace"
#define BOSH_MAX_WAIT 60        /* seconds, XEP-0124 §7.1 */
#define BOSH_INACTIVITY 60      /* seconds without a request */
#define BOSH_MAX_HOLD 1
#define BOSH_MAX_CHILDREN 256
#define BOSH_CTYPE "text/xml; charset=utf-8"

typedef struct bosh_sess_s bosh_sess_t;

typedef struct bosh_held_s {
    pv_http_req_t *r;
    pv_timer_t *timer;
    bosh_sess_t *s;
} bosh_held_t;

struct pv_bosh_s {
    pv_server_t *srv;
    pv_map_t sessions;          /* sid -> bosh_sess_t */
    size_t n_sessions;
};

struct bosh_sess_s {
    pv_bosh_t *b;
    char sid[33];
    pv_c2s_t *c2s;
    pv_conn_t *conn;            /* reference: the creating connection,
                                 * the stream's peer address */
    char *to;
    uint64_t rid;               /* last request id accepted */
    unsigned wait;              /* seconds */
    unsigned hold;
    bosh_held_t *held[BOSH_MAX_HOLD + 1];   /* oldest first */
    size_t n_held;
    pv_buf_t out;               /* elements waiting for a request */
    pv_buf_t split;             /* stream output not yet an element */
    pv_timer_t *inact;
    pv_defer_t flush_task;
    pv_defer_t end_task;
    const char *end_reason;
    pv_http_req_t *ahead;       /* rid + 2, waiting for rid + 1 */
    char *ahead_data;
    size_t ahead_len;
    unsigned terminated : 1;    /* the stream is over: answers terminate */
    unsigned had_error : 1;     /* a <stream:error/> is in out */
    unsigned ending : 1;
    unsigned delivered : 1;     /* a terminate answer went out */
};

static void bosh_touch(bosh_sess_t *s);

/* --- answers ----------------------------------------------------------- */

static void
bosh_body(pv_buf_t *b, const char *type, const char *condition,
          const char *payload, size_t len)
{
    pv_buf_puts(b, "<body xmlns='" NS_HTTPBIND "' xmlns:stream='"
                   PV_NS_STREAMS "'");
    if (type != NULL)
        pv_buf_printf(b, " type='%s'", type);
    if (condition != NULL)
        pv_buf_printf(b, " condition='%s'", condition);
    if (len == 0) {
        pv_buf_puts(b, "/>");
        return;
    }
    pv_buf_puts(b, ">");
    pv_buf_append(b, payload, len);
    pv_buf_puts(b, "</body>");
}

static void
bosh_reply(pv_http_req_t *r, int status, const char *type,
           const char *condition, const char *payload, size_t len)
{
    pv_buf_t b = {0};

    bosh_body(&b, type, condition, payload, len);
    pv_http_respond(r, status, BOSH_CTYPE, b.data, b.len);
    pv_buf_free(&b);
}

/* Takes held request i off the list (its timer stays the caller's). */
static pv_http_req_t *
bosh_unhold(bosh_sess_t *s, size_t i)
{
    bosh_held_t *h = s->held[i];
    pv_http_req_t *r = h->r;

    memmove(&s->held[i], &s->held[i + 1],
            (s->n_held - i - 1) * sizeof(s->held[0]));
    s->n_held--;
    free(h);
    return r;
}

/* Answers the oldest held request with what is queued (and, once the
 * stream is over, the terminate condition). */
static void
bosh_answer_oldest(bosh_sess_t *s)
{
    pv_http_req_t *r;

    pv_timer_cancel(s->held[0]->timer);
    r = bosh_unhold(s, 0);
    if (s->terminated) {
        bosh_reply(r, 200, "terminate",
                   s->had_error ? "remote-stream-error" : NULL, s->out.data,
                   s->out.len);
        s->delivered = 1;
    } else {
        bosh_reply(r, 200, NULL, NULL, s->out.data, s->out.len);
    }
    pv_buf_free(&s->out);
}

static void
bosh_flush(bosh_sess_t *s)
{
    while (s->n_held > 0 && (s->out.len > 0 || s->terminated))
        bosh_answer_oldest(s);
    /* XEP-0124 §11: never more than hold requests waiting */
    while (s->n_held > s->hold)
        bosh_answer_oldest(s);
}

static void
bosh_flush_task(void *arg)
{
    bosh_flush(arg);
}

static void
bosh_wait_expired(void *arg)
{
    bosh_held_t *h = arg;
    bosh_sess_t *s = h->s;
    size_t i;

    /* a one-shot timer: forgotten here, freed by the loop */
    for (i = 0; i < s->n_held; i++) {
        if (s->held[i] == h) {
            bosh_reply(bosh_unhold(s, i), 200, NULL, NULL, NULL, 0);
            return;
        }
    }
}

static void
bosh_gone(void *arg, pv_http_req_t *r)
{
    bosh_sess_t *s = arg;
    size_t i;

    for (i = 0; i < s->n_held; i++) {
        if (s->held[i]->r == r) {
            pv_timer_cancel(s->held[i]->timer);
            bosh_unhold(s, i);
            return;
        }
    }
}

/* --- the session ------------------------------------------------------- */

static int
defer_is_queued(const pv_defer_t *d)
{
    return d->prev != NULL;
}

static void
bosh_drop_ahead(bosh_sess_t *s)
{
    free(s->ahead_data);
    s->ahead_data = NULL;
    s->ahead = NULL;
}

static void
bosh_ahead_gone(void *arg, pv_http_req_t *r)
{
    (void)r;
    bosh_drop_ahead(arg);
}

static void
bosh_destroy(bosh_sess_t *s)
{
    pv_loop_t *loop = s->b->srv->loop;

    if (s->ahead != NULL) {
        pv_http_req_t *r = s->ahead;

        bosh_drop_ahead(s);
        bosh_reply(r, 404, "terminate", "item-not-found", NULL, 0);
    }
    s->terminated = 1;
    while (s->n_held > 0)
        bosh_answer_oldest(s);
    pv_map_del(&s->b->sessions, s->sid);
    s->b->n_sessions--;
    pv_loop_defer_cancel(loop, &s->flush_task);
    pv_loop_defer_cancel(loop, &s->end_task);
    if (s->inact != NULL)
        pv_timer_cancel(s->inact);
    pv_buf_free(&s->out);
    pv_buf_free(&s->split);
    pv_conn_unref(s->conn);
    free(s->to);
    free(s);
}

/* Runs outside the stream's own callbacks: tells c2s.c the transport is
 * gone, answers what is held, frees the session. */
static void
bosh_end_task(void *arg)
{
    bosh_sess_t *s = arg;
    pv_c2s_t *c2s = s->c2s;

    s->terminated = 1;
    s->c2s = NULL;
    if (c2s != NULL)
        pv_c2s_transport_closed(c2s, s->end_reason);
    while (s->n_held > 0)
        bosh_answer_oldest(s);
    /* the end (a stream error, say) waits for the client's next poll,
     * within the inactivity time */
    if (s->delivered || s->b->srv->shutting_down)
        bosh_destroy(s);
    else
        bosh_touch(s);
}

static void
bosh_end(bosh_sess_t *s, const char *reason)
{
    if (s->ending)
        return;
    s->ending = 1;
    s->terminated = 1;
    s->end_reason = reason;
    pv_loop_defer_node(s->b->srv->loop, &s->end_task, bosh_end_task, s);
}

static void
bosh_inactive(void *arg)
{
    bosh_sess_t *s = arg;

    s->inact = NULL;
    if (s->ending) {
        /* the end task, if still queued, re-arms or destroys */
        if (s->c2s == NULL && !defer_is_queued(&s->end_task))
            bosh_destroy(s);
        return;
    }
    pv_log(PV_LOG_INFO, "bosh", "session %s: no request for %ds", s->sid,
           BOSH_INACTIVITY);
    bosh_end(s, "bosh inactivity");
}

static void
bosh_touch(bosh_sess_t *s)
{
    uint64_t ms = (uint64_t)(BOSH_INACTIVITY + s->wait) * 1000;

    if (s->inact == NULL)
        s->inact = pv_timer_add(s->b->srv->loop, ms, 0, bosh_inactive, s);
    else
        pv_timer_again(s->inact, ms);
}

static int
bosh_emit(void *arg, const char *el, size_t len)
{
    bosh_sess_t *s = arg;

    /* the stream header and end are the body's business here */
    if (len > 6 && memcmp(el, "<open ", 6) == 0)
        return PV_OK;
    if (len > 7 && memcmp(el, "<close ", 7) == 0) {
        s->terminated = 1;
        return PV_OK;
    }
    if (len > 13 && memcmp(el, "<stream:error", 13) == 0)
        s->had_error = 1;
    if (s->out.len + len > PV_GLOBAL(s->b->srv)->c2s_send_queue_max)
        return PV_ERROR;        /* the client does not poll */
    pv_c2s_qualify(&s->out, el, len);
    return PV_OK;
}

static int
bosh_transport_write(void *arg, const char *data, size_t len)
{
    bosh_sess_t *s = arg;
    int rc;

    if (s->ending)
        return PV_ERROR;
    rc = pv_c2s_split(&s->split, data, len, bosh_emit, s);
    /* elements written in one loop turn leave in one answer */
    if (s->n_held > 0)
        pv_loop_defer_node(s->b->srv->loop, &s->flush_task,
                           bosh_flush_task, s);
    return rc;
}

static void
bosh_transport_close(void *arg)
{
    bosh_end(arg, NULL);
}

static const pv_c2s_transport_t bosh_transport = {
    .write = bosh_transport_write,
    .close = bosh_transport_close,
};

/* --- parsing <body/> --------------------------------------------------- */

typedef struct bosh_req_s {
    XML_Parser xp;
    int depth;
    int bad;
    char *rid, *sid, *to, *wait, *hold, *type, *version, *restart, *lang;
    struct { size_t start, end; } kids[BOSH_MAX_CHILDREN];
    size_t n_kids;
    size_t kid_start;
} bosh_req_t;

static void XMLCALL
req_start(void *ud, const XML_Char *name, const XML_Char **attrs)
{
    bosh_req_t *q = ud;
    size_t i;

    if (q->depth++ == 1) {
        q->kid_start = (size_t)XML_GetCurrentByteIndex(q->xp);
        return;
    }
    if (q->depth != 1)
        return;
    if (strcmp(name, NS_HTTPBIND " body") != 0) {
        q->bad = 1;
        XML_StopParser(q->xp, XML_FALSE);
        return;
    }
    for (i = 0; attrs[i] != NULL; i += 2) {
        static const struct {
            const char *name;
            size_t off;
        } keys[] = {
            { "rid", offsetof(bosh_req_t, rid) },
            { "sid", offsetof(bosh_req_t, sid) },
            { "to", offsetof(bosh_req_t, to) },
            { "wait", offsetof(bosh_req_t, wait) },
            { "hold", offsetof(bosh_req_t, hold) },
            { "type", offsetof(bosh_req_t, type) },
            { NS_XBOSH " version", offsetof(bosh_req_t, version) },
            { NS_XBOSH " restart", offsetof(bosh_req_t, restart) },
            { NS_XML " lang", offsetof(bosh_req_t, lang) },
        };
        size_t k;

        for (k = 0; k < sizeof(keys) / sizeof(keys[0]); k++) {
            char **slot = (char **)((char *)q + keys[k].off);

            if (strcmp(attrs[i], keys[k].name) == 0 && *slot == NULL)
                *slot = pv_xstrdup(attrs[i + 1]);
        }
    }
}

static void XMLCALL
req_end(void *ud, const XML_Char *name)
{
    bosh_req_t *q = ud;

    (void)name;
    if (--q->depth != 1)
        return;
    if (q->n_kids == BOSH_MAX_CHILDREN) {
        q->bad = 1;
        XML_StopParser(q->xp, XML_FALSE);
        return;
    }
    q->kids[q->n_kids].start = q->kid_start;
    q->kids[q->n_kids].end = (size_t)XML_GetCurrentByteIndex(q->xp) +
                             (size_t)XML_GetCurrentByteCount(q->xp);
    q->n_kids++;
}

static void XMLCALL
req_doctype(void *ud, const XML_Char *name, const XML_Char *sysid,
            const XML_Char *pubid, int has_internal)
{
    bosh_req_t *q = ud;

    (void)name;
    (void)sysid;
    (void)pubid;
    (void)has_internal;
    /* DESIGN.md §7: no DTDs, no entities */
    q->bad = 1;
    XML_StopParser(q->xp, XML_FALSE);
}

static int
req_parse(bosh_req_t *q, const char *data, size_t len)
{
    int ok;

    memset(q, 0, sizeof(*q));
    q->xp = XML_ParserCreateNS("UTF-8", ' ');
    if (q->xp == NULL)
        return PV_ERROR;
    XML_SetUserData(q->xp, q);
    XML_SetElementHandler(q->xp, req_start, req_end);
    XML_SetStartDoctypeDeclHandler(q->xp, req_doctype);
    ok = len <= INT32_MAX &&
         XML_Parse(q->xp, data, (int)len, 1) == XML_STATUS_OK;
    XML_ParserFree(q->xp);
    q->xp = NULL;
    return ok && !q->bad ? PV_OK : PV_ERROR;
}

static void
req_free(bosh_req_t *q)
{
    free(q->rid);
    free(q->sid);
    free(q->to);
    free(q->wait);
    free(q->hold);
    free(q->type);
    free(q->version);
    free(q->restart);
    free(q->lang);
}

/* A decimal number in [lo, hi], or -1. */
static long long
num(const char *s, long long lo, long long hi)
{
    char *end;
    long long v;

    if (s == NULL || *s < '0' || *s > '9')
        return -1;
    v = strtoll(s, &end, 10);
    if (*end != '\0' || v < lo || v > hi)
        return -1;
    return v;
}

/* --- requests ---------------------------------------------------------- */

static int
is_loopback(const char *ip)
{
    return strncmp(ip, "127.", 4) == 0 || strcmp(ip, "::1") == 0 ||
           strncmp(ip, "::ffff:127.", 11) == 0;
}

static void
bosh_hold(bosh_sess_t *s, pv_http_req_t *r)
{
    bosh_held_t *h;

    if (s->n_held == BOSH_MAX_HOLD + 1)
        bosh_answer_oldest(s);
    h = pv_xcalloc(1, sizeof(*h));
    s->held[s->n_held++] = h;
    h->r = r;
    h->s = s;
    h->timer = pv_timer_add(s->b->srv->loop, (uint64_t)s->wait * 1000, 0,
                            bosh_wait_expired, h);
    pv_http_defer(r, bosh_gone, s);
}

static void
bosh_feed(bosh_sess_t *s, const bosh_req_t *q, const char *data)
{
    size_t i;

    for (i = 0; i < q->n_kids && s->c2s != NULL && !s->terminated; i++)
        pv_c2s_framed_element(s->c2s, data + q->kids[i].start,
                              q->kids[i].end - q->kids[i].start);
}

static void
bosh_create(pv_bosh_t *b, pv_http_req_t *r, const bosh_req_t *q)
{
    long long rid = num(q->rid, 1, 9007199254740991LL);
    long long wait = num(q->wait, 0, 1000000);
    long long hold = num(q->hold, 0, 1000000);
    bosh_sess_t *s;
    pv_buf_t b2 = {0};
    unsigned char raw[16];
    size_t i;
    static const char hex[] = "0123456789abcdef";

    if (rid < 0 || q->to == NULL || wait < 0 || hold < 0) {
        bosh_reply(r, 400, "terminate", "bad-request", NULL, 0);
        return;
    }
    if (b->srv->shutting_down) {
        bosh_reply(r, 503, "terminate", "system-shutdown", NULL, 0);
        return;
    }
    s = pv_xcalloc(1, sizeof(*s));
    s->b = b;
    RAND_bytes(raw, sizeof(raw));
    for (i = 0; i < sizeof(raw); i++) {
        s->sid[2 * i] = hex[raw[i] >> 4];
        s->sid[2 * i + 1] = hex[raw[i] & 15];
    }
    s->rid = (uint64_t)rid;
    s->wait = wait == 0 ? 1 : wait > BOSH_MAX_WAIT ? BOSH_MAX_WAIT
                                                   : (unsigned)wait;
    s->hold = hold > BOSH_MAX_HOLD ? BOSH_MAX_HOLD : (unsigned)hold;
    s->to = pv_xstrdup(q->to);
    s->conn = pv_http_req_conn(r);
    pv_conn_ref(s->conn);
    pv_map_put(&b->sessions, s->sid, s);
    b->n_sessions++;
    bosh_touch(s);
    s->c2s = pv_c2s_new_framed(b->srv, s->conn, &bosh_transport, s,
                               pv_http_req_is_tls(r) ||
                                   is_loopback(pv_http_req_peer_ip(r)));
    pv_c2s_framed_open(s->c2s, q->to, NULL,
                       q->version ? q->version : "1.0", q->lang);
    if (s->terminated) {
        bosh_reply(r, 200, "terminate",
                   s->had_error ? "remote-stream-error" : NULL, s->out.data,
                   s->out.len);
        pv_buf_free(&s->out);
        bosh_end(s, NULL);
        return;
    }
    /* XEP-0124 §7.1, XEP-0206 §5: the session's parameters */
    pv_buf_printf(&b2, "<body xmlns='" NS_HTTPBIND "' xmlns:xmpp='"
                  NS_XBOSH "' xmlns:stream='" PV_NS_STREAMS "' sid='%s' "
                  "wait='%u' hold='%u' requests='%u' inactivity='%d' "
                  "polling='1' ver='1.11' xmpp:version='1.0' "
                  "xmpp:restartlogic='true' from='", s->sid, s->wait,
                  s->hold, s->hold + 1, BOSH_INACTIVITY);
    pv_buf_append_escaped(&b2, q->to, strlen(q->to), 1);
    pv_buf_puts(&b2, "'>");
    pv_buf_append(&b2, s->out.data, s->out.len);
    pv_buf_puts(&b2, "</body>");
    pv_buf_free(&s->out);
    pv_http_respond(r, 200, BOSH_CTYPE, b2.data, b2.len);
    pv_buf_free(&b2);
    pv_log(PV_LOG_INFO, "bosh", "%s: session %s for %s",
           pv_http_req_peer_ip(r), s->sid, s->to);
}

static int req_parse(bosh_req_t *q, const char *data, size_t len);
static void req_free(bosh_req_t *q);

static void
bosh_request(bosh_sess_t *s, pv_http_req_t *r, const bosh_req_t *q,
             const char *data)
{
    long long rid = num(q->rid, 1, 9007199254740991LL);

    if (s->ending) {
        /* over: this request carries the terminate (and what was left) */
        bosh_hold(s, r);
        bosh_flush(s);
        if (s->c2s == NULL && s->delivered &&
            !defer_is_queued(&s->end_task))
            bosh_destroy(s);
        return;
    }
    /* XEP-0124 §14.2: with two requests in flight the second may
     * overtake the first; it waits for it */
    if (rid > 0 && (uint64_t)rid == s->rid + 2 && s->ahead == NULL) {
        size_t len;
        const char *body = pv_http_req_body(r, &len);

        s->ahead = r;
        s->ahead_data = pv_xmalloc(len + 1);
        memcpy(s->ahead_data, body, len);
        s->ahead_len = len;
        pv_http_defer(r, bosh_ahead_gone, s);
        return;
    }
    /* XEP-0124 §14: other out-of-window ids end the session */
    if (rid < 0 || (uint64_t)rid != s->rid + 1) {
        bosh_reply(r, 404, "terminate", "item-not-found", NULL, 0);
        s->delivered = 1;
        pv_log(PV_LOG_INFO, "bosh", "session %s: rid %s, expected %llu",
               s->sid, q->rid ? q->rid : "-",
               (unsigned long long)s->rid + 1);
        bosh_end(s, "bosh rid out of order");
        return;
    }
    s->rid = (uint64_t)rid;
    bosh_touch(s);
    if (q->restart != NULL && strcmp(q->restart, "true") == 0 &&
        s->c2s != NULL)
        pv_c2s_framed_open(s->c2s, s->to, NULL, "1.0", q->lang);
    bosh_feed(s, q, data);
    if (q->type != NULL && strcmp(q->type, "terminate") == 0 &&
        s->c2s != NULL && !s->terminated) {
        /* XEP-0124 §13: the client ends the session */
        pv_c2s_close(s->c2s, NULL);
        s->terminated = 1;
        bosh_end(s, NULL);
    }
    bosh_hold(s, r);
    bosh_flush(s);
    if (s->ahead != NULL && !s->ending) {
        pv_http_req_t *r2 = s->ahead;
        char *data2 = s->ahead_data;
        bosh_req_t q2;

        s->ahead = NULL;
        s->ahead_data = NULL;
        if (req_parse(&q2, data2, s->ahead_len) == PV_OK)
            bosh_request(s, r2, &q2, data2);
        else
            bosh_reply(r2, 400, "terminate", "bad-request", NULL, 0);
        req_free(&q2);
        free(data2);
    }
}

static void
bosh_http(void *arg, pv_http_req_t *r)
{
    pv_bosh_t *b = arg;
    size_t len;
    const char *data = pv_http_req_body(r, &len);
    bosh_req_t q;

    if (req_parse(&q, data, len) != PV_OK) {
        req_free(&q);
        bosh_reply(r, 400, "terminate", "bad-request", NULL, 0);
        return;
    }
    if (q.sid == NULL) {
        bosh_create(b, r, &q);
    } else {
        bosh_sess_t *s = pv_map_get(&b->sessions, q.sid);

        if (s == NULL)
            bosh_reply(r, 404, "terminate", "item-not-found", NULL, 0);
        else
            bosh_request(s, r, &q, data);
    }
    req_free(&q);
}

/* --- the service ------------------------------------------------------- */

pv_bosh_t *
pv_bosh_new(pv_http_t *h, pv_server_t *srv)
{
    pv_bosh_t *b = pv_xcalloc(1, sizeof(*b));

    b->srv = srv;
    pv_http_route(h, BOSH_PATH, "POST", PV_HTTP_EXACT | PV_HTTP_CORS,
                  bosh_http, b);
    return b;
}

static void
bosh_free_one(void *arg, const char *key, void *value)
{
    bosh_sess_t *s = value;

    (void)arg;
    (void)key;
    /* the loop is gone: only memory is left to free */
    while (s->n_held > 0)
        free(s->held[--s->n_held]);
    free(s->ahead_data);
    pv_buf_free(&s->out);
    pv_buf_free(&s->split);
    pv_conn_unref(s->conn);     /* memory only: the socket is closed */
    free(s->to);
    free(s);
}

void
pv_bosh_free(pv_bosh_t *b)
{
    if (b == NULL)
        return;
    pv_map_each(&b->sessions, bosh_free_one, NULL);
    pv_map_clear(&b->sessions);
    free(b);
}

size_t
pv_bosh_n_sessions(const pv_bosh_t *b)
{
    return b ? b->n_sessions : 0;
}
