/* src/sasl.c: SASL negotiation on a c2s stream (RFC 6120 §6): which
 * mechanisms a connection is offered (sasl_mechanisms, -PLUS only where
 * channel binding is available, PLAIN only under TLS), the XEP-0440
 * channel-binding list, and the exchanges themselves. The engine is shared
 * with XEP-0388 SASL2 (sasl_profile.h): the RFC 6120 profile is the
 * sasl1_* functions here, SASL2's is in sasl2.c. The SCRAM and PLAIN
 * message formats are scram.c's; credentials come from accounts.c. */
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "accounts.h"
#include "palaver.h"
#include "sasl_profile.h"
#include "scram.h"

#define NS_SASL "urn:ietf:params:xml:ns:xmpp-sasl"
#define NS_SASL_CB "urn:xmpp:sasl-cb:0"
#define MAX_MECHS PV_SASL_MAX_MECHS

struct pv_sasl_s {
    pv_host_t *host;              /* reference */
    pv_conn_t *conn;              /* borrowed: the c2s frees us first */
    const pv_sasl_profile_t *prof;
    void *parg;                   /* the profile's callback argument */
    /* RFC 6120 profile (pv_sasl_new) */
    void (*send)(void *arg, const char *xml, size_t len);
    pv_sasl_done_fn done;
    void *arg;
    pv_scram_server_t *scram;
    const char *mechs[MAX_MECHS + 1];  /* offered on this connection */
    const char *cb_types[4];
    char *user;                   /* prepared localpart being tried */
    int waiting_mech;             /* mech_table index awaiting the initial
                                     response after an empty challenge, or
                                     -1 */
    int plain_pending;            /* PBKDF2 running on a worker */
    int dead;                     /* freed while the worker ran */
};

static const struct {
    const char *name;
    pv_scram_hash_t hash;
    int plus;
    int is_plain;
} mech_table[] = {
    { "SCRAM-SHA-256-PLUS", PV_SCRAM_SHA256, 1, 0 },
    { "SCRAM-SHA-1-PLUS", PV_SCRAM_SHA1, 1, 0 },
    { "SCRAM-SHA-256", PV_SCRAM_SHA256, 0, 0 },
    { "SCRAM-SHA-1", PV_SCRAM_SHA1, 0, 0 },
    { "PLAIN", PV_SCRAM_SHA256, 0, 1 },
};

static int
mech_configured(const pv_core_conf_t *cc, const char *name)
{
    char **m;

    if (cc->sasl_mechanisms == NULL)
        return 1;
    for (m = cc->sasl_mechanisms; *m != NULL; m++)
        if (strcmp(*m, name) == 0)
            return 1;
    return 0;
}

/* Fills mechs (NULL-terminated) and cb_types for conn. */
static void
sasl_offer(pv_host_t *h, pv_conn_t *conn, const char **mechs,
           const char **cb_types)
{
    const pv_core_conf_t *cc = &h->conf->core;
    int n_cb = pv_conn_cb_types(conn, cb_types, 3);
    size_t i, n = 0;

    if (n_cb < 0)
        n_cb = 0;
    cb_types[n_cb] = NULL;
    for (i = 0; i < PV_COUNTOF(mech_table) && n < MAX_MECHS; i++) {
        if (!mech_configured(cc, mech_table[i].name))
            continue;
        if (mech_table[i].plus && n_cb == 0)
            continue;
        if (mech_table[i].is_plain && !pv_conn_is_tls(conn))
            continue;
        mechs[n++] = mech_table[i].name;
    }
    mechs[n] = NULL;
}

void
pv_sasl_features(pv_host_t *h, pv_conn_t *conn, pv_node_t *features,
                 pv_arena_t *a)
{
    const char *mechs[MAX_MECHS + 1], *cb[4];
    pv_node_t *ms, *cbn;
    size_t i;

    sasl_offer(h, conn, mechs, cb);
    ms = pv_node_new(a, "mechanisms", NS_SASL, features);
    for (i = 0; mechs[i] != NULL; i++) {
        pv_node_t *m = pv_node_new(a, "mechanism", NS_SASL, ms);
        pv_node_add_text(a, m, mechs[i], strlen(mechs[i]));
    }
    if (cb[0] != NULL) {
        /* XEP-0440 §3 */
        cbn = pv_node_new(a, "sasl-channel-binding", NS_SASL_CB, features);
        for (i = 0; cb[i] != NULL; i++) {
            pv_node_t *t = pv_node_new(a, "channel-binding", NS_SASL_CB,
                                       cbn);
            pv_node_set_attr(a, t, "type", cb[i]);
        }
    }
}

void
pv_sasl_offer_mechs(pv_host_t *h, pv_conn_t *conn, const char **mechs)
{
    const char *cb[4];

    sasl_offer(h, conn, mechs, cb);
}

pv_sasl_t *
pv_sasl_new_profile(pv_host_t *h, pv_conn_t *conn,
                    const pv_sasl_profile_t *prof, void *arg)
{
    pv_sasl_t *s = pv_xcalloc(1, sizeof(*s));

    s->host = pv_host_ref(h);
    s->conn = conn;
    s->prof = prof;
    s->parg = arg;
    s->waiting_mech = -1;
    sasl_offer(h, conn, s->mechs, s->cb_types);
    return s;
}

static void
sasl_reset(pv_sasl_t *s)
{
    if (s->scram != NULL)
        pv_scram_server_free(s->scram);
    s->scram = NULL;
    free(s->user);
    s->user = NULL;
    s->waiting_mech = -1;
}

void
pv_sasl_free(pv_sasl_t *s)
{
    if (s == NULL)
        return;
    if (s->plain_pending) {
        s->dead = 1;   /* the worker's completion frees it */
        return;
    }
    sasl_reset(s);
    pv_host_unref(s->host);
    free(s);
}

int
pv_sasl_busy(const pv_sasl_t *s)
{
    return s->plain_pending;
}

int
pv_sasl_active(const pv_sasl_t *s)
{
    return s->plain_pending || s->scram != NULL || s->waiting_mech >= 0;
}

static void
sasl_failure(pv_sasl_t *s, const char *condition, int counts)
{
    sasl_reset(s);
    s->prof->failure(s->parg, condition, counts);
}

static void
sasl_success(pv_sasl_t *s, const char *data, size_t len)
{
    char *user = s->user;
    char *copy = data ? pv_xstrndup(data, len) : NULL;

    /* the profile may start over from its callback: reset first, and
     * keep what the reset frees */
    s->user = NULL;
    sasl_reset(s);
    s->prof->success(s->parg, user, copy, len);
    free(copy);
    free(user);
}

static void
sasl_challenge(pv_sasl_t *s, const char *data, size_t len)
{
    s->prof->challenge(s->parg, data, len);
}

/* --- the RFC 6120 profile -------------------------------------------- */

static void
sasl1_send_element(pv_sasl_t *s, const char *name, const char *b64data)
{
    pv_buf_t b = {0};

    pv_buf_printf(&b, "<%s xmlns='" NS_SASL "'", name);
    if (b64data == NULL) {
        pv_buf_puts(&b, "/>");
    } else {
        pv_buf_printf(&b, ">%s</%s>", *b64data ? b64data : "=", name);
    }
    s->send(s->arg, b.data, b.len);
    pv_buf_free(&b);
}

static void
sasl1_send_data(pv_sasl_t *s, const char *name, const char *data, size_t len)
{
    char *b64 = pv_base64_encode(data, len, NULL);

    sasl1_send_element(s, name, b64);
    free(b64);
}

static void
sasl1_challenge(void *arg, const char *data, size_t len)
{
    sasl1_send_data(arg, "challenge", data, len);
}

static void
sasl1_success(void *arg, const char *user, const char *data, size_t len)
{
    pv_sasl_t *s = arg;

    /* PLAIN has no additional data: "=" as ever */
    sasl1_send_data(s, "success", data, len);
    s->done(s->arg, user);
}

static void
sasl1_failure(void *arg, const char *condition, int counts)
{
    pv_sasl_t *s = arg;
    pv_buf_t b = {0};

    pv_buf_printf(&b, "<failure xmlns='" NS_SASL "'><%s/></failure>",
                  condition);
    s->send(s->arg, b.data, b.len);
    pv_buf_free(&b);
    if (counts)
        s->done(s->arg, NULL);
}

static const pv_sasl_profile_t sasl1_profile = {
    sasl1_challenge, sasl1_success, sasl1_failure
};

pv_sasl_t *
pv_sasl_new(pv_host_t *h, pv_conn_t *conn,
            void (*send)(void *arg, const char *xml, size_t len),
            pv_sasl_done_fn done, void *arg)
{
    pv_sasl_t *s = pv_sasl_new_profile(h, conn, &sasl1_profile, NULL);

    s->parg = s;
    s->send = send;
    s->done = done;
    s->arg = arg;
    return s;
}

/* --- mechanisms ------------------------------------------------------ */

/* Decodes the base64 text of a SASL element ("=" is empty). */
static uint8_t *
sasl_decode(const pv_node_t *n, pv_arena_t *a, size_t *len)
{
    const char *text = pv_node_text(n, a);
    size_t tl = text ? strlen(text) : 0;

    if (tl == 0 || (tl == 1 && text[0] == '=')) {
        *len = 0;
        return pv_xcalloc(1, 1);
    }
    return pv_base64_decode(text, tl, len);
}

static int
sasl_check_authzid(pv_sasl_t *s, const char *authzid)
{
    pv_jid_t j;
    int ok;

    if (authzid == NULL || *authzid == '\0')
        return 1;
    if (pv_jid_parse(authzid, strlen(authzid), &j, NULL) != PV_OK)
        return 0;
    ok = j.node != NULL && j.resource == NULL &&
         strcmp(j.node, s->user) == 0 && strcmp(j.domain, s->host->name) == 0;
    pv_jid_clear(&j);
    return ok;
}

static void
sasl_scram_start(pv_sasl_t *s, int idx, const uint8_t *msg, size_t len)
{
    pv_scram_hash_t hash = mech_table[idx].hash;
    pv_account_t acct;
    const char *user;
    int plus_offered = 0, i;
    size_t flen;
    const char *first;

    for (i = 0; s->mechs[i] != NULL; i++)
        if (strstr(s->mechs[i], "-PLUS") != NULL)
            plus_offered = 1;
    /* the cb list is what XEP-0440 advertised: NULL when nothing was */
    s->scram = pv_scram_server_new(hash, mech_table[idx].plus, plus_offered,
                                   s->cb_types[0] ? s->cb_types : NULL);
    if (pv_scram_server_client_first(s->scram, (const char *)msg, len) !=
        PV_OK) {
        sasl_failure(s, pv_scram_server_error(s->scram), 1);
        return;
    }
    user = pv_scram_server_username(s->scram);
    s->user = pv_jid_prep_node(user, strlen(user));
    if (s->user != NULL && !sasl_check_authzid(s,
                               pv_scram_server_authzid(s->scram))) {
        sasl_failure(s, "invalid-authzid", 1);
        return;
    }
    if (s->user != NULL &&
        pv_account_get(s->host->server->storage, s->host->name, s->user,
                       &acct) == PV_OK) {
        const pv_account_keys_t *k = &acct.keys[hash];
        pv_scram_server_set_credentials(s->scram, acct.salt, acct.salt_len,
                                        acct.iterations, k->stored_key,
                                        k->server_key, s->mechs);
    } else {
        /* unknown users get a plausible exchange that fails at the end */
        pv_scram_server_set_fake(s->scram, s->host->server->secret,
                                 sizeof(s->host->server->secret),
                                 (unsigned)s->host->conf->core.scram_iterations,
                                 s->mechs);
        free(s->user);
        s->user = NULL;
    }
    first = pv_scram_server_first(s->scram, &flen);
    sasl_challenge(s, first, flen);
}

static void
sasl_scram_final(pv_sasl_t *s, const uint8_t *msg, size_t len)
{
    uint8_t cb[128];
    size_t cb_len = 0;
    const char *type = pv_scram_server_cb_type(s->scram);
    const char *final;
    size_t flen;

    if (type != NULL) {
        cb_len = sizeof(cb);
        if (pv_conn_channel_binding(s->conn, type, cb, &cb_len) != PV_OK) {
            sasl_failure(s, "not-authorized", 1);
            return;
        }
    }
    if (pv_scram_server_client_final(s->scram, (const char *)msg, len,
                                     type ? cb : NULL, cb_len) != PV_OK ||
        s->user == NULL) {
        sasl_failure(s, "not-authorized", 1);
        return;
    }
    final = pv_scram_server_final(s->scram, &flen);
    sasl_success(s, final, flen);
}

/* PLAIN: PBKDF2 over the account's salt runs on a worker thread. */
typedef struct {
    pv_sasl_t *s;
    char *password;
    pv_account_t acct;
    int ok;
} plain_job_t;

static void
plain_work(void *arg)
{
    plain_job_t *j = arg;
    uint8_t stored[64], server[64];
    size_t dl = pv_scram_digest_len(PV_SCRAM_SHA256);

    j->ok = pv_scram_derive(PV_SCRAM_SHA256, j->password, j->acct.salt,
                            j->acct.salt_len, j->acct.iterations, stored,
                            server) == PV_OK &&
            CRYPTO_memcmp(stored, j->acct.keys[PV_SCRAM_SHA256].stored_key, dl) == 0;
}

static void
plain_done(void *arg, int cancelled)
{
    plain_job_t *j = arg;
    pv_sasl_t *s = j->s;

    s->plain_pending = 0;
    OPENSSL_cleanse(j->password, strlen(j->password));
    free(j->password);
    if (s->dead) {
        s->dead = 0;
        pv_sasl_free(s);
    } else if (j->ok && !cancelled) {
        sasl_success(s, NULL, 0);
    } else {
        sasl_failure(s, "not-authorized", 1);
    }
    free(j);
}

static void
sasl_plain(pv_sasl_t *s, const uint8_t *msg, size_t len)
{
    char *authzid = NULL, *authcid = NULL, *password = NULL;
    plain_job_t *j;

    if (pv_sasl_plain_parse((const char *)msg, len, &authzid, &authcid,
                            &password) != PV_OK) {
        sasl_failure(s, "malformed-request", 1);
        return;
    }
    s->user = pv_jid_prep_node(authcid, strlen(authcid));
    free(authcid);
    if (s->user != NULL && !sasl_check_authzid(s, authzid)) {
        free(authzid);
        OPENSSL_cleanse(password, strlen(password));
        free(password);
        sasl_failure(s, "invalid-authzid", 1);
        return;
    }
    free(authzid);
    j = pv_xcalloc(1, sizeof(*j));
    j->s = s;
    j->password = pv_precis_opaque(password, strlen(password));
    OPENSSL_cleanse(password, strlen(password));
    free(password);
    if (j->password == NULL || s->user == NULL ||
        pv_account_get(s->host->server->storage, s->host->name, s->user,
                       &j->acct) != PV_OK) {
        /* same cost as a real attempt would be nice; an unknown user
         * simply fails */
        free(j->password);
        free(j);
        sasl_failure(s, "not-authorized", 1);
        return;
    }
    s->plain_pending = 1;
    pv_loop_work(s->host->server->loop, plain_work, plain_done, j);
}

static void
sasl_begin(pv_sasl_t *s, int idx, const uint8_t *data, size_t len)
{
    if (mech_table[idx].is_plain)
        sasl_plain(s, data, len);
    else
        sasl_scram_start(s, idx, data, len);
}

void
pv_sasl_start(pv_sasl_t *s, const char *mech, const uint8_t *data,
              size_t len, int has_initial)
{
    size_t i;
    int idx = -1;

    if (s->plain_pending)
        return;
    sasl_reset(s);
    if (pv_server_auth_blocked(s->host->server, pv_conn_peer_ip(s->conn))) {
        sasl_failure(s, "temporary-auth-failure", 0);
        return;
    }
    for (i = 0; mech != NULL && s->mechs[i] != NULL; i++)
        if (strcmp(s->mechs[i], mech) == 0)
            break;
    if (mech != NULL && s->mechs[i] != NULL)
        for (idx = 0; idx < (int)PV_COUNTOF(mech_table); idx++)
            if (strcmp(mech_table[idx].name, mech) == 0)
                break;
    if (idx < 0 || idx >= (int)PV_COUNTOF(mech_table)) {
        sasl_failure(s, "invalid-mechanism", 0);
    } else if (!has_initial) {
        /* RFC 6120 §6.4.2: no initial response: empty challenge */
        s->waiting_mech = idx;
        sasl_challenge(s, "", 0);
    } else {
        sasl_begin(s, idx, data, len);
    }
}

void
pv_sasl_step(pv_sasl_t *s, const uint8_t *data, size_t len)
{
    if (s->plain_pending)
        return;
    if (s->waiting_mech >= 0) {
        /* the initial response after an empty challenge */
        int idx = s->waiting_mech;
        s->waiting_mech = -1;
        sasl_begin(s, idx, data, len);
    } else if (s->scram != NULL) {
        sasl_scram_final(s, data, len);
    } else {
        sasl_failure(s, "malformed-request", 1);
    }
}

void
pv_sasl_abort(pv_sasl_t *s)
{
    if (s->plain_pending)
        return;
    sasl_failure(s, "aborted", 0);
}

void
pv_sasl_input(pv_sasl_t *s, pv_node_t *nonza)
{
    pv_arena_t *a;
    uint8_t *data;
    size_t len;
    const char *name = nonza->name;

    if (s->plain_pending)
        return; /* the client must wait for our answer */
    if (strcmp(name, "abort") == 0) {
        pv_sasl_abort(s);
        return;
    }
    a = pv_arena_new(256);
    data = sasl_decode(nonza, a, &len);
    pv_arena_free(a);
    if (data == NULL) {
        sasl_failure(s, "incorrect-encoding", 1);
        return;
    }
    if (strcmp(name, "auth") == 0)
        pv_sasl_start(s, pv_node_attr(nonza, "mechanism"), data, len,
                      len > 0);
    else if (strcmp(name, "response") == 0)
        pv_sasl_step(s, data, len);
    else
        sasl_failure(s, "malformed-request", 1);
    free(data);
}
