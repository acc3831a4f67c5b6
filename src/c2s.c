/* src/c2s.c: client streams (RFC 6120): stream header and features,
 * STARTTLS and direct TLS, handing SASL nonzas to sasl.c, resource binding
 * and the optional RFC 3921 session, stamping and routing of stanzas, and
 * the per-stream limits (auth timeout, byte and stanza rates, stream
 * errors). One pv_c2s_t per connection; the session is session.c's.
 * A stream runs over a pv_conn_t or, framed, over a transport
 * (websocket_c2s.c, bosh.c): <open/>/<close/> replace the stream tags. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include "palaver.h"
#include "xmlstream.h"

#define NS_TLS "urn:ietf:params:xml:ns:xmpp-tls"
#define NS_SASL "urn:ietf:params:xml:ns:xmpp-sasl"
#define NS_SASL2 "urn:xmpp:sasl:2"
#define NS_BIND "urn:ietf:params:xml:ns:xmpp-bind"
#define NS_SESSION "urn:ietf:params:xml:ns:xmpp-session"
#define NS_STREAM_ERR "urn:ietf:params:xml:ns:xmpp-streams"
#define NS_CAPS "http://jabber.org/protocol/caps"
#define CAPS_NODE "https://palaver.im"
#define NS_FRAMING "urn:ietf:params:xml:ns:xmpp-framing"

typedef enum {
    C2S_TLS_WAIT,  /* TLS handshake in progress */
    C2S_HEADER,    /* waiting for the (next) stream header */
    C2S_OPEN,      /* stream open: stanzas flow */
    C2S_CLOSED     /* error sent or closing: ignore input */
} c2s_state_t;

struct pv_c2s_s {
    pv_server_t *srv;
    pv_conn_t *conn;
    pv_xmlstream_t *xs;
    pv_host_t *host;          /* reference, after the first header */
    pv_session_t *session;
    pv_sasl_t *sasl;
    pv_sasl2_t *sasl2;
    char *user;               /* authenticated localpart */
    pv_timer_t *auth_timer;
    pv_c2s_t *prev, *next;
    unsigned refs;            /* 1 until closed, + deferred replies */
    const char *reject;       /* stream error to send after the header */
    uint64_t last_active;
    uint64_t bucket_ms;
    double byte_tokens;
    double stanza_tokens;
    unsigned long id;
    pv_buf_t held;            /* output held while SASL2 answers */
    const pv_c2s_transport_t *tr;   /* framed streams: NULL for TCP */
    void *tr_arg;
    char stream_id[17];
    c2s_state_t state;
    unsigned tls : 1;
    unsigned header_sent : 1;
    unsigned bound : 1;
    unsigned counted : 1;
    unsigned ended : 1;       /* deliberately ended: no hibernation */
    unsigned holding : 1;
    unsigned framed : 1;      /* RFC 7395: one element per message */
};

static void c2s_on_data(pv_conn_t *conn, const char *data, size_t len);
static void c2s_on_tls_done(pv_conn_t *conn, int ok, const char *err);
static void c2s_on_close(pv_conn_t *conn, const char *reason);

static const pv_conn_handler_t c2s_handler = {
    .on_data = c2s_on_data,
    .on_tls_done = c2s_on_tls_done,
    .on_close = c2s_on_close,
};

static const pv_core_conf_t *
c2s_conf(const pv_c2s_t *c)
{
    return c->host ? &c->host->conf->core : PV_GLOBAL(c->srv);
}

/* The transport's write: pv_conn_write() or the framed transport's. */
static int
c2s_raw_write(pv_c2s_t *c, const char *data, size_t len)
{
    if (c->conn == NULL)
        return PV_ERROR;
    if (c->tr != NULL)
        return c->tr->write(c->tr_arg, data, len);
    return pv_conn_write(c->conn, data, len);
}

static void
c2s_conn_close(pv_c2s_t *c)
{
    if (c->conn == NULL)
        return;
    if (c->tr != NULL)
        c->tr->close(c->tr_arg);
    else
        pv_conn_close(c->conn);
}

static void
c2s_write(pv_c2s_t *c, const char *data, size_t len)
{
    if (c->holding)
        pv_buf_append(&c->held, data, len);
    else if (c->conn != NULL)
        c2s_raw_write(c, data, len);
}

/* The end of the stream: </stream:stream>, or RFC 7395 §3.6 <close/>. */
static void
c2s_write_end(pv_c2s_t *c)
{
    static const char close_el[] = "<close xmlns='" NS_FRAMING "'/>";

    if (c->framed)
        c2s_write(c, close_el, sizeof(close_el) - 1);
    else
        c2s_write(c, "</stream:stream>", 16);
}

static void
c2s_send_header(pv_c2s_t *c, const char *to)
{
    pv_buf_t b = {0};
    unsigned char r[12];
    size_t i;
    static const char hex[] = "0123456789abcdef";

    RAND_bytes(r, sizeof(r));
    for (i = 0; i < 8; i++) {
        c->stream_id[2 * i] = hex[r[i] >> 4];
        c->stream_id[2 * i + 1] = hex[r[i] & 15];
    }
    c->stream_id[16] = '\0';
    if (c->framed)
        /* RFC 7395 §3.4: the header is a complete <open/> element */
        pv_buf_puts(&b, "<open xmlns='" NS_FRAMING "' version='1.0' "
                        "xml:lang='en' id='");
    else
        pv_buf_puts(&b, "<?xml version='1.0'?><stream:stream xmlns='"
                        PV_NS_CLIENT "' xmlns:stream='" PV_NS_STREAMS
                        "' version='1.0' xml:lang='en' id='");
    pv_buf_puts(&b, c->stream_id);
    pv_buf_puts(&b, "' from='");
    pv_buf_append_escaped(&b, c->host ? c->host->name : "", 
                          c->host ? strlen(c->host->name) : 0, 1);
    if (to != NULL) {
        pv_buf_puts(&b, "' to='");
        pv_buf_append_escaped(&b, to, strlen(to), 1);
    }
    pv_buf_puts(&b, c->framed ? "'/>" : "'>");
    c2s_write(c, b.data, b.len);
    pv_buf_free(&b);
    c->header_sent = 1;
}

static void
c2s_stream_error(pv_c2s_t *c, const char *condition, const char *text)
{
    pv_buf_t b = {0};

    if (c->state == C2S_CLOSED)
        return;
    /* a client that stopped answering may come back (XEP-0198) */
    if (strcmp(condition, "connection-timeout") != 0)
        c->ended = 1;
    c->holding = 0;
    pv_log(PV_LOG_INFO, "c2s", "c2s#%lu %s: stream error %s%s%s", c->id,
           c->conn ? pv_conn_peer_ip(c->conn) : "-", condition,
           text ? ": " : "", text ? text : "");
    if (!c->header_sent)
        c2s_send_header(c, NULL);
    /* RFC 7395 §3.3.3: a framed element declares its own prefixes */
    pv_buf_printf(&b, "<stream:error%s><%s xmlns='" NS_STREAM_ERR "'/>",
                  c->framed ? " xmlns:stream='" PV_NS_STREAMS "'" : "",
                  condition);
    if (text != NULL) {
        pv_buf_puts(&b, "<text xmlns='" NS_STREAM_ERR "'>");
        pv_buf_append_escaped(&b, text, strlen(text), 0);
        pv_buf_puts(&b, "</text>");
    }
    pv_buf_puts(&b, "</stream:error>");
    c2s_write(c, b.data, b.len);
    pv_buf_free(&b);
    c2s_write_end(c);
    c->state = C2S_CLOSED;
    c2s_conn_close(c);
}

void
pv_c2s_close(pv_c2s_t *c, const char *condition)
{
    if (condition != NULL) {
        c2s_stream_error(c, condition, NULL);
        return;
    }
    if (c->state == C2S_CLOSED)
        return;
    c->ended = 1;
    c->holding = 0;
    c2s_write_end(c);
    c->state = C2S_CLOSED;
    c2s_conn_close(c);
}

static void
c2s_auth_timeout(void *arg)
{
    pv_c2s_t *c = arg;

    c->auth_timer = NULL;
    c2s_stream_error(c, "connection-timeout", "authentication took too long");
}

/* --- features ------------------------------------------------------- */

static void
c2s_send_features(pv_c2s_t *c)
{
    /* a stanza only for its arena: modules add to it on the event */
    pv_stanza_t *st = pv_stanza_build("features");
    pv_arena_t *a = st->arena;
    pv_node_t *f = st->root;
    const pv_core_conf_t *cc = c2s_conf(c);
    pv_event_t ev;
    pv_buf_t b = {0};
    pv_node_t *ch;

    if (!c->tls && !c->framed && c->host->tls != NULL) {
        pv_node_t *tls = pv_node_new(a, "starttls", NS_TLS, f);
        if (cc->c2s_require_encryption)
            pv_node_new(a, "required", NS_TLS, tls);
    }
    if (c->user == NULL) {
        if (c->tls || !cc->c2s_require_encryption) {
            pv_sasl_features(c->host, c->conn, f, a);
            pv_sasl2_features(c, f, a);
        }
    } else {
        pv_node_t *sess, *caps;

        pv_node_new(a, "bind", NS_BIND, f);
        sess = pv_node_new(a, "session", NS_SESSION, f);
        pv_node_new(a, "optional", NS_SESSION, sess);
        caps = pv_node_new(a, "c", NS_CAPS, f);
        pv_node_set_attr(a, caps, "hash", "sha-1");
        pv_node_set_attr(a, caps, "node", CAPS_NODE);
        pv_node_set_attr(a, caps, "ver", pv_host_caps_ver(c->host));
    }
    memset(&ev, 0, sizeof(ev));
    ev.kind = PV_EV_STREAM_FEATURES;
    ev.host = c->host;
    ev.user = c->user;
    ev.stanza = st;
    ev.data = f;
    pv_event_fire(&ev);
    /* features is in the streams namespace, so the prefix matters */
    pv_buf_puts(&b, c->framed ? "<stream:features xmlns:stream='"
                    PV_NS_STREAMS "'>" : "<stream:features>");
    for (ch = f->children; ch != NULL; ch = ch->next)
        pv_node_serialize(ch, &b, PV_NS_CLIENT);
    pv_buf_puts(&b, "</stream:features>");
    c2s_write(c, b.data, b.len);
    pv_buf_free(&b);
    pv_stanza_unref(st);
}

/* --- stream callbacks ------------------------------------------------ */

static void
c2s_stream_open(void *ud, const pv_stream_header_t *hdr)
{
    pv_c2s_t *c = ud;
    pv_host_t *h;
    char *domain = NULL;

    if (c->state != C2S_HEADER)
        return;
    if (hdr->to != NULL)
        domain = pv_jid_prep_domain(hdr->to, strlen(hdr->to));
    h = domain ? pv_server_host(c->srv, domain) : NULL;
    free(domain);
    if (c->host == NULL && h != NULL && !h->conf->is_component)
        c->host = pv_host_ref(h);
    if (c->host != NULL && h != NULL && h != c->host &&
        strcmp(h->name, c->host->name) != 0)
        h = NULL; /* a restarted stream must stay on its host */
    c2s_send_header(c, hdr->from);
    if (hdr->content_ns == NULL || strcmp(hdr->content_ns, PV_NS_CLIENT)) {
        c2s_stream_error(c, "invalid-namespace", NULL);
        return;
    }
    if (h == NULL || h->conf->is_component) {
        c2s_stream_error(c, "host-unknown", NULL);
        return;
    }
    if (hdr->version == NULL || strncmp(hdr->version, "1.", 2) != 0) {
        c2s_stream_error(c, "unsupported-version", NULL);
        return;
    }
    if (c->reject != NULL) {
        c2s_stream_error(c, c->reject, NULL);
        return;
    }
    c->state = C2S_OPEN;
    c2s_send_features(c);
}

static void
c2s_stream_close(void *ud)
{
    pv_c2s_t *c = ud;

    pv_c2s_close(c, NULL);
}

static void
c2s_parse_error(void *ud, const char *condition, const char *text)
{
    c2s_stream_error(ud, condition, text);
}

static void
c2s_starttls(pv_c2s_t *c)
{
    static const char proceed[] = "<proceed xmlns='" NS_TLS "'/>";
    static const char failure[] = "<failure xmlns='" NS_TLS "'/>";

    /* RFC 7395 §3.7: no STARTTLS inside a WebSocket */
    if (c->tls || c->framed || c->host->tls == NULL) {
        c2s_write(c, failure, sizeof(failure) - 1);
        c2s_write_end(c);
        c->state = C2S_CLOSED;
        c2s_conn_close(c);
        return;
    }
    c2s_write(c, proceed, sizeof(proceed) - 1);
    pv_xmlstream_restart(c->xs);
    c->state = C2S_TLS_WAIT;
    if (pv_conn_start_tls_server(c->conn, c->host->tls) != PV_OK)
        c2s_stream_error(c, "internal-server-error", "tls failed");
}

static void
c2s_sasl_send(void *arg, const char *xml, size_t len)
{
    c2s_write(arg, xml, len);
}

static void
c2s_sasl_done(void *arg, const char *user)
{
    pv_c2s_t *c = arg;

    if (user == NULL) {
        pv_server_auth_failed(c->srv, pv_conn_peer_ip(c->conn));
        return;
    }
    c->user = pv_xstrdup(user);
    pv_log(PV_LOG_INFO, "c2s", "c2s#%lu %s: authenticated as %s@%s", c->id,
           pv_conn_peer_ip(c->conn), user, c->host->name);
    /* RFC 6120 §6.4.6: the stream restarts after <success/> */
    pv_xmlstream_restart(c->xs);
    c->state = C2S_HEADER;
}

static void
c2s_bind(pv_c2s_t *c, pv_stanza_t *st, pv_node_t *bind)
{
    pv_node_t *rn = pv_node_child(bind, "resource", NS_BIND);
    const char *cond = NULL;
    char *res = NULL;
    pv_stanza_t *reply;
    pv_node_t *b, *j;

    if (c->bound) {
        pv_stanza_t *e = pv_stanza_error(st, PV_ERR_CANCEL, "not-allowed",
                                         NULL);
        if (e) {
            pv_session_send(c->session, e);
            pv_stanza_unref(e);
        }
        return;
    }
    if (rn != NULL) {
        const char *text = pv_node_text(rn, st->arena);
        if (text != NULL && *text != '\0') {
            res = pv_jid_prep_resource(text, strlen(text));
            if (res == NULL)
                cond = "bad-request";
        }
    }
    if (cond == NULL)
        pv_c2s_bind(c, res, &cond);
    free(res);
    if (c->session == NULL) {
        pv_stanza_t *e = pv_stanza_error(st, PV_ERR_MODIFY,
                                         cond ? cond : "bad-request", NULL);
        if (e) {
            pv_c2s_send(c, e);
            pv_stanza_unref(e);
        }
        return;
    }
    reply = pv_stanza_build("iq");
    pv_node_set_attr(reply->arena, reply->root, "type", "result");
    if (st->id)
        pv_node_set_attr(reply->arena, reply->root, "id", st->id);
    b = pv_node_new(reply->arena, "bind", NS_BIND, reply->root);
    j = pv_node_new(reply->arena, "jid", NS_BIND, b);
    pv_node_add_text(reply->arena, j, c->session->jid.full,
                     strlen(c->session->jid.full));
    pv_c2s_send(c, reply);
    pv_stanza_unref(reply);
    pv_log(PV_LOG_INFO, "c2s", "c2s#%lu: bound %s", c->id,
           c->session->jid.full);
}

/* Before binding only bind and session IQs are allowed. */
static void
c2s_prebind_stanza(pv_c2s_t *c, pv_stanza_t *st)
{
    pv_node_t *payload = pv_node_first_element(st->root);

    if (st->kind == PV_STANZA_IQ && st->type && !strcmp(st->type, "set") &&
        payload != NULL && !strcmp(payload->name, "bind") &&
        !strcmp(payload->xmlns, NS_BIND)) {
        c2s_bind(c, st, payload);
        return;
    }
    c2s_stream_error(c, "not-authorized", "bind a resource first");
}

static int
c2s_rate_ok(pv_c2s_t *c, size_t bytes, unsigned stanzas)
{
    const pv_core_conf_t *cc = c2s_conf(c);
    uint64_t now = pv_loop_now_ms(c->srv->loop);
    double dt = (double)(now - c->bucket_ms) / 1000.0;

    c->bucket_ms = now;
    if (cc->c2s_rate_limit != PV_SIZE_OFF) {
        double cap = 2.0 * (double)cc->c2s_rate_limit;
        c->byte_tokens += dt * (double)cc->c2s_rate_limit;
        if (c->byte_tokens > cap)
            c->byte_tokens = cap;
        c->byte_tokens -= (double)bytes;
        if (c->byte_tokens < 0)
            return 0;
    }
    if (cc->c2s_stanza_rate > 0) {
        /* refill on every call: the byte check above moved bucket_ms */
        double cap = 2.0 * (double)cc->c2s_stanza_rate;
        c->stanza_tokens += dt * (double)cc->c2s_stanza_rate;
        if (c->stanza_tokens > cap)
            c->stanza_tokens = cap;
        c->stanza_tokens -= stanzas;
        if (c->stanza_tokens < 0)
            return 0;
    }
    return 1;
}

static void
c2s_client_stanza(pv_c2s_t *c, pv_stanza_t *st)
{
    pv_session_t *s = c->session;

    /* RFC 6120 §8.1.2.1: the server stamps the full JID as from */
    pv_node_set_attr(st->arena, st->root, "from", s->jid.full);
    pv_stanza_touch(st);
    if (pv_stanza_parse_addrs(st, NULL) != PV_OK) {
        st->to = NULL;
        st->from = pv_arena_calloc(st->arena, sizeof(pv_jid_t));
        pv_jid_copy(&s->jid, st->from, st->arena);
        pv_node_remove_attr(st->root, "to");
        pv_send_error(s, st, PV_ERR_MODIFY, "jid-malformed", NULL);
        return;
    }
    if (st->kind == PV_STANZA_IQ) {
        if (st->id == NULL || st->type == NULL ||
            (strcmp(st->type, "get") && strcmp(st->type, "set") &&
             strcmp(st->type, "result") && strcmp(st->type, "error"))) {
            /* bad-request, answered from the account itself */
            if (st->to == NULL)
                pv_stanza_parse_addrs(st, &s->jid);
            pv_send_error(s, st, PV_ERR_MODIFY, "bad-request", NULL);
            return;
        }
    }
    if (st->kind == PV_STANZA_PRESENCE && st->to == NULL) {
        /* broadcast presence: the core keeps availability and priority
         * for routing (RFC 6121 §8.5.2.1); modules do the rest */
        const char *type = st->type;
        if (type == NULL || strcmp(type, "unavailable") == 0) {
            pv_node_t *p = pv_node_child(st->root, "priority", NULL);
            int prio = 0;
            if (p != NULL) {
                const char *t = pv_node_text(p, st->arena);
                prio = t ? atoi(t) : 0;
                if (prio < -128 || prio > 127)
                    prio = 0;
            }
            pv_session_set_presence(s, type == NULL, prio);
        }
    }
    if (st->to == NULL) {
        pv_jid_t *bare = pv_arena_calloc(st->arena, sizeof(*bare));
        pv_jid_make(s->jid.node, s->jid.domain, NULL, bare, st->arena);
        st->to = bare;
    }
    pv_route(s, st);
}

/* Before authentication only modules that declared PV_HOOK_PREAUTH
 * (in-band registration, XEP-0077) see IQs, and only under TLS when
 * encryption is required. */
static void
c2s_preauth_stanza(pv_c2s_t *c, pv_stanza_t *st)
{
    pv_event_t ev;
    const char *t = st->type;
    pv_jid_t *to;

    if (st->kind != PV_STANZA_IQ || st->id == NULL || t == NULL ||
        (!c->tls && c2s_conf(c)->c2s_require_encryption)) {
        c2s_stream_error(c, "not-authorized", NULL);
        return;
    }
    if (strcmp(t, "get") && strcmp(t, "set")) {
        return; /* results and errors of nothing we asked: dropped */
    }
    /* the stream is not an address yet: answers go back on it, and the
     * request is for the host whatever its to says */
    pv_node_remove_attr(st->root, "from");
    pv_node_remove_attr(st->root, "to");
    pv_stanza_touch(st);
    to = pv_arena_calloc(st->arena, sizeof(*to));
    pv_jid_make(NULL, c->host->name, NULL, to, st->arena);
    st->to = to;
    memset(&ev, 0, sizeof(ev));
    ev.kind = strcmp(t, "get") == 0 ? PV_IQ_GET : PV_IQ_SET;
    ev.addr = PV_TO_HOST;
    ev.server = c->srv;
    ev.host = c->host;
    ev.stanza = st;
    ev.to = to;
    ev.payload = pv_node_first_element(st->root);
    ev.stream = c;
    if (ev.payload == NULL || pv_event_stanza(&ev, 2) != PV_HANDLED) {
        pv_stanza_t *e = pv_stanza_error(st, PV_ERR_AUTH, "not-authorized",
                                         NULL);
        if (e != NULL) {
            pv_c2s_send(c, e);
            pv_stanza_unref(e);
        }
    }
}

/* Nonzas of an authenticated stream that the core does not own belong
 * to modules (XEP-0198, XEP-0352). */
static void
c2s_stream_element(pv_c2s_t *c, pv_stanza_t *st)
{
    pv_event_t ev;

    memset(&ev, 0, sizeof(ev));
    ev.kind = PV_EV_STREAM_ELEMENT;
    ev.host = c->host;
    ev.stream = c;
    ev.session = c->session;
    ev.user = c->user;
    ev.stanza = st;
    ev.data = st->root;
    if (pv_event_fire(&ev) != PV_HANDLED)
        c2s_stream_error(c, "unsupported-stanza-type", NULL);
}

static void
c2s_stanza(void *ud, pv_stanza_t *st)
{
    pv_c2s_t *c = ud;
    const char *ns = st->root->xmlns;

    if (c->state != C2S_OPEN) {
        pv_stanza_unref(st);
        return;
    }
    if (!c2s_rate_ok(c, 0, 1)) {
        pv_stanza_unref(st);
        c2s_stream_error(c, "policy-violation", "too many stanzas");
        return;
    }
    if (st->kind <= PV_STANZA_OTHER)
        c->srv->metrics.stanzas_in[st->kind]++;
    if (strcmp(ns, NS_TLS) == 0 && strcmp(st->root->name, "starttls") == 0) {
        if (c->user == NULL)
            c2s_starttls(c);
        else
            c2s_stream_error(c, "policy-violation", NULL);
    } else if (strcmp(ns, NS_SASL2) == 0 && c->user == NULL) {
        if (!c->tls && c2s_conf(c)->c2s_require_encryption) {
            c2s_stream_error(c, "policy-violation", "encryption required");
        } else {
            if (c->sasl2 == NULL)
                c->sasl2 = pv_sasl2_new(c);
            pv_sasl2_input(c->sasl2, st->root);
            if (c->user != NULL) {
                pv_sasl2_free(c->sasl2);
                c->sasl2 = NULL;
            }
        }
    } else if (strcmp(ns, NS_SASL) == 0) {
        if (c->user != NULL) {
            c2s_stream_error(c, "policy-violation", "already authenticated");
        } else if (!c->tls && c2s_conf(c)->c2s_require_encryption) {
            static const char enc[] = "<failure xmlns='" NS_SASL
                "'><encryption-required/></failure>";
            c2s_write(c, enc, sizeof(enc) - 1);
        } else {
            if (c->sasl == NULL)
                c->sasl = pv_sasl_new(c->host, c->conn, c2s_sasl_send,
                                      c2s_sasl_done, c);
            pv_sasl_input(c->sasl, st->root);
            /* done with SASL for good: its state is dead weight now */
            if (c->user != NULL) {
                pv_sasl_free(c->sasl);
                c->sasl = NULL;
            }
        }
    } else if (c->user == NULL) {
        c2s_preauth_stanza(c, st);
    } else if (st->kind == PV_STANZA_OTHER) {
        c2s_stream_element(c, st);
    } else if (!c->bound) {
        c2s_prebind_stanza(c, st);
    } else {
        pv_node_t *p = pv_node_first_element(st->root);

        c->session->stanzas_in++;
        if (st->kind == PV_STANZA_IQ && p != NULL &&
            !strcmp(p->name, "session") && !strcmp(p->xmlns, NS_SESSION) &&
            st->type && !strcmp(st->type, "set") && 
            pv_node_attr(st->root, "to") == NULL) {
            /* RFC 3921 §3: a no-op kept for old clients */
            pv_stanza_t *r = pv_stanza_build("iq");
            pv_node_set_attr(r->arena, r->root, "type", "result");
            if (st->id)
                pv_node_set_attr(r->arena, r->root, "id", st->id);
            pv_session_send(c->session, r);
            pv_stanza_unref(r);
        } else {
            c2s_client_stanza(c, st);
        }
    }
    pv_stanza_unref(st);
}

static const pv_xmlstream_cb_t c2s_xml_cb = {
    .stream_open = c2s_stream_open,
    .stanza = c2s_stanza,
    .stream_close = c2s_stream_close,
    .error = c2s_parse_error,
};

/* --- connection callbacks ------------------------------------------ */

static void
c2s_on_data(pv_conn_t *conn, const char *data, size_t len)
{
    pv_c2s_t *c = pv_conn_data(conn);

    c->last_active = pv_loop_now_ms(c->srv->loop);
    if (c->state == C2S_CLOSED || c->state == C2S_TLS_WAIT)
        return;
    if (!c2s_rate_ok(c, len, 0)) {
        c2s_stream_error(c, "policy-violation", "too many bytes");
        return;
    }
    while (len > 0 && c->state != C2S_CLOSED) {
        size_t used = len;
        int rc = pv_xmlstream_feed(c->xs, data, len, &used);

        if (rc != PV_AGAIN)
            break;
        data += used;
        len -= used;
        if (c->state == C2S_TLS_WAIT) {
            /* RFC 6120 §5.4.3.3: nothing may follow <starttls/> in clear */
            if (len > 0)
                c2s_stream_error(c, "policy-violation", NULL);
            break;
        }
    }
}

static void
c2s_on_tls_done(pv_conn_t *conn, int ok, const char *err)
{
    pv_c2s_t *c = pv_conn_data(conn);

    if (!ok) {
        pv_log(PV_LOG_INFO, "c2s", "c2s#%lu %s: tls failed: %s", c->id,
               pv_conn_peer_ip(conn), err ? err : "?");
        /* the connection closes itself after the alert went out */
        c->state = C2S_CLOSED;
        return;
    }
    c->tls = 1;
    c->header_sent = 0;
    c->state = C2S_HEADER;
}

static void
c2s_closed(pv_c2s_t *c, const char *reason)
{
    pv_log(PV_LOG_DEBUG, "c2s", "c2s#%lu closed: %s", c->id,
           reason ? reason : "");
    c->state = C2S_CLOSED;
    if (c->counted)
        pv_server_conn_closed(c->srv, pv_conn_peer_ip(c->conn));
    c->conn = NULL;
    if (c->session != NULL) {
        pv_session_t *s = c->session;
        pv_event_t ev;

        c->session = NULL;
        s->c2s = NULL;
        memset(&ev, 0, sizeof(ev));
        ev.kind = PV_EV_SESSION_DISCONNECTED;
        ev.host = s->host;
        ev.session = s;
        ev.user = s->jid.node;
        /* a dropped connection may be resumed (XEP-0198 hibernation) */
        if (c->ended || s->closing || c->srv->shutting_down ||
            pv_event_fire(&ev) != PV_HANDLED)
            pv_session_destroy(s);
        else
            pv_log(PV_LOG_DEBUG, "c2s", "c2s#%lu: %s hibernated", c->id,
                   s->jid.full);
    }
    if (c->auth_timer != NULL)
        pv_timer_cancel(c->auth_timer);
    if (c->sasl != NULL)
        pv_sasl_free(c->sasl);
    if (c->sasl2 != NULL)
        pv_sasl2_free(c->sasl2);
    pv_buf_free(&c->held);
    pv_xmlstream_free(c->xs);
    if (c->prev)
        c->prev->next = c->next;
    else
        c->srv->c2s_list = c->next;
    if (c->next)
        c->next->prev = c->prev;
    if (c->host != NULL)
        pv_host_unref(c->host);
    c->host = NULL;
    free(c->user);
    c->user = NULL;
    c->xs = NULL;
    c->sasl = NULL;
    c->sasl2 = NULL;
    c->auth_timer = NULL;
    c->tr = NULL;
    pv_c2s_unref(c);
}

static void
c2s_on_close(pv_conn_t *conn, const char *reason)
{
    c2s_closed(pv_conn_data(conn), reason);
}

pv_c2s_t *
pv_c2s_ref(pv_c2s_t *c)
{
    c->refs++;
    return c;
}

void
pv_c2s_unref(pv_c2s_t *c)
{
    if (c != NULL && --c->refs == 0)
        free(c);
}

static pv_c2s_t *
c2s_new(pv_server_t *srv, pv_conn_t *conn, int direct_tls,
        const pv_c2s_transport_t *tr, void *tr_arg)
{
    pv_c2s_t *c = pv_xcalloc(1, sizeof(*c));
    const pv_core_conf_t *cc = PV_GLOBAL(srv);
    pv_xmlstream_limits_t lim;
    const char *ip = pv_conn_peer_ip(conn);

    c->srv = srv;
    c->conn = conn;
    c->refs = 1;
    c->id = ++srv->next_id;
    c->state = direct_tls ? C2S_TLS_WAIT : C2S_HEADER;
    c->last_active = c->bucket_ms = pv_loop_now_ms(srv->loop);
    c->byte_tokens = cc->c2s_rate_limit != PV_SIZE_OFF
                         ? 2.0 * (double)cc->c2s_rate_limit : 0;
    c->stanza_tokens = cc->c2s_stanza_rate > 0
                           ? 2.0 * (double)cc->c2s_stanza_rate : 0;
    memset(&lim, 0, sizeof(lim));
    lim.max_stanza_bytes = cc->c2s_max_stanza_size;
    lim.max_depth = (unsigned)cc->xml_max_depth;
    lim.max_attrs = (unsigned)cc->xml_max_attrs;
    c->xs = pv_xmlstream_new(&c2s_xml_cb, c, &lim);
    /* the parser is released by the idle sweep (pv_c2s_sweep), not after
     * every stanza: rebuilding it per stanza costs a busy stream dearly */
    pv_xmlstream_set_lazy(c->xs, 1);
    c->next = srv->c2s_list;
    if (srv->c2s_list)
        srv->c2s_list->prev = c;
    srv->c2s_list = c;
    c->tr = tr;
    c->tr_arg = tr_arg;
    c->framed = tr != NULL;
    if (tr == NULL)
        pv_conn_set_handler(conn, &c2s_handler, c);
    pv_conn_set_max_queue(conn, cc->c2s_send_queue_max);
    if (srv->shutting_down)
        c->reject = "system-shutdown";
    else if (pv_server_conn_opened(srv, ip, &c->reject) == PV_OK)
        c->counted = 1;
    if (cc->c2s_auth_timeout != PV_DURATION_OFF &&
        cc->c2s_auth_timeout > 0)
        c->auth_timer = pv_timer_add(srv->loop, cc->c2s_auth_timeout, 0,
                                     c2s_auth_timeout, c);
    return c;
}

void
pv_c2s_accept(void *arg, pv_conn_t *conn)
{
    c2s_new(arg, conn, 0, NULL, NULL);
}

void
pv_c2s_accept_tls(void *arg, pv_conn_t *conn)
{
    pv_server_t *srv = arg;
    pv_c2s_t *c = c2s_new(srv, conn, 1, NULL, NULL);
    pv_tls_ctx_t *ctx = pv_server_sni(srv, NULL);

    if (ctx == NULL || pv_conn_start_tls_server(conn, ctx) != PV_OK) {
        pv_log(PV_LOG_ERROR, "c2s", "no certificate for direct TLS");
        c->state = C2S_CLOSED;
        pv_conn_abort(conn, "no certificate");
    }
}

/* A fanned-out stanza (pv_session_fanout) is serialised once, without
 * to; each session's copy of the bytes gets its own to= right after the
 * element name. */
static const char *
c2s_readdress(pv_c2s_t *c, pv_stanza_t *st, const char *wire, size_t *len)
{
    size_t at = 1 + strlen(st->root->name);
    pv_buf_t *b = &c->srv->fanout_buf;
    const char *to = c->session != NULL ? c->session->jid.full : NULL;

    if (to == NULL || *len < at)
        return wire;
    pv_buf_reset(b);
    pv_buf_append(b, wire, at);
    pv_buf_puts(b, " to='");
    pv_buf_append_escaped(b, to, strlen(to), 1);
    pv_buf_puts(b, "'");
    pv_buf_append(b, wire + at, *len - at);
    *len = b->len;
    return b->data;
}

void
pv_c2s_send(pv_c2s_t *c, pv_stanza_t *st)
{
    size_t len;
    const char *wire;

    if (c->state == C2S_CLOSED || c->conn == NULL)
        return;
    wire = pv_stanza_wire(st, &len);
    if (st->readdress)
        wire = c2s_readdress(c, st, wire, &len);
    if (st->kind <= PV_STANZA_OTHER)
        c->srv->metrics.stanzas_out[st->kind]++;
    if (c->holding) {
        pv_buf_append(&c->held, wire, len);
        return;
    }
    if (c2s_raw_write(c, wire, len) != PV_OK) {
        /* a client that stopped reading is as good as gone: resumable */
        c2s_stream_error(c, "policy-violation", "too much queued output");
        c->ended = 0;
    }
}

size_t
pv_c2s_send_room(const pv_c2s_t *c)
{
    size_t max = c2s_conf(c)->c2s_send_queue_max, q;

    /* a closing stream drops what is written to it */
    if (c->state == C2S_CLOSED)
        return 0;
    /* framed transports (WebSocket, BOSH) buffer per message */
    if (c->framed || c->conn == NULL || max == PV_SIZE_OFF)
        return SIZE_MAX;
    q = pv_conn_queued(c->conn);
    return q >= max ? 0 : max - q;
}

void
pv_c2s_detach(pv_c2s_t *c)
{
    c->session = NULL;
}

uint64_t
pv_c2s_last_active(const pv_c2s_t *c)
{
    return c->last_active;
}

const char *
pv_c2s_peer_ip(const pv_c2s_t *c)
{
    return c->conn ? pv_conn_peer_ip(c->conn) : "";
}

void
pv_c2s_shutdown_all(pv_server_t *srv)
{
    pv_c2s_t *c, *next;

    for (c = srv->c2s_list; c != NULL; c = next) {
        next = c->next;
        if (c->state == C2S_TLS_WAIT || c->state == C2S_CLOSED) {
            if (c->conn)
                pv_conn_abort(c->conn, "shutdown");
            continue;
        }
        c2s_stream_error(c, "system-shutdown", NULL);
    }
}

void
pv_c2s_sweep(pv_server_t *srv, uint64_t idle_ms)
{
    uint64_t now = pv_loop_now_ms(srv->loop);
    pv_c2s_t *c;

    for (c = srv->c2s_list; c != NULL; c = c->next)
        if (c->state == C2S_OPEN && now - c->last_active >= idle_ms)
            pv_xmlstream_idle(c->xs);
}

/* --- for session.c and sasl2.c ---------------------------------------- */

pv_session_t *
pv_c2s_bind(pv_c2s_t *c, const char *resource, const char **cond)
{
    c->session = pv_session_bind(c, c->host, c->user, resource, cond);
    if (c->session == NULL)
        return NULL;
    c->bound = 1;
    if (c->auth_timer != NULL) {
        pv_timer_cancel(c->auth_timer);
        c->auth_timer = NULL;
    }
    return c->session;
}

void
pv_c2s_set_user(pv_c2s_t *c, const char *user)
{
    free(c->user);
    c->user = pv_xstrdup(user);
    pv_log(PV_LOG_INFO, "c2s", "c2s#%lu %s: authenticated as %s@%s (SASL2)",
           c->id, c->conn ? pv_conn_peer_ip(c->conn) : "-", user,
           c->host->name);
}

void
pv_c2s_hold_output(pv_c2s_t *c, int on)
{
    if (on) {
        c->holding = 1;
        return;
    }
    c->holding = 0;
    if (c->held.len > 0 && c->conn != NULL &&
        c2s_raw_write(c, c->held.data, c->held.len) != PV_OK)
        c2s_stream_error(c, "policy-violation", "too much queued output");
    pv_buf_free(&c->held);
}

void
pv_c2s_write_now(pv_c2s_t *c, const char *xml, size_t len)
{
    if (c->conn != NULL && c->state != C2S_CLOSED)
        c2s_raw_write(c, xml, len);
}

pv_host_t *
pv_c2s_host(const pv_c2s_t *c)
{
    return c->host;
}

pv_conn_t *
pv_c2s_conn(const pv_c2s_t *c)
{
    return c->conn;
}

int
pv_c2s_is_tls(const pv_c2s_t *c)
{
    return c->tls;
}

/* --- streams in the module API -------------------------------------- */

pv_session_t *
pv_stream_session(const pv_stream_t *c)
{
    return c->session;
}

const char *
pv_stream_user(const pv_stream_t *c)
{
    return c->user;
}

pv_host_t *
pv_stream_host(const pv_stream_t *c)
{
    return c->host;
}

void
pv_stream_write(pv_stream_t *c, const char *xml, size_t len)
{
    if (c->state != C2S_CLOSED)
        c2s_write(c, xml, len);
}

void
pv_stream_close(pv_stream_t *c, const char *condition)
{
    pv_c2s_close(c, condition);
}

pv_rc_t
pv_stream_resume(pv_stream_t *c, pv_session_t *s)
{
    pv_c2s_t *old = s->c2s;

    if (c->user == NULL || c->bound || c->session != NULL || s->closing ||
        c->state == C2S_CLOSED || c->host == NULL ||
        strcmp(c->user, s->jid.node) != 0 ||
        strcmp(c->host->name, s->host->name) != 0)
        return PV_ERROR;
    if (old != NULL) {
        /* XEP-0198 §5: the old connection may not be dead yet */
        old->session = NULL;
        old->bound = 0;
        s->c2s = NULL;
        pv_c2s_close(old, NULL);
    }
    s->c2s = c;
    c->session = s;
    c->bound = 1;
    if (c->auth_timer != NULL) {
        pv_timer_cancel(c->auth_timer);
        c->auth_timer = NULL;
    }
    pv_log(PV_LOG_INFO, "c2s", "c2s#%lu: resumed %s", c->id, s->jid.full);
    return PV_OK;
}

/* --- framed streams (RFC 7395) ----------------------------------------- */

pv_c2s_t *
pv_c2s_new_framed(pv_server_t *srv, pv_conn_t *conn,
                  const pv_c2s_transport_t *tr, void *arg, int secure)
{
    pv_c2s_t *c = c2s_new(srv, conn, 0, tr, arg);

    /* secure: TLS of ours, or a loopback peer (a TLS-terminating proxy) */
    c->tls = secure ? 1 : 0;
    return c;
}

static void
c2s_attr(pv_buf_t *b, const char *name, const char *value)
{
    if (value == NULL)
        return;
    pv_buf_printf(b, " %s='", name);
    pv_buf_append_escaped(b, value, strlen(value), 1);
    pv_buf_puts(b, "'");
}

void
pv_c2s_framed_open(pv_c2s_t *c, const char *to, const char *from,
                   const char *version, const char *lang)
{
    pv_buf_t b = {0};

    c->last_active = pv_loop_now_ms(c->srv->loop);
    if (c->state == C2S_CLOSED)
        return;
    if (c->state != C2S_HEADER) {
        c2s_stream_error(c, "policy-violation", "unexpected <open/>");
        return;
    }
    /* RFC 7395 §3.3.2: <open/> stands for the stream header; the parser
     * gets the equivalent one and the stream code runs unchanged */
    pv_buf_puts(&b, "<stream:stream xmlns='" PV_NS_CLIENT "' xmlns:stream='"
                    PV_NS_STREAMS "'");
    c2s_attr(&b, "to", to);
    c2s_attr(&b, "from", from);
    c2s_attr(&b, "version", version);
    c2s_attr(&b, "xml:lang", lang);
    pv_buf_puts(&b, ">");
    pv_xmlstream_restart(c->xs);
    c->header_sent = 0;
    pv_xmlstream_feed(c->xs, b.data, b.len, NULL);
    pv_buf_free(&b);
}

void
pv_c2s_framed_element(pv_c2s_t *c, const char *data, size_t len)
{
    size_t used = len;
    int rc;

    c->last_active = pv_loop_now_ms(c->srv->loop);
    if (c->state == C2S_CLOSED)
        return;
    if (c->state != C2S_OPEN) {
        c2s_stream_error(c, "not-authorized", "send <open/> first");
        return;
    }
    if (!c2s_rate_ok(c, len, 0)) {
        c2s_stream_error(c, "policy-violation", "too many bytes");
        return;
    }
    rc = pv_xmlstream_feed(c->xs, data, len, &used);
    /* after a restart (SASL success) the message must have ended */
    if (rc == PV_AGAIN && c->state == C2S_HEADER) {
        for (; used < len; used++)
            if (strchr(" \t\r\n", data[used]) == NULL) {
                c2s_stream_error(c, "bad-format",
                                 "one element per message");
                return;
            }
    }
}

void
pv_c2s_transport_closed(pv_c2s_t *c, const char *reason)
{
    c2s_closed(c, reason);
}

void
pv_c2s_count(pv_server_t *srv, size_t *tcp, size_t *framed)
{
    const pv_c2s_t *c;

    *tcp = *framed = 0;
    for (c = srv->c2s_list; c != NULL; c = c->next) {
        if (c->framed)
            (*framed)++;
        else
            (*tcp)++;
    }
}

/* --- cutting stream output into elements (RFC 7395, XEP-0206) ---------- */

void
pv_c2s_qualify(pv_buf_t *out, const char *el, size_t len)
{
    size_t name_len = strcspn(el + 1, " \t\r\n/>");
    const char *tag_end = memchr(el, '>', len);
    size_t tag_len = tag_end ? (size_t)(tag_end - el) : len;
    int need_ns = 1, need_stream = 0;
    size_t i;

    for (i = 0; i + 6 < tag_len; i++)
        if (el[i] == ' ' && memcmp(el + i + 1, "xmlns=", 6) == 0)
            need_ns = 0;
    if (name_len > 7 && memcmp(el + 1, "stream:", 7) == 0) {
        need_ns = 0;
        need_stream = 1;
        for (i = 0; i + 13 < tag_len; i++)
            if (memcmp(el + i, " xmlns:stream=", 14) == 0)
                need_stream = 0;
    }
    if (!need_ns && !need_stream) {
        pv_buf_append(out, el, len);
        return;
    }
    pv_buf_append(out, el, 1 + name_len);
    if (need_ns)
        pv_buf_puts(out, " xmlns='" PV_NS_CLIENT "'");
    if (need_stream)
        pv_buf_puts(out, " xmlns:stream='" PV_NS_STREAMS "'");
    pv_buf_append(out, el + 1 + name_len, len - 1 - name_len);
}

int
pv_c2s_split(pv_buf_t *pending, const char *data, size_t len,
             int (*emit)(void *arg, const char *el, size_t len), void *arg)
{
    const char *p, *end, *start = NULL;
    size_t done = 0;
    int depth = 0, rc = PV_OK;

    pv_buf_append(pending, data, len);
    p = pending->data;
    end = p + pending->len;
    while (p < end) {
        const char *q;
        char quote = 0;

        if (*p != '<') {
            if (depth == 0 && start == NULL)
                done = (size_t)(p + 1 - pending->data); /* whitespace */
            p++;
            continue;
        }
        for (q = p + 1; q < end; q++) {
            if (quote) {
                if (*q == quote)
                    quote = 0;
            } else if (*q == '\'' || *q == '"') {
                quote = *q;
            } else if (*q == '>') {
                break;
            }
        }
        if (q >= end)
            break; /* an incomplete tag */
        if (p[1] == '?' || p[1] == '!') {
            if (depth == 0)
                done = (size_t)(q + 1 - pending->data);
        } else if (p[1] == '/') {
            if (depth == 0) {
                /* a stray end tag (</stream:stream>) is no element */
                done = (size_t)(q + 1 - pending->data);
            } else if (--depth == 0) {
                rc = emit(arg, start, (size_t)(q + 1 - start));
                start = NULL;
                done = (size_t)(q + 1 - pending->data);
            }
        } else if (q[-1] == '/') {
            if (depth == 0) {
                rc = emit(arg, p, (size_t)(q + 1 - p));
                done = (size_t)(q + 1 - pending->data);
            }
        } else if (depth++ == 0) {
            start = p;
        }
        if (rc != PV_OK)
            break;
        p = q + 1;
    }
    if (done == pending->len) {
        pv_buf_free(pending);
    } else if (done > 0) {
        memmove(pending->data, pending->data + done, pending->len - done);
        pending->len -= done;
    }
    return rc;
}
