/* src/tls.c: OpenSSL contexts and the per-connection TLS engine. A small
 * BIO_METHOD replaces BIO_s_mem pairs: its read side serves the bytes of
 * the current read callback (stashing leftovers only while needed), its
 * write side hands ciphertext to the connection's write path, so an idle
 * connection holds no ciphertext buffer (DESIGN.md §3). Sockets and
 * queues belong to conn.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <palaver/mem.h>

#include "tls.h"

/* Mozilla "intermediate" TLS 1.2 suites: forward secret AEAD only. TLS 1.3
 * suites keep OpenSSL's defaults. */
#define TLS_CIPHERS_12                                           \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:" \
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:" \
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:" \
    "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384"

/* RFC 9266 §2 */
#define TLS_EXPORTER_LABEL "EXPORTER-Channel-Binding"
#define TLS_EXPORTER_LEN 32

struct pv_tls_ctx_s {
    SSL_CTX *ssl;
    BIO_METHOD *bio_method;
    int refs;
    int is_server;
    unsigned char *alpn; /* ALPN wire format: len-prefixed names */
    size_t alpn_len;
    pv_tls_ctx_t *(*sni_select)(void *arg, const char *servername);
    void *sni_arg;
};

struct pv_tls_s {
    pv_tls_ctx_t *ctx;     /* reference: the context we started on */
    pv_tls_ctx_t *sni_ctx; /* reference: the one SNI switched to */
    SSL *ssl;
    pv_tls_out_fn out;
    void *out_arg;
    const char *in; /* borrowed input of the read callback */
    size_t in_len;
    char *stash; /* heap copy of unread input, or NULL */
    size_t stash_len;
    size_t stash_off;
    char *err;  /* malloc'd; only after a failure */
    char *alpn; /* malloc'd; the negotiated protocol */
    unsigned is_server : 1;
    unsigned is_done : 1;
    unsigned is_failed : 1;
    unsigned is_cb_known : 1;   /* cb_mask computed (after the handshake) */
    unsigned cb_mask : 3;       /* channel binding types available */
    unsigned sent_close : 1;
};

static void
set_err(char *err, size_t errlen, const char *what)
{
    unsigned long e = ERR_peek_last_error();
    const char *reason = e != 0 ? ERR_reason_error_string(e) : NULL;

    if (err == NULL || errlen == 0)
        return;
    if (reason != NULL)
        snprintf(err, errlen, "%s: %s", what, reason);
    else
        snprintf(err, errlen, "%s", what);
}

/* ---- the BIO ---- */

static int
bio_write_ex(BIO *b, const char *data, size_t len, size_t *written)
{
    pv_tls_t *t = BIO_get_data(b);

    BIO_clear_retry_flags(b);
    *written = 0;
    if (t->out(t->out_arg, data, len) != PV_OK)
        return 0;
    *written = len;
    return 1;
}

static int
bio_read_ex(BIO *b, char *buf, size_t len, size_t *readbytes)
{
    pv_tls_t *t = BIO_get_data(b);
    size_t avail;

    BIO_clear_retry_flags(b);
    *readbytes = 0;
    if (t->stash != NULL) {
        avail = t->stash_len - t->stash_off;
        if (len > avail)
            len = avail;
        memcpy(buf, t->stash + t->stash_off, len);
        t->stash_off += len;
        if (t->stash_off == t->stash_len) {
            free(t->stash);
            t->stash = NULL;
            t->stash_len = t->stash_off = 0;
        }
    } else {
        if (len > t->in_len)
            len = t->in_len;
        if (len > 0) {
            memcpy(buf, t->in, len);
            t->in += len;
            t->in_len -= len;
        }
    }
    if (len == 0) {
        /* Not EOF: the transport reports EOF itself. */
        BIO_set_retry_read(b);
        return 0;
    }
    *readbytes = len;
    return 1;
}

static long
bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)b;
    (void)num;
    (void)ptr;
    /* Output is never buffered here, so a flush is always complete. */
    return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

/* ---- contexts ---- */

static int
tls_sni_cb(SSL *ssl, int *alert, void *arg)
{
    pv_tls_t *t = SSL_get_app_data(ssl);
    const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    pv_tls_ctx_t *sel;

    (void)alert;
    (void)arg;
    if (t == NULL || name == NULL || t->ctx->sni_select == NULL)
        return SSL_TLSEXT_ERR_NOACK;
    sel = t->ctx->sni_select(t->ctx->sni_arg, name);
    if (sel != NULL && sel != t->ctx && sel->is_server && t->sni_ctx == NULL) {
        if (SSL_set_SSL_CTX(ssl, sel->ssl) == NULL)
            return SSL_TLSEXT_ERR_ALERT_FATAL;
        t->sni_ctx = pv_tls_ctx_ref(sel);
    }
    return SSL_TLSEXT_ERR_OK;
}

static int
tls_alpn_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
            const unsigned char *in, unsigned int inlen, void *arg)
{
    pv_tls_t *t = SSL_get_app_data(ssl);
    unsigned char *sel;

    (void)arg;
    /* The listener's context decides, even after an SNI switch. */
    if (t == NULL || t->ctx->alpn == NULL)
        return SSL_TLSEXT_ERR_NOACK;
    if (SSL_select_next_proto(&sel, outlen, t->ctx->alpn,
                              (unsigned)t->ctx->alpn_len, in,
                              inlen) != OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK;
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

static pv_tls_ctx_t *
ctx_new(int is_server, char *err, size_t errlen)
{
    pv_tls_ctx_t *ctx;
    SSL_CTX *ssl;
    BIO_METHOD *m;

    ERR_clear_error();
    ssl = SSL_CTX_new(is_server ? TLS_server_method() : TLS_client_method());
    if (ssl == NULL) {
        set_err(err, errlen, "cannot create tls context");
        return NULL;
    }
    m = BIO_meth_new(BIO_TYPE_SOURCE_SINK, "palaver conn");
    if (m == NULL) {
        set_err(err, errlen, "cannot create tls bio");
        SSL_CTX_free(ssl);
        return NULL;
    }
    BIO_meth_set_write_ex(m, bio_write_ex);
    BIO_meth_set_read_ex(m, bio_read_ex);
    BIO_meth_set_ctrl(m, bio_ctrl);

    /* DESIGN.md §7: TLS 1.2+ only. */
    SSL_CTX_set_min_proto_version(ssl, TLS1_2_VERSION);
    SSL_CTX_set_options(ssl, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                                 SSL_OP_NO_TICKET);
    /* Frees record buffers while idle: most of an idle session's cost. */
    SSL_CTX_set_mode(ssl, SSL_MODE_RELEASE_BUFFERS);
    /* No resumption: a session cache holds memory per past session, and
     * tls-unique is only sound without resumption (RFC 7627 §1). */
    SSL_CTX_set_session_cache_mode(ssl, SSL_SESS_CACHE_OFF);
    /* ChaCha20 first for TLS 1.3: its per-connection state is ~1 KiB
     * smaller than AES-GCM's, and memory per idle session is what
     * operators pay for (DESIGN.md §3); chat traffic never needs AES-NI
     * speed. */
    if (SSL_CTX_set_ciphersuites(ssl, "TLS_CHACHA20_POLY1305_SHA256:"
                                      "TLS_AES_128_GCM_SHA256:"
                                      "TLS_AES_256_GCM_SHA384") != 1 ||
        SSL_CTX_set_cipher_list(ssl, TLS_CIPHERS_12) != 1) {
        set_err(err, errlen, "cannot set tls ciphers");
        BIO_meth_free(m);
        SSL_CTX_free(ssl);
        return NULL;
    }
    if (is_server) {
        SSL_CTX_set_options(ssl, SSL_OP_CIPHER_SERVER_PREFERENCE);
        SSL_CTX_set_num_tickets(ssl, 0);
        SSL_CTX_set_dh_auto(ssl, 1);
        SSL_CTX_set_tlsext_servername_callback(ssl, tls_sni_cb);
        SSL_CTX_set_alpn_select_cb(ssl, tls_alpn_cb, NULL);
    }
    /* Peer verification is a policy decision of the caller (s2s may
     * fall back to dialback): record the result, never abort on it. */
    SSL_CTX_set_verify(ssl, SSL_VERIFY_NONE, NULL);

    ctx = pv_xcalloc(1, sizeof(*ctx));
    ctx->ssl = ssl;
    ctx->bio_method = m;
    ctx->refs = 1;
    ctx->is_server = is_server;
    return ctx;
}

pv_tls_ctx_t *
pv_tls_ctx_new_server(const char *cert_file, const char *key_file, char *err,
                      size_t errlen)
{
    pv_tls_ctx_t *ctx = ctx_new(1, err, errlen);
    char what[512];

    if (ctx == NULL)
        return NULL;
    if (SSL_CTX_use_certificate_chain_file(ctx->ssl, cert_file) != 1) {
        snprintf(what, sizeof(what), "cannot load certificate %s", cert_file);
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx->ssl, key_file, SSL_FILETYPE_PEM) !=
        1) {
        snprintf(what, sizeof(what), "cannot load key %s", key_file);
        goto fail;
    }
    if (SSL_CTX_check_private_key(ctx->ssl) != 1) {
        snprintf(what, sizeof(what), "key %s does not match certificate %s",
                 key_file, cert_file);
        goto fail;
    }
    return ctx;

fail:
    set_err(err, errlen, what);
    ERR_clear_error();
    pv_tls_ctx_unref(ctx);
    return NULL;
}

pv_tls_ctx_t *
pv_tls_ctx_new_client(const char *ca_file, char *err, size_t errlen)
{
    pv_tls_ctx_t *ctx = ctx_new(0, err, errlen);
    int ok;

    if (ctx == NULL)
        return NULL;
    if (ca_file != NULL)
        ok = SSL_CTX_load_verify_locations(ctx->ssl, ca_file, NULL);
    else
        ok = SSL_CTX_set_default_verify_paths(ctx->ssl);
    if (ok != 1) {
        set_err(err, errlen, "cannot load trusted certificates");
        ERR_clear_error();
        pv_tls_ctx_unref(ctx);
        return NULL;
    }
    return ctx;
}

pv_tls_ctx_t *
pv_tls_ctx_ref(pv_tls_ctx_t *ctx)
{
    ctx->refs++;
    return ctx;
}

void
pv_tls_ctx_unref(pv_tls_ctx_t *ctx)
{
    if (ctx == NULL || --ctx->refs > 0)
        return;
    SSL_CTX_free(ctx->ssl);
    BIO_meth_free(ctx->bio_method);
    free(ctx->alpn);
    free(ctx);
}

int
pv_tls_ctx_set_alpn(pv_tls_ctx_t *ctx, const char *const *protos, size_t n)
{
    size_t i, len = 0, off = 0;

    for (i = 0; i < n; i++) {
        size_t l = strlen(protos[i]);

        if (l == 0 || l > 255)
            return PV_ERROR;
        len += 1 + l;
    }
    free(ctx->alpn);
    ctx->alpn = NULL;
    ctx->alpn_len = 0;
    if (n == 0)
        return PV_OK;
    ctx->alpn = pv_xmalloc(len);
    for (i = 0; i < n; i++) {
        size_t l = strlen(protos[i]);

        ctx->alpn[off++] = (unsigned char)l;
        memcpy(ctx->alpn + off, protos[i], l);
        off += l;
    }
    ctx->alpn_len = len;
    return PV_OK;
}

void
pv_tls_ctx_set_sni(pv_tls_ctx_t *ctx,
                   pv_tls_ctx_t *(*select)(void *arg, const char *servername),
                   void *arg)
{
    ctx->sni_select = select;
    ctx->sni_arg = arg;
}

struct ssl_ctx_st *
pv_tls_ctx_ssl(pv_tls_ctx_t *ctx)
{
    return ctx->ssl;
}

/* ---- engine ---- */

pv_tls_t *
pv_tls_new(pv_tls_ctx_t *ctx, int is_server, const char *sni, const char *alpn,
           pv_tls_out_fn out, void *arg, char *err, size_t errlen)
{
    pv_tls_t *t;
    BIO *bio;

    ERR_clear_error();
    t = pv_xcalloc(1, sizeof(*t));
    t->ssl = SSL_new(ctx->ssl);
    bio = BIO_new(ctx->bio_method);
    if (t->ssl == NULL || bio == NULL) {
        set_err(err, errlen, "cannot create tls session");
        BIO_free(bio);
        SSL_free(t->ssl);
        free(t);
        return NULL;
    }
    t->ctx = pv_tls_ctx_ref(ctx);
    t->out = out;
    t->out_arg = arg;
    t->is_server = is_server != 0;
    BIO_set_data(bio, t);
    BIO_set_init(bio, 1);
    SSL_set_bio(t->ssl, bio, bio);
    SSL_set_app_data(t->ssl, t);
    if (is_server) {
        SSL_set_accept_state(t->ssl);
        return t;
    }
    SSL_set_connect_state(t->ssl);
    if (sni != NULL && SSL_set_tlsext_host_name(t->ssl, sni) != 1) {
        set_err(err, errlen, "bad tls server name");
        pv_tls_free(t);
        return NULL;
    }
    if (alpn != NULL) {
        size_t l = strlen(alpn);
        unsigned char wire[256];

        if (l == 0 || l > 255) {
            snprintf(err, errlen, "bad alpn protocol name");
            pv_tls_free(t);
            return NULL;
        }
        wire[0] = (unsigned char)l;
        memcpy(wire + 1, alpn, l);
        /* returns 0 on success, unlike the rest of OpenSSL */
        if (SSL_set_alpn_protos(t->ssl, wire, (unsigned)l + 1) != 0) {
            set_err(err, errlen, "cannot set alpn");
            pv_tls_free(t);
            return NULL;
        }
    }
    return t;
}

void
pv_tls_free(pv_tls_t *t)
{
    if (t == NULL)
        return;
    SSL_free(t->ssl);
    pv_tls_ctx_unref(t->sni_ctx);
    pv_tls_ctx_unref(t->ctx);
    free(t->stash);
    free(t->err);
    free(t->alpn);
    free(t);
}

void
pv_tls_input(pv_tls_t *t, const char *data, size_t len)
{
    if (t->stash != NULL) {
        /* Keep the byte order: new input goes behind the stash. */
        t->stash = pv_xrealloc(t->stash, t->stash_len + len);
        memcpy(t->stash + t->stash_len, data, len);
        t->stash_len += len;
        t->in = NULL;
        t->in_len = 0;
        return;
    }
    t->in = data;
    t->in_len = len;
}

void
pv_tls_stash(pv_tls_t *t)
{
    if (t->in_len == 0)
        return;
    /* Only reached with no stash: pv_tls_input() appends to one. */
    t->stash = pv_xmalloc(t->in_len);
    memcpy(t->stash, t->in, t->in_len);
    t->stash_len = t->in_len;
    t->stash_off = 0;
    t->in = NULL;
    t->in_len = 0;
}

int
pv_tls_has_input(const pv_tls_t *t)
{
    return t->stash != NULL || t->in_len > 0 || SSL_has_pending(t->ssl);
}

static pv_tls_status_t
tls_fail(pv_tls_t *t, int ret, const char *what)
{
    unsigned long e = ERR_peek_last_error();
    const char *reason = NULL;
    int code = SSL_get_error(t->ssl, ret);

    if (code == SSL_ERROR_SSL && e != 0)
        reason = ERR_reason_error_string(e);
    else if (code == SSL_ERROR_SYSCALL)
        reason = "transport error";
    free(t->err);
    t->err =
        pv_xasprintf("%s: %s", what, reason != NULL ? reason : "unknown error");
    t->is_failed = 1;
    ERR_clear_error();
    return PV_TLS_FAILED;
}

pv_tls_status_t
pv_tls_step(pv_tls_t *t, char *buf, size_t cap, size_t *n)
{
    size_t got = 0;
    int ret;

    *n = 0;
    if (t->is_failed)
        return PV_TLS_FAILED;
    ERR_clear_error();
    if (!t->is_done) {
        ret = SSL_do_handshake(t->ssl);
        if (ret == 1) {
            const unsigned char *p;
            unsigned int l;

            t->is_done = 1;
            SSL_get0_alpn_selected(t->ssl, &p, &l);
            if (l > 0)
                t->alpn = pv_xstrndup((const char *)p, l);
            return PV_TLS_HANDSHAKE_DONE;
        }
        if (SSL_get_error(t->ssl, ret) == SSL_ERROR_WANT_READ)
            return PV_TLS_WANT;
        return tls_fail(t, ret, "tls handshake failed");
    }
    ret = SSL_read_ex(t->ssl, buf, cap, &got);
    if (ret == 1) {
        *n = got;
        return PV_TLS_DATA;
    }
    switch (SSL_get_error(t->ssl, ret)) {
    case SSL_ERROR_WANT_READ: return PV_TLS_WANT;
    case SSL_ERROR_ZERO_RETURN: return PV_TLS_CLOSED;
    default: return tls_fail(t, ret, "tls error");
    }
}

int
pv_tls_write(pv_tls_t *t, const char *data, size_t len)
{
    size_t written;
    int ret;

    if (!t->is_done || t->is_failed || t->sent_close)
        return PV_ERROR;
    if (len == 0)
        return PV_OK;
    ERR_clear_error();
    ret = SSL_write_ex(t->ssl, data, len, &written);
    if (ret != 1) {
        tls_fail(t, ret, "tls write failed");
        return PV_ERROR;
    }
    return PV_OK;
}

void
pv_tls_close_notify(pv_tls_t *t)
{
    if (!t->is_done || t->is_failed || t->sent_close)
        return;
    t->sent_close = 1;
    ERR_clear_error();
    SSL_shutdown(t->ssl);
    ERR_clear_error();
}

int
pv_tls_is_done(const pv_tls_t *t)
{
    return t->is_done;
}

const char *
pv_tls_error(const pv_tls_t *t)
{
    return t->err != NULL ? t->err : "tls error";
}

size_t
pv_tls_memory(const pv_tls_t *t)
{
    size_t n = sizeof(*t) + t->stash_len;

    if (t->err != NULL)
        n += strlen(t->err) + 1;
    if (t->alpn != NULL)
        n += strlen(t->alpn) + 1;
    return n;
}

const char *
pv_tls_version(const pv_tls_t *t)
{
    return t->is_done ? SSL_get_version(t->ssl) : NULL;
}

const char *
pv_tls_sni(const pv_tls_t *t)
{
    return SSL_get_servername(t->ssl, TLSEXT_NAMETYPE_host_name);
}

const char *
pv_tls_alpn(const pv_tls_t *t)
{
    return t->alpn;
}

/* RFC 5929 §4.1: the certificate hash uses the certificate's signature
 * hash, with SHA-256 in place of MD5 and SHA-1. Signatures without a
 * separate hash (Ed25519) have no defined value. */
static int
tls_end_point(pv_tls_t *t, uint8_t *out, size_t *len)
{
    X509 *cert = t->is_server ? SSL_get_certificate(t->ssl)
                              : SSL_get0_peer_certificate(t->ssl);
    const EVP_MD *md;
    unsigned int n = 0;
    int mdnid = NID_undef;

    if (cert == NULL ||
        X509_get_signature_info(cert, &mdnid, NULL, NULL, NULL) != 1 ||
        mdnid == NID_undef)
        return PV_ERROR;
    if (mdnid == NID_md5 || mdnid == NID_sha1)
        mdnid = NID_sha256;
    md = EVP_get_digestbynid(mdnid);
    if (md == NULL || (size_t)EVP_MD_get_size(md) > *len)
        return PV_ERROR;
    if (X509_digest(cert, md, out, &n) != 1)
        return PV_ERROR;
    *len = n;
    return PV_OK;
}

int
pv_tls_channel_binding(pv_tls_t *t, const char *type, uint8_t *out, size_t *len)
{
    int rc = PV_ERROR;

    if (!t->is_done || t->is_failed)
        return PV_ERROR;
    ERR_clear_error();
    if (strcmp(type, "tls-unique") == 0) {
        /* RFC 5929 §3.1: the first Finished message of the latest
         * handshake: the client's on a full handshake. COMPAT: also on
         * TLS 1.3, where slixmpp still asks for it and Prosody and
         * ejabberd answer with the client's Finished the same way. */
        int own = !t->is_server;
        size_t n;

        if (SSL_session_reused(t->ssl))
            own = !own;
        n = own ? SSL_get_finished(t->ssl, out, *len)
                : SSL_get_peer_finished(t->ssl, out, *len);
        if (n > 0 && n <= *len) {
            *len = n;
            rc = PV_OK;
        }
    } else if (strcmp(type, "tls-server-end-point") == 0) {
        rc = tls_end_point(t, out, len);
    } else if (strcmp(type, "tls-exporter") == 0) {
        /* RFC 9266 §2; TLS 1.2 would need extended master secret, and
         * we only advertise it on TLS 1.3. */
        if (SSL_version(t->ssl) == TLS1_3_VERSION && *len >= TLS_EXPORTER_LEN &&
            SSL_export_keying_material(
                t->ssl, out, TLS_EXPORTER_LEN, TLS_EXPORTER_LABEL,
                strlen(TLS_EXPORTER_LABEL), NULL, 0, 0) == 1) {
            *len = TLS_EXPORTER_LEN;
            rc = PV_OK;
        }
    }
    ERR_clear_error();
    return rc;
}

int
pv_tls_cb_types(pv_tls_t *t, const char **types, int max)
{
    static const char *const all[] = {"tls-exporter", "tls-server-end-point",
                                      "tls-unique"};
    uint8_t buf[EVP_MAX_MD_SIZE];
    size_t i;
    int n = 0;

    /* computing a binding costs a digest of our certificate: the stream
     * features and SASL both ask, so the answer is kept */
    if (!t->is_cb_known && t->is_done && !t->is_failed) {
        for (i = 0; i < PV_COUNTOF(all); i++) {
            size_t len = sizeof(buf);

            if (pv_tls_channel_binding(t, all[i], buf, &len) == PV_OK)
                t->cb_mask |= 1u << i;
        }
        t->is_cb_known = 1;
    }
    for (i = 0; i < PV_COUNTOF(all) && n < max; i++)
        if (t->cb_mask & (1u << i))
            types[n++] = all[i];
    return n;
}

int
pv_tls_peer_cn(const pv_tls_t *t, char *buf, size_t len)
{
    X509 *peer = SSL_get0_peer_certificate(t->ssl);

    if (peer == NULL || len > 0x7fffffff ||
        X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName,
                                  buf, (int)len) < 0)
        return PV_ERROR;
    return PV_OK;
}

int
pv_tls_peer_verify(const pv_tls_t *t, const char *host, char *err,
                   size_t errlen)
{
    X509 *peer = SSL_get0_peer_certificate(t->ssl);
    long res;

    if (!t->is_done || peer == NULL) {
        snprintf(err, errlen, "no peer certificate");
        return PV_ERROR;
    }
    res = SSL_get_verify_result(t->ssl);
    if (res != X509_V_OK) {
        snprintf(err, errlen, "%s", X509_verify_cert_error_string(res));
        return PV_ERROR;
    }
    if (host != NULL &&
        X509_check_host(peer, host, strlen(host), 0, NULL) != 1) {
        snprintf(err, errlen, "certificate does not match %s", host);
        return PV_ERROR;
    }
    return PV_OK;
}
