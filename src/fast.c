/* src/fast.c: XEP-0484 FAST token records, the HT-SHA-256 proofs of
 * draft-schmaus-kitten-sasl-ht and the two-slot check (fast.h). Pure
 * functions apart from pv_fast_store(); the exchange is sasl2.c's. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <palaver/mem.h>

#include "fast.h"

#define FAST_HT_LEN 32

static int
fast_token_ok(const char *t)
{
    size_t n = strlen(t);
    const char *p;

    if (n == 0 || n >= PV_FAST_TOKEN_MAX)
        return 0;
    for (p = t; *p; p++)
        if (*p <= ' ' || *p > '~')
            return 0;
    return 1;
}

char *
pv_fast_record_encode(const pv_fast_record_t *r, size_t *len)
{
    char *s = pv_xasprintf("1 %s %s %" PRId64 " %" PRIu64 " %s %" PRId64
                           " %" PRIu64, r->fp[0] ? r->fp : "-",
                           r->cur.token[0] ? r->cur.token : "-",
                           r->cur.expiry, r->cur.count,
                           r->next.token[0] ? r->next.token : "-",
                           r->next.expiry, r->next.count);

    if (len != NULL)
        *len = strlen(s);
    return s;
}

static pv_rc_t
fast_slot_decode(const char *tok, const char *exp, const char *cnt,
            pv_fast_slot_t *slot)
{
    char *end;
    long long e;
    unsigned long long c;

    memset(slot, 0, sizeof(*slot));
    e = strtoll(exp, &end, 10);
    if (*exp == '\0' || *end != '\0')
        return PV_ERROR;
    c = strtoull(cnt, &end, 10);
    if (*cnt == '\0' || *cnt == '-' || *end != '\0')
        return PV_ERROR;
    if (strcmp(tok, "-") == 0)
        return PV_OK;
    if (!fast_token_ok(tok))
        return PV_ERROR;
    strcpy(slot->token, tok);
    slot->expiry = e;
    slot->count = c;
    return PV_OK;
}

pv_rc_t
pv_fast_record_decode(const void *data, size_t len, pv_fast_record_t *out)
{
    char *copy, *f[9], *save = NULL, *p;
    size_t n = 0;
    pv_rc_t rc = PV_ERROR;

    memset(out, 0, sizeof(*out));
    if (data == NULL || len == 0 || len > 512 ||
        memchr(data, '\0', len) != NULL)
        return PV_ERROR;
    copy = pv_xstrndup(data, len);
    for (p = strtok_r(copy, " ", &save); p != NULL && n < 9;
         p = strtok_r(NULL, " ", &save))
        f[n++] = p;
    if (n != 8 || p != NULL || strcmp(f[0], "1") != 0)
        goto out;
    if (strcmp(f[1], "-") != 0) {
        if (strlen(f[1]) != PV_FAST_FP_LEN)
            goto out;
        strcpy(out->fp, f[1]);
    }
    if (fast_slot_decode(f[2], f[3], f[4], &out->cur) != PV_OK ||
        fast_slot_decode(f[5], f[6], f[7], &out->next) != PV_OK)
        goto out;
    rc = PV_OK;
out:
    free(copy);
    if (rc != PV_OK)
        memset(out, 0, sizeof(*out));
    return rc;
}

pv_rc_t
pv_fast_token_new(char out[PV_FAST_TOKEN_MAX])
{
    static const char b64url[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    unsigned char r[24];
    size_t i, o = 0;

    out[0] = '\0';
    if (RAND_bytes(r, sizeof(r)) != 1)
        return PV_ERROR;
    for (i = 0; i < sizeof(r); i += 3) {
        uint32_t v = (uint32_t)r[i] << 16 | (uint32_t)r[i + 1] << 8 |
                     r[i + 2];
        out[o++] = b64url[(v >> 18) & 63];
        out[o++] = b64url[(v >> 12) & 63];
        out[o++] = b64url[(v >> 6) & 63];
        out[o++] = b64url[v & 63];
    }
    out[o] = '\0';
    OPENSSL_cleanse(r, sizeof(r));
    return PV_OK;
}

void
pv_fast_ht_sha256(const char *token, const char *label,
                  const uint8_t *cb_data, size_t cb_len, uint8_t out[32])
{
    unsigned char msg[64 + 128];
    size_t ll = strlen(label);
    unsigned int olen = 0;

    /* label plus channel-binding data (none, 32 or 48 bytes) */
    if (cb_len > sizeof(msg) - ll)
        cb_len = sizeof(msg) - ll;
    memcpy(msg, label, ll);
    if (cb_len > 0)
        memcpy(msg + ll, cb_data, cb_len);
    HMAC(EVP_sha256(), token, (int)strlen(token), msg, ll + cb_len, out,
         &olen);
}

pv_rc_t
pv_fast_parse_initial(const uint8_t *msg, size_t len, const char **authcid,
                      size_t *authcid_len, const uint8_t **proof)
{
    const uint8_t *nul;

    if (msg == NULL)
        return PV_ERROR;
    nul = memchr(msg, '\0', len);
    if (nul == NULL || nul == msg ||
        (size_t)(msg + len - nul - 1) != FAST_HT_LEN)
        return PV_ERROR;
    *authcid = (const char *)msg;
    *authcid_len = (size_t)(nul - msg);
    *proof = nul + 1;
    return PV_OK;
}

static int
fast_slot_matches(const pv_fast_slot_t *slot, const uint8_t proof[32],
             int64_t now, int has_count, uint64_t count)
{
    uint8_t want[FAST_HT_LEN];
    int eq;

    if (slot->token[0] == '\0' || slot->expiry <= now)
        return 0;
    pv_fast_ht_sha256(slot->token, "Initiator", NULL, 0, want);
    eq = CRYPTO_memcmp(want, proof, FAST_HT_LEN) == 0;
    OPENSSL_cleanse(want, sizeof(want));
    if (!eq)
        return 0;
    /* XEP-0484 §5.4: a count at or below one already seen is a replay */
    return !has_count || count > slot->count;
}

pv_fast_match_t
pv_fast_check(pv_fast_record_t *r, const uint8_t proof[32], int64_t now,
              int has_count, uint64_t count)
{
    if (fast_slot_matches(&r->next, proof, now, has_count, count)) {
        /* the client has the newer token: the older one is void now */
        r->cur = r->next;
        memset(&r->next, 0, sizeof(r->next));
        if (has_count)
            r->cur.count = count;
        return PV_FAST_MATCH_NEXT;
    }
    if (fast_slot_matches(&r->cur, proof, now, has_count, count)) {
        if (has_count)
            r->cur.count = count;
        return PV_FAST_MATCH_CUR;
    }
    return PV_FAST_NO_MATCH;
}

void
pv_fast_datetime(int64_t t, char out[32])
{
    time_t tt = (time_t)t;
    struct tm tm;

    gmtime_r(&tt, &tm);
    strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

void
pv_fast_fingerprint(const void *data, size_t len,
                    char out[PV_FAST_FP_LEN + 1])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    size_t i;

    EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL);
    for (i = 0; i < PV_FAST_FP_LEN / 2; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[PV_FAST_FP_LEN] = '\0';
}

pv_store_t *
pv_fast_store(pv_storage_t *st)
{
    return pv_storage_store(st, "fast", "tokens", PV_STORE_MAP);
}
