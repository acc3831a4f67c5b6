/* src/scram.h: the SASL message layer: SCRAM-SHA-1/-SHA-256 (RFC 5802,
 * RFC 7677) server and client state machines with channel binding and
 * XEP-0474 downgrade protection, PLAIN parsing (RFC 4616), key derivation
 * and strict base64. Pure functions over byte strings: no I/O, no XML, no
 * global state; the XMPP SASL negotiation itself lives in sasl.c. */
#ifndef PALAVER_SCRAM_H
#define PALAVER_SCRAM_H

#include <palaver/defs.h>

/* Longest SCRAM or PLAIN message (decoded) we accept, in bytes. */
#define PV_SCRAM_MAX_MSG 4096
/* Iteration counts a client accepts from a server (RFC 7677 §4: at least
 * 4096); the upper bound keeps a hostile server from burning our CPU. */
#define PV_SCRAM_MIN_ITERATIONS 4096u
#define PV_SCRAM_MAX_ITERATIONS 10000000u
/* Length of the fake salt made by pv_scram_server_set_fake(); account
 * storage should use salts of this length so that fakes look real. */
#define PV_SCRAM_SALT_LEN 16

typedef enum {
    PV_SCRAM_SHA1,
    PV_SCRAM_SHA256
} pv_scram_hash_t;

/* Digest length of h in bytes (20, 32); 0 for an unknown h. */
size_t pv_scram_digest_len(pv_scram_hash_t h);

/* "SCRAM-SHA-1", "SCRAM-SHA-256-PLUS" ...; NULL for an unknown h.
 * Returns a static string. */
const char *pv_scram_mech_name(pv_scram_hash_t h, int plus);

/* RFC 5802 §3: SaltedPassword = PBKDF2(password, salt, iterations), then
 * StoredKey = H(HMAC(SaltedPassword, "Client Key")) and ServerKey =
 * HMAC(SaltedPassword, "Server Key"). password is NUL-terminated and
 * already OpaqueString-prepared (RFC 8265). stored_key and server_key each
 * receive pv_scram_digest_len(h) bytes. Slow by design (PBKDF2): call from
 * a worker thread. Returns PV_OK, or PV_ERROR for an unknown hash, empty
 * salt, zero iterations or an OpenSSL failure (outputs then undefined). */
int pv_scram_derive(pv_scram_hash_t h, const char *password,
                    const uint8_t *salt, size_t salt_len, unsigned iterations,
                    uint8_t *stored_key, uint8_t *server_key);

/* ---- server ---------------------------------------------------------- */

typedef struct pv_scram_server_s pv_scram_server_t;

/* One authentication exchange. plus: the -PLUS mechanism was selected.
 * server_supports_plus: the server advertised -PLUS variants on this
 * connection (RFC 5802 §6: a 'y' gs2 flag then means a downgrade).
 * cb_types: NULL-terminated list of channel binding types the server
 * supports on this connection ("tls-exporter", "tls-server-end-point",
 * "tls-unique"), exactly as advertised with XEP-0440; NULL when no
 * <sasl-channel-binding/> was advertised. The list is copied.
 * Returns NULL only for an unknown h; aborts on OOM. */
pv_scram_server_t *pv_scram_server_new(pv_scram_hash_t h, int plus,
                                       int server_supports_plus,
                                       const char *const *cb_types);
/* Frees s and wipes its keys. NULL is a no-op. */
void pv_scram_server_free(pv_scram_server_t *s);

/* Test vectors only: use snonce (printable ASCII without ',') as the
 * server nonce instead of a random one. Call before
 * pv_scram_server_set_credentials(). PV_ERROR if snonce is invalid. */
int pv_scram_server_set_nonce(pv_scram_server_t *s, const char *snonce);

/* Parses the client-first-message msg (len bytes, not NUL-terminated,
 * already base64-decoded): gs2 header n / y / p=type, optional a=authzid,
 * n=username (=2C and =3D decoded), r=nonce; a leading m= extension is
 * refused. Checks the gs2 flag against plus / server_supports_plus /
 * cb_types. Returns PV_OK, or PV_ERROR with the SASL condition in
 * pv_scram_server_error(): "malformed-request" (syntax, oversized, NUL,
 * bad UTF-8, wrong state), "invalid-mechanism" (p= on a non-PLUS
 * mechanism, n/y on -PLUS), "not-authorized" ('y' while the server
 * supports -PLUS, unsupported channel binding type). After an error the
 * exchange is dead: every later call fails with the same condition. */
int pv_scram_server_client_first(pv_scram_server_t *s, const char *msg,
                                 size_t len);
/* After a successful client_first: the decoded username (never NULL),
 * the decoded authzid (NULL when absent) and the channel binding type
 * requested with p= (NULL for n/y); NULL before. Borrowed; valid for s's
 * lifetime (still readable after a later failure, for logs).
 * The caller still has to PRECIS-prepare and authorise these. */
const char *pv_scram_server_username(pv_scram_server_t *s);
const char *pv_scram_server_authzid(pv_scram_server_t *s);
const char *pv_scram_server_cb_type(pv_scram_server_t *s);

/* Supplies the account's stored credentials (key lengths =
 * pv_scram_digest_len) and builds the server-first-message:
 * r=cnonce+snonce,s=salt,i=iterations and, when advertised_mechs is not
 * NULL, the XEP-0474 (v0.5.0) attribute h= over advertised_mechs (the
 * NULL-terminated SASL mechanism list offered on this stream, in the SASL
 * profile in use) and the cb_types given to pv_scram_server_new().
 * PV_ERROR ("malformed-request" for the wrong state,
 * "temporary-auth-failure" for bad arguments or RNG failure). */
int pv_scram_server_set_credentials(pv_scram_server_t *s, const uint8_t *salt,
                                    size_t salt_len, unsigned iterations,
                                    const uint8_t *stored_key,
                                    const uint8_t *server_key,
                                    const char *const *advertised_mechs);
/* For an unknown user: like set_credentials with a salt derived from
 * secret and the username (deterministic, PV_SCRAM_SALT_LEN bytes) and
 * random keys, so the exchange looks real and fails at client_final with
 * "not-authorized", exactly as a wrong password does. */
int pv_scram_server_set_fake(pv_scram_server_t *s, const uint8_t *secret,
                             size_t secret_len, unsigned iterations,
                             const char *const *advertised_mechs);
/* The server-first-message (NUL-terminated, *len set when len != NULL;
 * borrowed, valid for s's lifetime), or NULL before set_credentials. */
const char *pv_scram_server_first(pv_scram_server_t *s, size_t *len);

/* Verifies the client-final-message: c= must decode to gs2 header +
 * cb_data (the TLS channel binding data of the type that
 * pv_scram_server_cb_type() names; NULL/0 when none; ignored for n/y),
 * r= must be the full nonce, p= is checked in constant time; extensions
 * between r= and p= are allowed and covered by the proof. On PV_OK the
 * user is authenticated and pv_scram_server_final() holds v=. PV_ERROR:
 * "malformed-request" (syntax, wrong state), "not-authorized" (wrong
 * proof, unknown user, nonce or channel binding mismatch). */
int pv_scram_server_client_final(pv_scram_server_t *s, const char *msg,
                                 size_t len, const uint8_t *cb_data,
                                 size_t cb_len);
/* The server-final-message v=... after a successful client_final (the
 * additional data of <success/>); NULL otherwise. Borrowed. */
const char *pv_scram_server_final(pv_scram_server_t *s, size_t *len);
/* The RFC 6120 §6.5 SASL condition of the last failure, or NULL. */
const char *pv_scram_server_error(pv_scram_server_t *s);
/* The matching RFC 5802 §7 server-error-value ("invalid-proof",
 * "channel-bindings-dont-match" ...) for logs, or NULL. Unknown users
 * report "invalid-proof", never "unknown-user". */
const char *pv_scram_server_scram_error(pv_scram_server_t *s);

/* ---- client ---------------------------------------------------------- */

typedef struct pv_scram_client_s pv_scram_client_t;

/* A client exchange for username (not yet escaped; NUL-terminated UTF-8)
 * and password (OpaqueString-prepared). cb_type non-NULL selects the
 * -PLUS mechanism with p=cb_type and cb_data/cb_len as the channel binding
 * data (copied; must be non-empty). Returns NULL for an unknown h, an
 * empty or invalid username, a NULL password, an invalid cb_type or
 * missing cb_data; aborts on OOM. */
pv_scram_client_t *pv_scram_client_new(pv_scram_hash_t h, const char *username,
                                       const char *password,
                                       const char *cb_type,
                                       const uint8_t *cb_data, size_t cb_len);
void pv_scram_client_free(pv_scram_client_t *c);
/* Options; call before pv_scram_client_first(). set_authzid sends a=.
 * set_cb_supported: without cb_type, send 'y' (client could bind, the
 * server offered no -PLUS) instead of 'n'. set_nonce injects the client
 * nonce (test vectors). set_advertised: the mechanisms and the XEP-0440
 * channel binding types (NULL when none were advertised) the client saw,
 * for verifying XEP-0474 h=; lists are copied, at most 64 names of at most
 * 64 bytes. PV_ERROR on invalid arguments or the wrong state. */
int pv_scram_client_set_authzid(pv_scram_client_t *c, const char *authzid);
int pv_scram_client_set_cb_supported(pv_scram_client_t *c);
int pv_scram_client_set_nonce(pv_scram_client_t *c, const char *cnonce);
int pv_scram_client_set_advertised(pv_scram_client_t *c,
                                   const char *const *mechs,
                                   const char *const *cb_types);
/* The client-first-message (gs2 header included); built on the first
 * call. Borrowed, NUL-terminated; NULL if the RNG failed. */
const char *pv_scram_client_first(pv_scram_client_t *c, size_t *len);
/* Handles the server-first-message: checks the nonce, salt, iteration
 * count (PV_SCRAM_MIN_ITERATIONS..PV_SCRAM_MAX_ITERATIONS) and, when
 * present and set_advertised was called, the XEP-0474 h= hash; then runs
 * PBKDF2 (slow) and builds the client-final-message. PV_ERROR with a
 * reason in pv_scram_client_error(): "malformed-server-first",
 * "nonce-mismatch", "bad-iteration-count", "downgrade-detected",
 * "wrong-state", "internal-error". */
int pv_scram_client_server_first(pv_scram_client_t *c, const char *msg,
                                 size_t len);
/* The client-final-message; NULL before a successful server_first. */
const char *pv_scram_client_final(pv_scram_client_t *c, size_t *len);
/* Verifies the server-final-message: PV_OK when v= proves the server knew
 * the keys. PV_ERROR: "malformed-server-final", "server-error" (e=),
 * "server-signature-mismatch", "wrong-state". */
int pv_scram_client_server_final(pv_scram_client_t *c, const char *msg,
                                 size_t len);
/* 1 when the server sent XEP-0474 h= and it matched, else 0. */
int pv_scram_client_ssdp_verified(pv_scram_client_t *c);
/* Reason of the last failure, or NULL. Static string. */
const char *pv_scram_client_error(pv_scram_client_t *c);

/* ---- PLAIN and base64 ------------------------------------------------ */

/* RFC 4616: msg = [authzid] NUL authcid NUL passwd, len bytes, at most
 * PV_SCRAM_MAX_MSG. Exactly two NULs, authcid and password non-empty,
 * every field valid UTF-8. On PV_OK the outputs are new malloc'd strings
 * the caller frees (*authzid is NULL when absent); on PV_ERROR all three
 * are set to NULL. */
int pv_sasl_plain_parse(const char *msg, size_t len, char **authzid,
                        char **authcid, char **password);

/* Standard base64 (RFC 4648 §4) with padding. Returns a new malloc'd
 * NUL-terminated string ("" for len 0; XMPP sends "=" for an empty
 * response, RFC 6120 §6.4.2: that is the caller's job) and its length in
 * *out_len when not NULL. NULL if len is too large (> 1 GiB). */
char *pv_base64_encode(const void *data, size_t len, size_t *out_len);
/* Strict decoding of len bytes of text: only the RFC 4648 alphabet, no
 * whitespace, length a multiple of 4, at most two '=' at the end, zero
 * pad bits. The single "=" (RFC 6120 §6.4.2) and "" decode to zero bytes.
 * Returns a new malloc'd buffer with a NUL appended (not counted in
 * *out_len), or NULL when invalid. */
uint8_t *pv_base64_decode(const char *text, size_t len, size_t *out_len);

#endif
