/* src/sasl2.c: XEP-0388 SASL2 on a client stream: the <authentication/>
 * feature with its inline XEP-0386 Bind2 and XEP-0484 FAST features, the
 * <authenticate/> exchange over the mechanism engine shared with RFC 6120
 * SASL (sasl_profile.h), inline resumption/binding on success (no stream
 * restart), and FAST tokens (HT-SHA-256-NONE; records are fast.c's). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "accounts.h"
#include "fast.h"
#include "palaver.h"
#include "sasl_profile.h"
#include "scram.h"

#define NS_SASL2 "urn:xmpp:sasl:2"
#define NS_SASL "urn:ietf:params:xml:ns:xmpp-sasl"
#define NS_BIND2 "urn:xmpp:bind:0"
#define NS_FAST "urn:xmpp:fast:0"
#define MAX_TAG 64                /* bytes of a Bind2 <tag/> we keep */

struct pv_sasl2_s {
    pv_c2s_t *c;
    pv_sasl_t *sasl;              /* the mechanism engine, on first use */
    pv_arena_t *arena;            /* the running request; NULL between */
    pv_node_t *request;           /* copy of its <authenticate/> */
    const char *ua_id;            /* its <user-agent id=''/>, or NULL */
};

/* Token lifetime in seconds (fast_token_lifetime). */
static int64_t
fast_lifetime(const pv_host_t *h)
{
    return (int64_t)(h->conf->core.fast_token_lifetime / 1000);
}

/* --- features ------------------------------------------------------- */

void
pv_sasl2_features(pv_c2s_t *c, pv_node_t *features, pv_arena_t *a)
{
    const char *mechs[PV_SASL_MAX_MECHS + 1];
    pv_host_t *h = pv_c2s_host(c);
    pv_node_t *auth, *inl, *bind, *binl;
    pv_inline_t data;
    pv_event_t ev;
    size_t i;

    pv_sasl_offer_mechs(h, pv_c2s_conn(c), mechs);
    /* FAST without TLS would hand out replayable proofs (XEP-0484 §8) */
    if (mechs[0] == NULL && !pv_c2s_is_tls(c))
        return;
    auth = pv_node_new(a, "authentication", NS_SASL2, features);
    for (i = 0; mechs[i] != NULL; i++) {
        pv_node_t *m = pv_node_new(a, "mechanism", NS_SASL2, auth);
        pv_node_add_text(a, m, mechs[i], strlen(mechs[i]));
    }
    inl = pv_node_new(a, "inline", NS_SASL2, auth);
    /* XEP-0386 §4: what can be enabled inline with the bind */
    bind = pv_node_new(a, "bind", NS_BIND2, inl);
    binl = pv_node_new(a, "inline", NS_BIND2, bind);
    memset(&data, 0, sizeof(data));
    data.node = binl;
    data.arena = a;
    memset(&ev, 0, sizeof(ev));
    ev.kind = PV_EV_BIND2_FEATURES;
    ev.host = h;
    ev.stream = c;
    ev.data = &data;
    pv_event_fire(&ev);
    if (pv_c2s_is_tls(c)) {
        pv_node_t *fast = pv_node_new(a, "fast", NS_FAST, inl);
        pv_node_t *m = pv_node_new(a, "mechanism", NS_FAST, fast);
        pv_node_add_text(a, m, PV_FAST_MECH, strlen(PV_FAST_MECH));
    }
    data.node = inl;
    memset(&ev, 0, sizeof(ev));
    ev.kind = PV_EV_SASL2_FEATURES;
    ev.host = h;
    ev.stream = c;
    ev.data = &data;
    pv_event_fire(&ev);
}

/* --- output ----------------------------------------------------------- */

static void
s2_end(pv_sasl2_t *s)
{
    if (s->arena != NULL)
        pv_arena_free(s->arena);
    s->arena = NULL;
    s->request = NULL;
    s->ua_id = NULL;
}

static void
s2_failure(pv_sasl2_t *s, const char *condition, int counts,
           const char *text)
{
    pv_buf_t b = {0};

    /* XEP-0388 §2.6.3: the RFC 6120 condition, in its namespace */
    pv_buf_printf(&b, "<failure xmlns='" NS_SASL2 "'><%s xmlns='" NS_SASL
                  "'/>", condition);
    if (text != NULL) {
        pv_buf_puts(&b, "<text>");
        pv_buf_append_escaped(&b, text, strlen(text), 0);
        pv_buf_puts(&b, "</text>");
    }
    pv_buf_puts(&b, "</failure>");
    pv_stream_write(s->c, b.data, b.len);
    pv_buf_free(&b);
    if (counts) {
        pv_host_t *h = pv_c2s_host(s->c);
        pv_conn_t *conn = pv_c2s_conn(s->c);
        if (conn != NULL)
            pv_server_auth_failed(h->server, pv_conn_peer_ip(conn));
    }
    s2_end(s);
}

/* Decodes an element's base64 text; "" and "=" are empty (RFC 6120
 * §6.4.2 carried over by XEP-0388). NULL when invalid. */
static uint8_t *
s2_decode(const pv_node_t *n, pv_arena_t *a, size_t *len)
{
    const char *text = pv_node_text(n, a);
    size_t tl = text ? strlen(text) : 0;

    if (tl == 0 || (tl == 1 && text[0] == '=')) {
        *len = 0;
        return pv_xcalloc(1, 1);
    }
    return pv_base64_decode(text, tl, len);
}

static void
s2_add_b64(pv_arena_t *a, pv_node_t *n, const void *data, size_t len)
{
    char *b64 = pv_base64_encode(data, len, NULL);

    if (b64 != NULL && *b64 != '\0')
        pv_node_add_text(a, n, b64, strlen(b64));
    free(b64);
}

/* --- FAST tokens ------------------------------------------------------ */

/* The fingerprint of user's current credentials, 0 when unknown. */
static int
s2_cred_fp(pv_host_t *h, const char *user, char fp[PV_FAST_FP_LEN + 1])
{
    pv_account_t acct;
    uint8_t blob[PV_ACCOUNT_SALT_LEN + PV_ACCOUNT_KEY_MAX];
    const pv_account_keys_t *k;

    if (pv_account_get(h->server->storage, h->name, user, &acct) != PV_OK)
        return 0;
    k = &acct.keys[PV_SCRAM_SHA256];
    memcpy(blob, acct.salt, acct.salt_len);
    memcpy(blob + acct.salt_len, k->stored_key, k->len);
    pv_fast_fingerprint(blob, acct.salt_len + k->len, fp);
    OPENSSL_cleanse(&acct, sizeof(acct));
    return 1;
}

static int
s2_get_record(pv_host_t *h, const char *user, const char *id,
              pv_fast_record_t *r)
{
    pv_store_t *st = pv_fast_store(h->server->storage);
    void *val = NULL;
    size_t len = 0;
    int ok;

    if (st == NULL ||
        pv_store_get(st, h->name, user, id, &val, &len) != PV_OK)
        return 0;
    ok = pv_fast_record_decode(val, len, r) == PV_OK;
    OPENSSL_cleanse(val, len);
    free(val);
    return ok;
}

static void
s2_put_record(pv_host_t *h, const char *user, const char *id,
              const pv_fast_record_t *r)
{
    pv_store_t *st = pv_fast_store(h->server->storage);
    size_t len;
    char *val;

    if (st == NULL)
        return;
    val = pv_fast_record_encode(r, &len);
    if (pv_store_put(st, h->name, user, id, val, len, NULL, NULL) != PV_OK)
        pv_log(PV_LOG_WARN, "sasl2", "cannot store a FAST token of %s@%s",
               user, h->name);
    OPENSSL_cleanse(val, len);
    free(val);
}

static void
s2_delete_record(pv_host_t *h, const char *user, const char *id)
{
    pv_store_t *st = pv_fast_store(h->server->storage);

    if (st != NULL)
        pv_store_delete(st, h->name, user, id, NULL, NULL);
}

/* Puts a fresh token into r's 'new' slot and announces it in success
 * (XEP-0484 §5.2). */
static void
s2_issue_token(pv_sasl2_t *s, pv_fast_record_t *r, pv_node_t *success,
               int64_t now)
{
    pv_host_t *h = pv_c2s_host(s->c);
    char when[32];
    pv_node_t *t;

    if (pv_fast_token_new(r->next.token) != PV_OK) {
        memset(&r->next, 0, sizeof(r->next));
        return;
    }
    r->next.expiry = now + fast_lifetime(h);
    r->next.count = 0;
    pv_fast_datetime(r->next.expiry, when);
    t = pv_node_new(s->arena, "token", NS_FAST, success);
    pv_node_set_attr(s->arena, t, "expiry", when);
    pv_node_set_attr(s->arena, t, "token", r->next.token);
}

/* The FAST part of success: fr is the record a FAST login matched (and
 * updated), NULL after a password login. */
static void
s2_fast_success(pv_sasl2_t *s, const char *user, pv_fast_record_t *fr,
                pv_node_t *success)
{
    pv_host_t *h = pv_c2s_host(s->c);
    const pv_node_t *req = pv_node_child(s->request, "request-token",
                                         NS_FAST);
    const char *mech = req ? pv_node_attr(req, "mechanism") : NULL;
    int64_t now = (int64_t)time(NULL);
    int want = mech != NULL && strcmp(mech, PV_FAST_MECH) == 0 &&
               pv_c2s_is_tls(s->c);
    pv_fast_record_t r;

    if (s->ua_id == NULL)
        return; /* XEP-0484 §6.1: tokens are per client */
    if (fr == NULL) {
        char fp[PV_FAST_FP_LEN + 1];

        if (!want || !s2_cred_fp(h, user, fp))
            return;
        /* keep a current token of the same credentials: the client may
         * lose this answer (XEP-0484 §5.4) */
        if (!s2_get_record(h, user, s->ua_id, &r) || strcmp(r.fp, fp) != 0)
            memset(&r, 0, sizeof(r));
        strcpy(r.fp, fp);
        s2_issue_token(s, &r, success, now);
        s2_put_record(h, user, s->ua_id, &r);
        OPENSSL_cleanse(&r, sizeof(r));
        return;
    }
    {
        const pv_node_t *f = pv_node_child(s->request, "fast", NS_FAST);
        const char *inv = f ? pv_node_attr(f, "invalidate") : NULL;

        if (inv != NULL && (!strcmp(inv, "true") || !strcmp(inv, "1"))) {
            /* XEP-0484 §5.5: void at once; a new one only if asked */
            memset(&fr->cur, 0, sizeof(fr->cur));
            memset(&fr->next, 0, sizeof(fr->next));
            if (!want) {
                s2_delete_record(h, user, s->ua_id);
                return;
            }
            s2_issue_token(s, fr, success, now);
        } else if (want || fr->cur.expiry - now < fast_lifetime(h) / 2) {
            /* asked for, or due: rotate (the current one stays valid
             * until the new one is used) */
            s2_issue_token(s, fr, success, now);
        }
        s2_put_record(h, user, s->ua_id, fr);
    }
}

/* --- success ---------------------------------------------------------- */

/* XEP-0386 §3: the server picks the resource: the client's tag and a
 * suffix that stays the same for one client (user-agent id), so that a
 * reconnecting client replaces its own stale session. NULL: let the core
 * generate one. */
static char *
s2_resource(pv_sasl2_t *s, const pv_node_t *bind, const char *user)
{
    const pv_node_t *tn = pv_node_child(bind, "tag", NS_BIND2);
    const char *tag = tn ? pv_node_text(tn, s->arena) : NULL;
    char suffix[9], *res = NULL, *joined;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    size_t i;

    if (s->ua_id != NULL) {
        EVP_MD_CTX *ctx = EVP_MD_CTX_new();
        if (ctx == NULL)
            return NULL;
        EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
        EVP_DigestUpdate(ctx, "bind2", 6);
        EVP_DigestUpdate(ctx, user, strlen(user) + 1);
        EVP_DigestUpdate(ctx, s->ua_id, strlen(s->ua_id));
        EVP_DigestFinal_ex(ctx, md, &mdlen);
        EVP_MD_CTX_free(ctx);
    } else if (tag == NULL || *tag == '\0' || RAND_bytes(md, 4) != 1) {
        return NULL;
    }
    for (i = 0; i < 4; i++)
        snprintf(suffix + 2 * i, 3, "%02x", md[i]);
    if (tag != NULL && *tag != '\0' && strlen(tag) <= MAX_TAG) {
        joined = pv_xasprintf("%s.%s", tag, suffix);
        res = pv_jid_prep_resource(joined, strlen(joined));
        free(joined);
    }
    if (res == NULL)
        res = pv_jid_prep_resource(suffix, strlen(suffix));
    return res;
}

static void
s2_bind(pv_sasl2_t *s, const pv_node_t *bind, pv_node_t *success)
{
    pv_c2s_t *c = s->c;
    const char *user = pv_stream_user(c);
    char *res = s2_resource(s, bind, user);
    const char *cond = NULL;
    pv_session_t *sess = pv_c2s_bind(c, res, &cond);
    pv_inline_t data;
    pv_event_t ev;

    free(res);
    if (sess == NULL) {
        /* the client can still bind the RFC 6120 way */
        pv_log(PV_LOG_INFO, "sasl2", "inline bind of %s@%s failed: %s",
               user, pv_c2s_host(c)->name, cond ? cond : "?");
        return;
    }
    memset(&data, 0, sizeof(data));
    data.request = bind;
    data.node = pv_node_new(s->arena, "bound", NS_BIND2, success);
    data.arena = s->arena;
    memset(&ev, 0, sizeof(ev));
    ev.kind = PV_EV_BIND2;
    ev.host = pv_c2s_host(c);
    ev.stream = c;
    ev.session = sess;
    ev.user = user;
    ev.data = &data;
    pv_event_fire(&ev);
}

static void
s2_succeed(pv_sasl2_t *s, const char *user, const void *data, size_t len,
           pv_fast_record_t *fr)
{
    pv_c2s_t *c = s->c;
    pv_host_t *h = pv_c2s_host(c);
    pv_arena_t *a = s->arena;
    pv_node_t *success, *authz, *bind;
    pv_session_t *sess;
    pv_inline_t inl;
    pv_event_t ev;
    pv_buf_t b = {0};
    const char *id;
    char *bare;

    success = pv_node_new(a, "success", NS_SASL2, NULL);
    if (data != NULL)
        s2_add_b64(a, pv_node_new(a, "additional-data", NS_SASL2, success),
                   data, len);
    authz = pv_node_new(a, "authorization-identifier", NS_SASL2, success);
    /* what modules write while we build (resumed stanzas) must follow
     * <success/> */
    pv_c2s_hold_output(c, 1);
    pv_c2s_set_user(c, user);
    memset(&inl, 0, sizeof(inl));
    inl.request = s->request;
    inl.node = success;
    inl.arena = a;
    memset(&ev, 0, sizeof(ev));
    ev.kind = PV_EV_SASL2_INLINE;
    ev.host = h;
    ev.stream = c;
    ev.user = pv_stream_user(c);
    ev.data = &inl;
    bind = pv_node_child(s->request, "bind", NS_BIND2);
    if (pv_event_fire(&ev) != PV_HANDLED && bind != NULL &&
        pv_stream_session(c) == NULL)
        s2_bind(s, bind, success);
    sess = pv_stream_session(c);
    bare = pv_xasprintf("%s@%s", user, h->name);
    id = sess != NULL ? sess->jid.full : bare;
    pv_node_add_text(a, authz, id, strlen(id));
    s2_fast_success(s, user, fr, success);
    pv_node_serialize(success, &b, PV_NS_CLIENT);
    pv_c2s_write_now(c, b.data, b.len);
    OPENSSL_cleanse(b.data, b.len);   /* it may carry a token */
    pv_buf_free(&b);
    free(bare);
    pv_c2s_hold_output(c, 0);
    s2_end(s);
}

/* --- the engine's callbacks -------------------------------------------- */

static void
s2_on_challenge(void *arg, const char *data, size_t len)
{
    pv_sasl2_t *s = arg;
    pv_buf_t b = {0};
    char *b64;

    if (len == 0) {
        pv_buf_puts(&b, "<challenge xmlns='" NS_SASL2 "'/>");
    } else {
        b64 = pv_base64_encode(data, len, NULL);
        pv_buf_printf(&b, "<challenge xmlns='" NS_SASL2 "'>%s</challenge>",
                      b64 ? b64 : "");
        free(b64);
    }
    pv_stream_write(s->c, b.data, b.len);
    pv_buf_free(&b);
}

static void
s2_on_success(void *arg, const char *user, const char *data, size_t len)
{
    s2_succeed(arg, user, data, len, NULL);
}

static void
s2_on_failure(void *arg, const char *condition, int counts)
{
    s2_failure(arg, condition, counts, NULL);
}

static const pv_sasl_profile_t sasl2_profile = {
    s2_on_challenge, s2_on_success, s2_on_failure
};

/* --- FAST authentication -------------------------------------------- */

static int
s2_parse_count(const char *v, uint64_t *out)
{
    char *end;

    if (v == NULL || *v < '0' || *v > '9')
        return 0;
    *out = strtoull(v, &end, 10);
    return *end == '\0';
}

/* HT-SHA-256-NONE (draft-schmaus-kitten-sasl-ht §3): one round trip,
 * authcid NUL HMAC(token, "Initiator"); success carries
 * HMAC(token, "Responder"). */
static void
s2_fast_auth(pv_sasl2_t *s, const uint8_t *msg, size_t len, int has_initial)
{
    pv_c2s_t *c = s->c;
    pv_host_t *h = pv_c2s_host(c);
    pv_conn_t *conn = pv_c2s_conn(c);
    const pv_node_t *f = pv_node_child(s->request, "fast", NS_FAST);
    const char *authcid, *cnt;
    const uint8_t *proof;
    size_t alen;
    uint64_t count = 0;
    char *user = NULL, fp[PV_FAST_FP_LEN + 1];
    pv_fast_record_t r;
    uint8_t resp[32];

    if (conn == NULL)
        return;
    if (pv_server_auth_blocked(h->server, pv_conn_peer_ip(conn))) {
        s2_failure(s, "temporary-auth-failure", 0, NULL);
        return;
    }
    if (!pv_c2s_is_tls(c)) {
        s2_failure(s, "invalid-mechanism", 0, NULL);
        return;
    }
    cnt = f ? pv_node_attr(f, "count") : NULL;
    if (f == NULL || s->ua_id == NULL || !has_initial ||
        (cnt != NULL && !s2_parse_count(cnt, &count)) ||
        pv_fast_parse_initial(msg, len, &authcid, &alen, &proof) != PV_OK) {
        s2_failure(s, "malformed-request", 1, NULL);
        return;
    }
    user = pv_jid_prep_node(authcid, alen);
    memset(&r, 0, sizeof(r));
    if (user == NULL || !s2_get_record(h, user, s->ua_id, &r)) {
        free(user);
        s2_failure(s, "not-authorized", 1, NULL);
        return;
    }
    if (!s2_cred_fp(h, user, fp) || strcmp(fp, r.fp) != 0) {
        /* the password changed (or the account is gone) since issue:
         * XEP-0484 §6.2 */
        s2_delete_record(h, user, s->ua_id);
        free(user);
        OPENSSL_cleanse(&r, sizeof(r));
        s2_failure(s, "credentials-expired", 1, NULL);
        return;
    }
    if (pv_fast_check(&r, proof, (int64_t)time(NULL), cnt != NULL,
                      count) == PV_FAST_NO_MATCH) {
        free(user);
        OPENSSL_cleanse(&r, sizeof(r));
        s2_failure(s, "not-authorized", 1, NULL);
        return;
    }
    /* the matched token is in the current slot now */
    pv_fast_ht_sha256(r.cur.token, "Responder", NULL, 0, resp);
    s2_succeed(s, user, resp, sizeof(resp), &r);
    OPENSSL_cleanse(&r, sizeof(r));
    free(user);
}

/* --- input ------------------------------------------------------------ */

pv_sasl2_t *
pv_sasl2_new(pv_c2s_t *c)
{
    pv_sasl2_t *s = pv_xcalloc(1, sizeof(*s));

    s->c = c;
    return s;
}

static int
s2_id_ok(const char *id)
{
    size_t n = strlen(id);
    const char *p;

    if (n == 0 || n > PV_FAST_ID_MAX)
        return 0;
    for (p = id; *p; p++)
        if ((unsigned char)*p < ' ')
            return 0;
    return 1;
}

static void
s2_authenticate(pv_sasl2_t *s, const pv_node_t *nonza)
{
    const char *mech = pv_node_attr(nonza, "mechanism");
    const pv_node_t *ua, *ir;
    uint8_t *data = NULL;
    size_t len = 0;

    s2_end(s);
    if (s->sasl != NULL && pv_sasl_active(s->sasl)) {
        /* a new <authenticate/> abandons the running exchange */
        pv_sasl_free(s->sasl);
        s->sasl = NULL;
    }
    s->arena = pv_arena_new(1024);
    s->request = pv_node_copy(s->arena, nonza);
    ua = pv_node_child(s->request, "user-agent", NS_SASL2);
    if (ua != NULL && pv_node_attr(ua, "id") != NULL &&
        s2_id_ok(pv_node_attr(ua, "id")))
        s->ua_id = pv_node_attr(ua, "id");
    if (mech == NULL) {
        s2_failure(s, "invalid-mechanism", 0, NULL);
        return;
    }
    ir = pv_node_child(s->request, "initial-response", NS_SASL2);
    if (ir != NULL && (data = s2_decode(ir, s->arena, &len)) == NULL) {
        s2_failure(s, "incorrect-encoding", 1, NULL);
        return;
    }
    if (strcmp(mech, PV_FAST_MECH) == 0) {
        s2_fast_auth(s, data, len, ir != NULL);
    } else {
        if (s->sasl == NULL)
            s->sasl = pv_sasl_new_profile(pv_c2s_host(s->c),
                                          pv_c2s_conn(s->c), &sasl2_profile,
                                          s);
        pv_sasl_start(s->sasl, mech, data, len, ir != NULL);
    }
    free(data);
}

void
pv_sasl2_input(pv_sasl2_t *s, pv_node_t *nonza)
{
    const char *name = nonza->name;

    if (pv_c2s_conn(s->c) == NULL)
        return;
    if (s->sasl != NULL && pv_sasl_busy(s->sasl))
        return; /* PLAIN is hashing: the client must wait for the answer */
    if (strcmp(name, "authenticate") == 0) {
        s2_authenticate(s, nonza);
    } else if (strcmp(name, "response") == 0) {
        pv_arena_t *a;
        uint8_t *data;
        size_t len;

        if (s->sasl == NULL || !pv_sasl_active(s->sasl) ||
            s->request == NULL) {
            s2_failure(s, "malformed-request", 1, NULL);
            return;
        }
        a = pv_arena_new(256);
        data = s2_decode(nonza, a, &len);
        pv_arena_free(a);
        if (data == NULL) {
            /* drop the half-done exchange without another answer */
            pv_sasl_free(s->sasl);
            s->sasl = NULL;
            s2_failure(s, "incorrect-encoding", 1, NULL);
            return;
        }
        pv_sasl_step(s->sasl, data, len);
        free(data);
    } else if (strcmp(name, "abort") == 0) {
        if (s->sasl != NULL && pv_sasl_active(s->sasl))
            pv_sasl_abort(s->sasl);
        else
            s2_failure(s, "aborted", 0, NULL);
    } else {
        s2_failure(s, "malformed-request", 0, NULL);
    }
}

void
pv_sasl2_free(pv_sasl2_t *s)
{
    if (s == NULL)
        return;
    s2_end(s);
    pv_sasl_free(s->sasl);
    free(s);
}
