/* src/tls.h: TLS over OpenSSL 3: contexts (certificates, SNI, ALPN,
 * TLS 1.2+ policy) and the per-connection engine that src/conn.c drives.
 * The engine owns no socket and no ciphertext buffer: input is borrowed
 * from the loop-wide read buffer, output goes straight to the
 * connection's write path through a custom BIO. Core code uses the
 * pv_conn_tls_* wrappers in conn.h; only conn.c calls pv_tls_* engine
 * functions. Loop thread only (reference counts are not atomic). */
#ifndef PALAVER_TLS_H
#define PALAVER_TLS_H

#include <stddef.h>
#include <stdint.h>

#include <palaver/defs.h>

struct ssl_ctx_st;

typedef struct pv_tls_ctx_s pv_tls_ctx_t;
typedef struct pv_tls_s pv_tls_t;

/* ---- contexts ---- */

/* A server context: certificate chain and key from PEM files, TLS 1.2
 * minimum, ECDHE AEAD ciphers, no compression, no renegotiation, no
 * session cache or tickets, SSL_MODE_RELEASE_BUFFERS. Returns a new
 * reference, or NULL with the reason in err. */
pv_tls_ctx_t *pv_tls_ctx_new_server(const char *cert_file, const char *key_file,
                                    char *err, size_t errlen);
/* A client context (s2s out, tests): TLS 1.2 minimum; trusted roots from
 * ca_file (PEM) or, when NULL, the system store. The handshake never
 * fails on an untrusted peer: callers check pv_conn_tls_verify(). */
pv_tls_ctx_t *pv_tls_ctx_new_client(const char *ca_file, char *err,
                                    size_t errlen);
/* Returns ctx with one more reference. Connections hold their own
 * references, so a reload can unref the old contexts at once. */
pv_tls_ctx_t *pv_tls_ctx_ref(pv_tls_ctx_t *ctx);
/* Drops a reference; frees at zero. NULL is a no-op. */
void pv_tls_ctx_unref(pv_tls_ctx_t *ctx);
/* Server: the ALPN protocols this listener accepts, in preference order
 * (e.g. "xmpp-client" for c2s direct TLS, XEP-0368). A client offering
 * none of them, or no ALPN at all, gets no ALPN (not a fatal alert).
 * n = 0 turns ALPN off. Returns PV_ERROR for a name longer than 255. */
int pv_tls_ctx_set_alpn(pv_tls_ctx_t *ctx, const char *const *protos, size_t n);
/* Server: select(arg, servername) picks the context whose certificate
 * answers a ClientHello with SNI (RFC 6066 §3); it returns a borrowed
 * context (the connection takes its own reference) or NULL to keep ctx.
 * Runs during the handshake on the loop thread; arg must outlive every
 * connection started on ctx. ALPN and SNI always follow the context the
 * connection started with (the listener's). */
void pv_tls_ctx_set_sni(pv_tls_ctx_t *ctx,
                        pv_tls_ctx_t *(*select)(void *arg,
                                                const char *servername),
                        void *arg);
/* The OpenSSL context, borrowed: for tests and rare tuning only. */
struct ssl_ctx_st *pv_tls_ctx_ssl(pv_tls_ctx_t *ctx);

/* ---- per-connection engine (src/conn.c only) ---- */

/* Receives ciphertext to send; returns PV_OK or PV_ERROR (the write
 * then fails and the connection is going down). */
typedef int (*pv_tls_out_fn)(void *arg, const char *data, size_t len);

typedef enum {
    PV_TLS_WANT = 0,       /* needs more input */
    PV_TLS_DATA,           /* *n bytes of plaintext in buf */
    PV_TLS_HANDSHAKE_DONE, /* handshake finished; call again */
    PV_TLS_CLOSED,         /* peer sent close_notify */
    PV_TLS_FAILED          /* see pv_tls_error() */
} pv_tls_status_t;

/* A new engine on ctx (takes its own reference). Client side: sni and
 * alpn (a single protocol name) may be NULL. NULL with err on failure. */
pv_tls_t *pv_tls_new(pv_tls_ctx_t *ctx, int is_server, const char *sni,
                     const char *alpn, pv_tls_out_fn out, void *arg, char *err,
                     size_t errlen);
void pv_tls_free(pv_tls_t *t);
/* Hands over ciphertext, borrowed until the next pv_tls_stash() or
 * pv_tls_input(); bytes stashed earlier are read first. */
void pv_tls_input(pv_tls_t *t, const char *data, size_t len);
/* Copies borrowed input not yet consumed to a heap buffer (freed once
 * consumed). Call before the borrowed buffer goes away. */
void pv_tls_stash(pv_tls_t *t);
/* True when stashed ciphertext or decrypted plaintext is waiting. */
int pv_tls_has_input(const pv_tls_t *t);
/* Advances the handshake, then decrypts at most cap bytes into buf. */
pv_tls_status_t pv_tls_step(pv_tls_t *t, char *buf, size_t cap, size_t *n);
/* Encrypts len bytes (handshake must be done); ciphertext goes to out.
 * PV_OK or PV_ERROR. */
int pv_tls_write(pv_tls_t *t, const char *data, size_t len);
/* Sends close_notify once (after a finished handshake). */
void pv_tls_close_notify(pv_tls_t *t);
int pv_tls_is_done(const pv_tls_t *t);
/* Why the last step or write failed ("unsupported protocol"); borrowed,
 * valid until pv_tls_free(). Never NULL. */
const char *pv_tls_error(const pv_tls_t *t);
/* Approximate bytes held by the engine, not counting OpenSSL's own. */
size_t pv_tls_memory(const pv_tls_t *t);

/* Session facts; strings are borrowed until pv_tls_free(), NULL when
 * unknown (no handshake yet, no SNI, no ALPN). */
const char *pv_tls_version(const pv_tls_t *t);
const char *pv_tls_sni(const pv_tls_t *t);
const char *pv_tls_alpn(const pv_tls_t *t);
/* See pv_conn_channel_binding() and pv_conn_cb_types(). */
int pv_tls_channel_binding(pv_tls_t *t, const char *type, uint8_t *out,
                           size_t *len);
int pv_tls_cb_types(pv_tls_t *t, const char **types, int max);
/* The peer certificate's subject CN into buf; PV_ERROR without one. */
int pv_tls_peer_cn(const pv_tls_t *t, char *buf, size_t len);
/* PV_OK when the peer's chain verified against the trusted roots and,
 * when host is not NULL, the certificate names host (RFC 6125). */
int pv_tls_peer_verify(const pv_tls_t *t, const char *host, char *err,
                       size_t errlen);

#endif
