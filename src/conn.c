/* src/conn.c: connections over libuv streams (TCP and unix sockets),
 * listeners and outgoing connects. Owns the read path (loop-wide buffer),
 * the write path (uv_try_write, then a bounded queue of chunks) and the
 * close protocol (deferred, refcounted, on_close exactly once). TLS
 * records are tls.c's; this file only moves its bytes. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <uv.h>

#include <palaver/log.h>
#include <palaver/mem.h>

#include "conn.h"

/* Buffers handed to one uv_write(); more chunks wait for the next. */
#define CONN_WRITE_BUFS 16
/* Smallest queue chunk: small writes coalesce into it. */
#define CONN_CHUNK_MIN 4096
/* How long a graceful close waits for a peer that does not read. */
#define CONN_LINGER_MS 10000

typedef struct conn_chunk_s {
    struct conn_chunk_s *next;
    size_t len;  /* bytes filled */
    size_t sent; /* bytes written to the socket */
    size_t cap;
    char data[];
} conn_chunk_t;

typedef struct conn_wreq_s {
    uv_write_t req;
    pv_conn_t *c;
    unsigned nbufs;
    uv_buf_t bufs[CONN_WRITE_BUFS];
} conn_wreq_t;

typedef struct conn_connect_s {
    uv_connect_t req;
    pv_conn_t *c;
    void (*cb)(void *arg, pv_conn_t *c, const char *err);
    void *arg;
} conn_connect_t;

typedef union conn_stream_u {
    uv_handle_t handle;
    uv_stream_t stream;
    uv_tcp_t tcp;
    uv_pipe_t pipe;
} conn_stream_t;

struct pv_conn_s {
    pv_loop_obj_t obj;
    pv_loop_t *loop;
    conn_stream_t u;
    const pv_conn_handler_t *h;
    void *ud;
    pv_tls_t *tls;
    conn_chunk_t *q_head;
    conn_chunk_t *q_tail;
    size_t q_bytes; /* queued and not yet written */
    size_t max_queue;
    conn_wreq_t *wreq;  /* the write in flight, or NULL */
    pv_buf_t held;      /* plaintext written before TLS is up */
    pv_buf_t out;       /* plaintext of this loop turn, not yet written */
    pv_defer_t defer;   /* pending close or TLS pump */
    uv_timer_t *linger; /* only while a graceful close waits */
    char *reason;
    int refs;
    uint16_t peer_port;
    char peer_ip[INET6_ADDRSTRLEN];
    unsigned is_unix : 1;
    unsigned is_connecting : 1;
    unsigned is_handed : 1; /* the user has it: on_close is owed */
    unsigned is_reading : 1;
    unsigned is_paused : 1;
    unsigned is_closing : 1; /* close requested: no more reads/writes */
    unsigned is_abort : 1;   /* ... and queued output is dropped */
    unsigned is_handle_closing : 1;
    unsigned need_pump : 1;
    unsigned is_peer_gone : 1; /* EOF or close_notify from the peer */
};

static void conn_flush_out(pv_conn_t *c);

struct pv_listener_s {
    pv_loop_obj_t obj;
    pv_loop_t *loop;
    conn_stream_t u;
    void (*on_accept)(void *arg, pv_conn_t *c);
    void *arg;
    char *path;
    int port;
};

static void conn_begin_close(pv_conn_t *c, const char *reason, int abort);
static void conn_pump(pv_conn_t *c);

/* ---- lifetime ---- */

static void
conn_free(pv_conn_t *c)
{
    conn_chunk_t *ch;

    pv_buf_free(&c->out);
    while ((ch = c->q_head) != NULL) {
        c->q_head = ch->next;
        free(ch);
    }
    pv_tls_free(c->tls);
    pv_buf_free(&c->held);
    free(c->reason);
    free(c);
}

void
pv_conn_ref(pv_conn_t *c)
{
    c->refs++;
}

void
pv_conn_unref(pv_conn_t *c)
{
    if (--c->refs == 0)
        conn_free(c);
}

static void
conn_closed_cb(uv_handle_t *h)
{
    pv_conn_t *c = h->data;

    pv_loop_untrack(c->loop, &c->obj);
    if (c->is_handed && c->h != NULL && c->h->on_close != NULL) {
        const char *reason = c->reason;

        if (reason == NULL && c->is_abort)
            reason = "aborted";
        c->h->on_close(c, reason);
    }
    pv_conn_unref(c); /* the handle's reference */
}

static void
conn_linger_closed_cb(uv_handle_t *h)
{
    pv_conn_t *c = h->data;

    free(h);
    pv_conn_unref(c);
}

static void
conn_close_handle(pv_conn_t *c)
{
    if (c->is_handle_closing)
        return;
    c->is_handle_closing = 1;
    c->is_reading = 0;
    if (c->linger != NULL) {
        uv_close((uv_handle_t *)c->linger, conn_linger_closed_cb);
        c->linger = NULL;
    }
    uv_close(&c->u.handle, conn_closed_cb);
}

static void
conn_linger_cb(uv_timer_t *t)
{
    pv_conn_t *c = t->data;

    pv_log_debug_cat("event", NULL, "close timed out, %zu bytes dropped",
                     c->q_bytes);
    conn_close_handle(c);
}

/* Runs once the close has been deferred to the end of the iteration. */
static void
conn_finish_close(pv_conn_t *c)
{
    if (c->is_handle_closing)
        return;
    if (!c->is_abort && (c->q_bytes > 0 || c->wreq != NULL)) {
        /* the write callback finishes the close once the queue drains */
        if (c->linger == NULL) {
            c->linger = pv_xmalloc(sizeof(*c->linger));
            uv_timer_init(pv_loop_uv(c->loop), c->linger);
            c->linger->data = c;
            pv_conn_ref(c);
            uv_timer_start(c->linger, conn_linger_cb, CONN_LINGER_MS, 0);
        }
        return;
    }
    conn_close_handle(c);
}

static void
conn_deferred(void *arg)
{
    pv_conn_t *c = arg;

    if (!c->is_closing)
        conn_flush_out(c);
    if (c->is_closing) {
        conn_finish_close(c);
    } else if (c->need_pump) {
        c->need_pump = 0;
        if (c->tls != NULL)
            conn_pump(c);
        if (c->tls != NULL)
            pv_tls_stash(c->tls);
    }
    pv_conn_unref(c); /* taken by conn_schedule() */
}

static void
conn_schedule(pv_conn_t *c)
{
    if (c->defer.next != NULL)
        return;
    pv_conn_ref(c);
    pv_loop_defer_node(c->loop, &c->defer, conn_deferred, c);
}

static void
conn_stop_reading(pv_conn_t *c)
{
    if (c->is_reading) {
        uv_read_stop(&c->u.stream);
        c->is_reading = 0;
    }
}

/* Every close goes through here; the work happens in conn_deferred(),
 * so no caller ever sees its own callbacks run (Redis, STYLE.md §5.6). */
static void
conn_begin_close(pv_conn_t *c, const char *reason, int abort)
{
    if (c->is_handle_closing)
        return;
    /* what was written this turn goes out before the close (and before
     * close_notify) */
    if (!abort && !c->is_closing)
        conn_flush_out(c);
    if (c->is_closing) {
        if (abort && !c->is_abort) {
            c->is_abort = 1;
            if (c->reason == NULL && reason != NULL)
                c->reason = pv_xstrdup(reason);
        }
        conn_schedule(c);
        return;
    }
    c->is_closing = 1;
    c->is_abort = abort != 0;
    c->reason = reason != NULL ? pv_xstrdup(reason) : NULL;
    conn_stop_reading(c);
    /* a peer that has gone reads no close_notify, and building one costs
     * OpenSSL a fresh write buffer per closing connection */
    if (c->tls != NULL && !abort && !c->is_peer_gone)
        pv_tls_close_notify(c->tls);
    conn_schedule(c);
}

static void
conn_shutdown(pv_loop_obj_t *obj)
{
    conn_begin_close((pv_conn_t *)obj, "loop shut down", 1);
}

static pv_conn_t *
conn_new(pv_loop_t *loop, int is_unix)
{
    pv_conn_t *c = pv_xcalloc(1, sizeof(*c));

    c->loop = loop;
    c->refs = 1;
    c->max_queue = PV_CONN_MAX_QUEUE_DEFAULT;
    c->is_unix = is_unix != 0;
    if (is_unix)
        uv_pipe_init(pv_loop_uv(loop), &c->u.pipe, 0);
    else
        uv_tcp_init(pv_loop_uv(loop), &c->u.tcp);
    c->u.handle.data = c;
    pv_loop_track(loop, &c->obj, conn_shutdown);
    return c;
}

/* ---- writing ---- */

static void conn_flush(pv_conn_t *c);

static void
conn_write_cb(uv_write_t *req, int status)
{
    conn_wreq_t *w = (conn_wreq_t *)req;
    pv_conn_t *c = w->c;
    unsigned i;

    c->wreq = NULL;
    if (status < 0) {
        free(w);
        conn_begin_close(c, uv_strerror(status), 1);
        return;
    }
    /* Every queued chunk has unsent bytes, so buffer i is chunk i. */
    for (i = 0; i < w->nbufs; i++) {
        conn_chunk_t *ch = c->q_head;

        ch->sent += w->bufs[i].len;
        c->q_bytes -= w->bufs[i].len;
        if (ch->sent == ch->len) {
            c->q_head = ch->next;
            if (c->q_head == NULL)
                c->q_tail = NULL;
            free(ch);
        }
    }
    free(w);
    if (c->q_bytes > 0) {
        conn_flush(c);
    } else if (c->is_closing) {
        conn_finish_close(c);
    } else if (c->h != NULL && c->h->on_drained != NULL) {
        pv_conn_ref(c);
        c->h->on_drained(c);
        pv_conn_unref(c);
    }
}

static void
conn_flush(pv_conn_t *c)
{
    conn_wreq_t *w;
    conn_chunk_t *ch;
    unsigned n = 0;
    int rc;

    if (c->wreq != NULL || c->q_bytes == 0 || c->is_handle_closing)
        return;
    w = pv_xmalloc(sizeof(*w));
    w->c = c;
    for (ch = c->q_head; ch != NULL && n < CONN_WRITE_BUFS; ch = ch->next) {
        w->bufs[n].base = ch->data + ch->sent;
        w->bufs[n].len = ch->len - ch->sent;
        n++;
    }
    w->nbufs = n;
    rc = uv_write(&w->req, &c->u.stream, w->bufs, n, conn_write_cb);
    if (rc < 0) {
        free(w);
        conn_begin_close(c, uv_strerror(rc), 1);
        return;
    }
    c->wreq = w;
}

static void
conn_queue_append(pv_conn_t *c, const char *data, size_t len)
{
    conn_chunk_t *t = c->q_tail;

    /* Appending behind an in-flight buffer is safe: chunks never move. */
    if (t == NULL || t->cap - t->len < len) {
        size_t cap = len > CONN_CHUNK_MIN ? len : CONN_CHUNK_MIN;

        t = pv_xmalloc(sizeof(*t) + cap);
        t->next = NULL;
        t->len = t->sent = 0;
        t->cap = cap;
        if (c->q_tail != NULL)
            c->q_tail->next = t;
        else
            c->q_head = t;
        c->q_tail = t;
    }
    memcpy(t->data + t->len, data, len);
    t->len += len;
    c->q_bytes += len;
}

/* Bytes as they go on the wire (ciphertext under TLS). */
static int
conn_raw_write(pv_conn_t *c, const char *data, size_t len)
{
    if (c->is_abort || c->is_handle_closing || c->is_connecting)
        return PV_ERROR;
    if (len == 0)
        return PV_OK;
    if (c->wreq == NULL && c->q_bytes == 0) {
        uv_buf_t b;
        int n;

        b.base = (char *)data;
        b.len = len;
        n = uv_try_write(&c->u.stream, &b, 1);
        if (n == UV_EAGAIN || n == UV_ENOSYS) {
            n = 0;
        } else if (n < 0) {
            conn_begin_close(c, uv_strerror(n), 1);
            return PV_ERROR;
        }
        data += n;
        len -= (size_t)n;
        if (len == 0)
            return PV_OK;
    }
    if (c->q_bytes + len > c->max_queue) {
        conn_begin_close(c, PV_CONN_REASON_QUEUE, 1);
        return PV_ERROR;
    }
    conn_queue_append(c, data, len);
    conn_flush(c);
    return PV_OK;
}

static int
conn_tls_out(void *arg, const char *data, size_t len)
{
    return conn_raw_write(arg, data, len);
}

/* Writes of one loop turn are gathered and leave in conn_deferred(): one
 * TLS record and one syscall for everything a turn sent to a peer (stream
 * header and features, a burst of messages) instead of one per call. */
static void
conn_flush_out(pv_conn_t *c)
{
    size_t len;
    char *data;

    if (c->out.len == 0)
        return;
    data = pv_buf_steal(&c->out, &len);
    if (c->tls == NULL) {
        conn_raw_write(c, data, len);
    } else if (pv_tls_write(c->tls, data, len) != PV_OK) {
        conn_begin_close(c, pv_tls_error(c->tls), 1);
    }
    free(data);
}

int
pv_conn_write(pv_conn_t *c, const char *data, size_t len)
{
    if (c->is_closing || c->is_handle_closing || c->is_connecting)
        return PV_ERROR;
    if (c->tls != NULL && !pv_tls_is_done(c->tls)) {
        if (c->held.len + len > c->max_queue) {
            conn_begin_close(c, PV_CONN_REASON_QUEUE, 1);
            return PV_ERROR;
        }
        pv_buf_append(&c->held, data, len);
        return PV_OK;
    }
    if (c->q_bytes + c->out.len + len > c->max_queue) {
        conn_begin_close(c, PV_CONN_REASON_QUEUE, 1);
        return PV_ERROR;
    }
    pv_buf_append(&c->out, data, len);
    conn_schedule(c);
    return PV_OK;
}

void
pv_conn_set_max_queue(pv_conn_t *c, size_t bytes)
{
    c->max_queue = bytes;
}

size_t
pv_conn_queued(const pv_conn_t *c)
{
    return c->q_bytes + c->held.len + c->out.len;
}

/* ---- reading ---- */

static void
conn_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    pv_conn_t *c = h->data;
    size_t len;

    (void)suggested;
    buf->base = pv_loop_read_buf(c->loop, &len);
    buf->len = len;
}

static void
conn_deliver(pv_conn_t *c, const char *data, size_t len)
{
    if (c->h != NULL && c->h->on_data != NULL)
        c->h->on_data(c, data, len);
}

static void
conn_tls_done(pv_conn_t *c, int ok, const char *err)
{
    if (c->h != NULL && c->h->on_tls_done != NULL)
        c->h->on_tls_done(c, ok, err);
}

/* Drives the TLS engine over the input it has; the caller holds a ref. */
static void
conn_pump(pv_conn_t *c)
{
    while (!c->is_closing && !c->is_paused) {
        size_t cap, n;
        char *buf = pv_loop_plain_buf(c->loop, &cap);

        switch (pv_tls_step(c->tls, buf, cap, &n)) {
        case PV_TLS_WANT: return;
        case PV_TLS_HANDSHAKE_DONE:
            if (c->held.len > 0) {
                int rc = pv_tls_write(c->tls, c->held.data, c->held.len);

                pv_buf_free(&c->held);
                if (rc != PV_OK) {
                    conn_begin_close(c, pv_tls_error(c->tls), 1);
                    return;
                }
            }
            conn_tls_done(c, 1, NULL);
            break;
        case PV_TLS_DATA: conn_deliver(c, buf, n); break;
        case PV_TLS_CLOSED:
            c->is_peer_gone = 1;
            conn_begin_close(c, "tls closed by peer", 0);
            return;
        case PV_TLS_FAILED:
            /* Graceful, so that the alert OpenSSL queued gets out. */
            if (!pv_tls_is_done(c->tls))
                conn_tls_done(c, 0, pv_tls_error(c->tls));
            conn_begin_close(c, pv_tls_error(c->tls), 0);
            return;
        }
    }
}

static void
conn_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    pv_conn_t *c = s->data;

    if (nread == 0)
        return;
    pv_conn_ref(c);
    if (nread == UV_EOF) {
        /* Half-close from the peer: flush what we still owe, then go. */
        c->is_peer_gone = 1;
        conn_begin_close(c, "connection closed by peer", 0);
    } else if (nread < 0) {
        conn_begin_close(c, uv_strerror((int)nread), 1);
    } else if (c->is_closing) {
        /* reading was stopped; nothing more is delivered */
    } else if (c->tls != NULL) {
        pv_tls_input(c->tls, buf->base, (size_t)nread);
        conn_pump(c);
        /* the loop buffer is reused by the next read callback */
        pv_tls_stash(c->tls);
    } else {
        conn_deliver(c, buf->base, (size_t)nread);
    }
    pv_conn_unref(c);
}

static void
conn_start_reading(pv_conn_t *c)
{
    int rc;

    if (c->is_reading || !c->is_handed || c->is_paused || c->is_closing)
        return;
    rc = uv_read_start(&c->u.stream, conn_alloc_cb, conn_read_cb);
    if (rc < 0) {
        conn_begin_close(c, uv_strerror(rc), 1);
        return;
    }
    c->is_reading = 1;
}

void
pv_conn_pause(pv_conn_t *c)
{
    if (c->is_closing)
        return;
    c->is_paused = 1;
    conn_stop_reading(c);
}

void
pv_conn_resume(pv_conn_t *c)
{
    if (c->is_closing || !c->is_paused)
        return;
    c->is_paused = 0;
    conn_start_reading(c);
    if (c->tls != NULL && pv_tls_has_input(c->tls)) {
        c->need_pump = 1;
        conn_schedule(c);
    }
}

/* ---- closing ---- */

void
pv_conn_close(pv_conn_t *c)
{
    conn_begin_close(c, NULL, 0);
}

void
pv_conn_abort(pv_conn_t *c, const char *reason)
{
    conn_begin_close(c, reason, 1);
}

/* ---- TLS ---- */

int
pv_conn_start_tls_server(pv_conn_t *c, pv_tls_ctx_t *ctx)
{
    char err[256];

    if (c->tls != NULL || c->is_closing || c->is_connecting)
        return PV_ERROR;
    /* what was written before (<proceed/>) goes out in clear */
    conn_flush_out(c);
    c->tls = pv_tls_new(ctx, 1, NULL, NULL, conn_tls_out, c, err, sizeof(err));
    if (c->tls == NULL) {
        pv_log(PV_LOG_ERROR, NULL, "%s", err);
        return PV_ERROR;
    }
    return PV_OK;
}

int
pv_conn_start_tls_client(pv_conn_t *c, pv_tls_ctx_t *ctx, const char *sni,
                         const char *alpn)
{
    char err[256];

    if (c->tls != NULL || c->is_closing || c->is_connecting)
        return PV_ERROR;
    /* what was written before (<proceed/>) goes out in clear */
    conn_flush_out(c);
    c->tls = pv_tls_new(ctx, 0, sni, alpn, conn_tls_out, c, err, sizeof(err));
    if (c->tls == NULL) {
        pv_log(PV_LOG_ERROR, NULL, "%s", err);
        return PV_ERROR;
    }
    /* The ClientHello goes out from the deferred pump, so that a failure
     * is reported through on_tls_done and not inside this call. */
    c->need_pump = 1;
    conn_schedule(c);
    return PV_OK;
}

int
pv_conn_is_tls(const pv_conn_t *c)
{
    return c->tls != NULL && pv_tls_is_done(c->tls);
}

const char *
pv_conn_tls_version(const pv_conn_t *c)
{
    return pv_conn_is_tls(c) ? pv_tls_version(c->tls) : NULL;
}

const char *
pv_conn_tls_sni(const pv_conn_t *c)
{
    return pv_conn_is_tls(c) ? pv_tls_sni(c->tls) : NULL;
}

const char *
pv_conn_tls_alpn(const pv_conn_t *c)
{
    return pv_conn_is_tls(c) ? pv_tls_alpn(c->tls) : NULL;
}

int
pv_conn_tls_peer_cn(const pv_conn_t *c, char *buf, size_t len)
{
    return pv_conn_is_tls(c) ? pv_tls_peer_cn(c->tls, buf, len) : PV_ERROR;
}

int
pv_conn_tls_verify(const pv_conn_t *c, const char *host, char *err,
                   size_t errlen)
{
    if (!pv_conn_is_tls(c)) {
        snprintf(err, errlen, "no tls");
        return PV_ERROR;
    }
    return pv_tls_peer_verify(c->tls, host, err, errlen);
}

int
pv_conn_channel_binding(pv_conn_t *c, const char *type, uint8_t *out,
                        size_t *len)
{
    if (!pv_conn_is_tls(c))
        return PV_ERROR;
    return pv_tls_channel_binding(c->tls, type, out, len);
}

int
pv_conn_cb_types(pv_conn_t *c, const char **types, int max)
{
    if (!pv_conn_is_tls(c))
        return 0;
    return pv_tls_cb_types(c->tls, types, max);
}

/* ---- facts ---- */

void
pv_conn_set_handler(pv_conn_t *c, const pv_conn_handler_t *h, void *ud)
{
    c->h = h;
    c->ud = ud;
}

void *
pv_conn_data(const pv_conn_t *c)
{
    return c->ud;
}

const char *
pv_conn_peer_ip(const pv_conn_t *c)
{
    return c->peer_ip;
}

int
pv_conn_peer_port(const pv_conn_t *c)
{
    return c->peer_port;
}

int
pv_conn_is_unix(const pv_conn_t *c)
{
    return c->is_unix;
}

size_t
pv_conn_memory(const pv_conn_t *c)
{
    size_t n = sizeof(*c) + c->held.cap + c->out.cap;
    const conn_chunk_t *ch;

    for (ch = c->q_head; ch != NULL; ch = ch->next)
        n += sizeof(*ch) + ch->cap;
    if (c->wreq != NULL)
        n += sizeof(*c->wreq);
    if (c->linger != NULL)
        n += sizeof(*c->linger);
    if (c->tls != NULL)
        n += pv_tls_memory(c->tls);
    if (c->reason != NULL)
        n += strlen(c->reason) + 1;
    return n;
}

static void
conn_set_peer(pv_conn_t *c, const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;

        uv_ip4_name(sin, c->peer_ip, sizeof(c->peer_ip));
        c->peer_port = ntohs(sin->sin_port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;

        if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr)) {
            /* a dual-stack listener: show IPv4 peers as IPv4 */
            struct sockaddr_in sin;

            memset(&sin, 0, sizeof(sin));
            sin.sin_family = AF_INET;
            memcpy(&sin.sin_addr, &sin6->sin6_addr.s6_addr[12], 4);
            uv_ip4_name(&sin, c->peer_ip, sizeof(c->peer_ip));
        } else {
            uv_ip6_name(sin6, c->peer_ip, sizeof(c->peer_ip));
        }
        c->peer_port = ntohs(sin6->sin6_port);
    }
}

/* ---- outgoing ---- */

static void
conn_connect_cb(uv_connect_t *req, int status)
{
    conn_connect_t *cr = (conn_connect_t *)req;
    pv_conn_t *c = cr->c;
    void (*cb)(void *, pv_conn_t *, const char *) = cr->cb;
    void *arg = cr->arg;

    free(cr);
    c->is_connecting = 0;
    if (status < 0 || c->is_closing) {
        const char *err = uv_strerror(status);

        if (c->is_closing)
            err = c->reason != NULL ? c->reason : "aborted";
        cb(arg, NULL, err);
        conn_begin_close(c, NULL, 1);
        return;
    }
    if (!c->is_unix)
        uv_tcp_nodelay(&c->u.tcp, 1);
    c->is_handed = 1;
    pv_conn_ref(c);
    cb(arg, c, NULL);
    if (c->h == NULL)
        conn_begin_close(c, "no handler", 1);
    conn_start_reading(c);
    pv_conn_unref(c);
}

static void
conn_connect_free_now(pv_conn_t *c, conn_connect_t *cr)
{
    free(cr);
    c->is_connecting = 0;
    conn_close_handle(c);
}

pv_conn_t *
pv_conn_connect_tcp(pv_loop_t *loop, const char *ip, int port,
                    void (*on_connect)(void *arg, pv_conn_t *c,
                                       const char *err),
                    void *arg)
{
    struct sockaddr_storage ss;
    conn_connect_t *cr;
    pv_conn_t *c;
    int rc;

    if (port <= 0 || port > 65535)
        return NULL;
    if (uv_ip4_addr(ip, port, (struct sockaddr_in *)&ss) != 0 &&
        uv_ip6_addr(ip, port, (struct sockaddr_in6 *)&ss) != 0)
        return NULL;
    c = conn_new(loop, 0);
    conn_set_peer(c, (struct sockaddr *)&ss);
    cr = pv_xcalloc(1, sizeof(*cr));
    cr->c = c;
    cr->cb = on_connect;
    cr->arg = arg;
    c->is_connecting = 1;
    rc = uv_tcp_connect(&cr->req, &c->u.tcp, (struct sockaddr *)&ss,
                        conn_connect_cb);
    if (rc < 0) {
        pv_log(PV_LOG_WARN, NULL, "cannot connect to [%s]:%d: %s", ip, port,
               uv_strerror(rc));
        conn_connect_free_now(c, cr);
        return NULL;
    }
    return c;
}

pv_conn_t *
pv_conn_connect_unix(pv_loop_t *loop, const char *path,
                     void (*on_connect)(void *arg, pv_conn_t *c,
                                        const char *err),
                     void *arg)
{
    struct sockaddr_un sun;
    conn_connect_t *cr;
    pv_conn_t *c;

    /* libuv would silently truncate a long path */
    if (strlen(path) >= sizeof(sun.sun_path))
        return NULL;
    c = conn_new(loop, 1);
    cr = pv_xcalloc(1, sizeof(*cr));
    cr->c = c;
    cr->cb = on_connect;
    cr->arg = arg;
    c->is_connecting = 1;
    uv_pipe_connect(&cr->req, &c->u.pipe, path, conn_connect_cb);
    return c;
}

/* ---- listeners ---- */

static void
listener_closed_cb(uv_handle_t *h)
{
    pv_listener_t *l = h->data;

    pv_loop_untrack(l->loop, &l->obj);
    free(l->path);
    free(l);
}

void
pv_listener_close(pv_listener_t *l)
{
    if (l == NULL || uv_is_closing(&l->u.handle))
        return;
    if (l->path != NULL)
        unlink(l->path);
    uv_close(&l->u.handle, listener_closed_cb);
}

static void
listener_shutdown(pv_loop_obj_t *obj)
{
    pv_listener_close((pv_listener_t *)obj);
}

int
pv_listener_port(const pv_listener_t *l)
{
    return l->port;
}

static void
listener_accept_cb(uv_stream_t *server, int status)
{
    pv_listener_t *l = server->data;
    pv_conn_t *c;
    int rc;

    if (status < 0) {
        pv_log(PV_LOG_WARN, NULL, "accept failed: %s", uv_strerror(status));
        return;
    }
    c = conn_new(l->loop, l->path != NULL);
    rc = uv_accept(server, &c->u.stream);
    if (rc < 0) {
        pv_log(PV_LOG_WARN, NULL, "accept failed: %s", uv_strerror(rc));
        conn_close_handle(c);
        return;
    }
    if (!c->is_unix) {
        struct sockaddr_storage ss;
        int len = sizeof(ss);

        uv_tcp_nodelay(&c->u.tcp, 1);
        if (uv_tcp_getpeername(&c->u.tcp, (struct sockaddr *)&ss, &len) == 0)
            conn_set_peer(c, (struct sockaddr *)&ss);
    }
    c->is_handed = 1;
    pv_conn_ref(c);
    l->on_accept(l->arg, c);
    if (c->h == NULL)
        conn_begin_close(c, "no handler", 1);
    conn_start_reading(c);
    pv_conn_unref(c);
}

static pv_listener_t *
listener_new(pv_loop_t *loop, void (*on_accept)(void *arg, pv_conn_t *c),
             void *arg)
{
    pv_listener_t *l = pv_xcalloc(1, sizeof(*l));

    l->loop = loop;
    l->on_accept = on_accept;
    l->arg = arg;
    return l;
}

static pv_listener_t *
listener_fail(pv_listener_t *l, int rc, const char *what, char *err,
              size_t errlen)
{
    snprintf(err, errlen, "%s: %s", what, uv_strerror(rc));
    /* no unlink: the file may belong to someone else */
    free(l->path);
    l->path = NULL;
    pv_listener_close(l);
    return NULL;
}

static int
listener_bind_tcp(pv_listener_t *l, const char *addr, int port)
{
    struct sockaddr_storage ss;
    int rc;

    if (addr == NULL) {
        /* "::" is dual-stack on Linux unless IPv6 is missing */
        uv_ip6_addr("::", port, (struct sockaddr_in6 *)&ss);
        rc = uv_tcp_bind(&l->u.tcp, (struct sockaddr *)&ss, 0);
        if (rc != UV_EAFNOSUPPORT)
            return rc;
        uv_ip4_addr("0.0.0.0", port, (struct sockaddr_in *)&ss);
        return uv_tcp_bind(&l->u.tcp, (struct sockaddr *)&ss, 0);
    }
    if (uv_ip4_addr(addr, port, (struct sockaddr_in *)&ss) != 0 &&
        uv_ip6_addr(addr, port, (struct sockaddr_in6 *)&ss) != 0)
        return UV_EINVAL;
    return uv_tcp_bind(&l->u.tcp, (struct sockaddr *)&ss, 0);
}

pv_listener_t *
pv_listen_tcp(pv_loop_t *loop, const char *addr, int port, int backlog,
              void (*on_accept)(void *arg, pv_conn_t *c), void *arg, char *err,
              size_t errlen)
{
    pv_listener_t *l;
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    int rc;

    if (port < 0 || port > 65535) {
        snprintf(err, errlen, "bad port %d", port);
        return NULL;
    }
    l = listener_new(loop, on_accept, arg);
    uv_tcp_init(pv_loop_uv(loop), &l->u.tcp);
    l->u.handle.data = l;
    pv_loop_track(loop, &l->obj, listener_shutdown);
    rc = listener_bind_tcp(l, addr, port);
    if (rc < 0)
        return listener_fail(l, rc, "cannot bind", err, errlen);
    /* libuv reports some bind errors (EADDRINUSE) only here */
    rc = uv_listen(&l->u.stream, backlog, listener_accept_cb);
    if (rc < 0)
        return listener_fail(l, rc, "cannot listen", err, errlen);
    rc = uv_tcp_getsockname(&l->u.tcp, (struct sockaddr *)&ss, &len);
    if (rc < 0)
        return listener_fail(l, rc, "cannot read bound port", err, errlen);
    l->port =
        ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                       : ((struct sockaddr_in *)&ss)->sin_port);
    return l;
}

pv_listener_t *
pv_listen_unix(pv_loop_t *loop, const char *path, int mode, int backlog,
               void (*on_accept)(void *arg, pv_conn_t *c), void *arg, char *err,
               size_t errlen)
{
    struct sockaddr_un sun;
    struct stat st;
    pv_listener_t *l;
    int rc;

    if (strlen(path) >= sizeof(sun.sun_path)) {
        snprintf(err, errlen, "socket path too long: %s", path);
        return NULL;
    }
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            snprintf(err, errlen, "%s exists and is not a socket", path);
            return NULL;
        }
        unlink(path);
    }
    l = listener_new(loop, on_accept, arg);
    uv_pipe_init(pv_loop_uv(loop), &l->u.pipe, 0);
    l->u.handle.data = l;
    pv_loop_track(loop, &l->obj, listener_shutdown);
    rc = uv_pipe_bind(&l->u.pipe, path);
    if (rc < 0)
        return listener_fail(l, rc, "cannot bind", err, errlen);
    l->path = pv_xstrdup(path);
    /* Bound but not listening yet: nobody can connect before the mode
     * is set, so there is no window with wider permissions. */
    if (chmod(path, (mode_t)mode) != 0) {
        snprintf(err, errlen, "cannot chmod %s: %s", path, strerror(errno));
        pv_listener_close(l);
        return NULL;
    }
    rc = uv_listen(&l->u.stream, backlog, listener_accept_cb);
    if (rc < 0) {
        snprintf(err, errlen, "cannot listen on %s: %s", path, uv_strerror(rc));
        pv_listener_close(l);
        return NULL;
    }
    return l;
}
