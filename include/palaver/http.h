/* include/palaver/http.h: the HTTP/1.1 server of palaverd as modules see
 * it: routes per served domain, request accessors, responses, and bodies
 * streamed to and from files on disk (uploads, downloads with Range) with
 * backpressure, so a file never sits whole in memory. Implemented by
 * src/http.c. Loop thread only. */
#ifndef PALAVER_HTTP_H
#define PALAVER_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include <palaver/defs.h>
#include <palaver/event.h>

/* One HTTP connection and the request it is answering. */
typedef struct pv_http_req_s pv_http_req_t;

/* A route handler. Ordinary routes: called once the request has been read
 * whole. PV_HTTP_STREAM routes: called as soon as the head is read, before
 * any body byte: the handler answers at once (refusing: the body is then
 * discarded or the connection closed), takes the body with
 * pv_http_recv_file(), sends a file with pv_http_send_file(), or defers
 * (pv_http_defer()). A request left without any of these gets 500.
 * Everything borrowed from r is valid only during the call. */
typedef void (*pv_http_handler_fn)(void *arg, pv_http_req_t *r);
/* The connection of a deferred request (or of a body being received)
 * closed before the answer: r is invalid once this returns. */
typedef void (*pv_http_gone_fn)(void *arg, pv_http_req_t *r);

/* Route flags */
#define PV_HTTP_CORS 0x1   /* Access-Control-Allow-Origin: * and answers
                            * to CORS preflights (OPTIONS) */
#define PV_HTTP_EXACT 0x2  /* path must equal the prefix */
#define PV_HTTP_STREAM 0x4 /* handler runs after the head (see above) */

/* Adds a route served for domain h: requests whose decoded path is prefix
 * or below it ("/upload/" matches "/upload/x/y") go to handler; the
 * longest prefix wins, and among equal prefixes the route whose domain is
 * the request's Host (port ignored) is preferred; when no route's domain
 * matches (a proxy rewriting Host) the first one registered answers.
 * methods is a space-separated list ("GET PUT"); HEAD is implied by GET;
 * others get 405 with Allow. Strings are copied. Works before the
 * listeners are bound. Remove with pv_http_unregister() (host_fini). */
void pv_http_register(pv_host_t *h, const char *prefix, const char *methods,
                      unsigned flags, pv_http_handler_fn handler, void *arg);
/* Removes every route of h registered with arg. Requests of those routes
 * still deferred or receiving a body are ended now: their connection is
 * aborted and their gone callback runs first. */
void pv_http_unregister(pv_host_t *h, void *arg);

/* The bound port of the server's first "https" (tls = 1) or "http"
 * (tls = 0) listener, or 0 when there is none (or not bound yet). */
int pv_http_port(pv_server_t *srv, int tls);
/* The server's storage_path directory (absolute or relative to the
 * working directory); borrowed, valid for the process lifetime. */
const char *pv_http_data_dir(pv_server_t *srv);

/* ---- inside a handler ---- */

const char *pv_http_req_method(const pv_http_req_t *r);
/* The percent-decoded path ("/upload/ab12/photo.jpg"), NUL-terminated.
 * It never holds "." or ".." segments, %2F, backslashes or NULs: such
 * requests are refused with 400 before any handler. */
const char *pv_http_req_path(const pv_http_req_t *r);
/* The Host header without the port, lower-cased in buf (size bytes), or
 * NULL when absent, malformed or too long. */
const char *pv_http_req_host(const pv_http_req_t *r, char *buf, size_t size);
/* First value of a request header (case-insensitive name) or NULL. */
const char *pv_http_req_header(const pv_http_req_t *r, const char *name);
/* Decodes query parameter name into out (size bytes with the NUL):
 * PV_OK, PV_NOTFOUND or PV_ERROR (malformed or too long). */
int pv_http_req_param(const pv_http_req_t *r, const char *name, char *out,
                      size_t size);
/* The announced body length; *is_chunked (may be NULL) is set to 1 for a
 * chunked body, whose length is unknown (0 is returned). */
uint64_t pv_http_req_content_length(const pv_http_req_t *r, int *is_chunked);
/* The body of an ordinary route's request (whole at handler time). */
const char *pv_http_req_body(const pv_http_req_t *r, size_t *len);
const char *pv_http_req_peer_ip(const pv_http_req_t *r);
/* True when the request came over TLS that palaverd terminates. */
int pv_http_req_is_tls(const pv_http_req_t *r);

/* Adds a response header line (name and value copied; a name or value
 * with CR or LF, or a name with ':', is dropped). Call before responding. */
void pv_http_add_header(pv_http_req_t *r, const char *name,
                        const char *value);
/* Sends the response: status line, Content-Length, Content-Type (when
 * not NULL), CORS when the route asked for it, added headers, then body
 * (not for HEAD, 204 and 304). body is copied. Logs the access line.
 * A second call for the same request is ignored. Answered before the
 * body of a request was read, the body is discarded (small) or the
 * connection closes after the response (large or chunked). */
void pv_http_respond(pv_http_req_t *r, int status, const char *content_type,
                     const void *body, size_t len);
/* A short text/plain response with the reason phrase as its body. */
void pv_http_respond_status(pv_http_req_t *r, int status);
/* Answers later: the handler returns without responding and calls
 * pv_http_respond() on r afterwards (from any loop callback). Reading
 * the connection pauses meanwhile and the request timeout is off, so the
 * caller bounds the wait. If the connection closes first, gone(arg, r)
 * is called and r is invalid after it returns. */
void pv_http_defer(pv_http_req_t *r, pv_http_gone_fn gone, void *arg);

/* ---- files ---- */

/* Outcome of pv_http_recv_file(): rc PV_OK means the whole body (size
 * bytes) is on disk at final_path (written, fsync'ed, renamed); r is
 * deferred and the callee must answer it with pv_http_respond() (the
 * gone callback still applies until then). rc PV_ERROR: a write failed
 * or the body passed max; the temporary file is removed and r has
 * already been answered (500 or 413): do not use it. */
typedef void (*pv_http_file_done_fn)(void *arg, pv_http_req_t *r, int rc,
                                     uint64_t size);

/* From a PV_HTTP_STREAM handler: streams the request body into a new
 * file tmp_path (created 0600, O_EXCL: an existing file fails), writing
 * on the loop's thread pool; reading the connection pauses while writes
 * are behind, so memory stays bounded whatever the body size. max bounds
 * the body (a Content-Length above it should be refused with 413 by the
 * caller first; a chunked body passing it gets 413). Sends 100 Continue
 * when the client asked. Exactly one of done() or gone() follows. Returns
 * PV_ERROR (nothing started, nothing answered) when tmp_path cannot be
 * created. Paths are copied. */
int pv_http_recv_file(pv_http_req_t *r, const char *tmp_path,
                      const char *final_path, uint64_t max,
                      pv_http_file_done_fn done, pv_http_gone_fn gone,
                      void *arg);

/* Answers r with the regular file at path: 200 with Content-Length and
 * content_type (NULL: application/octet-stream), Accept-Ranges, a single
 * "Range: bytes=" as 206 with Content-Range (RFC 9110 §14.4) or 416 when
 * unsatisfiable, HEAD without a body. The body is read in chunks on the
 * thread pool as the connection drains. Returns PV_NOTFOUND (nothing
 * answered) when path cannot be opened or is not a regular file, else
 * PV_OK. */
int pv_http_send_file(pv_http_req_t *r, const char *path,
                      const char *content_type);

#endif
