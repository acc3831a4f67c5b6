/* src/http.h: the HTTP/1.1 server of palaverd (listener kinds "http" and
 * "https"): connections, keep-alive, limits, responses, CORS, access log,
 * the route table other parts register handlers in, protocol upgrades
 * (WebSocket), deferred answers (BOSH), and the built-in routes
 * (/metrics, XEP-0156 host-meta). Parsing is http_parse.c's; XMPP over
 * WebSocket is websocket_c2s.c's, over BOSH bosh.c's.
 * Loop thread only. */
#ifndef PV_HTTP_H
#define PV_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include <palaver/defs.h>

#include "conn.h"
#include "http_parse.h"

struct pv_server_s;

typedef struct pv_http_s pv_http_t;
/* One HTTP connection and the request it is answering. */
typedef struct pv_http_req_s pv_http_req_t;

/* Called once a request has been read whole (head and body). The handler
 * answers before returning (pv_http_respond(), pv_http_upgrade()) or
 * defers (pv_http_defer()); a request left unanswered gets 500.
 * Everything borrowed from r is valid only during the call. */
typedef void (*pv_http_handler_fn)(void *arg, pv_http_req_t *r);

/* Route flags */
#define PV_HTTP_CORS 0x1   /* Access-Control-Allow-Origin: * and answers
                            * to CORS preflights (OPTIONS) */
#define PV_HTTP_EXACT 0x2  /* path must equal the prefix */

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
/* The percent-decoded path ("/xmpp-websocket"), NUL-terminated. */
const char *pv_http_req_path(const pv_http_req_t *r);
/* The body read so far (whole at handler time); may be empty. */
const char *pv_http_req_body(const pv_http_req_t *r, size_t *len);
const char *pv_http_req_peer_ip(const pv_http_req_t *r);
/* True when the request came over TLS that palaverd terminates. */
int pv_http_req_is_tls(const pv_http_req_t *r);
/* The underlying connection (for TLS facts); borrowed. */
pv_conn_t *pv_http_req_conn(const pv_http_req_t *r);
struct pv_server_s *pv_http_req_server(const pv_http_req_t *r);

/* Adds a response header line (name and value copied; no CR/LF
 * allowed: such a header is dropped). Call before responding. */
void pv_http_add_header(pv_http_req_t *r, const char *name,
                        const char *value);
/* Sends the response: status line, Content-Length, Content-Type (when
 * not NULL), CORS when the route asked for it, added headers, then body
 * (not for HEAD, 204 and 304). body is copied. Logs the access line.
 * A second call for the same request is ignored. */
void pv_http_respond(pv_http_req_t *r, int status, const char *content_type,
                     const void *body, size_t len);
/* Answers later: the handler returns without responding and calls
 * pv_http_respond() on r afterwards (from any loop callback). Reading
 * the connection pauses meanwhile and the request timeout is off, so the
 * caller bounds the wait. If the connection closes first, gone(arg, r)
 * is called and r is invalid after it returns. Bytes pipelined behind a
 * deferred request are dropped and the connection closes after its
 * answer. */
typedef void (*pv_http_gone_fn)(void *arg, pv_http_req_t *r);
void pv_http_defer(pv_http_req_t *r, pv_http_gone_fn gone, void *arg);
/* A short text/plain response with the reason phrase as its body. */
void pv_http_respond_status(pv_http_req_t *r, int status);

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

/* Number of open HTTP connections (not counting upgraded ones). */
size_t pv_http_n_conns(const pv_http_t *h);

#endif
