/* src/stun.c: the STUN/TURN message codec of include/palaver/stun.h
 * (RFC 8489, RFC 8656): validation of untrusted datagrams, attribute
 * access, building replies into caller buffers, integrity (OpenSSL HMAC)
 * and FINGERPRINT (CRC-32). No allocation and no state. */
#include <string.h>
#include <netinet/in.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include <palaver/stun.h>

#define FINGERPRINT_XOR 0x5354554eu

static uint16_t
rd16(const uint8_t *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}

static uint32_t
rd32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) |
           ((uint32_t)p[2] << 8) | p[3];
}

static void
wr16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void
wr32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* Reflected CRC-32 (polynomial 0xEDB88320) four bits at a time: a 16-entry
 * constant table is enough, FINGERPRINT is never on the relay's data
 * path (Send indications and ChannelData carry none from our side). */
static const uint32_t crc_nibble[16] = {
    0x00000000, 0x1db71064, 0x3b6e20c8, 0x26d930ac,
    0x76dc4190, 0x6b6b51f4, 0x4db26158, 0x5005713c,
    0xedb88320, 0xf00f9344, 0xd6d6a3e8, 0xcb61b38c,
    0x9b64c2b0, 0x86d3d2d4, 0xa00ae278, 0xbdbdf21c
};

uint32_t
pv_stun_crc32(const void *data, size_t len)
{
    const uint8_t *p = data;
    uint32_t crc = 0xffffffffu;
    size_t i;

    for (i = 0; i < len; i++) {
        crc ^= p[i];
        crc = (crc >> 4) ^ crc_nibble[crc & 0xf];
        crc = (crc >> 4) ^ crc_nibble[crc & 0xf];
    }
    return crc ^ 0xffffffffu;
}

/* Attribute types whose meaning this codec (and mod_turn) knows; any
 * other comprehension-required type is reported (RFC 8489 §14). ICE's
 * are here because a Binding request from an ICE agent carries them and
 * a STUN server answers such requests. */
static const uint16_t known_types[] = {
    PV_STUN_A_MAPPED_ADDRESS, PV_STUN_A_USERNAME,
    PV_STUN_A_MESSAGE_INTEGRITY, PV_STUN_A_ERROR_CODE,
    PV_STUN_A_UNKNOWN_ATTRIBUTES, PV_STUN_A_CHANNEL_NUMBER,
    PV_STUN_A_LIFETIME, PV_STUN_A_XOR_PEER_ADDRESS, PV_STUN_A_DATA,
    PV_STUN_A_REALM, PV_STUN_A_NONCE, PV_STUN_A_XOR_RELAYED_ADDRESS,
    PV_STUN_A_REQUESTED_ADDRESS_FAMILY, PV_STUN_A_EVEN_PORT,
    PV_STUN_A_REQUESTED_TRANSPORT, PV_STUN_A_DONT_FRAGMENT,
    PV_STUN_A_MESSAGE_INTEGRITY_SHA256, PV_STUN_A_PASSWORD_ALGORITHM,
    PV_STUN_A_USERHASH, PV_STUN_A_XOR_MAPPED_ADDRESS,
    PV_STUN_A_RESERVATION_TOKEN, PV_STUN_A_PRIORITY,
    PV_STUN_A_USE_CANDIDATE
};

static int
is_known(uint16_t type)
{
    size_t i;

    if (type >= 0x8000)
        return 1;   /* comprehension-optional: ignoring is allowed */
    for (i = 0; i < PV_COUNTOF(known_types); i++)
        if (known_types[i] == type)
            return 1;
    return 0;
}

int
pv_stun_is_stun(const void *data, size_t len)
{
    const uint8_t *p = data;

    return len >= PV_STUN_HEADER_LEN && (p[0] & 0xc0) == 0 &&
           rd32(p + 4) == PV_STUN_MAGIC;
}

pv_stun_err_t
pv_stun_parse(pv_stun_msg_t *m, const void *data, size_t len)
{
    const uint8_t *p = data;
    uint16_t type, mlen;
    size_t off;
    int after_mi = 0, after_mi256 = 0;

    memset(m, 0, sizeof(*m));
    if (len < PV_STUN_HEADER_LEN)
        return PV_STUN_E_SHORT;
    if ((p[0] & 0xc0) != 0 || rd32(p + 4) != PV_STUN_MAGIC)
        return PV_STUN_E_NOT_STUN;
    type = rd16(p);
    mlen = rd16(p + 2);
    if ((mlen & 3) != 0)
        return PV_STUN_E_LENGTH;
    if (len < PV_STUN_HEADER_LEN + (size_t)mlen)
        return PV_STUN_E_SHORT;
    if (len > PV_STUN_HEADER_LEN + (size_t)mlen)
        return PV_STUN_E_LENGTH;
    m->data = p;
    m->len = len;
    /* method bits M0-M11 are interleaved with the class bits C0, C1
     * (RFC 8489 §5, figure 3) */
    m->method = (uint16_t)((type & 0x000f) | ((type & 0x00e0) >> 1) |
                           ((type & 0x3e00) >> 2));
    m->cls = (uint8_t)(((type & 0x0010) >> 4) | ((type & 0x0100) >> 7));
    memcpy(m->tid, p + 8, PV_STUN_TID_LEN);

    for (off = PV_STUN_HEADER_LEN; off < len;) {
        uint16_t at, alen;
        size_t padded;
        pv_stun_attr_t *a;

        if (len - off < 4)
            return PV_STUN_E_ATTR;
        at = rd16(p + off);
        alen = rd16(p + off + 2);
        padded = ((size_t)alen + 3) & ~(size_t)3;
        if (padded > len - off - 4)
            return PV_STUN_E_ATTR;
        if (at == PV_STUN_A_FINGERPRINT) {
            uint32_t want;

            if (alen != 4 || off + 8 != len)
                return PV_STUN_E_FINGERPRINT;
            /* the CRC covers the message up to the attribute, with the
             * header's length already counting it (§14.7): it does */
            want = pv_stun_crc32(p, off) ^ FINGERPRINT_XOR;
            if (rd32(p + off + 4) != want)
                return PV_STUN_E_FINGERPRINT;
            m->has_fingerprint = 1;
        } else if (after_mi256 ||
                   (after_mi && at != PV_STUN_A_MESSAGE_INTEGRITY_SHA256)) {
            /* §14.5: everything after the integrity attributes except
             * FINGERPRINT is ignored */
            off += 4 + padded;
            continue;
        }
        if (at == PV_STUN_A_MESSAGE_INTEGRITY) {
            if (alen != PV_STUN_HMAC_SHA1_LEN)
                return PV_STUN_E_INTEGRITY;
            after_mi = 1;
        } else if (at == PV_STUN_A_MESSAGE_INTEGRITY_SHA256) {
            if (alen < 16 || alen > PV_STUN_HMAC_SHA256_LEN ||
                (alen & 3) != 0)
                return PV_STUN_E_INTEGRITY;
            after_mi256 = 1;
        }
        if (m->n_attrs == PV_STUN_MAX_ATTRS)
            return PV_STUN_E_ATTR;
        a = &m->attrs[m->n_attrs++];
        a->type = at;
        a->len = alen;
        a->value = p + off + 4;
        a->offset = off;
        if (!is_known(at) && m->n_unknown < PV_STUN_MAX_UNKNOWN)
            m->unknown[m->n_unknown++] = at;
        off += 4 + padded;
    }
    return PV_STUN_OK;
}

const char *
pv_stun_strerror(pv_stun_err_t e)
{
    switch (e) {
    case PV_STUN_OK:
        return "ok";
    case PV_STUN_E_SHORT:
        return "truncated message";
    case PV_STUN_E_NOT_STUN:
        return "not a STUN message";
    case PV_STUN_E_LENGTH:
        return "bad message length";
    case PV_STUN_E_ATTR:
        return "malformed attribute";
    case PV_STUN_E_FINGERPRINT:
        return "bad FINGERPRINT";
    case PV_STUN_E_INTEGRITY:
        return "bad MESSAGE-INTEGRITY";
    }
    return "unknown error";
}

const pv_stun_attr_t *
pv_stun_find(const pv_stun_msg_t *m, uint16_t type)
{
    size_t i;

    for (i = 0; i < m->n_attrs; i++)
        if (m->attrs[i].type == type)
            return &m->attrs[i];
    return NULL;
}

pv_rc_t
pv_stun_get_u32(const pv_stun_msg_t *m, uint16_t type, uint32_t *out)
{
    const pv_stun_attr_t *a = pv_stun_find(m, type);

    if (a == NULL || a->len != 4)
        return PV_ERROR;
    *out = rd32(a->value);
    return PV_OK;
}

pv_rc_t
pv_stun_get_xor_addr(const pv_stun_msg_t *m, uint16_t type,
                     struct sockaddr_storage *out)
{
    const pv_stun_attr_t *a = pv_stun_find(m, type);
    uint16_t port;

    if (a == NULL)
        return PV_NOTFOUND;
    if (a->len < 4)
        return PV_ERROR;
    memset(out, 0, sizeof(*out));
    port = rd16(a->value + 2) ^ (uint16_t)(PV_STUN_MAGIC >> 16);
    if (a->value[1] == 0x01 && a->len == 8) {
        struct sockaddr_in *sin = (struct sockaddr_in *)out;

        sin->sin_family = AF_INET;
        sin->sin_port = htons(port);
        sin->sin_addr.s_addr = htonl(rd32(a->value + 4) ^ PV_STUN_MAGIC);
        return PV_OK;
    }
    if (a->value[1] == 0x02 && a->len == 20) {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)out;
        uint8_t pad[16];
        size_t i;

        /* IPv6 is xored with the cookie followed by the transaction id */
        wr32(pad, PV_STUN_MAGIC);
        memcpy(pad + 4, m->tid, PV_STUN_TID_LEN);
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(port);
        for (i = 0; i < 16; i++)
            sin6->sin6_addr.s6_addr[i] = a->value[4 + i] ^ pad[i];
        return PV_OK;
    }
    return PV_ERROR;
}

pv_rc_t
pv_stun_get_error(const pv_stun_msg_t *m, int *code, const char **reason,
                  size_t *reason_len)
{
    const pv_stun_attr_t *a = pv_stun_find(m, PV_STUN_A_ERROR_CODE);
    int cls, num;

    if (a == NULL)
        return PV_NOTFOUND;
    if (a->len < 4)
        return PV_ERROR;
    cls = a->value[2] & 0x07;
    num = a->value[3];
    if (cls < 3 || cls > 6 || num > 99)
        return PV_ERROR;
    *code = cls * 100 + num;
    if (reason != NULL)
        *reason = (const char *)a->value + 4;
    if (reason_len != NULL)
        *reason_len = a->len - 4u;
    return PV_OK;
}

pv_rc_t
pv_stun_get_channel(const pv_stun_msg_t *m, uint16_t *chan)
{
    const pv_stun_attr_t *a = pv_stun_find(m, PV_STUN_A_CHANNEL_NUMBER);
    uint16_t c;

    if (a == NULL || a->len != 4)
        return PV_ERROR;
    c = rd16(a->value);
    if (c < 0x4000 || c > 0x4fff)
        return PV_ERROR;
    *chan = c;
    return PV_OK;
}

void
pv_stun_long_term_key(const char *username, const char *realm,
                      const char *password, uint8_t key[PV_STUN_KEY_LEN])
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned int n = 0;

    memset(key, 0, PV_STUN_KEY_LEN);
    if (ctx == NULL)
        return;
    if (EVP_DigestInit_ex(ctx, EVP_md5(), NULL) == 1) {
        EVP_DigestUpdate(ctx, username, strlen(username));
        EVP_DigestUpdate(ctx, ":", 1);
        EVP_DigestUpdate(ctx, realm, strlen(realm));
        EVP_DigestUpdate(ctx, ":", 1);
        EVP_DigestUpdate(ctx, password, strlen(password));
        EVP_DigestFinal_ex(ctx, key, &n);
    }
    EVP_MD_CTX_free(ctx);
}

pv_rc_t
pv_stun_rest_password(const char *secret, const char *username, char *out,
                      size_t out_len)
{
    uint8_t mac[EVP_MAX_MD_SIZE];
    size_t n = 0;

    if (out_len < PV_STUN_REST_PASSWORD_LEN ||
        EVP_Q_mac(NULL, "HMAC", NULL, "SHA1", NULL, secret, strlen(secret),
                  (const unsigned char *)username, strlen(username), mac,
                  sizeof(mac), &n) == NULL || n != PV_STUN_HMAC_SHA1_LEN)
        return PV_ERROR;
    EVP_EncodeBlock((unsigned char *)out, mac, (int)n);
    return PV_OK;
}

/* HMAC(digest, key) over the header of data with its length field
 * replaced by mlen, then data[20 .. end). The integrity attribute covers
 * the message up to itself, counted in the length as if it were last
 * (RFC 8489 §14.5). Returns the MAC length, 0 on failure. */
static size_t
stun_hmac(const char *digest, const void *key, size_t key_len,
          const uint8_t *data, size_t end, uint16_t mlen, uint8_t *out,
          size_t out_cap)
{
    EVP_MAC *mac;
    EVP_MAC_CTX *ctx = NULL;
    OSSL_PARAM params[2];
    uint8_t hdr[PV_STUN_HEADER_LEN];
    size_t n = 0;
    static const uint8_t nokey = 0;

    mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    if (mac == NULL)
        return 0;
    ctx = EVP_MAC_CTX_new(mac);
    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
                                                 (char *)digest, 0);
    params[1] = OSSL_PARAM_construct_end();
    memcpy(hdr, data, PV_STUN_HEADER_LEN);
    wr16(hdr + 2, mlen);
    if (key_len == 0)
        key = &nokey;   /* an empty short-term password is a valid key */
    if (ctx == NULL || EVP_MAC_init(ctx, key, key_len, params) != 1 ||
        EVP_MAC_update(ctx, hdr, sizeof(hdr)) != 1 ||
        EVP_MAC_update(ctx, data + PV_STUN_HEADER_LEN,
                       end - PV_STUN_HEADER_LEN) != 1 ||
        EVP_MAC_final(ctx, out, &n, out_cap) != 1)
        n = 0;
    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(mac);
    return n;
}

static pv_rc_t
check_mi(const pv_stun_msg_t *m, uint16_t type, const char *digest,
         const void *key, size_t key_len)
{
    const pv_stun_attr_t *a = pv_stun_find(m, type);
    uint8_t mac[PV_STUN_HMAC_SHA256_LEN];
    size_t n;

    if (a == NULL)
        return PV_NOTFOUND;
    n = stun_hmac(digest, key, key_len, m->data, a->offset,
                  (uint16_t)(a->offset + 4 + a->len - PV_STUN_HEADER_LEN),
                  mac, sizeof(mac));
    /* a truncated SHA-256 tag compares its first a->len bytes (§14.6) */
    if (n < a->len || CRYPTO_memcmp(mac, a->value, a->len) != 0)
        return PV_ERROR;
    return PV_OK;
}

pv_rc_t
pv_stun_check_integrity(const pv_stun_msg_t *m, const void *key,
                        size_t key_len)
{
    return check_mi(m, PV_STUN_A_MESSAGE_INTEGRITY, "SHA1", key, key_len);
}

pv_rc_t
pv_stun_check_integrity_sha256(const pv_stun_msg_t *m, const void *key,
                               size_t key_len)
{
    return check_mi(m, PV_STUN_A_MESSAGE_INTEGRITY_SHA256, "SHA256", key,
                    key_len);
}

/* --- building ------------------------------------------------------- */

static void
set_length(pv_stun_builder_t *b, size_t total)
{
    wr16(b->buf + 2, (uint16_t)(total - PV_STUN_HEADER_LEN));
}

void
pv_stun_build_init(pv_stun_builder_t *b, void *buf, size_t cap,
                   uint16_t method, uint8_t cls, const uint8_t *tid)
{
    uint16_t type;

    b->buf = buf;
    b->cap = cap;
    b->len = 0;
    b->is_overflow = cap < PV_STUN_HEADER_LEN;
    if (b->is_overflow)
        return;
    type = (uint16_t)((method & 0x000f) | ((method & 0x0070) << 1) |
                      ((method & 0x0f80) << 2) | ((cls & 1) << 4) |
                      ((cls & 2) << 7));
    wr16(b->buf, type);
    wr16(b->buf + 2, 0);
    wr32(b->buf + 4, PV_STUN_MAGIC);
    memcpy(b->buf + 8, tid, PV_STUN_TID_LEN);
    b->len = PV_STUN_HEADER_LEN;
}

/* Reserves an attribute of len bytes, returns its value area or NULL. */
static uint8_t *
attr_reserve(pv_stun_builder_t *b, uint16_t type, size_t len)
{
    size_t padded = (len + 3) & ~(size_t)3;
    uint8_t *v;

    if (b->is_overflow || len > 0xffff || b->cap - b->len < 4 + padded ||
        b->len + 4 + padded - PV_STUN_HEADER_LEN > 0xffff) {
        b->is_overflow = 1;
        return NULL;
    }
    wr16(b->buf + b->len, type);
    wr16(b->buf + b->len + 2, (uint16_t)len);
    v = b->buf + b->len + 4;
    memset(v + len, 0, padded - len);
    b->len += 4 + padded;
    set_length(b, b->len);
    return v;
}

void
pv_stun_add(pv_stun_builder_t *b, uint16_t type, const void *value,
            size_t len)
{
    uint8_t *v = attr_reserve(b, type, len);

    if (v != NULL && len > 0)
        memcpy(v, value, len);
}

void
pv_stun_add_str(pv_stun_builder_t *b, uint16_t type, const char *s)
{
    pv_stun_add(b, type, s, strlen(s));
}

void
pv_stun_add_u32(pv_stun_builder_t *b, uint16_t type, uint32_t val)
{
    uint8_t *v = attr_reserve(b, type, 4);

    if (v != NULL)
        wr32(v, val);
}

void
pv_stun_add_xor_addr(pv_stun_builder_t *b, uint16_t type,
                     const struct sockaddr *sa)
{
    uint8_t *v;
    size_t i;

    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;

        if ((v = attr_reserve(b, type, 8)) == NULL)
            return;
        v[0] = 0;
        v[1] = 0x01;
        wr16(v + 2, ntohs(sin->sin_port) ^ (uint16_t)(PV_STUN_MAGIC >> 16));
        wr32(v + 4, ntohl(sin->sin_addr.s_addr) ^ PV_STUN_MAGIC);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;
        uint8_t pad[16];

        if ((v = attr_reserve(b, type, 20)) == NULL)
            return;
        wr32(pad, PV_STUN_MAGIC);
        memcpy(pad + 4, b->buf + 8, PV_STUN_TID_LEN);
        v[0] = 0;
        v[1] = 0x02;
        wr16(v + 2, ntohs(sin6->sin6_port) ^ (uint16_t)(PV_STUN_MAGIC >> 16));
        for (i = 0; i < 16; i++)
            v[4 + i] = sin6->sin6_addr.s6_addr[i] ^ pad[i];
    } else {
        b->is_overflow = 1;
    }
}

void
pv_stun_add_error(pv_stun_builder_t *b, int code, const char *reason)
{
    size_t rlen = strlen(reason);
    uint8_t *v = attr_reserve(b, PV_STUN_A_ERROR_CODE, 4 + rlen);

    if (v == NULL)
        return;
    v[0] = 0;
    v[1] = 0;
    v[2] = (uint8_t)((code / 100) & 0x07);
    v[3] = (uint8_t)(code % 100);
    memcpy(v + 4, reason, rlen);
}

void
pv_stun_add_unknown(pv_stun_builder_t *b, const uint16_t *types, size_t n)
{
    uint8_t *v = attr_reserve(b, PV_STUN_A_UNKNOWN_ATTRIBUTES, 2 * n);
    size_t i;

    if (v == NULL)
        return;
    for (i = 0; i < n; i++)
        wr16(v + 2 * i, types[i]);
}

void
pv_stun_add_channel(pv_stun_builder_t *b, uint16_t chan)
{
    pv_stun_add_u32(b, PV_STUN_A_CHANNEL_NUMBER, (uint32_t)chan << 16);
}

void
pv_stun_add_transport(pv_stun_builder_t *b, uint8_t proto)
{
    pv_stun_add_u32(b, PV_STUN_A_REQUESTED_TRANSPORT, (uint32_t)proto << 24);
}

static void
add_mi(pv_stun_builder_t *b, uint16_t type, const char *digest,
       size_t mac_len, const void *key, size_t key_len)
{
    uint8_t mac[PV_STUN_HMAC_SHA256_LEN];
    size_t at = b->len;

    if (b->is_overflow)
        return;
    if (b->cap - b->len < 4 + mac_len) {
        b->is_overflow = 1;
        return;
    }
    if (stun_hmac(digest, key, key_len, b->buf, at,
                  (uint16_t)(at + 4 + mac_len - PV_STUN_HEADER_LEN), mac,
                  sizeof(mac)) != mac_len) {
        b->is_overflow = 1;
        return;
    }
    pv_stun_add(b, type, mac, mac_len);
}

void
pv_stun_add_integrity(pv_stun_builder_t *b, const void *key, size_t key_len)
{
    add_mi(b, PV_STUN_A_MESSAGE_INTEGRITY, "SHA1", PV_STUN_HMAC_SHA1_LEN,
           key, key_len);
}

void
pv_stun_add_integrity_sha256(pv_stun_builder_t *b, const void *key,
                             size_t key_len)
{
    add_mi(b, PV_STUN_A_MESSAGE_INTEGRITY_SHA256, "SHA256",
           PV_STUN_HMAC_SHA256_LEN, key, key_len);
}

void
pv_stun_add_fingerprint(pv_stun_builder_t *b)
{
    size_t at = b->len;
    uint8_t *v;

    if (b->is_overflow || b->cap - b->len < 8) {
        b->is_overflow = 1;
        return;
    }
    set_length(b, at + 8);
    v = attr_reserve(b, PV_STUN_A_FINGERPRINT, 4);
    if (v != NULL)
        wr32(v, pv_stun_crc32(b->buf, at) ^ FINGERPRINT_XOR);
}

size_t
pv_stun_build_len(const pv_stun_builder_t *b)
{
    return b->is_overflow ? 0 : b->len;
}

/* --- ChannelData ---------------------------------------------------- */

int
pv_stun_is_channel_data(const void *data, size_t len)
{
    const uint8_t *p = data;

    return len >= 1 && (p[0] & 0xc0) == 0x40;
}

pv_rc_t
pv_stun_channel_data_parse(const void *data, size_t len, uint16_t *chan,
                           const uint8_t **payload, size_t *payload_len)
{
    const uint8_t *p = data;
    uint16_t c, n;

    if (len < 4)
        return PV_ERROR;
    c = rd16(p);
    n = rd16(p + 2);
    if (c < 0x4000 || c > 0x4fff || (size_t)n > len - 4)
        return PV_ERROR;
    *chan = c;
    *payload = p + 4;
    *payload_len = n;
    return PV_OK;
}

size_t
pv_stun_channel_data_build(void *buf, size_t cap, uint16_t chan,
                           const void *payload, size_t payload_len,
                           int is_stream)
{
    uint8_t *p = buf;
    size_t total = 4 + payload_len;

    if (payload_len > 0xffff)
        return 0;
    if (is_stream)
        total = (total + 3) & ~(size_t)3;
    if (total > cap)
        return 0;
    wr16(p, chan);
    wr16(p + 2, (uint16_t)payload_len);
    if (payload_len > 0)
        memcpy(p + 4, payload, payload_len);
    memset(p + 4 + payload_len, 0, total - 4 - payload_len);
    return total;
}

pv_rc_t
pv_stun_frame_len(const void *data, size_t avail, size_t *frame_len)
{
    const uint8_t *p = data;
    size_t n;

    if (avail < 4)
        return PV_AGAIN;
    n = rd16(p + 2);
    if ((p[0] & 0xc0) == 0) {
        if ((n & 3) != 0)
            return PV_ERROR;
        *frame_len = PV_STUN_HEADER_LEN + n;
        return PV_OK;
    }
    if ((p[0] & 0xc0) == 0x40) {
        *frame_len = (4 + n + 3) & ~(size_t)3;
        return PV_OK;
    }
    return PV_ERROR;
}
