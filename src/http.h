/* src/http.h: the HTTP/1.1 server of palaverd (listener kinds "http" and
 * "https"): connections, keep-alive, limits, responses, CORS, access log,
 * the route table other parts register handlers in, protocol upgrades
 * (WebSocket), deferred answers (BOSH), and the built-in routes
 * (/metrics, XEP-0156 host-meta); the module-facing part (routes per
 * domain, files streamed to and from disk) is declared in
 * <palaver/http.h>. Parsing is http_parse.c's; XMPP over
 * WebSocket is websocket_c2s.c's, over BOSH bosh.c's.
 * Loop thread only. */
#ifndef PV_HTTP_H
#define PV_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include <palaver/defs.h>
#include <palaver/http.h>

#include "conn.h"
#include "http_parse.h"

struct pv_server_s;

typedef struct pv_http_s pv_http_t;
/* The HTTP service of srv (no listener yet: server.c binds them and
 * hands accepted connections to pv_http_accept*). Registers the built-in
 * routes. Aborts on OOM. */
pv_http_t *pv_http_new(struct pv_server_s *srv);
/* Frees h and its routes. Call after pv_http_shutdown() and after the
 * loop has closed the connections (pv_loop_free). NULL is a no-op. */
void pv_http_free(pv_http_t *h);
/* Closes every open HTTP connection gracefully (upgraded ones are not
 * HTTP's any more) and stops their timers; for SIGTERM. */
void pv_http_shutdown(pv_http_t *h);

/* Listener callbacks; arg is the pv_server_t (its http member must be
 * set). The _tls variant starts TLS with the server's default
 * certificate and SNI (pv_server_sni). */
void pv_http_accept(void *arg, pv_conn_t *conn);
void pv_http_accept_tls(void *arg, pv_conn_t *conn);

/* Adds a route: requests whose decoded path is prefix, or starts with
 * prefix followed by '/', go to handler (the longest prefix wins).
 * methods is a space-separated list ("GET POST"); HEAD is implied by
 * GET and answered without a body; other methods get 405 with Allow.
 * prefix and methods are copied. Routes live until pv_http_free();
 * pv_http_unroute() removes the routes registered with arg. */
void pv_http_route(pv_http_t *h, const char *prefix, const char *methods,
                   unsigned flags, pv_http_handler_fn handler, void *arg);
void pv_http_unroute(pv_http_t *h, void *arg);

/* ---- inside a handler ---- */

/* The parsed head, borrowed (see http_parse.h). */
const pv_http_request_t *pv_http_req_head(const pv_http_req_t *r);
/* The underlying connection (for TLS facts); borrowed. */
pv_conn_t *pv_http_req_conn(const pv_http_req_t *r);
struct pv_server_s *pv_http_req_server(const pv_http_req_t *r);

/* Sends 101 Switching Protocols with the added headers and hands the
 * connection over: from now on h (borrowed, must outlive the
 * connection) gets its data and close events with ud. Bytes the client
 * sent after the request reach h->on_data once the handler returns. The
 * HTTP side forgets the connection. Returns the connection. */
pv_conn_t *pv_http_upgrade(pv_http_req_t *r, const pv_conn_handler_t *h,
                           void *ud);

/* ---- pure helpers (unit-tested) ---- */

/* True when ip (text) is inside one of the addresses or CIDR blocks of
 * allow (NULL-terminated, "127.0.0.1", "10.0.0.0/8", "::1",
 * "fd00::/8"). IPv4-mapped IPv6 addresses match IPv4 entries. Malformed
 * entries never match. */
int pv_http_ip_allowed(const char *ip, char *const *allow);

/* The host part of a Host header value ("Upload.Example.org:5281" ->
 * "upload.example.org", "[::1]:80" -> "[::1]"), lower-cased, a trailing
 * dot removed, into buf (size bytes). NULL when host is NULL, empty,
 * malformed (characters outside letters, digits, '.', '-', a bad port or
 * bracket) or does not fit. */
const char *pv_http_host_normalize(const char *host, char *buf,
                                   size_t size);

/* Number of open HTTP connections (not counting upgraded ones). */
size_t pv_http_n_conns(const pv_http_t *h);

#endif
