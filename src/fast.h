/* src/fast.h: XEP-0484 FAST tokens: the per-client token record (two
 * slots, 'current' and 'new', XEP-0484 §6.1) kept in the store
 * "fast.tokens" (MAP: host, user, user-agent id -> record), its text
 * encoding, the HT-SHA-256-NONE proof (draft-schmaus-kitten-sasl-ht) and
 * the check/rotate rules. The record holds the token itself: HT uses it
 * as the HMAC key, so a hash would not do (the store is 0600). */
#ifndef PV_FAST_H
#define PV_FAST_H

#include <stdint.h>

#include <palaver/defs.h>
#include <palaver/storage.h>

#define PV_FAST_MECH "HT-SHA-256-NONE"
#define PV_FAST_TOKEN_MAX 64      /* token text incl. NUL */
#define PV_FAST_ID_MAX 128        /* longest user-agent id we key on */
#define PV_FAST_FP_LEN 16         /* hex credential fingerprint */
/* Default lifetime of a token (the fast_token_lifetime directive). */
#define PV_FAST_DEFAULT_LIFETIME_S (14 * 86400)

typedef struct pv_fast_slot_s {
    char token[PV_FAST_TOKEN_MAX];  /* "" = empty slot */
    int64_t expiry;                 /* Unix seconds */
    uint64_t count;                 /* highest count accepted, 0: none */
} pv_fast_slot_t;

typedef struct pv_fast_record_s {
    /* the account's credentials when the token was issued: a changed
     * password voids every token (PV_FAST_FP_LEN hex digits) */
    char fp[PV_FAST_FP_LEN + 1];
    pv_fast_slot_t cur, next;
} pv_fast_record_t;

/* Record <-> stored text "1 FP CUR_TOKEN CUR_EXPIRY CUR_COUNT NEW_TOKEN
 * NEW_EXPIRY NEW_COUNT" ('-' for an empty token). encode returns a
 * malloc'd NUL-terminated string and its length in *len. decode returns
 * PV_ERROR for anything else (a damaged row is ignored, never trusted). */
char *pv_fast_record_encode(const pv_fast_record_t *r, size_t *len);
pv_rc_t pv_fast_record_decode(const void *data, size_t len,
                              pv_fast_record_t *out);

/* A fresh random token (base64url of 24 random bytes, 32 characters)
 * into out. PV_ERROR if the RNG fails. */
pv_rc_t pv_fast_token_new(char out[PV_FAST_TOKEN_MAX]);

/* HT-SHA-256: HMAC-SHA-256(key = token, label || cb_data) into out
 * (32 bytes). label is "Initiator" or "Responder". */
void pv_fast_ht_sha256(const char *token, const char *label,
                       const uint8_t *cb_data, size_t cb_len,
                       uint8_t out[32]);

/* Splits an HT initial response "authcid NUL proof": *authcid points
 * into msg (authcid_len bytes, non-empty, no NUL), *proof after the NUL.
 * PV_ERROR when malformed or the proof is not 32 bytes. */
pv_rc_t pv_fast_parse_initial(const uint8_t *msg, size_t len,
                              const char **authcid, size_t *authcid_len,
                              const uint8_t **proof);

/* Which slot a proof matched. */
typedef enum {
    PV_FAST_NO_MATCH = 0,
    PV_FAST_MATCH_CUR,
    PV_FAST_MATCH_NEXT
} pv_fast_match_t;

/* XEP-0484 §6.1: tries the 'new' slot, then 'current'; a slot matches
 * when unexpired at now, proof equals its Initiator HMAC (constant time)
 * and, when has_count, count is above the slot's last count (replay
 * protection). On a match r is updated: a matching 'new' token moves to
 * 'current' (voiding the older one) and the slot remembers count. */
pv_fast_match_t pv_fast_check(pv_fast_record_t *r, const uint8_t proof[32],
                              int64_t now, int has_count, uint64_t count);

/* XEP-0082 DateTime (UTC, "2026-11-27T23:47:41Z") of t into out. */
void pv_fast_datetime(int64_t t, char out[32]);

/* The fingerprint of a credential blob (the account's SHA-256 StoredKey
 * and salt): hex of the first 8 bytes of SHA-256(data). */
void pv_fast_fingerprint(const void *data, size_t len,
                         char out[PV_FAST_FP_LEN + 1]);

/* The "fast.tokens" store of st (opened on first use), or NULL. */
pv_store_t *pv_fast_store(pv_storage_t *st);

#endif
