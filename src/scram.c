/* src/scram.c: SCRAM (RFC 5802, RFC 7677) server and client exchanges with
 * channel binding and XEP-0474 v0.5.0 downgrade protection, PLAIN parsing
 * (RFC 4616), key derivation and strict base64. Every message is hostile
 * input: bounded, never assumed NUL-terminated. No I/O and no XML here;
 * sasl.c owns the negotiation and account storage owns the keys. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <unistr.h>

#include <palaver/mem.h>

#include "scram.h"

/* Random nonce bytes; 18 bytes give 24 base64 characters, none a ','. */
#define SCRAM_NONCE_BYTES 18
/* Messages are split into at most this many comma-separated fields; more
 * means a pile of extensions nobody sends. */
#define SCRAM_MAX_FIELDS 32
/* Bounds for copied name lists (mechanisms, channel binding types). */
#define SCRAM_MAX_NAMES 64
#define SCRAM_MAX_NAME_LEN 64
/* Longest salt we put into a server-first-message. */
#define SCRAM_MAX_SALT 1024
/* Largest decoded inner base64 value (c=, s=, p=, v=). */
#define SCRAM_MAX_B64 PV_SCRAM_MAX_MSG

static const char scram_b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* A slice of a message; never NUL-terminated. */
typedef struct scram_span_s {
    const char *p;
    size_t len;
} scram_span_t;

typedef struct scram_names_s {
    char **v;
    size_t n;
    int present; /* the list was given at all (XEP-0474 step 3) */
} scram_names_t;

enum {
    SCRAM_SRV_START,
    SCRAM_SRV_FIRST_DONE, /* client-first parsed, no credentials yet */
    SCRAM_SRV_CHALLENGED, /* server-first built */
    SCRAM_SRV_SUCCESS,
    SCRAM_SRV_FAILED
};

enum {
    SCRAM_CLI_START,
    SCRAM_CLI_FIRST_SENT,
    SCRAM_CLI_FINAL_SENT,
    SCRAM_CLI_SUCCESS,
    SCRAM_CLI_FAILED
};

struct pv_scram_server_s {
    pv_scram_hash_t hash;
    int plus;
    int server_supports_plus;
    scram_names_t cb_types;
    int state;
    int is_fake;
    char gs2_flag;    /* 'n', 'y' or 'p' */
    char *gs2_header; /* raw, up to and including the second ',' */
    size_t gs2_len;
    char *first_bare; /* client-first-message-bare, for AuthMessage */
    size_t first_bare_len;
    char *username;
    char *authzid;
    char *cb_type;
    char *cnonce;
    char *snonce; /* injected; otherwise random at challenge */
    char *server_first;
    size_t server_first_len;
    char *server_final;
    size_t server_final_len;
    uint8_t stored_key[EVP_MAX_MD_SIZE];
    uint8_t server_key[EVP_MAX_MD_SIZE];
    const char *error;
    const char *scram_error;
};

struct pv_scram_client_s {
    pv_scram_hash_t hash;
    char *username; /* escaped saslname */
    char *password;
    char *authzid; /* escaped saslname or NULL */
    char *cb_type;
    uint8_t *cb_data;
    size_t cb_len;
    int cb_supported;
    char *cnonce;
    scram_names_t adv_mechs;
    scram_names_t adv_cb_types;
    int state;
    int ssdp_verified;
    char *client_first;
    size_t client_first_len;
    size_t bare_off; /* where client-first-message-bare starts */
    char *client_final;
    size_t client_final_len;
    uint8_t server_sig[EVP_MAX_MD_SIZE];
    const char *error;
};

/* ---- hashes ---------------------------------------------------------- */

static const EVP_MD *
scram_md(pv_scram_hash_t h)
{
    switch (h) {
    case PV_SCRAM_SHA1: return EVP_sha1();
    case PV_SCRAM_SHA256: return EVP_sha256();
    }
    return NULL;
}

size_t
pv_scram_digest_len(pv_scram_hash_t h)
{
    switch (h) {
    case PV_SCRAM_SHA1: return 20;
    case PV_SCRAM_SHA256: return 32;
    }
    return 0;
}

const char *
pv_scram_mech_name(pv_scram_hash_t h, int plus)
{
    switch (h) {
    case PV_SCRAM_SHA1: return plus ? "SCRAM-SHA-1-PLUS" : "SCRAM-SHA-1";
    case PV_SCRAM_SHA256: return plus ? "SCRAM-SHA-256-PLUS" : "SCRAM-SHA-256";
    }
    return NULL;
}

static int
scram_hmac(pv_scram_hash_t h, const uint8_t *key, size_t key_len,
           const void *data, size_t len, uint8_t *out)
{
    unsigned out_len = 0;

    if (key_len > INT_MAX)
        return PV_ERROR;
    if (HMAC(scram_md(h), key, (int)key_len, data, len, out, &out_len) == NULL)
        return PV_ERROR;
    if (out_len != pv_scram_digest_len(h))
        return PV_ERROR;
    return PV_OK;
}

static int
scram_digest(pv_scram_hash_t h, const void *data, size_t len, uint8_t *out)
{
    unsigned out_len = 0;

    if (EVP_Digest(data, len, out, &out_len, scram_md(h), NULL) != 1 ||
        out_len != pv_scram_digest_len(h))
        return PV_ERROR;
    return PV_OK;
}

/* RFC 5802 §3; the client also needs ClientKey itself. */
static int
scram_keys(pv_scram_hash_t h, const char *password, const uint8_t *salt,
           size_t salt_len, unsigned iterations, uint8_t *client_key,
           uint8_t *stored_key, uint8_t *server_key)
{
    uint8_t salted[EVP_MAX_MD_SIZE];
    size_t dlen = pv_scram_digest_len(h);
    size_t pw_len;
    int rc = PV_ERROR;

    if (dlen == 0 || password == NULL || salt == NULL || salt_len == 0 ||
        salt_len > INT_MAX || iterations == 0 || iterations > INT_MAX)
        return PV_ERROR;
    pw_len = strlen(password);
    if (pw_len > INT_MAX)
        return PV_ERROR;
    if (PKCS5_PBKDF2_HMAC(password, (int)pw_len, salt, (int)salt_len,
                          (int)iterations, scram_md(h), (int)dlen, salted) != 1)
        goto out;
    if (scram_hmac(h, salted, dlen, "Client Key", 10, client_key) != PV_OK ||
        scram_digest(h, client_key, dlen, stored_key) != PV_OK ||
        scram_hmac(h, salted, dlen, "Server Key", 10, server_key) != PV_OK)
        goto out;
    rc = PV_OK;
out:
    OPENSSL_cleanse(salted, sizeof(salted));
    return rc;
}

int
pv_scram_derive(pv_scram_hash_t h, const char *password, const uint8_t *salt,
                size_t salt_len, unsigned iterations, uint8_t *stored_key,
                uint8_t *server_key)
{
    uint8_t client_key[EVP_MAX_MD_SIZE];
    int rc;

    if (stored_key == NULL || server_key == NULL)
        return PV_ERROR;
    rc = scram_keys(h, password, salt, salt_len, iterations, client_key,
                    stored_key, server_key);
    OPENSSL_cleanse(client_key, sizeof(client_key));
    return rc;
}

/* ---- base64 ---------------------------------------------------------- */

static int
scram_b64_value(char ch)
{
    const char *p;

    if (ch == '\0')
        return -1;
    p = strchr(scram_b64_alphabet, ch);
    return p ? (int)(p - scram_b64_alphabet) : -1;
}

/* Strict RFC 4648 decoding into out (out_size must allow 3 bytes per 4
 * characters, since EVP_DecodeBlock writes the pad bytes too). The
 * validation is ours because EVP_DecodeBlock skips leading whitespace,
 * accepts '=' in the middle and ignores pad bits. */
static int
scram_b64_decode(const char *in, size_t in_len, uint8_t *out, size_t out_size,
                 size_t *out_len)
{
    size_t i, pad = 0;
    int n, last;

    if (in_len == 0) {
        *out_len = 0;
        return PV_OK;
    }
    if (in_len % 4 != 0 || in_len > INT_MAX || in_len / 4 * 3 > out_size)
        return PV_ERROR;
    for (i = 0; i < in_len; i++) {
        if (in[i] == '=') {
            if (i < in_len - 2)
                return PV_ERROR;
            pad++;
        } else if (pad > 0 || scram_b64_value(in[i]) < 0) {
            return PV_ERROR;
        }
    }
    /* zero pad bits: one encoding per byte string (RFC 4648 §3.5) */
    if (pad > 0) {
        last = scram_b64_value(in[in_len - pad - 1]);
        if ((pad == 1 && (last & 0x03)) || (pad == 2 && (last & 0x0f)))
            return PV_ERROR;
    }
    n = EVP_DecodeBlock(out, (const unsigned char *)in, (int)in_len);
    if (n < 0 || (size_t)n < pad)
        return PV_ERROR;
    *out_len = (size_t)n - pad;
    return PV_OK;
}

/* Encodes into out, which holds 4 * ceil(len / 3) + 1 bytes. */
static size_t
scram_b64_encode(const uint8_t *in, size_t len, char *out)
{
    if (len == 0) {
        out[0] = '\0';
        return 0;
    }
    return (size_t)EVP_EncodeBlock((unsigned char *)out, in, (int)len);
}

#define SCRAM_B64_LEN(n) (((n) + 2) / 3 * 4)
#define SCRAM_B64_MAX_INPUT ((size_t)1 << 30)

char *
pv_base64_encode(const void *data, size_t len, size_t *out_len)
{
    char *out;
    size_t n;

    if (len > SCRAM_B64_MAX_INPUT || (data == NULL && len > 0))
        return NULL;
    out = pv_xmalloc(SCRAM_B64_LEN(len) + 1);
    n = scram_b64_encode(data, len, out);
    if (out_len != NULL)
        *out_len = n;
    return out;
}

uint8_t *
pv_base64_decode(const char *text, size_t len, size_t *out_len)
{
    uint8_t *out;
    size_t n;

    if ((text == NULL && len > 0) || len > SCRAM_B64_MAX_INPUT)
        return NULL;
    if (len == 1 && text[0] == '=') /* RFC 6120 §6.4.2 */
        len = 0;
    out = pv_xmalloc(len / 4 * 3 + 1);
    if (scram_b64_decode(text, len, out, len / 4 * 3, &n) != PV_OK) {
        free(out);
        return NULL;
    }
    out[n] = '\0';
    if (out_len != NULL)
        *out_len = n;
    return out;
}

/* ---- syntax (RFC 5802 §7) -------------------------------------------- */

/* Splits msg at ','. Returns the number of fields, or -1 if there are more
 * than max. Empty fields are kept (the gs2 header has one). */
static int
scram_split(const char *msg, size_t len, scram_span_t *f, int max)
{
    const char *p = msg, *end = msg + len, *comma;
    int n = 0;

    for (;;) {
        if (n == max)
            return -1;
        comma = memchr(p, ',', (size_t)(end - p));
        f[n].p = p;
        f[n].len = comma ? (size_t)(comma - p) : (size_t)(end - p);
        n++;
        if (comma == NULL)
            return n;
        p = comma + 1;
    }
}

/* The field is "k=" followed by at least one byte; *val gets the rest. */
static int
scram_attr(scram_span_t f, char k, scram_span_t *val)
{
    if (f.len < 3 || f.p[0] != k || f.p[1] != '=')
        return 0;
    val->p = f.p + 2;
    val->len = f.len - 2;
    return 1;
}

static int
scram_is_alpha(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z');
}

/* value = 1*value-char: UTF-8 without NUL and ','. NUL is refused for the
 * whole message and ',' cannot survive the split, so UTF-8 remains. */
static int
scram_is_value(scram_span_t v)
{
    return v.len > 0 && u8_check((const uint8_t *)v.p, v.len) == NULL;
}

/* attr-val = ALPHA "=" value */
static int
scram_is_ext(scram_span_t f)
{
    scram_span_t v;

    return f.len >= 3 && scram_is_alpha(f.p[0]) && scram_attr(f, f.p[0], &v) &&
           scram_is_value(v);
}

/* printable = %x21-2B / %x2D-7E, one or more (the nonce) */
static int
scram_is_printable(scram_span_t v)
{
    size_t i;

    if (v.len == 0)
        return 0;
    for (i = 0; i < v.len; i++) {
        unsigned char ch = (unsigned char)v.p[i];

        if (ch < 0x21 || ch > 0x7e || ch == ',')
            return 0;
    }
    return 1;
}

static int
scram_is_printable_str(const char *s)
{
    scram_span_t v = {s, s ? strlen(s) : 0};

    return s != NULL && scram_is_printable(v);
}

/* cb-name = 1*(ALPHA / DIGIT / "." / "-") */
static int
scram_is_cb_name(const char *p, size_t len)
{
    size_t i;

    if (len == 0 || len > SCRAM_MAX_NAME_LEN)
        return 0;
    for (i = 0; i < len; i++)
        if (!scram_is_alpha(p[i]) && !(p[i] >= '0' && p[i] <= '9') &&
            p[i] != '.' && p[i] != '-')
            return 0;
    return 1;
}

static int
scram_hex_is(char ch, char upper)
{
    /* RFC 5234 §2.3: quoted ABNF strings such as "=2C" are
     * case-insensitive */
    return ch == upper || ch == upper + ('a' - 'A');
}

/* saslname = 1*(value-safe-char / "=2C" / "=3D"); returns the decoded
 * name (malloc'd) or NULL if v is not a valid saslname. */
static char *
scram_saslname_decode(scram_span_t v)
{
    char *out, *o;
    size_t i;

    if (!scram_is_value(v))
        return NULL;
    out = o = pv_xmalloc(v.len + 1);
    for (i = 0; i < v.len; i++) {
        if (v.p[i] != '=') {
            *o++ = v.p[i];
        } else if (i + 2 < v.len && v.p[i + 1] == '2' &&
                   scram_hex_is(v.p[i + 2], 'C')) {
            *o++ = ',';
            i += 2;
        } else if (i + 2 < v.len && v.p[i + 1] == '3' &&
                   scram_hex_is(v.p[i + 2], 'D')) {
            *o++ = '=';
            i += 2;
        } else {
            free(out);
            return NULL;
        }
    }
    *o = '\0';
    return out;
}

/* The inverse, for the client; s must be non-empty UTF-8. */
static char *
scram_saslname_encode(const char *s)
{
    pv_buf_t b = {0};

    if (s == NULL || *s == '\0' ||
        u8_check((const uint8_t *)s, strlen(s)) != NULL)
        return NULL;
    for (; *s != '\0'; s++) {
        if (*s == ',')
            pv_buf_puts(&b, "=2C");
        else if (*s == '=')
            pv_buf_puts(&b, "=3D");
        else
            pv_buf_append(&b, s, 1);
    }
    return pv_buf_steal(&b, NULL);
}

/* Common checks for every incoming message. */
static int
scram_msg_ok(const char *msg, size_t len)
{
    return msg != NULL && len > 0 && len <= PV_SCRAM_MAX_MSG &&
           memchr(msg, '\0', len) == NULL;
}

/* ---- name lists and XEP-0474 ----------------------------------------- */

static int
scram_names_copy(scram_names_t *dst, const char *const *src)
{
    size_t n = 0, i;

    dst->v = NULL;
    dst->n = 0;
    dst->present = src != NULL;
    if (src == NULL)
        return PV_OK;
    while (src[n] != NULL) {
        if (n == SCRAM_MAX_NAMES || src[n][0] == '\0' ||
            strlen(src[n]) > SCRAM_MAX_NAME_LEN)
            return PV_ERROR;
        n++;
    }
    dst->v = pv_xcalloc(n + 1, sizeof(char *));
    for (i = 0; i < n; i++)
        dst->v[i] = pv_xstrdup(src[i]);
    dst->n = n;
    return PV_OK;
}

static void
scram_names_free(scram_names_t *l)
{
    size_t i;

    for (i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

static int
scram_strcmp_p(const void *a, const void *b)
{
    /* strcmp compares as unsigned char: the "i;octet" collation of
     * RFC 4790 §9.3 that XEP-0474 requires */
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void
scram_join_sorted(pv_buf_t *b, char *const *v, size_t n)
{
    const char **sorted;
    size_t i;

    if (n == 0)
        return;
    sorted = pv_xcalloc(n, sizeof(*sorted));
    memcpy(sorted, v, n * sizeof(*sorted));
    qsort(sorted, n, sizeof(*sorted), scram_strcmp_p);
    for (i = 0; i < n; i++) {
        if (i > 0)
            pv_buf_append(b, "\x1e", 1);
        pv_buf_puts(b, sorted[i]);
    }
    free(sorted);
}

/* XEP-0474 v0.5.0 §3.1: sorted mechanisms joined by %x1E, then, if
 * XEP-0440 was used, %x1F and the sorted channel binding types joined by
 * %x1E; hashed with the SCRAM hash; base64 into out (room for
 * SCRAM_B64_LEN(EVP_MAX_MD_SIZE) + 1). */
static int
scram_ssdp_hash(pv_scram_hash_t h, const scram_names_t *mechs,
                const scram_names_t *cbs, char *out)
{
    uint8_t md[EVP_MAX_MD_SIZE];
    pv_buf_t b = {0};
    int rc;

    scram_join_sorted(&b, mechs->v, mechs->n);
    if (cbs->present) {
        pv_buf_append(&b, "\x1f", 1);
        scram_join_sorted(&b, cbs->v, cbs->n);
    }
    rc = scram_digest(h, b.data ? b.data : "", b.len, md);
    pv_buf_free(&b);
    if (rc != PV_OK)
        return PV_ERROR;
    scram_b64_encode(md, pv_scram_digest_len(h), out);
    return PV_OK;
}

static char *
scram_random_nonce(void)
{
    uint8_t raw[SCRAM_NONCE_BYTES];
    char *out = pv_xmalloc(SCRAM_B64_LEN(SCRAM_NONCE_BYTES) + 1);

    if (RAND_bytes(raw, sizeof(raw)) != 1) {
        free(out);
        return NULL;
    }
    scram_b64_encode(raw, sizeof(raw), out);
    return out;
}

/* AuthMessage = client-first-message-bare "," server-first-message ","
 * client-final-message-without-proof (RFC 5802 §3) */
static void
scram_auth_message(pv_buf_t *b, const char *first_bare, size_t first_len,
                   const char *server_first, size_t server_len,
                   const char *final_wo_proof, size_t final_len)
{
    pv_buf_append(b, first_bare, first_len);
    pv_buf_append(b, ",", 1);
    pv_buf_append(b, server_first, server_len);
    pv_buf_append(b, ",", 1);
    pv_buf_append(b, final_wo_proof, final_len);
}

/* ---- server ---------------------------------------------------------- */

static int
scram_srv_fail(pv_scram_server_t *s, const char *cond, const char *scram)
{
    s->state = SCRAM_SRV_FAILED;
    s->error = cond;
    s->scram_error = scram;
    return PV_ERROR;
}

pv_scram_server_t *
pv_scram_server_new(pv_scram_hash_t h, int plus, int server_supports_plus,
                    const char *const *cb_types)
{
    pv_scram_server_t *s;

    if (scram_md(h) == NULL)
        return NULL;
    s = pv_xcalloc(1, sizeof(*s));
    s->hash = h;
    s->plus = plus != 0;
    s->server_supports_plus = server_supports_plus != 0;
    if (scram_names_copy(&s->cb_types, cb_types) != PV_OK) {
        scram_names_free(&s->cb_types);
        free(s);
        return NULL;
    }
    return s;
}

void
pv_scram_server_free(pv_scram_server_t *s)
{
    if (s == NULL)
        return;
    scram_names_free(&s->cb_types);
    free(s->gs2_header);
    free(s->first_bare);
    free(s->username);
    free(s->authzid);
    free(s->cb_type);
    free(s->cnonce);
    free(s->snonce);
    free(s->server_first);
    free(s->server_final);
    OPENSSL_cleanse(s, sizeof(*s));
    free(s);
}

int
pv_scram_server_set_nonce(pv_scram_server_t *s, const char *snonce)
{
    if (s->state >= SCRAM_SRV_CHALLENGED || !scram_is_printable_str(snonce) ||
        strlen(snonce) > 256)
        return PV_ERROR;
    free(s->snonce);
    s->snonce = pv_xstrdup(snonce);
    return PV_OK;
}

static int
scram_srv_cb_supported(pv_scram_server_t *s, const char *p, size_t len)
{
    size_t i;

    for (i = 0; i < s->cb_types.n; i++)
        if (strlen(s->cb_types.v[i]) == len &&
            memcmp(s->cb_types.v[i], p, len) == 0)
            return 1;
    return 0;
}

int
pv_scram_server_client_first(pv_scram_server_t *s, const char *msg, size_t len)
{
    scram_span_t f[SCRAM_MAX_FIELDS], v;
    int n, i;

    if (s->state == SCRAM_SRV_FAILED)
        return PV_ERROR;
    if (s->state != SCRAM_SRV_START)
        return scram_srv_fail(s, "malformed-request", "other-error");
    if (!scram_msg_ok(msg, len))
        return scram_srv_fail(s, "malformed-request", "invalid-encoding");
    n = scram_split(msg, len, f, SCRAM_MAX_FIELDS);
    /* gs2-cbind-flag "," [authzid] "," username "," nonce *("," ext) */
    if (n < 4)
        return scram_srv_fail(s, "malformed-request", "invalid-encoding");

    if (f[0].len == 1 && (f[0].p[0] == 'n' || f[0].p[0] == 'y')) {
        s->gs2_flag = f[0].p[0];
    } else if (scram_attr(f[0], 'p', &v) && scram_is_cb_name(v.p, v.len)) {
        s->gs2_flag = 'p';
        s->cb_type = pv_xstrndup(v.p, v.len);
    } else {
        return scram_srv_fail(s, "malformed-request", "invalid-encoding");
    }

    if (f[1].len > 0) {
        if (!scram_attr(f[1], 'a', &v) ||
            (s->authzid = scram_saslname_decode(v)) == NULL)
            return scram_srv_fail(s, "malformed-request",
                                  "invalid-username-encoding");
    }

    /* RFC 5802 §5.1: m= is a mandatory extension we do not support */
    if (f[2].len >= 2 && f[2].p[0] == 'm' && f[2].p[1] == '=')
        return scram_srv_fail(s, "malformed-request",
                              "extensions-not-supported");
    if (!scram_attr(f[2], 'n', &v) ||
        (s->username = scram_saslname_decode(v)) == NULL)
        return scram_srv_fail(s, "malformed-request",
                              "invalid-username-encoding");
    if (!scram_attr(f[3], 'r', &v) || !scram_is_printable(v))
        return scram_srv_fail(s, "malformed-request", "invalid-encoding");
    s->cnonce = pv_xstrndup(v.p, v.len);
    for (i = 4; i < n; i++)
        if (!scram_is_ext(f[i]))
            return scram_srv_fail(s, "malformed-request", "invalid-encoding");

    /* The gs2 flag must agree with the mechanism (RFC 5802 §6) */
    switch (s->gs2_flag) {
    case 'p':
        if (!s->plus)
            return scram_srv_fail(s, "invalid-mechanism",
                                  "channel-binding-not-supported");
        if (!scram_srv_cb_supported(s, s->cb_type, strlen(s->cb_type)))
            return scram_srv_fail(s, "not-authorized",
                                  "unsupported-channel-binding-type");
        break;
    case 'y':
        if (s->plus)
            return scram_srv_fail(s, "invalid-mechanism",
                                  "channel-binding-not-supported");
        /* the client could bind and saw no -PLUS: someone removed it */
        if (s->server_supports_plus)
            return scram_srv_fail(s, "not-authorized",
                                  "server-does-support-channel-binding");
        break;
    default:
        if (s->plus)
            return scram_srv_fail(s, "invalid-mechanism",
                                  "channel-binding-not-supported");
        break;
    }

    s->gs2_len = (size_t)(f[2].p - msg);
    s->gs2_header = pv_xstrndup(msg, s->gs2_len);
    s->first_bare_len = len - s->gs2_len;
    s->first_bare = pv_xstrndup(f[2].p, s->first_bare_len);
    s->state = SCRAM_SRV_FIRST_DONE;
    return PV_OK;
}

const char *
pv_scram_server_username(pv_scram_server_t *s)
{
    return s->username;
}

const char *
pv_scram_server_authzid(pv_scram_server_t *s)
{
    return s->authzid;
}

const char *
pv_scram_server_cb_type(pv_scram_server_t *s)
{
    return s->cb_type;
}

/* Builds the server-first-message once the keys are in place. */
static int
scram_srv_challenge(pv_scram_server_t *s, const uint8_t *salt, size_t salt_len,
                    unsigned iterations, const char *const *advertised_mechs)
{
    char hash_b64[SCRAM_B64_LEN(EVP_MAX_MD_SIZE) + 1];
    char salt_b64[SCRAM_B64_LEN(SCRAM_MAX_SALT) + 1];
    pv_buf_t b = {0};
    scram_names_t mechs;

    if (s->snonce == NULL && (s->snonce = scram_random_nonce()) == NULL)
        return scram_srv_fail(s, "temporary-auth-failure", "no-resources");
    if (scram_names_copy(&mechs, advertised_mechs) != PV_OK) {
        scram_names_free(&mechs);
        return scram_srv_fail(s, "temporary-auth-failure", "other-error");
    }
    if (mechs.present &&
        scram_ssdp_hash(s->hash, &mechs, &s->cb_types, hash_b64) != PV_OK) {
        scram_names_free(&mechs);
        return scram_srv_fail(s, "temporary-auth-failure", "other-error");
    }
    scram_b64_encode(salt, salt_len, salt_b64);
    pv_buf_printf(&b, "r=%s%s,s=%s,i=%u", s->cnonce, s->snonce, salt_b64,
                  iterations);
    if (mechs.present)
        pv_buf_printf(&b, ",h=%s", hash_b64);
    scram_names_free(&mechs);
    s->server_first = pv_buf_steal(&b, &s->server_first_len);
    s->state = SCRAM_SRV_CHALLENGED;
    return PV_OK;
}

int
pv_scram_server_set_credentials(pv_scram_server_t *s, const uint8_t *salt,
                                size_t salt_len, unsigned iterations,
                                const uint8_t *stored_key,
                                const uint8_t *server_key,
                                const char *const *advertised_mechs)
{
    size_t dlen = pv_scram_digest_len(s->hash);

    if (s->state == SCRAM_SRV_FAILED)
        return PV_ERROR;
    if (s->state != SCRAM_SRV_FIRST_DONE)
        return scram_srv_fail(s, "malformed-request", "other-error");
    if (salt == NULL || salt_len == 0 || salt_len > SCRAM_MAX_SALT ||
        iterations == 0 || stored_key == NULL || server_key == NULL)
        return scram_srv_fail(s, "temporary-auth-failure", "other-error");
    memcpy(s->stored_key, stored_key, dlen);
    memcpy(s->server_key, server_key, dlen);
    return scram_srv_challenge(s, salt, salt_len, iterations, advertised_mechs);
}

int
pv_scram_server_set_fake(pv_scram_server_t *s, const uint8_t *secret,
                         size_t secret_len, unsigned iterations,
                         const char *const *advertised_mechs)
{
    static const char label[] = "palaver scram fake salt";
    uint8_t mac[EVP_MAX_MD_SIZE];
    pv_buf_t b = {0};
    size_t dlen = pv_scram_digest_len(s->hash);
    int rc;

    if (s->state == SCRAM_SRV_FAILED)
        return PV_ERROR;
    if (s->state != SCRAM_SRV_FIRST_DONE)
        return scram_srv_fail(s, "malformed-request", "other-error");
    if (secret == NULL || secret_len == 0 || iterations == 0)
        return scram_srv_fail(s, "temporary-auth-failure", "other-error");
    /* Same salt for the same name on every attempt and for both hashes,
     * as a real account has; independent of the hash so SHA-1 and SHA-256
     * probes agree. The label (with its NUL) separates this use of the
     * secret from any other. */
    pv_buf_append(&b, label, sizeof(label));
    pv_buf_puts(&b, s->username);
    rc = scram_hmac(PV_SCRAM_SHA256, secret, secret_len, b.data, b.len, mac);
    pv_buf_free(&b);
    if (rc != PV_OK)
        return scram_srv_fail(s, "temporary-auth-failure", "other-error");
    /* Random keys: no proof can match, and is_fake makes sure of it */
    if (RAND_bytes(s->stored_key, (int)dlen) != 1 ||
        RAND_bytes(s->server_key, (int)dlen) != 1)
        return scram_srv_fail(s, "temporary-auth-failure", "no-resources");
    s->is_fake = 1;
    return scram_srv_challenge(s, mac, PV_SCRAM_SALT_LEN, iterations,
                               advertised_mechs);
}

const char *
pv_scram_server_first(pv_scram_server_t *s, size_t *len)
{
    if (s->server_first == NULL || s->state == SCRAM_SRV_FAILED)
        return NULL;
    if (len != NULL)
        *len = s->server_first_len;
    return s->server_first;
}

int
pv_scram_server_client_final(pv_scram_server_t *s, const char *msg, size_t len,
                             const uint8_t *cb_data, size_t cb_len)
{
    scram_span_t f[SCRAM_MAX_FIELDS], v;
    uint8_t cbind[SCRAM_MAX_B64], proof[SCRAM_MAX_B64];
    uint8_t sig[EVP_MAX_MD_SIZE], key[EVP_MAX_MD_SIZE];
    uint8_t stored[EVP_MAX_MD_SIZE];
    char sig_b64[SCRAM_B64_LEN(EVP_MAX_MD_SIZE) + 1];
    size_t dlen = pv_scram_digest_len(s->hash), cbind_len, proof_len;
    size_t want_len, nonce_len, i;
    pv_buf_t auth = {0};
    pv_buf_t want = {0};
    int n, rc, same;

    if (s->state == SCRAM_SRV_FAILED)
        return PV_ERROR;
    if (s->state != SCRAM_SRV_CHALLENGED)
        return scram_srv_fail(s, "malformed-request", "other-error");
    if (!scram_msg_ok(msg, len))
        return scram_srv_fail(s, "malformed-request", "invalid-encoding");
    /* c=... "," r=... *("," ext) "," p=... */
    n = scram_split(msg, len, f, SCRAM_MAX_FIELDS);
    if (n < 3)
        return scram_srv_fail(s, "malformed-request", "invalid-encoding");
    for (i = 2; i + 1 < (size_t)n; i++)
        if (!scram_is_ext(f[i]))
            return scram_srv_fail(s, "malformed-request", "invalid-encoding");
    if (!scram_attr(f[0], 'c', &v) ||
        scram_b64_decode(v.p, v.len, cbind, sizeof(cbind), &cbind_len) != PV_OK)
        return scram_srv_fail(s, "malformed-request", "invalid-encoding");
    if (!scram_attr(f[n - 1], 'p', &v) ||
        scram_b64_decode(v.p, v.len, proof, sizeof(proof), &proof_len) != PV_OK)
        return scram_srv_fail(s, "malformed-request", "invalid-encoding");
    if (!scram_attr(f[1], 'r', &v) || !scram_is_printable(v))
        return scram_srv_fail(s, "malformed-request", "invalid-encoding");

    nonce_len = strlen(s->cnonce) + strlen(s->snonce);
    if (v.len != nonce_len || memcmp(v.p, s->cnonce, strlen(s->cnonce)) != 0 ||
        memcmp(v.p + strlen(s->cnonce), s->snonce, strlen(s->snonce)) != 0)
        return scram_srv_fail(s, "not-authorized", "other-error");

    /* RFC 5802 §6: c= is the gs2 header followed, for p=, by the channel
     * binding data of the TLS connection we are actually on */
    if (s->gs2_flag == 'p' && (cb_data == NULL || cb_len == 0))
        return scram_srv_fail(s, "not-authorized",
                              "channel-binding-not-supported");
    pv_buf_append(&want, s->gs2_header, s->gs2_len);
    if (s->gs2_flag == 'p')
        pv_buf_append(&want, cb_data, cb_len);
    want_len = want.len;
    same =
        cbind_len == want_len && CRYPTO_memcmp(cbind, want.data, want_len) == 0;
    pv_buf_free(&want);
    if (!same)
        return scram_srv_fail(s, "not-authorized",
                              "channel-bindings-dont-match");

    if (proof_len != dlen)
        return scram_srv_fail(s, "not-authorized", "invalid-proof");
    scram_auth_message(&auth, s->first_bare, s->first_bare_len, s->server_first,
                       s->server_first_len, msg,
                       (size_t)(f[n - 1].p - 1 - msg));
    /* ClientKey = ClientProof XOR HMAC(StoredKey, AuthMessage); the proof
     * holds when H(ClientKey) = StoredKey */
    rc = scram_hmac(s->hash, s->stored_key, dlen, auth.data, auth.len, sig);
    if (rc == PV_OK) {
        for (i = 0; i < dlen; i++)
            key[i] = proof[i] ^ sig[i];
        rc = scram_digest(s->hash, key, dlen, stored);
    }
    if (rc == PV_OK)
        rc = scram_hmac(s->hash, s->server_key, dlen, auth.data, auth.len, sig);
    pv_buf_free(&auth);
    OPENSSL_cleanse(key, sizeof(key));
    if (rc != PV_OK)
        return scram_srv_fail(s, "temporary-auth-failure", "other-error");
    if (CRYPTO_memcmp(stored, s->stored_key, dlen) != 0 || s->is_fake)
        return scram_srv_fail(s, "not-authorized", "invalid-proof");

    scram_b64_encode(sig, dlen, sig_b64);
    s->server_final = pv_xasprintf("v=%s", sig_b64);
    s->server_final_len = strlen(s->server_final);
    s->state = SCRAM_SRV_SUCCESS;
    return PV_OK;
}

const char *
pv_scram_server_final(pv_scram_server_t *s, size_t *len)
{
    if (s->state != SCRAM_SRV_SUCCESS)
        return NULL;
    if (len != NULL)
        *len = s->server_final_len;
    return s->server_final;
}

const char *
pv_scram_server_error(pv_scram_server_t *s)
{
    return s->error;
}

const char *
pv_scram_server_scram_error(pv_scram_server_t *s)
{
    return s->scram_error;
}

/* ---- client ---------------------------------------------------------- */

static int
scram_cli_fail(pv_scram_client_t *c, const char *why)
{
    c->state = SCRAM_CLI_FAILED;
    c->error = why;
    return PV_ERROR;
}

pv_scram_client_t *
pv_scram_client_new(pv_scram_hash_t h, const char *username,
                    const char *password, const char *cb_type,
                    const uint8_t *cb_data, size_t cb_len)
{
    pv_scram_client_t *c;
    char *user;

    if (scram_md(h) == NULL || password == NULL ||
        (cb_type != NULL && !scram_is_cb_name(cb_type, strlen(cb_type))) ||
        (cb_type != NULL && (cb_data == NULL || cb_len == 0)) ||
        cb_len > PV_SCRAM_MAX_MSG)
        return NULL;
    if ((user = scram_saslname_encode(username)) == NULL)
        return NULL;
    c = pv_xcalloc(1, sizeof(*c));
    c->hash = h;
    c->username = user;
    c->password = pv_xstrdup(password);
    if (cb_type != NULL) {
        c->cb_type = pv_xstrdup(cb_type);
        c->cb_data = pv_xmalloc(cb_len);
        memcpy(c->cb_data, cb_data, cb_len);
        c->cb_len = cb_len;
    }
    return c;
}

void
pv_scram_client_free(pv_scram_client_t *c)
{
    if (c == NULL)
        return;
    if (c->password != NULL)
        OPENSSL_cleanse(c->password, strlen(c->password));
    free(c->username);
    free(c->password);
    free(c->authzid);
    free(c->cb_type);
    free(c->cb_data);
    free(c->cnonce);
    scram_names_free(&c->adv_mechs);
    scram_names_free(&c->adv_cb_types);
    free(c->client_first);
    free(c->client_final);
    OPENSSL_cleanse(c, sizeof(*c));
    free(c);
}

int
pv_scram_client_set_authzid(pv_scram_client_t *c, const char *authzid)
{
    char *esc;

    if (c->state != SCRAM_CLI_START ||
        (esc = scram_saslname_encode(authzid)) == NULL)
        return PV_ERROR;
    free(c->authzid);
    c->authzid = esc;
    return PV_OK;
}

int
pv_scram_client_set_cb_supported(pv_scram_client_t *c)
{
    if (c->state != SCRAM_CLI_START || c->cb_type != NULL)
        return PV_ERROR;
    c->cb_supported = 1;
    return PV_OK;
}

int
pv_scram_client_set_nonce(pv_scram_client_t *c, const char *cnonce)
{
    if (c->state != SCRAM_CLI_START || !scram_is_printable_str(cnonce) ||
        strlen(cnonce) > 256)
        return PV_ERROR;
    free(c->cnonce);
    c->cnonce = pv_xstrdup(cnonce);
    return PV_OK;
}

int
pv_scram_client_set_advertised(pv_scram_client_t *c, const char *const *mechs,
                               const char *const *cb_types)
{
    if (c->state > SCRAM_CLI_FIRST_SENT || mechs == NULL)
        return PV_ERROR;
    scram_names_free(&c->adv_mechs);
    scram_names_free(&c->adv_cb_types);
    if (scram_names_copy(&c->adv_mechs, mechs) != PV_OK ||
        scram_names_copy(&c->adv_cb_types, cb_types) != PV_OK) {
        scram_names_free(&c->adv_mechs);
        scram_names_free(&c->adv_cb_types);
        c->adv_mechs.present = 0;
        return PV_ERROR;
    }
    return PV_OK;
}

const char *
pv_scram_client_first(pv_scram_client_t *c, size_t *len)
{
    pv_buf_t b = {0};

    if (c->client_first == NULL) {
        if (c->state != SCRAM_CLI_START)
            return NULL;
        if (c->cnonce == NULL && (c->cnonce = scram_random_nonce()) == NULL) {
            scram_cli_fail(c, "internal-error");
            return NULL;
        }
        if (c->cb_type != NULL)
            pv_buf_printf(&b, "p=%s,", c->cb_type);
        else
            pv_buf_puts(&b, c->cb_supported ? "y," : "n,");
        if (c->authzid != NULL)
            pv_buf_printf(&b, "a=%s", c->authzid);
        pv_buf_puts(&b, ",");
        c->bare_off = b.len;
        pv_buf_printf(&b, "n=%s,r=%s", c->username, c->cnonce);
        c->client_first = pv_buf_steal(&b, &c->client_first_len);
        c->state = SCRAM_CLI_FIRST_SENT;
    }
    if (len != NULL)
        *len = c->client_first_len;
    return c->client_first;
}

/* i= value: 1*DIGIT without a leading zero, within our bounds */
static int
scram_parse_iterations(scram_span_t v, unsigned *out)
{
    unsigned long n = 0;
    size_t i;

    if (v.len == 0 || v.len > 10 || v.p[0] == '0')
        return PV_ERROR;
    for (i = 0; i < v.len; i++) {
        if (v.p[i] < '0' || v.p[i] > '9')
            return PV_ERROR;
        n = n * 10 + (unsigned long)(v.p[i] - '0');
    }
    if (n < PV_SCRAM_MIN_ITERATIONS || n > PV_SCRAM_MAX_ITERATIONS)
        return PV_ERROR;
    *out = (unsigned)n;
    return PV_OK;
}

int
pv_scram_client_server_first(pv_scram_client_t *c, const char *msg, size_t len)
{
    scram_span_t f[SCRAM_MAX_FIELDS], v, nonce;
    uint8_t salt[SCRAM_MAX_B64];
    uint8_t client_key[EVP_MAX_MD_SIZE], stored_key[EVP_MAX_MD_SIZE];
    uint8_t server_key[EVP_MAX_MD_SIZE], sig[EVP_MAX_MD_SIZE];
    char hash_b64[SCRAM_B64_LEN(EVP_MAX_MD_SIZE) + 1];
    char proof_b64[SCRAM_B64_LEN(EVP_MAX_MD_SIZE) + 1];
    size_t dlen = pv_scram_digest_len(c->hash), salt_len, cn_len, i;
    size_t wo_proof_len;
    unsigned iterations;
    pv_buf_t fin = {0}, auth = {0}, gs2 = {0};
    char *cbind;
    int n, rc;

    if (c->state == SCRAM_CLI_FAILED)
        return PV_ERROR;
    if (c->state != SCRAM_CLI_FIRST_SENT)
        return scram_cli_fail(c, "wrong-state");
    if (!scram_msg_ok(msg, len))
        return scram_cli_fail(c, "malformed-server-first");
    /* [m=...] r=... "," s=... "," i=... *("," ext) */
    n = scram_split(msg, len, f, SCRAM_MAX_FIELDS);
    if (n < 3 || !scram_attr(f[0], 'r', &nonce) || !scram_is_printable(nonce))
        return scram_cli_fail(c, "malformed-server-first");
    cn_len = strlen(c->cnonce);
    if (nonce.len <= cn_len || memcmp(nonce.p, c->cnonce, cn_len) != 0)
        return scram_cli_fail(c, "nonce-mismatch");
    if (!scram_attr(f[1], 's', &v) ||
        scram_b64_decode(v.p, v.len, salt, sizeof(salt), &salt_len) != PV_OK ||
        salt_len == 0)
        return scram_cli_fail(c, "malformed-server-first");
    if (!scram_attr(f[2], 'i', &v))
        return scram_cli_fail(c, "malformed-server-first");
    if (scram_parse_iterations(v, &iterations) != PV_OK)
        return scram_cli_fail(c, "bad-iteration-count");
    for (i = 3; i < (size_t)n; i++) {
        if (!scram_is_ext(f[i]))
            return scram_cli_fail(c, "malformed-server-first");
        /* XEP-0474 §3.2: a hash that does not match what we saw means the
         * mechanism or channel binding list was tampered with */
        if (f[i].p[0] == 'h' && c->adv_mechs.present) {
            if (scram_ssdp_hash(c->hash, &c->adv_mechs, &c->adv_cb_types,
                                hash_b64) != PV_OK)
                return scram_cli_fail(c, "internal-error");
            if (f[i].len - 2 != strlen(hash_b64) ||
                memcmp(f[i].p + 2, hash_b64, f[i].len - 2) != 0)
                return scram_cli_fail(c, "downgrade-detected");
            c->ssdp_verified = 1;
        }
    }

    if (scram_keys(c->hash, c->password, salt, salt_len, iterations, client_key,
                   stored_key, server_key) != PV_OK)
        return scram_cli_fail(c, "internal-error");

    /* c= base64(gs2 header + cb data), then r= */
    pv_buf_append(&gs2, c->client_first, c->bare_off);
    if (c->cb_type != NULL)
        pv_buf_append(&gs2, c->cb_data, c->cb_len);
    cbind = pv_base64_encode(gs2.data, gs2.len, NULL);
    pv_buf_free(&gs2);
    pv_buf_printf(&fin, "c=%s,r=", cbind);
    free(cbind);
    pv_buf_append(&fin, nonce.p, nonce.len);
    wo_proof_len = fin.len;

    scram_auth_message(&auth, c->client_first + c->bare_off,
                       c->client_first_len - c->bare_off, msg, len, fin.data,
                       wo_proof_len);
    rc = scram_hmac(c->hash, stored_key, dlen, auth.data, auth.len, sig);
    if (rc == PV_OK) {
        for (i = 0; i < dlen; i++)
            client_key[i] ^= sig[i]; /* now ClientProof */
        scram_b64_encode(client_key, dlen, proof_b64);
        rc = scram_hmac(c->hash, server_key, dlen, auth.data, auth.len,
                        c->server_sig);
    }
    pv_buf_free(&auth);
    OPENSSL_cleanse(client_key, sizeof(client_key));
    OPENSSL_cleanse(server_key, sizeof(server_key));
    if (rc != PV_OK) {
        pv_buf_free(&fin);
        return scram_cli_fail(c, "internal-error");
    }
    pv_buf_printf(&fin, ",p=%s", proof_b64);
    c->client_final = pv_buf_steal(&fin, &c->client_final_len);
    c->state = SCRAM_CLI_FINAL_SENT;
    return PV_OK;
}

const char *
pv_scram_client_final(pv_scram_client_t *c, size_t *len)
{
    if (c->state != SCRAM_CLI_FINAL_SENT && c->state != SCRAM_CLI_SUCCESS)
        return NULL;
    if (len != NULL)
        *len = c->client_final_len;
    return c->client_final;
}

int
pv_scram_client_server_final(pv_scram_client_t *c, const char *msg, size_t len)
{
    scram_span_t f[SCRAM_MAX_FIELDS], v;
    uint8_t sig[SCRAM_MAX_B64];
    size_t sig_len, i;
    int n;

    if (c->state == SCRAM_CLI_FAILED)
        return PV_ERROR;
    if (c->state != SCRAM_CLI_FINAL_SENT)
        return scram_cli_fail(c, "wrong-state");
    if (!scram_msg_ok(msg, len))
        return scram_cli_fail(c, "malformed-server-final");
    n = scram_split(msg, len, f, SCRAM_MAX_FIELDS);
    if (n < 1)
        return scram_cli_fail(c, "malformed-server-final");
    for (i = 1; i < (size_t)n; i++)
        if (!scram_is_ext(f[i]))
            return scram_cli_fail(c, "malformed-server-final");
    if (scram_attr(f[0], 'e', &v))
        return scram_cli_fail(c, "server-error");
    if (!scram_attr(f[0], 'v', &v) ||
        scram_b64_decode(v.p, v.len, sig, sizeof(sig), &sig_len) != PV_OK)
        return scram_cli_fail(c, "malformed-server-final");
    if (sig_len != pv_scram_digest_len(c->hash) ||
        CRYPTO_memcmp(sig, c->server_sig, sig_len) != 0)
        return scram_cli_fail(c, "server-signature-mismatch");
    c->state = SCRAM_CLI_SUCCESS;
    return PV_OK;
}

int
pv_scram_client_ssdp_verified(pv_scram_client_t *c)
{
    return c->ssdp_verified;
}

const char *
pv_scram_client_error(pv_scram_client_t *c)
{
    return c->error;
}

/* ---- PLAIN ----------------------------------------------------------- */

int
pv_sasl_plain_parse(const char *msg, size_t len, char **authzid, char **authcid,
                    char **password)
{
    const char *nul1, *nul2, *end = msg + len;
    size_t zid_len, cid_len, pw_len;

    *authzid = *authcid = *password = NULL;
    if (msg == NULL || len == 0 || len > PV_SCRAM_MAX_MSG)
        return PV_ERROR;
    /* RFC 4616 §2: [authzid] NUL authcid NUL passwd, exactly two NULs */
    if ((nul1 = memchr(msg, '\0', len)) == NULL ||
        (nul2 = memchr(nul1 + 1, '\0', (size_t)(end - nul1 - 1))) == NULL ||
        memchr(nul2 + 1, '\0', (size_t)(end - nul2 - 1)) != NULL)
        return PV_ERROR;
    zid_len = (size_t)(nul1 - msg);
    cid_len = (size_t)(nul2 - nul1 - 1);
    pw_len = (size_t)(end - nul2 - 1);
    if (cid_len == 0 || pw_len == 0 ||
        u8_check((const uint8_t *)msg, zid_len) != NULL ||
        u8_check((const uint8_t *)nul1 + 1, cid_len) != NULL ||
        u8_check((const uint8_t *)nul2 + 1, pw_len) != NULL)
        return PV_ERROR;
    if (zid_len > 0)
        *authzid = pv_xstrndup(msg, zid_len);
    *authcid = pv_xstrndup(nul1 + 1, cid_len);
    *password = pv_xstrndup(nul2 + 1, pw_len);
    return PV_OK;
}
