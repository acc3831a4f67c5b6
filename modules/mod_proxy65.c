/* modules/mod_proxy65.c: XEP-0065 SOCKS5 Bytestreams proxy on its own
 * component (proxy.<domain>): disco identity, the streamhost query, the
 * SOCKS5 side on the core-bound "proxy65" listeners (RFC 1928 CONNECT
 * with the SHA-1 DST.ADDR, no authentication), pairing of the target's
 * and the initiator's connections, activation by the initiator, and the
 * relay with backpressure. Transfers are not stored anywhere. */
#include <ctype.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <uv.h>

#include <palaver/module.h>

#define NS_BYTESTREAMS "http://jabber.org/protocol/bytestreams"
#define NS_DISCO_INFO "http://jabber.org/protocol/disco#info"
#define NS_DISCO_ITEMS "http://jabber.org/protocol/disco#items"

/* A relay reads at most this much per read call, and stops reading one
 * side while more than P65_HIGH_WATER bytes wait to be written to the
 * other: a fast sender never makes the server buffer a whole file for a
 * slow receiver. Reading resumes below P65_LOW_WATER. */
#define P65_READ_SIZE (64 * 1024)
#define P65_HIGH_WATER (256 * 1024)
#define P65_LOW_WATER (64 * 1024)
/* Bytes a client may send after its SOCKS5 request and before the
 * activation (XEP-0065 §6.3.4 says it must wait; a little early data is
 * tolerated and forwarded on activation). */
#define P65_EARLY_MAX (64 * 1024)
/* The longest SOCKS5 greeting or request (RFC 1928 §3, §4). */
#define P65_HANDSHAKE_MAX (4 + 1 + 255 + 2)
#define P65_HASH_LEN 40

typedef struct {
    char *domain;             /* proxy65_domain: read by the core */
    char *address;            /* proxy65_address: announced host */
    long long port;           /* proxy65_port: listener served, 0 all */
    pv_duration_t timeout;    /* proxy65_timeout: unactivated streams */
} p65_conf_t;

typedef enum {
    P65_GREETING,             /* waiting for the method selection */
    P65_REQUEST,              /* waiting for CONNECT */
    P65_WAITING,              /* hash known, waiting for activation */
    P65_ACTIVE,               /* relaying to peer */
    P65_FAILING               /* error reply sent, closing after it */
} p65_state_t;

typedef struct p65_host_s p65_host_t;

typedef struct p65_conn_s {
    uv_tcp_t tcp;
    p65_host_t *ph;
    struct p65_conn_s *prev, *next;   /* ph->conns */
    struct p65_conn_s *peer;          /* the other side, once paired */
    p65_state_t state;
    pv_buf_t in;              /* handshake bytes, then early data */
    char hash[P65_HASH_LEN + 1];
    uint64_t since;           /* loop ms of accept */
    uint64_t relayed;         /* bytes read from this side and relayed */
    int closing;              /* uv_close() called */
    int paused;               /* reading stopped for backpressure */
    int got_eof;              /* this side finished sending */
    int out_done;             /* shutdown towards this side completed */
} p65_conn_t;

typedef struct p65_listener_s {
    uv_tcp_t tcp;
    p65_host_t *ph;
    struct p65_listener_s *next;
    char *address;            /* as configured, NULL = any */
    int port;
} p65_listener_t;

struct p65_host_s {
    pv_module_t *m;
    pv_host_t *h;             /* NULL once host_fini ran */
    char *name;               /* component domain, for logs */
    uv_loop_t *loop;
    p65_listener_t *listeners;
    p65_conn_t *conns;
    unsigned refs;            /* 1 for the host + one per open handle */
    unsigned long n_pairs;
};

typedef struct {
    uv_write_t req;
    p65_conn_t *conn;         /* written to */
    char *data;
} p65_write_t;

static void conn_close(p65_conn_t *c);

static void
p65_unref(p65_host_t *ph)
{
    if (--ph->refs > 0)
        return;
    free(ph->name);
    free(ph);
}

/* --- closing --------------------------------------------------------- */

static void
conn_closed(uv_handle_t *handle)
{
    p65_conn_t *c = handle->data;
    p65_host_t *ph = c->ph;

    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        ph->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    if (c->peer != NULL && c->peer->peer == c)
        c->peer->peer = NULL;
    pv_buf_free(&c->in);
    free(c);
    p65_unref(ph);
}

static void
conn_close(p65_conn_t *c)
{
    if (c->closing)
        return;
    c->closing = 1;
    uv_close((uv_handle_t *)&c->tcp, conn_closed);
}

/* Ends both sides of a bytestream: a half-open relay is of no use. */
static void
pair_close(p65_conn_t *c, const char *why)
{
    p65_conn_t *p = c->peer;

    if (c->state == P65_ACTIVE && !c->closing)
        pv_log(PV_LOG_INFO, c->ph->name, "bytestream %.8s closed (%s): "
               "%llu and %llu bytes relayed", c->hash, why,
               (unsigned long long)c->relayed,
               (unsigned long long)(p != NULL ? p->relayed : 0));
    conn_close(c);
    if (p != NULL)
        conn_close(p);
}

/* --- writing --------------------------------------------------------- */

static void
resume_reading(p65_conn_t *c);

static void
on_written(uv_write_t *req, int status)
{
    p65_write_t *w = (p65_write_t *)req;
    p65_conn_t *c = w->conn;

    free(w->data);
    free(w);
    if (c->closing)
        return;
    if (status < 0) {
        pair_close(c, uv_strerror(status));
        return;
    }
    /* the sender was paused for us: let it go on once we drained */
    if (c->peer != NULL && c->peer->paused &&
        uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp)
            < P65_LOW_WATER)
        resume_reading(c->peer);
}

/* Queues len bytes of data (malloc'd; ownership taken) to c. */
static int
conn_write(p65_conn_t *c, char *data, size_t len)
{
    p65_write_t *w;
    uv_buf_t b = uv_buf_init(data, (unsigned)len);
    int rc;

    if (c->closing) {
        free(data);
        return -1;
    }
    w = pv_xmalloc(sizeof(*w));
    w->conn = c;
    w->data = data;
    rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_written);
    if (rc < 0) {
        free(data);
        free(w);
        return -1;
    }
    return 0;
}

static void
on_fail_shutdown(uv_shutdown_t *req, int status)
{
    p65_conn_t *c = req->handle->data;

    (void)status;
    free(req);
    conn_close(c);
}

/* Writes a last reply and ends the connection once it is written (a
 * shutdown waits for queued writes). */
static void
socks_end(p65_conn_t *c, const char *bytes, size_t len, const char *why)
{
    char *reply = pv_xmalloc(len);
    uv_shutdown_t *sh;

    pv_log(PV_LOG_DEBUG, c->ph->name, "SOCKS5 refused: %s", why);
    memcpy(reply, bytes, len);
    c->state = P65_FAILING;
    uv_read_stop((uv_stream_t *)&c->tcp);
    if (conn_write(c, reply, len) < 0) {
        conn_close(c);
        return;
    }
    sh = pv_xmalloc(sizeof(*sh));
    if (uv_shutdown(sh, (uv_stream_t *)&c->tcp, on_fail_shutdown) < 0) {
        free(sh);
        conn_close(c);
    }
}

/* RFC 1928 §6 reply with code rep (IPv4 0.0.0.0:0 as BND). */
static void
socks_fail(p65_conn_t *c, unsigned char rep, const char *why)
{
    char reply[] = { 5, 0, 0, 1, 0, 0, 0, 0, 0, 0 };

    reply[1] = (char)rep;
    socks_end(c, reply, sizeof(reply), why);
}

/* --- relaying -------------------------------------------------------- */

static void
on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
    (void)handle;
    (void)suggested;
    buf->base = pv_xmalloc(P65_READ_SIZE);
    buf->len = P65_READ_SIZE;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static void
resume_reading(p65_conn_t *c)
{
    if (c->closing || c->got_eof)
        return;
    c->paused = 0;
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) < 0)
        pair_close(c, "read_start failed");
}

static void
on_shutdown(uv_shutdown_t *req, int status)
{
    p65_conn_t *c = req->handle->data;

    free(req);
    if (c->closing)
        return;
    if (status < 0) {
        pair_close(c, uv_strerror(status));
        return;
    }
    c->out_done = 1;
    /* both directions ended: the bytestream is complete */
    if (c->peer == NULL || c->peer->out_done)
        pair_close(c, "done");
}

/* c finished sending: pass the end on to its peer once the peer got
 * every byte (TCP half-close, so the other direction may go on). */
static void
relay_eof(p65_conn_t *c)
{
    p65_conn_t *p = c->peer;
    uv_shutdown_t *sh;

    c->got_eof = 1;
    uv_read_stop((uv_stream_t *)&c->tcp);
    if (p == NULL || p->closing) {
        pair_close(c, "peer gone");
        return;
    }
    sh = pv_xmalloc(sizeof(*sh));
    if (uv_shutdown(sh, (uv_stream_t *)&p->tcp, on_shutdown) < 0) {
        free(sh);
        pair_close(c, "shutdown failed");
    }
}

static void
relay(p65_conn_t *c, char *data, size_t len)
{
    p65_conn_t *p = c->peer;

    if (p == NULL || p->closing) {
        free(data);
        pair_close(c, "peer gone");
        return;
    }
    c->relayed += len;
    if (conn_write(p, data, len) < 0) {
        pair_close(c, "write failed");
        return;
    }
    if (uv_stream_get_write_queue_size((uv_stream_t *)&p->tcp)
            > P65_HIGH_WATER) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->paused = 1;
    }
}

/* --- SOCKS5 handshake (RFC 1928) --------------------------------------- */

static p65_conn_t *
find_hash(p65_host_t *ph, const char *hash, const p65_conn_t *except)
{
    p65_conn_t *c;

    for (c = ph->conns; c != NULL; c = c->next)
        if (c != except && !c->closing && c->state >= P65_WAITING &&
            c->state <= P65_ACTIVE && strcmp(c->hash, hash) == 0)
            return c;
    return NULL;
}

static void
consume(pv_buf_t *b, size_t n)
{
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
    b->data[b->len] = '\0';
}

/* Greeting: VER NMETHODS METHODS; only "no authentication" (0) is
 * offered (XEP-0065 §5.3.2: the hash is the credential). Returns 1 when
 * more input is needed, 0 when it moved on, -1 when the connection is
 * being refused. */
static int
socks_greeting(p65_conn_t *c)
{
    const unsigned char *in = (const unsigned char *)c->in.data;
    size_t n;
    char *reply;

    if (c->in.len < 2)
        return 1;
    if (in[0] != 5) {
        conn_close(c);          /* not SOCKS5: nothing sensible to say */
        return -1;
    }
    n = in[1];
    if (c->in.len < 2 + n)
        return 1;
    if (memchr(in + 2, 0, n) == NULL) {
        /* 0xff: no acceptable method (RFC 1928 §3) */
        socks_end(c, "\x05\xff", 2, "no acceptable method");
        return -1;
    }
    consume(&c->in, 2 + n);
    c->state = P65_REQUEST;
    reply = pv_xmalloc(2);
    reply[0] = 5;
    reply[1] = 0;
    if (conn_write(c, reply, 2) < 0) {
        conn_close(c);
        return -1;
    }
    return 0;
}

/* Request: VER CMD RSV ATYP=3 LEN DST.ADDR DST.PORT with CMD CONNECT and
 * DST.ADDR the 40 hex digits of SHA-1(SID + initiator + target), port 0
 * (XEP-0065 §5.3.2). The target connects first and waits; the
 * initiator's connection with the same hash pairs with it. */
static int
socks_request(p65_conn_t *c)
{
    const unsigned char *in = (const unsigned char *)c->in.data;
    p65_conn_t *other;
    size_t len, i;
    char *reply;

    if (c->in.len < 5)
        return 1;
    if (in[0] != 5) {
        conn_close(c);
        return -1;
    }
    len = in[4];
    if (in[3] != 3) {
        socks_fail(c, 8, "address type is not a domain name");
        return -1;
    }
    if (c->in.len < 5 + len + 2)
        return 1;
    if (in[1] != 1) {
        socks_fail(c, 7, "command is not CONNECT");
        return -1;
    }
    if (len != P65_HASH_LEN) {
        socks_fail(c, 1, "DST.ADDR is not a SHA-1 hash");
        return -1;
    }
    for (i = 0; i < P65_HASH_LEN; i++) {
        if (!isxdigit(in[5 + i])) {
            socks_fail(c, 1, "DST.ADDR is not hexadecimal");
            return -1;
        }
        c->hash[i] = (char)tolower(in[5 + i]);
    }
    c->hash[P65_HASH_LEN] = '\0';
    other = find_hash(c->ph, c->hash, c);
    if (other != NULL && (other->peer != NULL ||
                          other->state != P65_WAITING)) {
        /* a bytestream has exactly two ends */
        socks_fail(c, 2, "a third connection for the same hash");
        return -1;
    }
    if (other != NULL) {
        other->peer = c;
        c->peer = other;
    }
    reply = pv_xmalloc(5 + len + 2);
    memcpy(reply, in, 5 + len + 2);
    reply[1] = 0;               /* succeeded */
    reply[5 + len] = 0;
    reply[5 + len + 1] = 0;
    consume(&c->in, 5 + len + 2);
    c->state = P65_WAITING;
    pv_log(PV_LOG_DEBUG, c->ph->name, "SOCKS5 connection for %.8s%s",
           c->hash, other != NULL ? " paired" : " waiting for its peer");
    if (conn_write(c, reply, 5 + len + 2) < 0) {
        pair_close(c, "write failed");
        return -1;
    }
    return 0;
}

static void
on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    p65_conn_t *c = s->data;
    int more = 0;

    if (nread == 0) {
        free(buf->base);
        return;
    }
    if (nread < 0) {
        free(buf->base);
        if (c->state == P65_ACTIVE && nread == UV_EOF)
            relay_eof(c);
        else
            pair_close(c, nread == UV_EOF ? "closed by client"
                                          : uv_strerror((int)nread));
        return;
    }
    if (c->state == P65_ACTIVE) {
        relay(c, buf->base, (size_t)nread);
        return;
    }
    pv_buf_append(&c->in, buf->base, (size_t)nread);
    free(buf->base);
    while (!more && !c->closing) {
        switch (c->state) {
        case P65_GREETING:
            more = socks_greeting(c);
            break;
        case P65_REQUEST:
            more = socks_request(c);
            break;
        default:
            more = 1;
            break;
        }
        if (more < 0)
            return;
    }
    if (c->closing || c->state == P65_FAILING)
        return;
    if ((c->state < P65_WAITING && c->in.len > P65_HANDSHAKE_MAX) ||
        (c->state == P65_WAITING && c->in.len > P65_EARLY_MAX))
        pair_close(c, "too much data before activation");
}

static void
on_connection(uv_stream_t *server, int status)
{
    p65_listener_t *l = server->data;
    p65_host_t *ph = l->ph;
    p65_conn_t *c;

    if (status < 0 || ph->h == NULL)
        return;
    c = pv_xcalloc(1, sizeof(*c));
    c->ph = ph;
    if (uv_tcp_init(ph->loop, &c->tcp) < 0) {
        free(c);
        return;
    }
    c->tcp.data = c;
    ph->refs++;
    c->next = ph->conns;
    if (ph->conns != NULL)
        ph->conns->prev = c;
    ph->conns = c;
    c->since = pv_now_ms(pv_host_server(ph->h));
    if (uv_accept(server, (uv_stream_t *)&c->tcp) < 0 ||
        uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) < 0)
        conn_close(c);
}

/* --- listeners --------------------------------------------------------- */

static void
listener_closed(uv_handle_t *handle)
{
    p65_listener_t *l = handle->data;
    p65_host_t *ph = l->ph;

    free(l->address);
    free(l);
    p65_unref(ph);
}

static void
claim_listener(void *arg, const pv_raw_listener_t *raw)
{
    p65_host_t *ph = arg;
    const p65_conf_t *conf = pv_module_conf(ph->m, ph->h);
    p65_listener_t *l;
    int fd, rc;

    if (conf->port != 0 && conf->port != raw->port)
        return;
    for (l = ph->listeners; l != NULL; l = l->next)
        if (l->port == raw->port)
            return;             /* already ours */
    fd = dup(raw->fd);
    if (fd < 0) {
        pv_log_errno(ph->name, "proxy65 listener port %d: dup", raw->port);
        return;
    }
    l = pv_xcalloc(1, sizeof(*l));
    l->ph = ph;
    l->port = raw->port;
    l->address = raw->address != NULL ? pv_xstrdup(raw->address) : NULL;
    uv_tcp_init(ph->loop, &l->tcp);
    l->tcp.data = l;
    ph->refs++;
    l->next = ph->listeners;
    ph->listeners = l;
    rc = uv_tcp_open(&l->tcp, fd);
    if (rc < 0)
        close(fd);              /* not the handle's yet */
    else
        rc = uv_listen((uv_stream_t *)&l->tcp, 128, on_connection);
    if (rc < 0) {
        pv_log(PV_LOG_ERROR, ph->name, "proxy65 listener port %d: %s",
               raw->port, uv_strerror(rc));
        return;                 /* stays in the list, closed at fini */
    }
    pv_log(PV_LOG_INFO, ph->name, "SOCKS5 bytestreams on %s port %d",
           raw->address != NULL ? raw->address : "*", raw->port);
}

static void
claim_listeners(p65_host_t *ph)
{
    pv_server_each_raw_listener(pv_host_server(ph->h), "proxy65",
                                claim_listener, ph);
}

static void
claim_deferred(void *arg)
{
    claim_listeners(arg);
}

static pv_rc_t
p65_listening(pv_event_t *ev)
{
    p65_host_t *ph = pv_module_host_data(ev->module, ev->host);

    if (ph != NULL)
        claim_listeners(ph);
    return PV_PASS;
}

/* --- unactivated streams expire ---------------------------------------- */

static void
p65_sweep(void *arg)
{
    p65_host_t *ph = arg;
    const p65_conf_t *conf = pv_module_conf(ph->m, ph->h);
    uint64_t now = pv_now_ms(pv_host_server(ph->h));
    p65_conn_t *c, *next;

    for (c = ph->conns; c != NULL; c = next) {
        next = c->next;
        if (!c->closing && c->state != P65_ACTIVE &&
            now - c->since >= conf->timeout) {
            pv_log(PV_LOG_DEBUG, ph->name, "SOCKS5 connection %.8s not "
                   "activated in time", c->state >= P65_WAITING ? c->hash
                                                                : "-");
            pair_close(c, "timeout");
        }
    }
}

/* --- XMPP side ----------------------------------------------------------- */

/* The announced address: proxy65_address, else the listener's own
 * specific address, else the component's domain (clients resolve it). */
static const char *
announced_host(p65_host_t *ph, const p65_listener_t *l)
{
    const p65_conf_t *conf = pv_module_conf(ph->m, ph->h);

    if (conf->address != NULL)
        return conf->address;
    if (l->address != NULL && strcmp(l->address, "0.0.0.0") != 0 &&
        strcmp(l->address, "::") != 0)
        return l->address;
    return ph->name;
}

/* XEP-0065 §6.3.1 (proxy network address): one <streamhost/> per
 * listener this component serves. */
static pv_rc_t
p65_streamhost(pv_event_t *ev)
{
    p65_host_t *ph = pv_module_host_data(ev->module, ev->host);
    const p65_listener_t *l;
    pv_stanza_t *st;
    pv_node_t *q, *sh;
    char port[16];

    if (ph == NULL || ph->listeners == NULL) {
        pv_event_error(ev, PV_ERR_CANCEL, "service-unavailable",
                       "no proxy65 listener is configured");
        return PV_HANDLED;
    }
    st = pv_iq_result(ev->stanza);
    q = pv_node_new(st->arena, "query", NS_BYTESTREAMS, st->root);
    for (l = ph->listeners; l != NULL; l = l->next) {
        sh = pv_node_new(st->arena, "streamhost", NS_BYTESTREAMS, q);
        pv_node_set_attr(st->arena, sh, "jid", pv_host_name(ev->host));
        pv_node_set_attr(st->arena, sh, "host", announced_host(ph, l));
        snprintf(port, sizeof(port), "%d", l->port);
        pv_node_set_attr(st->arena, sh, "port", port);
    }
    pv_event_reply(ev, st);
    return PV_HANDLED;
}

static void
hash_hex(const char *sid, const char *initiator, const char *target,
         char out[P65_HASH_LEN + 1])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0, i;
    char *in = pv_xasprintf("%s%s%s", sid, initiator, target);

    EVP_Digest(in, strlen(in), md, &n, EVP_sha1(), NULL);
    free(in);
    for (i = 0; i < n && 2 * i < P65_HASH_LEN; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
    out[P65_HASH_LEN] = '\0';
}

/* XEP-0065 §6.3.4 (activation): the initiator names the target; the
 * hash over the sid, the sender's full JID (stamped by the server, so
 * nobody else can activate it) and the target selects the pair. */
static pv_rc_t
p65_activate(pv_event_t *ev)
{
    p65_host_t *ph = pv_module_host_data(ev->module, ev->host);
    const char *sid = pv_node_attr(ev->payload, "sid");
    pv_node_t *act = pv_node_child(ev->payload, "activate", NS_BYTESTREAMS);
    const char *text;
    size_t tlen;
    pv_jid_t target;
    char hash[P65_HASH_LEN + 1];
    p65_conn_t *a, *b;
    size_t i;

    if (ph == NULL) {
        pv_event_error(ev, PV_ERR_CANCEL, "service-unavailable", NULL);
        return PV_HANDLED;
    }
    if (sid == NULL || *sid == '\0' || act == NULL) {
        pv_event_error(ev, PV_ERR_MODIFY, "bad-request",
                       "sid and <activate/> are required");
        return PV_HANDLED;
    }
    text = pv_node_text(act, ev->stanza->arena);
    while (*text == ' ' || *text == '\t' || *text == '\n' || *text == '\r')
        text++;
    tlen = strlen(text);
    while (tlen > 0 && strchr(" \t\r\n", text[tlen - 1]) != NULL)
        tlen--;
    if (ev->from == NULL || ev->from->resource == NULL) {
        pv_event_error(ev, PV_ERR_MODIFY, "jid-malformed",
                       "the requester must be a full JID");
        return PV_HANDLED;
    }
    if (tlen == 0 ||
        pv_jid_parse(text, tlen, &target, ev->stanza->arena) != PV_OK) {
        pv_event_error(ev, PV_ERR_MODIFY, "jid-malformed",
                       "bad target JID");
        return PV_HANDLED;
    }
    hash_hex(sid, ev->from->full, target.full, hash);
    a = find_hash(ph, hash, NULL);
    if (a == NULL) {
        pv_event_error(ev, PV_ERR_CANCEL, "item-not-found",
                       "no such bytestream");
        return PV_HANDLED;
    }
    b = a->peer;
    if (b == NULL || a->state != P65_WAITING || b->state != P65_WAITING) {
        pv_event_error(ev, PV_ERR_CANCEL, "not-allowed",
                       b == NULL ? "only one party is connected"
                                 : "already activated");
        return PV_HANDLED;
    }
    a->state = b->state = P65_ACTIVE;
    ph->n_pairs++;
    pv_log(PV_LOG_INFO, ph->name, "bytestream %.8s activated by %s for %s",
           hash, ev->from->full, target.full);
    /* early data each side sent before the activation */
    for (i = 0; i < 2; i++) {
        p65_conn_t *c = i == 0 ? a : b;
        size_t len;
        char *data;

        if (c->in.len == 0)
            continue;
        data = pv_buf_steal(&c->in, &len);
        relay(c, data, len);
        if (a->closing || b->closing)
            break;
    }
    pv_event_result(ev, NULL);
    return PV_HANDLED;
}

/* Service discovery of the component (XEP-0030): the core runs only
 * this module on proxy.<domain>, so it answers for its host what the
 * host declares (our identity and features). Late priority: a disco
 * module enabled there would answer first. */
static void
add_identity(void *arg, const pv_identity_t *id)
{
    pv_stanza_t *st = ((void **)arg)[0];
    pv_node_t *n = pv_node_new(st->arena, "identity", NS_DISCO_INFO,
                               ((void **)arg)[1]);

    pv_node_set_attr(st->arena, n, "category", id->category);
    pv_node_set_attr(st->arena, n, "type", id->type);
    if (id->name != NULL)
        pv_node_set_attr(st->arena, n, "name", id->name);
}

static void
add_feature(void *arg, const char *feature)
{
    pv_stanza_t *st = ((void **)arg)[0];
    pv_node_t *n = pv_node_new(st->arena, "feature", NS_DISCO_INFO,
                               ((void **)arg)[1]);

    pv_node_set_attr(st->arena, n, "var", feature);
}

static pv_rc_t
p65_disco_info(pv_event_t *ev)
{
    pv_stanza_t *st;
    void *arg[2];

    if (pv_node_attr(ev->payload, "node") != NULL) {
        pv_event_error(ev, PV_ERR_CANCEL, "item-not-found", NULL);
        return PV_HANDLED;
    }
    st = pv_iq_result(ev->stanza);
    arg[0] = st;
    arg[1] = pv_node_new(st->arena, "query", NS_DISCO_INFO, st->root);
    pv_host_each_identity(ev->host, add_identity, arg);
    add_feature(arg, NS_DISCO_INFO);
    pv_host_each_feature(ev->host, add_feature, arg);
    pv_event_reply(ev, st);
    return PV_HANDLED;
}

static pv_rc_t
p65_disco_items(pv_event_t *ev)
{
    pv_stanza_t *st = pv_iq_result(ev->stanza);
    pv_node_t *q = pv_node_new(st->arena, "query", NS_DISCO_ITEMS,
                               st->root);
    const char *node = pv_node_attr(ev->payload, "node");

    if (node != NULL)
        pv_node_set_attr(st->arena, q, "node", node);
    pv_event_reply(ev, st);
    return PV_HANDLED;
}

/* --- module lifecycle ---------------------------------------------------- */

static int
p65_host_init(pv_module_t *m, pv_host_t *h)
{
    const p65_conf_t *conf = pv_module_conf(m, h);
    p65_host_t *ph = pv_xcalloc(1, sizeof(*ph));
    uint64_t every;

    ph->m = m;
    ph->h = h;
    ph->name = pv_xstrdup(pv_host_name(h));
    ph->loop = pv_server_uv_loop(pv_host_server(h));
    ph->refs = 1;
    pv_module_set_host_data(m, h, ph);
    /* after a reload the listeners exist already; at start-up they come
     * with PV_EV_LISTENING. Not called from here: before the first
     * listen the core's pv_server_each_raw_listener() has no generation
     * to read yet (it would crash), so look on the first loop turn */
    pv_module_timer(m, h, 0, 0, claim_deferred, ph);
    every = conf->timeout / 4;
    if (every < 250)
        every = 250;
    if (every > 5000)
        every = 5000;
    pv_module_timer(m, h, every, every, p65_sweep, ph);
    return PV_OK;
}

static void
p65_host_fini(pv_module_t *m, pv_host_t *h)
{
    p65_host_t *ph = pv_module_host_data(m, h);
    p65_listener_t *l;
    p65_conn_t *c;

    if (ph == NULL)
        return;
    pv_module_set_host_data(m, h, NULL);
    ph->h = NULL;
    for (l = ph->listeners; l != NULL; l = l->next)
        uv_close((uv_handle_t *)&l->tcp, listener_closed);
    ph->listeners = NULL;
    for (c = ph->conns; c != NULL; c = c->next)
        conn_close(c);
    p65_unref(ph);
}

static const pv_hook_t p65_hooks[] = {
    { PV_IQ_GET, PV_TO_HOST, NS_BYTESTREAMS, "query", p65_streamhost, 0, 0 },
    { PV_IQ_SET, PV_TO_HOST, NS_BYTESTREAMS, "query", p65_activate, 0, 0 },
    { PV_IQ_GET, PV_TO_HOST, NS_DISCO_INFO, "query", p65_disco_info, 100,
      0 },
    { PV_IQ_GET, PV_TO_HOST, NS_DISCO_ITEMS, "query", p65_disco_items, 100,
      0 },
    { PV_EV_LISTENING, PV_TO_ANY, NULL, NULL, p65_listening, 0, 0 },
    PV_HOOKS_END
};

static const pv_directive_t p65_directives[] = {
    { "proxy65_domain", PV_CTX_ANY, pv_conf_string,
      offsetof(p65_conf_t, domain), "", 0, 0, NULL },
    { "proxy65_address", PV_CTX_ANY, pv_conf_string,
      offsetof(p65_conf_t, address), "", 0, 0, NULL },
    { "proxy65_port", PV_CTX_ANY, pv_conf_int,
      offsetof(p65_conf_t, port), "0", 0, 65535, NULL },
    { "proxy65_timeout", PV_CTX_ANY, pv_conf_duration,
      offsetof(p65_conf_t, timeout), "60s", 1000, 86400000, NULL },
    PV_DIRECTIVES_END
};

static const pv_identity_t p65_identities[] = {
    { "proxy", "bytestreams", "SOCKS5 Bytestreams Service" },
    PV_IDENTITIES_END
};

PV_MODULE(proxy65) = {
    .abi = PV_MODULE_ABI,
    .name = "proxy65",
    .features = (const char *const[]){ NS_BYTESTREAMS, NULL },
    .identities = p65_identities,
    .hooks = p65_hooks,
    .directives = p65_directives,
    .conf_size = sizeof(p65_conf_t),
    .host_init = p65_host_init,
    .host_fini = p65_host_fini,
    .component = "proxy",
};
