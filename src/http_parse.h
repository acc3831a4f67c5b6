/* src/http_parse.h: the incremental HTTP/1.1 request parser (RFC 9112) and
 * the pure helpers around it: path decoding, query strings, Range
 * (RFC 9110 §14), the WebSocket handshake checks and Sec-WebSocket-Accept
 * (RFC 6455 §4.2). No I/O, no sockets, no global state: src/http.c owns the
 * connection, the responses and the routing. */
#ifndef PALAVER_HTTP_PARSE_H
#define PALAVER_HTTP_PARSE_H

#include <stddef.h>
#include <stdint.h>

#include <palaver/defs.h>

typedef struct pv_http_parser_s pv_http_parser_t;

/* One header field. name keeps the case it was sent with; value has its
 * leading and trailing whitespace removed. Both are NUL-terminated and
 * contain no NUL, CR or LF (such requests are refused with 400). */
typedef struct pv_http_header_s {
    const char *name;
    const char *value;
} pv_http_header_t;

/* A parsed request head. Every pointer borrows from the parser: valid from
 * the headers callback until the parser is fed the first byte of the next
 * request, reset or freed. */
typedef struct pv_http_request_s {
    const char *method; /* case-sensitive token, "GET" */
    const char *target; /* raw request-target, "/a%20b?x=1" or "*" */
    size_t path_len;    /* target[0..path_len) is the path */
    const char *query;  /* after '?', NULL without one */
    int version_minor;  /* 0 (HTTP/1.0) or 1 (HTTP/1.1) */
    const pv_http_header_t *headers;
    size_t n_headers;
    uint64_t content_length; /* body bytes, when !is_chunked */
    int is_chunked;          /* Transfer-Encoding: chunked */
    int keep_alive;          /* after the response, read the next one */
    int is_upgrade;          /* Connection: upgrade and Upgrade: present */
    int expect_continue;     /* Expect: 100-continue (RFC 9110 §10.1.1) */
} pv_http_request_t;

/* A field of 0 takes the default in brackets; each says which status
 * answers a violation. max_request_line [8192] (414, or 400 when the line
 * is not even a method and SP); max_header_bytes [16384] bytes of the
 * header section after the request line, CRLFs included, and separately
 * of a chunked body's trailer section (431); max_headers [100] (431);
 * max_body [1 MiB] (413; see pv_http_parser_set_max_body() for uploads). */
typedef struct pv_http_limits_s {
    size_t max_request_line;
    size_t max_header_bytes;
    unsigned max_headers;
    uint64_t max_body;
} pv_http_limits_t;

/* Every callback returns 0 to go on, or non-zero to make
 * pv_http_parser_feed() return PV_AGAIN right after the current event
 * (backpressure, a response to send before the next pipelined request, or
 * a protocol switch). Callbacks may call pv_http_parser_set_max_body() but
 * must neither feed, reset nor free the parser that called them. Any
 * member may be NULL. */
typedef struct pv_http_cb_s {
    /* The head is complete and valid. Body checks (413, bad chunks) come
     * after this, so a later error can still end the request. */
    int (*headers)(void *ud, const pv_http_request_t *req);
    /* A piece of the body, de-chunked, borrowed from the fed buffer (or
     * the parser) for the call only. Never called with len 0. */
    int (*body)(void *ud, const char *data, size_t len);
    /* The whole request has been read (after the trailers, if chunked).
     * Bytes after it belong to the next pipelined request or, after a
     * 101 response, to the new protocol: return non-zero to get them. */
    int (*complete)(void *ud, const pv_http_request_t *req);
} pv_http_cb_t;

/* New parser waiting for a request. cb is copied; ud goes to every
 * callback; lim NULL = defaults. The head buffer grows on demand up to
 * max_request_line + max_header_bytes, never by the body size. Aborts on
 * OOM (pv_xmalloc). */
pv_http_parser_t *pv_http_parser_new(const pv_http_cb_t *cb, void *ud,
                                     const pv_http_limits_t *lim);
void pv_http_parser_free(pv_http_parser_t *p);

/* Back to waiting for a new request; forgets an error. */
void pv_http_parser_reset(pv_http_parser_t *p);

/* Parses len bytes of buf, calling the callbacks as events complete; any
 * chunking of the byte stream gives the same events (body pieces may be
 * split differently). Returns:
 *   PV_OK     every byte was consumed (*consumed = len);
 *   PV_AGAIN  a callback returned non-zero: buf[0..*consumed) has been
 *             used and the rest not looked at; feed it again later, or,
 *             after complete() of an upgrade, hand it to the new protocol;
 *   PV_ERROR  the request is invalid, now or in an earlier feed: answer
 *             pv_http_parser_status() with Connection: close and close the
 *             connection (RFC 9112 §9.6). Nothing more is parsed.
 * consumed may be NULL. */
int pv_http_parser_feed(pv_http_parser_t *p, const char *buf, size_t len,
                        size_t *consumed);

/* After PV_ERROR: 400, 413, 414, 431, 501 (unknown transfer coding) or
 * 505 (HTTP version other than 1.0/1.1); 0 before any error. */
int pv_http_parser_status(const pv_http_parser_t *p);
/* After PV_ERROR: a short static English reason for logs; "" otherwise. */
const char *pv_http_parser_error(const pv_http_parser_t *p);

/* Raises or lowers the body limit of the current request (call it from
 * headers(), say with the upload slot's size). A Content-Length above it
 * gives 413 before any body() call; a chunked body gives 413 as soon as it
 * would exceed it. Reset to the configured max_body for each request. */
void pv_http_parser_set_max_body(pv_http_parser_t *p, uint64_t max_body);

/* True between requests: no byte of a request has been seen since the
 * last complete() (leading empty lines aside). For idle timeouts. */
int pv_http_parser_is_idle(const pv_http_parser_t *p);

/* First value of the header called name (ASCII case-insensitive), or
 * NULL. Borrowed from req. */
const char *pv_http_request_header(const pv_http_request_t *req,
                                   const char *name);

/* True when some header called name holds token in its comma-separated
 * list (both case-insensitive, RFC 9110 §5.6.1): Connection: upgrade,
 * Upgrade: websocket, Sec-WebSocket-Protocol: xmpp. */
int pv_http_header_has_token(const pv_http_request_t *req, const char *name,
                             const char *token);

/* "Not Found" for 404 and so on; "Unknown" for codes it does not know.
 * Returns a static string. */
const char *pv_http_status_reason(int status);

/* Percent-decodes the path part of a request-target (req->target,
 * req->path_len) into out, which must hold len + 1 bytes; the result is
 * NUL-terminated and *out_len (may be NULL) gets its length. Refuses, with
 * PV_ERROR, a path that does not start with '/', a bad %-escape, a NUL
 * (%00), an encoded '/' (%2F), a backslash (raw or %5C) and any "." or
 * ".." segment, also when encoded, so the result can be joined under a
 * directory without escaping it. '+' stays '+'. */
int pv_http_path_decode(const char *path, size_t len, char *out,
                        size_t *out_len);

/* One key=value pair of a query string, as raw (still encoded) slices of
 * the query; value is "" (value_len 0) for a bare "key". */
typedef struct pv_http_param_s {
    const char *key;
    size_t key_len;
    const char *value;
    size_t value_len;
} pv_http_param_t;

/* Iterates over the '&'-separated pairs of a query string: *pos starts at
 * the query (req->query) and is advanced; returns 1 and fills *param for
 * each non-empty pair, 0 at the end (NUL). */
int pv_http_query_next(const char **pos, pv_http_param_t *param);

/* Decodes a query key or value (%XX and '+' as space) into out, which must
 * hold len + 1 bytes; NUL-terminated, length in *out_len (may be NULL).
 * PV_ERROR on a bad escape or an encoded NUL. */
int pv_http_query_decode(const char *s, size_t len, char *out, size_t *out_len);

/* Finds the first pair whose decoded key is name and decodes its value
 * into out (out_size bytes with the NUL). Returns PV_OK, PV_NOTFOUND, or
 * PV_ERROR when the value is malformed or does not fit. query may be
 * NULL. */
int pv_http_query_get(const char *query, const char *name, char *out,
                      size_t out_size);

typedef enum {
    PV_HTTP_RANGE_NONE,         /* no usable Range: send the whole (200) */
    PV_HTTP_RANGE_PARTIAL,      /* send [first, last] with 206 */
    PV_HTTP_RANGE_UNSATISFIABLE /* 416, Content-Range: bytes * /length */
} pv_http_range_t;

/* Evaluates a Range header value (NULL = absent) against a representation
 * of length bytes (RFC 9110 §14.2). Only one "bytes" range is served:
 * "a-b" (b clamped to length - 1), "a-" and the suffix "-n". A value that
 * is malformed, names another unit or asks for several ranges is ignored
 * (PV_HTTP_RANGE_NONE), as §14.2 allows. On PARTIAL *first and *last are
 * the inclusive byte positions. */
pv_http_range_t pv_http_range_parse(const char *value, uint64_t length,
                                    uint64_t *first, uint64_t *last);

/* Checks a request for a WebSocket opening handshake (RFC 6455 §4.2.1):
 * GET, HTTP/1.1, Host, Upgrade: websocket, Connection: upgrade, and a
 * Sec-WebSocket-Key that is base64 of 16 bytes. Returns 101 when it may
 * be accepted (*key, if key is not NULL, then borrows the key from req),
 * 426 when Sec-WebSocket-Version is not 13 (answer with
 * Sec-WebSocket-Version: 13, §4.4) or 400. Subprotocol and Origin checks
 * are the caller's (pv_http_header_has_token()). */
int pv_http_ws_check(const pv_http_request_t *req, const char **key);

#define PV_HTTP_WS_ACCEPT_LEN 28

/* Sec-WebSocket-Accept for key (RFC 6455 §4.2.2 step 5.4): base64 of the
 * SHA-1 of key followed by the GUID. out receives PV_HTTP_WS_ACCEPT_LEN
 * characters and a NUL. PV_ERROR only when OpenSSL fails. */
int pv_http_ws_accept(const char *key, size_t key_len,
                      char out[PV_HTTP_WS_ACCEPT_LEN + 1]);

#endif
