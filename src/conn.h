/* src/conn.h: byte-stream connections (TCP, unix sockets, TLS over
 * either), listeners and outgoing connects. A connection owns its socket,
 * its output queue and its TLS engine; it knows nothing of XML. Idle
 * connections hold no read buffer (reads use the loop-wide buffer) and,
 * with TLS, no ciphertext buffer. Loop thread only. */
#ifndef PALAVER_CONN_H
#define PALAVER_CONN_H

#include <stddef.h>
#include <stdint.h>

#include <palaver/defs.h>

#include "loop.h"
#include "tls.h"

typedef struct pv_conn_s pv_conn_t;
typedef struct pv_listener_s pv_listener_t;

/* Default output queue limit (bytes queued beyond what the kernel took). */
#define PV_CONN_MAX_QUEUE_DEFAULT (1024 * 1024)
/* Reason passed to on_close when pv_conn_write() overflows the queue. */
#define PV_CONN_REASON_QUEUE "output queue limit exceeded"

/* Callbacks. The connection holds a reference around each call, so any
 * pv_conn_* call (including close, abort and unref) is safe inside. */
typedef struct pv_conn_handler_s {
    /* Plaintext (after TLS decryption). data is borrowed from a
     * loop-wide buffer, valid only during the call. */
    void (*on_data)(pv_conn_t *c, const char *data, size_t len);
    /* The TLS handshake finished (ok = 1) or failed (ok = 0, err says
     * why; the connection is then closing and on_close follows). */
    void (*on_tls_done)(pv_conn_t *c, int ok, const char *err);
    /* Called exactly once, when the socket has closed; reason is NULL
     * after a local pv_conn_close(), else why ("connection closed by
     * peer", "tls closed by peer", PV_CONN_REASON_QUEUE, an errno or
     * TLS reason). After it returns the connection is freed unless
     * references are held (then every call but unref is a no-op). */
    void (*on_close)(pv_conn_t *c, const char *reason);
    /* Optional: the output queue became empty after being non-empty. */
    void (*on_drained)(pv_conn_t *c);
} pv_conn_handler_t;

/* ---- listeners ---- */

/* Listens on addr (an IPv4/IPv6 literal; NULL = every address, IPv6
 * dual-stack when available) and port (0 = any, see
 * pv_listener_port()). on_accept(arg, c) gets each new connection: set a
 * handler there (a connection without one is aborted), optionally start
 * TLS or pause; reading starts after it returns. Returns NULL with the
 * reason in err. */
pv_listener_t *pv_listen_tcp(pv_loop_t *loop, const char *addr, int port,
                             int backlog,
                             void (*on_accept)(void *arg, pv_conn_t *c),
                             void *arg, char *err, size_t errlen);
/* As pv_listen_tcp() on a unix socket at path, which gets mode (e.g.
 * 0600) before it accepts anything. A stale socket file at path is
 * replaced; any other existing file is an error. */
pv_listener_t *pv_listen_unix(pv_loop_t *loop, const char *path, int mode,
                              int backlog,
                              void (*on_accept)(void *arg, pv_conn_t *c),
                              void *arg, char *err, size_t errlen);
/* The bound TCP port (useful after port 0); 0 for unix sockets. */
int pv_listener_port(const pv_listener_t *l);
/* Stops accepting and frees l (memory goes at the end of the loop
 * iteration); a unix socket file is removed. Accepted connections are
 * not affected. NULL is a no-op. */
void pv_listener_close(pv_listener_t *l);

/* ---- outgoing ---- */

/* Connects to ip (a literal; DNS is dns.c's job) and port. Later,
 * on_connect(arg, c, NULL) hands over the connection (set a handler
 * there; reading starts after it returns), or on_connect(arg, NULL, err)
 * reports a failure; it is never called from inside this function.
 * Until then the returned pointer may only be passed to pv_conn_abort()
 * to cancel (on_connect then reports NULL). Returns NULL (no callback)
 * for a bad address. */
pv_conn_t *pv_conn_connect_tcp(pv_loop_t *loop, const char *ip, int port,
                               void (*on_connect)(void *arg, pv_conn_t *c,
                                                  const char *err),
                               void *arg);
/* As pv_conn_connect_tcp() for a unix socket (palaverctl to the control
 * socket). */
pv_conn_t *pv_conn_connect_unix(pv_loop_t *loop, const char *path,
                                void (*on_connect)(void *arg, pv_conn_t *c,
                                                   const char *err),
                                void *arg);

/* ---- using a connection ---- */

/* Sets the callbacks (borrowed: h must outlive c; usually static) and
 * the user data. */
void pv_conn_set_handler(pv_conn_t *c, const pv_conn_handler_t *h, void *ud);
void *pv_conn_data(const pv_conn_t *c);

/* Sends len bytes: copied, encrypted when TLS is on, written at once as
 * far as the kernel takes them, the rest queued. Before the TLS
 * handshake has finished, plaintext is held and sent after it. Returns
 * PV_ERROR when the connection is closing, or when the queue would pass
 * its limit: the connection is then aborted and on_close reports
 * PV_CONN_REASON_QUEUE (the peer is not reading, so no stream error can
 * reach it; the caller records policy-violation). */
int pv_conn_write(pv_conn_t *c, const char *data, size_t len);
/* Output queue limit in bytes (default PV_CONN_MAX_QUEUE_DEFAULT). */
void pv_conn_set_max_queue(pv_conn_t *c, size_t bytes);
/* Bytes waiting in the output queue. */
size_t pv_conn_queued(const pv_conn_t *c);

/* Starts TLS as the server (STARTTLS after <proceed/> has been written,
 * or direct TLS right after accept) or as a client with SNI and one
 * ALPN protocol (both may be NULL). Bytes already queued go out first in
 * clear. on_tls_done reports the outcome; never called from inside
 * these functions. PV_ERROR when TLS is already on or c is closing. */
int pv_conn_start_tls_server(pv_conn_t *c, pv_tls_ctx_t *ctx);
int pv_conn_start_tls_client(pv_conn_t *c, pv_tls_ctx_t *ctx, const char *sni,
                             const char *alpn);

/* Graceful close: stops reading, sends queued output and a TLS
 * close_notify, then closes (aborting after a linger of 10 s if the peer
 * does not read). on_close(c, NULL) follows, never from inside this
 * call. Idempotent. */
void pv_conn_close(pv_conn_t *c);
/* Closes now and drops queued output; on_close(c, reason) follows (never
 * from inside this call). reason is copied; NULL means "aborted". */
void pv_conn_abort(pv_conn_t *c, const char *reason);

/* Stops delivering data (reading stops; TLS records already read wait)
 * and restarts it: rate limiting and backpressure. Resuming delivers
 * pending data at the end of the loop iteration, not inside the call. */
void pv_conn_pause(pv_conn_t *c);
void pv_conn_resume(pv_conn_t *c);

/* Keep c's memory valid past on_close (e.g. while queued elsewhere). */
void pv_conn_ref(pv_conn_t *c);
void pv_conn_unref(pv_conn_t *c);

/* Peer address as text ("127.0.0.1", "::1"; "" for unix sockets), port
 * (0 for unix). Borrowed, valid while c is. */
const char *pv_conn_peer_ip(const pv_conn_t *c);
int pv_conn_peer_port(const pv_conn_t *c);
int pv_conn_is_unix(const pv_conn_t *c);

/* TLS facts; NULL/0 before the handshake finished or without TLS.
 * Strings are borrowed, valid while c is. */
int pv_conn_is_tls(const pv_conn_t *c);
const char *pv_conn_tls_version(const pv_conn_t *c);
/* The server name the client sent (server side) or that we sent. */
const char *pv_conn_tls_sni(const pv_conn_t *c);
const char *pv_conn_tls_alpn(const pv_conn_t *c);
/* The peer certificate's subject CN into buf; PV_ERROR without one. */
int pv_conn_tls_peer_cn(const pv_conn_t *c, char *buf, size_t len);
/* PV_OK when the peer's chain verified and, when host is not NULL, the
 * certificate names host; else PV_ERROR with the reason in err. */
int pv_conn_tls_verify(const pv_conn_t *c, const char *host, char *err,
                       size_t errlen);

/* Channel binding data (RFC 5056) for SCRAM-*-PLUS. On input *len is the
 * capacity of out (64 bytes always suffice), on output the length.
 * "tls-unique": RFC 5929 §3, the first Finished message of the
 * handshake (the client's on a full handshake), also on TLS 1.3 for
 * clients that still ask for it; "tls-server-end-point": RFC 5929 §4,
 * hash of the server certificate; "tls-exporter": RFC 9266, 32 bytes,
 * TLS 1.3 only. PV_ERROR when c has no finished TLS handshake or the type
 * is unknown or unavailable. */
int pv_conn_channel_binding(pv_conn_t *c, const char *type, uint8_t *out,
                            size_t *len);
/* Fills types (static strings) with the types c can provide, best
 * first (tls-exporter, tls-server-end-point, tls-unique); returns the
 * count (at most max). */
int pv_conn_cb_types(pv_conn_t *c, const char **types, int max);

/* Approximate bytes held by c (struct, queue, TLS engine), not counting
 * OpenSSL's own allocations. For tests and metrics. */
size_t pv_conn_memory(const pv_conn_t *c);

#endif
