/* src/sasl_profile.h: the mechanism engine shared by the two SASL
 * profiles on client streams: RFC 6120 §6 (sasl.c's <auth/>) and
 * XEP-0388 SASL2 (sasl2.c's <authenticate/>). The engine owns mechanism
 * choice, SCRAM (-PLUS) and PLAIN and the per-IP block check; a profile
 * owns only the XML around the bytes. Internal to the core. */
#ifndef PV_SASL_PROFILE_H
#define PV_SASL_PROFILE_H

#include "palaver.h"

/* How an exchange reports back. Every callback runs with the engine
 * already reset for a new exchange, so it may start one at once; none may
 * free the pv_sasl_t. Callbacks can run from pv_sasl_start/pv_sasl_step or
 * later from the loop (PLAIN hashes on a worker thread). */
typedef struct pv_sasl_profile_s {
    /* A server challenge of len bytes (len 0: the empty challenge that
     * asks for a missing initial response, RFC 6120 §6.4.2). */
    void (*challenge)(void *arg, const char *data, size_t len);
    /* Authenticated as user (the prepared localpart, borrowed); data is
     * the additional data of success (SCRAM server-final) or NULL. */
    void (*success)(void *arg, const char *user, const char *data,
                    size_t len);
    /* Failed with an RFC 6120 §6.5 condition; counts: a failed attempt
     * that the per-IP throttle must see (not an abort or a refusal). */
    void (*failure)(void *arg, const char *condition, int counts);
} pv_sasl_profile_t;

/* The mechanisms (NULL-terminated, static strings) offered on conn: the
 * sasl_mechanisms directive, -PLUS only with channel binding, PLAIN only
 * under TLS. mechs must hold PV_SASL_MAX_MECHS + 1 entries. */
#define PV_SASL_MAX_MECHS 8
void pv_sasl_offer_mechs(pv_host_t *h, pv_conn_t *conn, const char **mechs);

/* An engine for one stream; prof is borrowed (static), arg is passed to
 * every callback. Free with pv_sasl_free() (safe while PLAIN hashes: the
 * worker's completion then frees it and reports nothing). */
pv_sasl_t *pv_sasl_new_profile(pv_host_t *h, pv_conn_t *conn,
                               const pv_sasl_profile_t *prof, void *arg);
/* Starts mech with an initial response of len bytes (has_initial 0: no
 * initial response: the engine sends the empty challenge and takes the
 * next pv_sasl_step() as the initial response). Refuses with
 * "temporary-auth-failure" while the peer's IP is blocked and with
 * "invalid-mechanism" for a mechanism not offered. */
void pv_sasl_start(pv_sasl_t *s, const char *mech, const uint8_t *data,
                   size_t len, int has_initial);
/* The client's next response. */
void pv_sasl_step(pv_sasl_t *s, const uint8_t *data, size_t len);
/* Abandons the exchange, reporting "aborted" (not counted). */
void pv_sasl_abort(pv_sasl_t *s);
/* 1 while PLAIN is hashing on a worker (input must wait). */
int pv_sasl_busy(const pv_sasl_t *s);
/* 1 while an exchange is running (a challenge is outstanding). */
int pv_sasl_active(const pv_sasl_t *s);

#endif
