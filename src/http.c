/* src/http.c: the HTTP/1.1 server on the loop: one pv_http_req_t per
 * connection (keep-alive, one request at a time, pipelined requests
 * answered in order), limits (head size, body size, request time), status
 * codes, HEAD, CORS, the access log, the route table (core routes and
 * module routes per domain), upgrades, bodies streamed to and from files
 * on the thread pool (uploads, downloads with Range), and the built-in
 * routes /metrics (Prometheus text 0.0.4) and XEP-0156 host-meta. Request
 * parsing is http_parse.c's. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "http.h"
#include "palaver.h"

#define HTTP_SERVER_NAME "Palaver"

typedef struct http_route_s {
    char *host;               /* module routes: the domain; core: NULL */
    char *prefix;
    size_t prefix_len;
    char *methods;            /* " GET HEAD " with spaces around each */
    unsigned flags;
    pv_http_handler_fn handler;
    void *arg;
} http_route_t;

struct pv_http_s {
    pv_server_t *srv;
    http_route_t **routes;    /* pointers: requests hold them */
    size_t n_routes;
    pv_http_req_t *conns;     /* open HTTP connections */
    size_t n_conns;
    uint64_t requests;        /* answered, for /metrics */
    uint64_t files_in;        /* bodies received into files */
    uint64_t file_bytes_in;
    pv_bosh_t *bosh;
};

struct pv_http_req_s {
    pv_http_t *h;
    pv_conn_t *conn;
    pv_http_parser_t *p;
    pv_timer_t *timer;
    pv_http_req_t *prev, *next;
    const pv_http_request_t *req;  /* between headers() and complete() */
    const http_route_t *route;
    pv_buf_t body;
    pv_buf_t extra;                /* added response headers */
    char *path;                    /* decoded, NULL when undecodable */
    const pv_conn_handler_t *up_handler;
    void *up_ud;
    unsigned is_tls : 1;
    unsigned responded : 1;
    unsigned upgraded : 1;
    unsigned closing : 1;
    unsigned keep_alive : 1;
    unsigned counted : 1;          /* in the server's connection counts */
    unsigned deferred : 1;         /* the handler answers later */
    unsigned dispatched : 1;       /* stream route: handler ran at head */
    unsigned in_body : 1;          /* head read, body not complete */
    unsigned cors : 1;             /* the route asked for CORS */
    pv_http_gone_fn gone;
    void *gone_arg;
    const char *reject;            /* over a connection limit: 503 */
    uint64_t body_seen;            /* body bytes of this request */
    struct http_sink_s *sink;      /* body going into a file */
    struct http_file_s *file;      /* file going out as the body */
};

/* Memory bounds of file streaming: a connection holds at most about
 * SINK_HIGH + a read buffer of an upload and FILE_HIGH + FILE_CHUNK of a
 * download, whatever the file size. */
#define SINK_HIGH (1024 * 1024)
#define SINK_LOW (256 * 1024)
#define FILE_CHUNK (64 * 1024)
#define FILE_HIGH (256 * 1024)
/* An early answer (403, 413) discards at most this much of the body
 * before reading the next request; more closes the connection. */
#define DISCARD_MAX (1024 * 1024)

static void http_sink_detach(struct http_sink_s *s);
static void http_file_detach(struct http_file_s *f);
static void http_file_pump(struct http_file_s *f);
static int http_sink_feed(struct http_sink_s *s, const char *data,
                          size_t len);
static void http_sink_eof(struct http_sink_s *s);

static void http_arm_timer(pv_http_req_t *r);
static void http_on_data(pv_conn_t *conn, const char *data, size_t len);
static void http_on_tls_done(pv_conn_t *conn, int ok, const char *err);
static void http_on_close(pv_conn_t *conn, const char *reason);
static void http_on_drained(pv_conn_t *conn);

static const pv_conn_handler_t http_handler = {
    .on_data = http_on_data,
    .on_tls_done = http_on_tls_done,
    .on_close = http_on_close,
    .on_drained = http_on_drained,
};

static int http_p_headers(void *ud, const pv_http_request_t *req);
static int http_p_body(void *ud, const char *data, size_t len);
static int http_p_complete(void *ud, const pv_http_request_t *req);

static const pv_http_cb_t http_parser_cb = {
    .headers = http_p_headers,
    .body = http_p_body,
    .complete = http_p_complete,
};

static const pv_core_conf_t *
http_conf(const pv_http_t *h)
{
    return PV_GLOBAL(h->srv);
}

/* --- routes ------------------------------------------------------------ */

static void
http_add_route(pv_http_t *h, const char *host, const char *prefix,
               const char *methods, unsigned flags,
               pv_http_handler_fn handler, void *arg)
{
    http_route_t *r = pv_xcalloc(1, sizeof(*r));

    h->routes = pv_xrealloc(h->routes, (h->n_routes + 1) * sizeof(r));
    h->routes[h->n_routes++] = r;
    r->host = host ? pv_xstrdup(host) : NULL;
    r->prefix = pv_xstrdup(prefix);
    r->prefix_len = strlen(prefix);
    r->methods = pv_xasprintf(" %s ", methods);
    r->flags = flags;
    r->handler = handler;
    r->arg = arg;
}

void
pv_http_route(pv_http_t *h, const char *prefix, const char *methods,
              unsigned flags, pv_http_handler_fn handler, void *arg)
{
    http_add_route(h, NULL, prefix, methods, flags, handler, arg);
}

/* Requests still using route: an unanswered one (deferred, receiving or
 * sending a file) ends now, its owner told first; the others forget it. */
static void
http_route_gone(pv_http_t *h, const http_route_t *route)
{
    pv_http_req_t *r;

    for (r = h->conns; r != NULL; r = r->next) {
        if (r->route != route)
            continue;
        r->route = NULL;
        if (!r->deferred && r->sink == NULL && r->file == NULL)
            continue;
        if (r->gone != NULL) {
            pv_http_gone_fn gone = r->gone;

            r->gone = NULL;
            gone(r->gone_arg, r);
        }
        if (r->sink != NULL) {
            struct http_sink_s *sk = r->sink;

            r->sink = NULL;
            http_sink_detach(sk);
        }
        if (r->file != NULL) {
            struct http_file_s *f = r->file;

            r->file = NULL;
            http_file_detach(f);
        }
        r->deferred = 0;
        r->closing = 1;
        pv_conn_abort(r->conn, "route removed");
    }
}

static void
http_remove_routes(pv_http_t *h, const char *host, void *arg)
{
    size_t i = 0;

    while (i < h->n_routes) {
        http_route_t *r = h->routes[i];

        if (r->arg != arg ||
            (host != NULL && (r->host == NULL || strcmp(r->host, host)))) {
            i++;
            continue;
        }
        http_route_gone(h, r);
        free(r->host);
        free(r->prefix);
        free(r->methods);
        free(r);
        /* keep the order: the first registered is the fallback */
        memmove(&h->routes[i], &h->routes[i + 1],
                (h->n_routes - i - 1) * sizeof(*h->routes));
        h->n_routes--;
    }
}

void
pv_http_unroute(pv_http_t *h, void *arg)
{
    http_remove_routes(h, NULL, arg);
}

void
pv_http_register(pv_host_t *host, const char *prefix, const char *methods,
                 unsigned flags, pv_http_handler_fn handler, void *arg)
{
    pv_server_t *srv = pv_host_server(host);

    /* hosts are set up before server.c binds the listeners, which
     * reuses this service */
    if (srv->http == NULL)
        srv->http = pv_http_new(srv);
    http_add_route(srv->http, pv_host_name(host), prefix, methods, flags,
                   handler, arg);
}

void
pv_http_unregister(pv_host_t *host, void *arg)
{
    pv_server_t *srv = pv_host_server(host);

    if (srv->http != NULL)
        http_remove_routes(srv->http, pv_host_name(host), arg);
}

const char *
pv_http_host_normalize(const char *host, char *buf, size_t size)
{
    size_t n, i;

    if (host == NULL || size == 0)
        return NULL;
    if (host[0] == '[') {
        const char *end = strchr(host, ']');

        if (end == NULL || (end[1] != '\0' && end[1] != ':'))
            return NULL;
        n = (size_t)(end - host) + 1;
    } else {
        n = strcspn(host, ":");
        if (host[n] == ':' && strchr(host + n + 1, ':') != NULL)
            return NULL;
    }
    if (host[n] == ':') {
        const char *p = host + n + 1;

        if (*p == '\0' || strspn(p, "0123456789") != strlen(p))
            return NULL;
    }
    /* a trailing dot names the same domain */
    if (n > 1 && host[n - 1] == '.')
        n--;
    if (n == 0 || n >= size)
        return NULL;
    for (i = 0; i < n; i++) {
        char c = host[i];

        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        if (!(c >= 'a' && c <= 'z') && !(c >= '0' && c <= '9') &&
            strchr(".-[]:", c) == NULL)
            return NULL;
        if (c == ':' && host[0] != '[')
            return NULL;
        buf[i] = c;
    }
    buf[n] = '\0';
    return buf;
}

static const http_route_t *
http_find_route(const pv_http_t *h, const char *host, const char *path)
{
    const http_route_t *best = NULL;
    int best_host = 0;
    size_t i;

    for (i = 0; i < h->n_routes; i++) {
        const http_route_t *r = h->routes[i];
        size_t n = r->prefix_len;
        int host_ok;

        if (strncmp(path, r->prefix, n) != 0)
            continue;
        if (path[n] != '\0' &&
            ((r->flags & PV_HTTP_EXACT) ||
             (path[n] != '/' && (n == 0 || r->prefix[n - 1] != '/'))))
            continue;
        host_ok = r->host == NULL ||
                  (host != NULL && strcmp(r->host, host) == 0);
        if (best == NULL || n > best->prefix_len ||
            (n == best->prefix_len && host_ok && !best_host)) {
            best = r;
            best_host = host_ok;
        }
    }
    return best;
}

static int
route_allows(const http_route_t *r, const char *method)
{
    char key[40];

    if (strlen(method) > sizeof(key) - 3)
        return 0;
    snprintf(key, sizeof(key), " %s ", method);
    if (strstr(r->methods, key) != NULL)
        return 1;
    /* RFC 9110 §9.3.2: HEAD is GET without the body */
    return strcmp(method, "HEAD") == 0 && strstr(r->methods, " GET ");
}

/* "GET, HEAD, OPTIONS" from " GET POST " */
static void
route_allow_header(const http_route_t *r, pv_buf_t *b)
{
    const char *p = r->methods;
    int first = 1;

    while (*p != '\0') {
        size_t n;

        while (*p == ' ')
            p++;
        n = strcspn(p, " ");
        if (n == 0)
            break;
        pv_buf_printf(b, "%s%.*s", first ? "" : ", ", (int)n, p);
        first = 0;
        p += n;
    }
    if (strstr(r->methods, " GET ") && !strstr(r->methods, " HEAD "))
        pv_buf_puts(b, ", HEAD");
    if (r->flags & PV_HTTP_CORS)
        pv_buf_puts(b, ", OPTIONS");
}

/* --- responses --------------------------------------------------------- */

void
pv_http_add_header(pv_http_req_t *r, const char *name, const char *value)
{
    if (strpbrk(name, "\r\n:") != NULL || strpbrk(value, "\r\n") != NULL)
        return;
    pv_buf_printf(&r->extra, "%s: %s\r\n", name, value);
}

static void
http_access_log(pv_http_req_t *r, int status, size_t len)
{
    const pv_http_request_t *q = r->req;

    /* the query is left out: upload slot URLs carry tokens in it */
    pv_log(PV_LOG_INFO, "http", "%s \"%s %.*s HTTP/1.%d\" %d %zu",
           pv_conn_peer_ip(r->conn), q ? q->method : "-",
           q ? (int)strnlen(q->target, q->path_len) : 1,
           q ? q->target : "-",
           q ? q->version_minor : 1, status, len);
}

static void
http_send(pv_http_req_t *r, int status, const char *ctype, const void *body,
          size_t len, int with_body)
{
    pv_buf_t b = {0};

    pv_buf_printf(&b, "HTTP/1.1 %d %s\r\nServer: " HTTP_SERVER_NAME "\r\n",
                  status, pv_http_status_reason(status));
    if (status >= 200 && status != 204 && status != 304)
        pv_buf_printf(&b, "Content-Length: %zu\r\n", len);
    if (ctype != NULL)
        pv_buf_printf(&b, "Content-Type: %s\r\n", ctype);
    if (r->cors)
        pv_buf_puts(&b, "Access-Control-Allow-Origin: *\r\n");
    if (r->extra.len > 0)
        pv_buf_append(&b, r->extra.data, r->extra.len);
    if (!r->keep_alive)
        pv_buf_puts(&b, "Connection: close\r\n");
    pv_buf_puts(&b, "\r\n");
    if (with_body && len > 0)
        pv_buf_append(&b, body, len);
    pv_conn_write(r->conn, b.data, b.len);
    pv_buf_free(&b);
    pv_buf_free(&r->extra);
    r->responded = 1;
    r->h->requests++;
    http_access_log(r, status, with_body ? len : 0);
}

/* The parser stopped at a request answered later: go on or close. */
static void
http_finish_deferred(pv_http_req_t *r)
{
    r->deferred = 0;
    r->gone = NULL;
    if (!r->keep_alive || r->closing) {
        r->closing = 1;
        pv_conn_close(r->conn);
    } else {
        http_arm_timer(r);
        pv_conn_resume(r->conn);
    }
}

/* Answered before the body was read (a refused upload): the rest of the
 * body is discarded when small, else the connection ends after the
 * answer rather than reading what we refused. */
static void
http_early_answer(pv_http_req_t *r)
{
    const pv_http_request_t *q = r->req;

    r->keep_alive = 0;
    /* no 413 from the parser after our own answer */
    pv_http_parser_set_max_body(r->p, UINT64_MAX);
    if (q->is_chunked || q->content_length > DISCARD_MAX ||
        r->sink != NULL) {
        r->closing = 1;
        pv_conn_close(r->conn);
    }
}

void
pv_http_respond(pv_http_req_t *r, int status, const char *content_type,
                const void *body, size_t len)
{
    int with_body;

    if (r->responded || r->upgraded)
        return;
    with_body = status != 204 && status != 304 &&
                !(r->req != NULL && strcmp(r->req->method, "HEAD") == 0);
    http_send(r, status, content_type, body, len, with_body);
    if (r->in_body && r->req != NULL)
        http_early_answer(r);
    if (r->deferred)
        http_finish_deferred(r);
    r->gone = NULL;
}

void
pv_http_defer(pv_http_req_t *r, pv_http_gone_fn gone, void *arg)
{
    if (r->responded || r->upgraded)
        return;
    r->deferred = 1;
    r->gone = gone;
    r->gone_arg = arg;
    /* the answer's owner bounds the wait (BOSH wait), not our timer */
    if (r->timer != NULL) {
        pv_timer_cancel(r->timer);
        r->timer = NULL;
    }
    pv_conn_pause(r->conn);
}

void
pv_http_respond_status(pv_http_req_t *r, int status)
{
    char text[64];
    int n = snprintf(text, sizeof(text), "%d %s\n", status,
                     pv_http_status_reason(status));

    pv_http_respond(r, status, "text/plain; charset=utf-8", text,
                    (size_t)n);
}

pv_conn_t *
pv_http_upgrade(pv_http_req_t *r, const pv_conn_handler_t *h, void *ud)
{
    pv_buf_t b = {0};

    pv_buf_puts(&b, "HTTP/1.1 101 Switching Protocols\r\n"
                    "Server: " HTTP_SERVER_NAME "\r\n");
    if (r->extra.len > 0)
        pv_buf_append(&b, r->extra.data, r->extra.len);
    pv_buf_puts(&b, "\r\n");
    pv_conn_write(r->conn, b.data, b.len);
    pv_buf_free(&b);
    pv_buf_free(&r->extra);
    http_access_log(r, 101, 0);
    r->h->requests++;
    /* the stream behind the upgrade counts itself (c2s.c) */
    if (r->counted)
        pv_server_conn_closed(r->h->srv, pv_conn_peer_ip(r->conn));
    r->counted = 0;
    r->responded = 1;
    r->upgraded = 1;
    r->up_handler = h;
    r->up_ud = ud;
    /* the parser is still running: the handover completes in on_data */
    pv_conn_set_handler(r->conn, h, ud);
    return r->conn;
}

/* --- request accessors ------------------------------------------------- */

const pv_http_request_t *
pv_http_req_head(const pv_http_req_t *r)
{
    return r->req;
}

const char *
pv_http_req_path(const pv_http_req_t *r)
{
    return r->path ? r->path : "";
}

const char *
pv_http_req_body(const pv_http_req_t *r, size_t *len)
{
    if (len != NULL)
        *len = r->body.len;
    return r->body.data ? r->body.data : "";
}

const char *
pv_http_req_method(const pv_http_req_t *r)
{
    return r->req ? r->req->method : "";
}

const char *
pv_http_req_host(const pv_http_req_t *r, char *buf, size_t size)
{
    if (r->req == NULL)
        return NULL;
    return pv_http_host_normalize(pv_http_request_header(r->req, "Host"),
                                  buf, size);
}

const char *
pv_http_req_header(const pv_http_req_t *r, const char *name)
{
    return r->req ? pv_http_request_header(r->req, name) : NULL;
}

int
pv_http_req_param(const pv_http_req_t *r, const char *name, char *out,
                  size_t size)
{
    if (r->req == NULL)
        return PV_NOTFOUND;
    return pv_http_query_get(r->req->query, name, out, size);
}

uint64_t
pv_http_req_content_length(const pv_http_req_t *r, int *is_chunked)
{
    int chunked = r->req != NULL && r->req->is_chunked;

    if (is_chunked != NULL)
        *is_chunked = chunked;
    return r->req != NULL && !chunked ? r->req->content_length : 0;
}

int
pv_http_port(pv_server_t *srv, int tls)
{
    const pv_gen_t *g = srv->boot_gen ? srv->boot_gen : srv->gen;
    size_t i;

    if (g == NULL || srv->listeners == NULL)
        return 0;
    for (i = 0; i < srv->n_listeners && i < g->cfg->n_listeners; i++) {
        pv_listen_kind_t k = g->cfg->listeners[i].kind;

        if (srv->listeners[i] != NULL &&
            k == (tls ? PV_LISTEN_HTTPS : PV_LISTEN_HTTP))
            return pv_listener_port(srv->listeners[i]);
    }
    return 0;
}

const char *
pv_http_data_dir(pv_server_t *srv)
{
    const pv_gen_t *g = srv->boot_gen ? srv->boot_gen : srv->gen;

    return g->cfg->global.storage_path;
}

const char *
pv_http_req_peer_ip(const pv_http_req_t *r)
{
    return pv_conn_peer_ip(r->conn);
}

int
pv_http_req_is_tls(const pv_http_req_t *r)
{
    return r->is_tls;
}

pv_conn_t *
pv_http_req_conn(const pv_http_req_t *r)
{
    return r->conn;
}

pv_server_t *
pv_http_req_server(const pv_http_req_t *r)
{
    return r->h->srv;
}

size_t
pv_http_n_conns(const pv_http_t *h)
{
    return h->n_conns;
}

/* --- connection lifecycle -------------------------------------------- */

static void
http_unlink(pv_http_req_t *r)
{
    pv_http_t *h = r->h;

    if (r->prev)
        r->prev->next = r->next;
    else
        h->conns = r->next;
    if (r->next)
        r->next->prev = r->prev;
    r->prev = r->next = NULL;
    h->n_conns--;
}

static void
http_free(pv_http_req_t *r)
{
    if (r->timer != NULL)
        pv_timer_cancel(r->timer);
    pv_http_parser_free(r->p);
    pv_buf_free(&r->body);
    pv_buf_free(&r->extra);
    free(r->path);
    free(r);
}

static void
http_timeout(void *arg)
{
    pv_http_req_t *r = arg;

    r->timer = NULL;
    if (r->closing)
        return;
    r->closing = 1;
    if (r->file != NULL || r->sink != NULL) {
        /* a stalled download or upload: nothing sensible to answer */
        pv_conn_abort(r->conn, "request timeout");
        return;
    }
    if (pv_http_parser_is_idle(r->p)) {
        /* an idle keep-alive connection: just close it */
        pv_conn_close(r->conn);
        return;
    }
    r->keep_alive = 0;
    r->req = NULL;
    r->route = NULL;
    http_send(r, 408, "text/plain; charset=utf-8", "408 Request Timeout\n",
              20, 1);
    pv_conn_close(r->conn);
}

static void
http_arm_timer(pv_http_req_t *r)
{
    pv_duration_t t = http_conf(r->h)->http_request_timeout;

    if (t == PV_DURATION_OFF || t == 0)
        return;
    if (r->timer == NULL)
        r->timer = pv_timer_add(r->h->srv->loop, t, 0, http_timeout, r);
    else
        pv_timer_again(r->timer, t);
}

static void
http_new(pv_server_t *srv, pv_conn_t *conn, int tls)
{
    pv_http_t *h = srv->http;
    const pv_core_conf_t *cc = PV_GLOBAL(srv);
    pv_http_req_t *r = pv_xcalloc(1, sizeof(*r));
    pv_http_limits_t lim;

    r->h = h;
    r->conn = conn;
    r->is_tls = tls ? 1 : 0;
    memset(&lim, 0, sizeof(lim));
    lim.max_header_bytes = cc->http_max_header_size;
    lim.max_body = cc->http_max_request_size == PV_SIZE_OFF
                       ? UINT64_MAX : cc->http_max_request_size;
    r->next = h->conns;
    if (h->conns)
        h->conns->prev = r;
    h->conns = r;
    h->n_conns++;
    /* HTTP connections share max_connections(_per_ip) with streams */
    if (pv_server_conn_opened(srv, pv_conn_peer_ip(conn), &r->reject)
        == PV_OK)
        r->counted = 1;
    pv_conn_set_handler(conn, &http_handler, r);
    r->p = pv_http_parser_new(&http_parser_cb, r, &lim);
    http_arm_timer(r);
}

void
pv_http_accept(void *arg, pv_conn_t *conn)
{
    pv_server_t *srv = arg;

    if (srv->http == NULL || srv->shutting_down) {
        pv_conn_abort(conn, "http not available");
        return;
    }
    http_new(srv, conn, 0);
}

void
pv_http_accept_tls(void *arg, pv_conn_t *conn)
{
    pv_server_t *srv = arg;
    pv_tls_ctx_t *ctx;

    if (srv->http == NULL || srv->shutting_down) {
        pv_conn_abort(conn, "http not available");
        return;
    }
    ctx = pv_server_sni(srv, NULL);
    http_new(srv, conn, 1);
    if (ctx == NULL || pv_conn_start_tls_server(conn, ctx) != PV_OK) {
        pv_log(PV_LOG_ERROR, "http", "no certificate for https");
        pv_conn_abort(conn, "no certificate");
    }
}

void
pv_http_shutdown(pv_http_t *h)
{
    pv_http_req_t *r;

    if (h == NULL)
        return;
    for (r = h->conns; r != NULL; r = r->next) {
        if (r->timer != NULL) {
            pv_timer_cancel(r->timer);
            r->timer = NULL;
        }
        r->keep_alive = 0;
        /* a deferred request is answered by its owner, which is being
         * shut down too (BOSH sends terminate); then it closes */
        if (r->deferred && r->file == NULL)
            continue;
        r->closing = 1;
        pv_conn_close(r->conn);
    }
}

static void
http_on_tls_done(pv_conn_t *conn, int ok, const char *err)
{
    pv_http_req_t *r = pv_conn_data(conn);

    if (!ok)
        pv_log(PV_LOG_DEBUG, "http", "%s: tls failed: %s",
               pv_conn_peer_ip(conn), err ? err : "?");
    else
        r->is_tls = 1;
}

static void
http_on_close(pv_conn_t *conn, const char *reason)
{
    pv_http_req_t *r = pv_conn_data(conn);

    pv_log(PV_LOG_DEBUG, "http", "%s: closed%s%s", pv_conn_peer_ip(conn),
           reason ? ": " : "", reason ? reason : "");
    if (r->counted)
        pv_server_conn_closed(r->h->srv, pv_conn_peer_ip(conn));
    http_unlink(r);
    if (r->gone != NULL)
        r->gone(r->gone_arg, r);
    r->gone = NULL;
    if (r->sink != NULL)
        http_sink_detach(r->sink);
    if (r->file != NULL)
        http_file_detach(r->file);
    http_free(r);
}

static void
http_on_drained(pv_conn_t *conn)
{
    pv_http_req_t *r = pv_conn_data(conn);

    if (r != NULL && r->file != NULL)
        http_file_pump(r->file);
}

/* --- bodies into files ------------------------------------------------ */

/* An upload on its way to disk. Writes run one at a time on the loop's
 * thread pool (pv_loop_work) from `inflight` while new body bytes gather
 * in `pending`; past SINK_HIGH pending bytes the connection stops being
 * read until the disk catches up. The sink outlives its request while a
 * write is on the pool (r is NULL then) and cleans up after it. */
typedef struct http_sink_s {
    pv_http_req_t *r;           /* NULL once the connection is gone */
    pv_loop_t *loop;
    pv_http_t *h;
    int fd;
    char *tmp_path, *final_path;
    uint64_t max, received, written;
    pv_buf_t pending, inflight;
    int err;                    /* errno of the last pool job, 0 if none */
    unsigned busy : 1;          /* a job is on the pool */
    unsigned eof : 1;           /* the body is complete */
    unsigned paused : 1;        /* we paused the connection */
    unsigned finishing : 1;     /* the fsync/rename job was submitted */
    unsigned renamed : 1;
    pv_http_file_done_fn done;
    void *arg;
} http_sink_t;

static void
sink_free(http_sink_t *s)
{
    if (s->r != NULL)
        s->r->sink = NULL;
    if (s->fd >= 0)
        close(s->fd);
    if (!s->renamed)
        unlink(s->tmp_path);
    free(s->tmp_path);
    free(s->final_path);
    pv_buf_free(&s->pending);
    pv_buf_free(&s->inflight);
    free(s);
}

static void
sink_write_work(void *arg)
{
    http_sink_t *s = arg;
    size_t off = 0;

    s->err = 0;
    while (off < s->inflight.len) {
        ssize_t n = write(s->fd, s->inflight.data + off,
                          s->inflight.len - off);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            s->err = n < 0 ? errno : EIO;
            return;
        }
        off += (size_t)n;
    }
}

/* The durability point of an upload: data on disk, then the name. */
static void
sink_finish_work(void *arg)
{
    http_sink_t *s = arg;

    s->err = 0;
    if (fsync(s->fd) != 0)
        s->err = errno;
    if (close(s->fd) != 0 && s->err == 0)
        s->err = errno;
    s->fd = -1;
    if (s->err == 0) {
        if (rename(s->tmp_path, s->final_path) != 0)
            s->err = errno;
        else
            s->renamed = 1;
    }
}

static void sink_job_done(void *arg, int cancelled);

/* Submits the next pool job if one is due. */
static void
sink_kick(http_sink_t *s)
{
    if (s->busy)
        return;
    if (s->pending.len > 0) {
        pv_buf_t t = s->inflight;

        s->inflight = s->pending;
        s->pending = t;
        s->pending.len = 0;
        s->busy = 1;
        if (pv_loop_work(s->loop, sink_write_work, sink_job_done, s)
            != PV_OK) {
            s->busy = 0;
            s->err = EAGAIN;
        }
    } else if (s->eof && !s->finishing) {
        s->finishing = 1;
        s->busy = 1;
        if (pv_loop_work(s->loop, sink_finish_work, sink_job_done, s)
            != PV_OK) {
            s->busy = 0;
            s->err = EAGAIN;
        }
    }
}

static void
sink_fail(http_sink_t *s, int status, const char *why)
{
    pv_http_req_t *r = s->r;
    pv_http_file_done_fn done = s->done;
    void *arg = s->arg;

    pv_log(PV_LOG_WARN, "http", "%s: upload to %s failed: %s",
           r ? pv_conn_peer_ip(r->conn) : "-", s->final_path, why);
    if (r == NULL) {
        sink_free(s);
        return;
    }
    r->gone = NULL;
    if (!r->responded)
        pv_http_respond_status(r, status);
    r->closing = 1;
    pv_conn_close(r->conn);
    if (s->busy) {
        /* the job frees it */
        s->r = NULL;
        r->sink = NULL;
    } else {
        sink_free(s);
    }
    done(arg, r, PV_ERROR, 0);
}

static void
sink_job_done(void *arg, int cancelled)
{
    http_sink_t *s = arg;
    pv_http_req_t *r = s->r;

    s->busy = 0;
    s->inflight.len = 0;
    if (cancelled || r == NULL) {
        /* the client left (or the loop is going away) */
        if (s->renamed)
            unlink(s->final_path);
        s->renamed = 0;
        sink_free(s);
        return;
    }
    if (s->err != 0) {
        sink_fail(s, 500, strerror(s->err));
        return;
    }
    if (s->finishing) {
        pv_http_file_done_fn done = s->done;
        void *darg = s->arg;
        uint64_t size = s->received;

        r->h->files_in++;
        r->h->file_bytes_in += size;
        sink_free(s);
        /* r stays deferred: the owner answers (after its commit) */
        done(darg, r, PV_OK, size);
        return;
    }
    if (s->paused && s->pending.len < SINK_LOW) {
        s->paused = 0;
        if (!r->deferred)
            pv_conn_resume(r->conn);
    }
    sink_kick(s);
}

static int
http_sink_feed(http_sink_t *s, const char *data, size_t len)
{
    if (s->received + len > s->max) {
        sink_fail(s, 413, "body larger than announced");
        return 1;
    }
    s->received += len;
    pv_buf_append(&s->pending, data, len);
    if (s->pending.len >= SINK_HIGH && !s->paused && s->r != NULL) {
        /* backpressure: the rest of this read is still parsed, then the
         * socket waits until the pool has written */
        s->paused = 1;
        pv_conn_pause(s->r->conn);
    }
    sink_kick(s);
    return 0;
}

static void
http_sink_eof(http_sink_t *s)
{
    pv_http_req_t *r = s->r;

    s->eof = 1;
    /* the request waits for the disk and then for its owner */
    r->deferred = 1;
    if (r->timer != NULL) {
        pv_timer_cancel(r->timer);
        r->timer = NULL;
    }
    pv_conn_pause(r->conn);
    sink_kick(s);
}

static void
http_sink_detach(http_sink_t *s)
{
    s->r = NULL;
    if (!s->busy)
        sink_free(s);
}

int
pv_http_recv_file(pv_http_req_t *r, const char *tmp_path,
                  const char *final_path, uint64_t max,
                  pv_http_file_done_fn done, pv_http_gone_fn gone, void *arg)
{
    http_sink_t *s;
    int fd;

    if (r->responded || r->sink != NULL || r->file != NULL ||
        r->req == NULL)
        return PV_ERROR;
    fd = open(tmp_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        pv_log_errno("http", "cannot create %s", tmp_path);
        return PV_ERROR;
    }
    s = pv_xcalloc(1, sizeof(*s));
    s->r = r;
    s->loop = r->h->srv->loop;
    s->h = r->h;
    s->fd = fd;
    s->tmp_path = pv_xstrdup(tmp_path);
    s->final_path = pv_xstrdup(final_path);
    s->max = max;
    s->done = done;
    s->arg = arg;
    r->sink = s;
    r->gone = gone;
    r->gone_arg = arg;
    pv_http_parser_set_max_body(r->p, max);
    /* RFC 9110 §10.1.1: the client waits for this before the body */
    if (r->req->expect_continue && r->in_body) {
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";

        pv_conn_write(r->conn, cont, sizeof(cont) - 1);
    }
    if (!r->in_body)
        http_sink_eof(s);   /* an empty body: nothing more will come */
    return PV_OK;
}

/* --- files as bodies ---------------------------------------------------- */

/* A download: reads of FILE_CHUNK on the pool, each written to the
 * connection once its queue is below FILE_HIGH (on_drained resumes). */
typedef struct http_file_s {
    pv_http_req_t *r;           /* NULL once the connection is gone */
    pv_loop_t *loop;
    int fd;
    uint64_t off, left;
    char *buf;
    ssize_t got;
    int err;
    int busy;
} http_file_t;

static void
file_free(http_file_t *f)
{
    if (f->r != NULL)
        f->r->file = NULL;
    if (f->fd >= 0)
        close(f->fd);
    free(f->buf);
    free(f);
}

static void
file_read_work(void *arg)
{
    http_file_t *f = arg;
    size_t n = f->left < FILE_CHUNK ? (size_t)f->left : FILE_CHUNK;

    do {
        f->got = pread(f->fd, f->buf, n, (off_t)f->off);
    } while (f->got < 0 && errno == EINTR);
    f->err = f->got < 0 ? errno : 0;
}

static void
file_read_done(void *arg, int cancelled)
{
    http_file_t *f = arg;
    pv_http_req_t *r = f->r;

    f->busy = 0;
    if (cancelled || r == NULL) {
        file_free(f);
        return;
    }
    if (f->got <= 0) {
        /* Content-Length is out already: only closing tells the client */
        pv_log(PV_LOG_WARN, "http", "%s: read failed: %s",
               pv_conn_peer_ip(r->conn),
               f->got < 0 ? strerror(f->err) : "file shrank");
        file_free(f);
        r->closing = 1;
        pv_conn_abort(r->conn, "file read failed");
        return;
    }
    f->off += (uint64_t)f->got;
    f->left -= (uint64_t)f->got;
    if (pv_conn_write(r->conn, f->buf, (size_t)f->got) != PV_OK) {
        file_free(f);
        return;
    }
    http_arm_timer(r);
    http_file_pump(f);
}

static void
http_file_pump(http_file_t *f)
{
    pv_http_req_t *r = f->r;

    if (f->busy || r == NULL)
        return;
    if (f->left == 0) {
        file_free(f);
        if (r->timer != NULL) {
            pv_timer_cancel(r->timer);
            r->timer = NULL;
        }
        http_finish_deferred(r);
        return;
    }
    if (pv_conn_queued(r->conn) >= FILE_HIGH)
        return;                 /* http_on_drained calls again */
    f->busy = 1;
    if (pv_loop_work(f->loop, file_read_work, file_read_done, f) != PV_OK) {
        f->busy = 0;
        file_free(f);
        r->closing = 1;
        pv_conn_abort(r->conn, "cannot queue a file read");
    }
}

static void
http_file_detach(http_file_t *f)
{
    f->r = NULL;
    if (!f->busy)
        file_free(f);
}

int
pv_http_send_file(pv_http_req_t *r, const char *path,
                  const char *content_type)
{
    struct stat st;
    uint64_t first = 0, last = 0, count;
    int fd, status = 200;
    char buf[96];
    http_file_t *f;

    if (r->responded || r->file != NULL || r->req == NULL)
        return PV_ERROR;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return PV_NOTFOUND;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return PV_NOTFOUND;
    }
    if (content_type == NULL)
        content_type = "application/octet-stream";
    pv_http_add_header(r, "Accept-Ranges", "bytes");
    count = (uint64_t)st.st_size;
    switch (pv_http_range_parse(pv_http_request_header(r->req, "Range"),
                                (uint64_t)st.st_size, &first, &last)) {
    case PV_HTTP_RANGE_PARTIAL:
        status = 206;
        count = last - first + 1;
        snprintf(buf, sizeof(buf), "bytes %llu-%llu/%llu",
                 (unsigned long long)first, (unsigned long long)last,
                 (unsigned long long)st.st_size);
        pv_http_add_header(r, "Content-Range", buf);
        break;
    case PV_HTTP_RANGE_UNSATISFIABLE:
        close(fd);
        snprintf(buf, sizeof(buf), "bytes */%llu",
                 (unsigned long long)st.st_size);
        pv_http_add_header(r, "Content-Range", buf);
        pv_http_respond_status(r, 416);
        return PV_OK;
    default:
        break;
    }
    /* the head now, with the length the body will have */
    http_send(r, status, content_type, NULL, count, 0);
    if (strcmp(r->req->method, "HEAD") == 0 || count == 0) {
        close(fd);
        if (r->in_body)
            http_early_answer(r);
        return PV_OK;
    }
    f = pv_xcalloc(1, sizeof(*f));
    f->r = r;
    f->loop = r->h->srv->loop;
    f->fd = fd;
    f->off = first;
    f->left = count;
    f->buf = pv_xmalloc(FILE_CHUNK);
    r->file = f;
    /* like a deferred answer: the next request waits for this body */
    r->deferred = 1;
    r->gone = NULL;
    if (r->in_body)
        r->keep_alive = 0;
    pv_conn_pause(r->conn);
    http_arm_timer(r);
    http_file_pump(f);
    return PV_OK;
}

/* --- requests ---------------------------------------------------------- */

static void
http_preflight(pv_http_req_t *r)
{
    pv_buf_t allow = {0};
    const char *hdrs;

    route_allow_header(r->route, &allow);
    pv_http_add_header(r, "Access-Control-Allow-Methods", allow.data);
    hdrs = pv_http_request_header(r->req, "Access-Control-Request-Headers");
    pv_http_add_header(r, "Access-Control-Allow-Headers",
                       hdrs != NULL && strlen(hdrs) < 512
                           ? hdrs : "Content-Type, Authorization");
    pv_http_add_header(r, "Access-Control-Max-Age", "86400");
    pv_buf_free(&allow);
    pv_http_respond(r, 204, NULL, NULL, 0);
}

static void
http_dispatch(pv_http_req_t *r)
{
    const pv_http_request_t *q = r->req;
    char host[256];

    if (r->reject != NULL) {
        r->keep_alive = 0;
        pv_http_respond_status(r, 503);
        return;
    }
    if (r->path == NULL) {
        pv_http_respond_status(r, 400);
        return;
    }
    r->route = http_find_route(r->h, pv_http_req_host(r, host,
                                                      sizeof(host)),
                               r->path);
    if (r->route == NULL) {
        pv_http_respond_status(r, 404);
        return;
    }
    r->cors = (r->route->flags & PV_HTTP_CORS) != 0;
    if (strcmp(q->method, "OPTIONS") == 0 &&
        (r->route->flags & PV_HTTP_CORS)) {
        http_preflight(r);
        return;
    }
    if (!route_allows(r->route, q->method)) {
        pv_buf_t allow = {0};

        route_allow_header(r->route, &allow);
        pv_http_add_header(r, "Allow", allow.data);
        pv_buf_free(&allow);
        pv_http_respond_status(r, 405);
        return;
    }
    r->route->handler(r->route->arg, r);
    if (!r->responded && !r->deferred && r->sink == NULL) {
        pv_log(PV_LOG_ERROR, "http", "handler for %s left %s unanswered",
               r->route->prefix, r->path);
        pv_http_respond_status(r, 500);
    }
}

static int
http_p_headers(void *ud, const pv_http_request_t *req)
{
    pv_http_req_t *r = ud;
    const pv_core_conf_t *cc = http_conf(r->h);
    size_t path_len;

    r->req = req;
    r->route = NULL;
    r->responded = 0;
    r->dispatched = 0;
    r->cors = 0;
    r->body_seen = 0;
    r->in_body = req->is_chunked || req->content_length > 0;
    r->keep_alive = req->keep_alive && !r->h->srv->shutting_down;
    pv_buf_free(&r->body);
    pv_buf_free(&r->extra);
    free(r->path);
    path_len = req->path_len;
    r->path = pv_xmalloc(path_len + 1);
    if (pv_http_path_decode(req->target, path_len, r->path, NULL)
        != PV_OK) {
        free(r->path);
        r->path = NULL;
    }
    if (r->path != NULL && r->reject == NULL) {
        char host[256];
        const http_route_t *rt =
            http_find_route(r->h, pv_http_req_host(r, host, sizeof(host)),
                            r->path);

        if (rt != NULL && (rt->flags & PV_HTTP_STREAM)) {
            /* the handler sees the head before any body byte: it can
             * refuse (403, 413) or take the body (pv_http_recv_file) */
            r->dispatched = 1;
            http_dispatch(r);
            return r->closing ? 1 : 0;
        }
    }
    /* RFC 9110 §10.1.1: say 100 only for a body we will read */
    if (req->expect_continue && !req->is_chunked &&
        (cc->http_max_request_size == PV_SIZE_OFF ||
         req->content_length <= cc->http_max_request_size)) {
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        pv_conn_write(r->conn, cont, sizeof(cont) - 1);
    }
    return 0;
}

static int
http_p_body(void *ud, const char *data, size_t len)
{
    pv_http_req_t *r = ud;

    r->body_seen += len;
    if (r->responded || r->closing)
        return 0;           /* refused early: discarded */
    if (r->sink != NULL) {
        http_arm_timer(r);  /* an upload in progress is not idle */
        return http_sink_feed(r->sink, data, len);
    }
    pv_buf_append(&r->body, data, len);
    return 0;
}

static int
http_p_complete(void *ud, const pv_http_request_t *req)
{
    pv_http_req_t *r = ud;

    r->req = req;
    r->in_body = 0;
    if (!r->dispatched)
        http_dispatch(r);
    else if (r->sink != NULL && !r->responded && !r->sink->eof)
        http_sink_eof(r->sink);
    pv_buf_free(&r->body);
    if (r->upgraded || r->deferred)
        return 1;
    http_arm_timer(r);
    /* stop after a response that ends the connection */
    return r->keep_alive ? 0 : 1;
}

static void
http_on_data(pv_conn_t *conn, const char *data, size_t len)
{
    pv_http_req_t *r = pv_conn_data(conn);

    while (len > 0 && !r->closing) {
        size_t used = 0;
        int rc = pv_http_parser_feed(r->p, data, len, &used);

        if (rc == PV_OK)
            return;
        if (rc == PV_ERROR) {
            int status = pv_http_parser_status(r->p);

            pv_log(PV_LOG_DEBUG, "http", "%s: bad request: %s",
                   pv_conn_peer_ip(conn), pv_http_parser_error(r->p));
            if (r->responded && r->in_body) {
                /* answered already (an upload refused after its head) */
                r->closing = 1;
                pv_conn_close(conn);
                return;
            }
            /* RFC 9112 §9.6: answer, then close */
            r->req = NULL;
            r->route = NULL;
            r->keep_alive = 0;
            pv_buf_free(&r->extra);
            http_send(r, status ? status : 400, "text/plain; charset=utf-8",
                      pv_http_status_reason(status ? status : 400),
                      strlen(pv_http_status_reason(status ? status : 400)),
                      1);
            r->closing = 1;
            pv_conn_close(conn);
            return;
        }
        data += used;
        len -= used;
        if (r->deferred) {
            /* pipelining past a request answered later is not kept:
             * the connection ends after that answer */
            if (len > 0)
                r->keep_alive = 0;
            return;
        }
        if (r->upgraded) {
            const pv_conn_handler_t *h = r->up_handler;

            http_unlink(r);
            http_free(r);
            if (len > 0 && h->on_data != NULL)
                h->on_data(conn, data, len);
            return;
        }
        if (!r->keep_alive) {
            r->closing = 1;
            pv_conn_close(conn);
            return;
        }
    }
}

/* --- access lists ------------------------------------------------------ */

/* 16 bytes, IPv4 as ::ffff:a.b.c.d; returns the prefix bits of the
 * family (32 + 96 for IPv4) or -1. */
static int
ip_parse(const char *s, unsigned char out[16], int *is_v4)
{
    struct in_addr a4;

    if (inet_pton(AF_INET, s, &a4) == 1) {
        memset(out, 0, 10);
        out[10] = out[11] = 0xff;
        memcpy(out + 12, &a4, 4);
        *is_v4 = 1;
        return 0;
    }
    if (inet_pton(AF_INET6, s, out) == 1) {
        static const unsigned char mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0,
                                                  0, 0, 0xff, 0xff };
        *is_v4 = memcmp(out, mapped, 12) == 0;
        return 0;
    }
    return -1;
}

static int
ip_entry_match(const unsigned char ip[16], const char *entry)
{
    char buf[64];
    const char *slash = strchr(entry, '/');
    unsigned char net[16];
    int is_v4, bits, i;
    size_t n = slash ? (size_t)(slash - entry) : strlen(entry);

    if (n >= sizeof(buf))
        return 0;
    memcpy(buf, entry, n);
    buf[n] = '\0';
    if (ip_parse(buf, net, &is_v4) != 0)
        return 0;
    bits = 128;
    if (slash != NULL) {
        char *end;
        long v = strtol(slash + 1, &end, 10);

        if (slash[1] == '\0' || *end != '\0' || v < 0 ||
            v > (is_v4 ? 32 : 128))
            return 0;
        bits = (int)v + (is_v4 ? 96 : 0);
    }
    for (i = 0; i < bits / 8; i++)
        if (ip[i] != net[i])
            return 0;
    if (bits % 8 != 0) {
        unsigned char mask = (unsigned char)(0xff << (8 - bits % 8));
        if ((ip[i] & mask) != (net[i] & mask))
            return 0;
    }
    return 1;
}

int
pv_http_ip_allowed(const char *ip, char *const *allow)
{
    unsigned char a[16];
    int is_v4;

    if (ip == NULL || allow == NULL || ip_parse(ip, a, &is_v4) != 0)
        return 0;
    for (; *allow != NULL; allow++)
        if (ip_entry_match(a, *allow))
            return 1;
    return 0;
}

/* --- /metrics (Prometheus text format 0.0.4) -------------------------- */

static void
metric_head(pv_buf_t *b, const char *name, const char *type,
            const char *help)
{
    pv_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static size_t
process_rss(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long size = 0, resident = 0;
    long page = sysconf(_SC_PAGESIZE);

    if (f == NULL)
        return 0;
    if (fscanf(f, "%lu %lu", &size, &resident) != 2)
        resident = 0;
    fclose(f);
    return (size_t)resident * (size_t)(page > 0 ? page : 4096);
}

static void
http_metrics(void *arg, pv_http_req_t *r)
{
    pv_http_t *h = arg;
    pv_server_t *srv = h->srv;
    static const char *const kinds[] = { "message", "presence", "iq",
                                         "other" };
    pv_buf_t b = {0};
    size_t tcp = 0, ws = 0, bosh = pv_bosh_n_sessions(h->bosh), i;

    if (!pv_http_ip_allowed(pv_conn_peer_ip(r->conn),
                            http_conf(h)->http_metrics_allow)) {
        pv_http_respond_status(r, 403);
        return;
    }
    pv_c2s_count(srv, &tcp, &ws);
    ws = ws > bosh ? ws - bosh : 0;     /* both are framed streams */
    metric_head(&b, "palaver_connections", "gauge",
                "Open connections by kind.");
    pv_buf_printf(&b, "palaver_connections{kind=\"c2s\"} %zu\n", tcp);
    pv_buf_printf(&b, "palaver_connections{kind=\"websocket\"} %zu\n", ws);
    pv_buf_printf(&b, "palaver_connections{kind=\"bosh\"} %zu\n", bosh);
    pv_buf_printf(&b, "palaver_connections{kind=\"http\"} %zu\n",
                  h->n_conns);
    pv_metrics_s2s_connections(srv, &b);
    metric_head(&b, "palaver_stanzas_in_total", "counter",
                "Stanzas received from clients by kind.");
    for (i = 0; i < 4; i++)
        pv_buf_printf(&b, "palaver_stanzas_in_total{type=\"%s\"} %llu\n",
                      kinds[i],
                      (unsigned long long)srv->metrics.stanzas_in[i]);
    metric_head(&b, "palaver_stanzas_out_total", "counter",
                "Stanzas sent to clients by kind.");
    for (i = 0; i < 4; i++)
        pv_buf_printf(&b, "palaver_stanzas_out_total{type=\"%s\"} %llu\n",
                      kinds[i],
                      (unsigned long long)srv->metrics.stanzas_out[i]);
    metric_head(&b, "palaver_auth_failures_total", "counter",
                "Failed SASL authentications.");
    pv_buf_printf(&b, "palaver_auth_failures_total %llu\n",
                  (unsigned long long)srv->metrics.auth_failures);
    metric_head(&b, "palaver_http_requests_total", "counter",
                "HTTP requests answered.");
    pv_buf_printf(&b, "palaver_http_requests_total %llu\n",
                  (unsigned long long)h->requests + 1);
    metric_head(&b, "palaver_http_uploads_total", "counter",
                "Request bodies stored as files (HTTP upload).");
    pv_buf_printf(&b, "palaver_http_uploads_total %llu\n",
                  (unsigned long long)h->files_in);
    metric_head(&b, "palaver_http_upload_bytes_total", "counter",
                "Bytes of request bodies stored as files.");
    pv_buf_printf(&b, "palaver_http_upload_bytes_total %llu\n",
                  (unsigned long long)h->file_bytes_in);
    pv_metrics_write(srv, &b);
    metric_head(&b, "process_resident_memory_bytes", "gauge",
                "Resident memory size in bytes.");
    pv_buf_printf(&b, "process_resident_memory_bytes %zu\n", process_rss());
    pv_http_respond(r, 200, "text/plain; version=0.0.4; charset=utf-8",
                    b.data, b.len);
    pv_buf_free(&b);
}

/* --- XEP-0156 host-meta ------------------------------------------------ */

/* The Host header when it is a plain host[:port], else NULL: it goes
 * into a URL we hand out. */
static const char *
http_host(const pv_http_req_t *r)
{
    const char *host = pv_http_request_header(r->req, "Host");
    const char *p;

    if (host == NULL || *host == '\0' || strlen(host) > 255)
        return NULL;
    for (p = host; *p != '\0'; p++)
        if (!(*p >= 'a' && *p <= 'z') && !(*p >= 'A' && *p <= 'Z') &&
            !(*p >= '0' && *p <= '9') && strchr(".-:[]", *p) == NULL)
            return NULL;
    return host;
}

static void
http_host_meta(void *arg, pv_http_req_t *r)
{
    const char *host = http_host(r);
    const char *proto = pv_http_request_header(r->req, "X-Forwarded-Proto");
    /* behind a TLS-terminating proxy the public scheme is the proxy's */
    int secure = r->is_tls || (proto && !strcmp(proto, "https"));
    const char *scheme = secure ? "wss" : "ws";
    const char *hscheme = secure ? "https" : "http";
    int json = strcmp(r->path, "/.well-known/host-meta.json") == 0;
    pv_buf_t b = {0};

    (void)arg;
    if (host == NULL) {
        pv_http_respond_status(r, 400);
        return;
    }
    if (json) {
        pv_buf_printf(&b, "{\"links\":[{\"rel\":\"urn:xmpp:alt-connections:"
                      "websocket\",\"href\":\"%s://%s/xmpp-websocket\"},"
                      "{\"rel\":\"urn:xmpp:alt-connections:xbosh\","
                      "\"href\":\"%s://%s/http-bind\"}]}\n",
                      scheme, host, hscheme, host);
        pv_http_respond(r, 200, "application/json", b.data, b.len);
    } else {
        pv_buf_printf(&b, "<?xml version='1.0' encoding='utf-8'?>\n"
                      "<XRD xmlns='http://docs.oasis-open.org/ns/xri/"
                      "xrd-1.0'>\n  <Link rel='urn:xmpp:alt-connections:"
                      "websocket' href='%s://%s/xmpp-websocket'/>\n"
                      "  <Link rel='urn:xmpp:alt-connections:xbosh' "
                      "href='%s://%s/http-bind'/>\n"
                      "</XRD>\n", scheme, host, hscheme, host);
        pv_http_respond(r, 200, "application/xrd+xml", b.data, b.len);
    }
    pv_buf_free(&b);
}

/* --- the service ------------------------------------------------------- */

pv_http_t *
pv_http_new(pv_server_t *srv)
{
    pv_http_t *h = pv_xcalloc(1, sizeof(*h));

    h->srv = srv;
    pv_http_route(h, "/metrics", "GET", PV_HTTP_EXACT, http_metrics, h);
    pv_http_route(h, "/.well-known/host-meta", "GET",
                  PV_HTTP_EXACT | PV_HTTP_CORS, http_host_meta, h);
    pv_http_route(h, "/.well-known/host-meta.json", "GET",
                  PV_HTTP_EXACT | PV_HTTP_CORS, http_host_meta, h);
    pv_websocket_c2s_register(h);
    h->bosh = pv_bosh_new(h, srv);
    return h;
}

void
pv_http_free(pv_http_t *h)
{
    size_t i;

    if (h == NULL)
        return;
    pv_bosh_free(h->bosh);
    for (i = 0; i < h->n_routes; i++) {
        free(h->routes[i]->host);
        free(h->routes[i]->prefix);
        free(h->routes[i]->methods);
        free(h->routes[i]);
    }
    free(h->routes);
    free(h);
}
