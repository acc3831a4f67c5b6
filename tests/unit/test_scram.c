/* tests/unit/test_scram.c: the SASL message layer (src/scram.c): RFC 5802
 * and RFC 7677 vectors byte for byte on both sides, the XEP-0474 example,
 * client/server round trips with every channel binding type, hostile
 * messages, PLAIN parsing and strict base64. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <CUnit/CUnit.h>

#include "scram.h"

#define LIT(s) (s), (sizeof(s) - 1)
/* CU_ASSERT_STRING_EQUAL crashes on NULL; a failure must stay a failure */
#define ASSERT_STR(got, want)                                 \
    do {                                                      \
        const char *got_ = (got);                             \
        CU_ASSERT_STRING_EQUAL(got_ ? got_ : "(null)", want); \
    } while (0)

static const char *const all_cb[] = {"tls-exporter", "tls-server-end-point",
                                     "tls-unique", NULL};
static const char *const all_mechs[] = {
    "SCRAM-SHA-256-PLUS", "SCRAM-SHA-1", "SCRAM-SHA-256",
    "SCRAM-SHA-1-PLUS",   "PLAIN",       NULL};

typedef struct vector_s {
    pv_scram_hash_t hash;
    const char *cnonce;
    const char *snonce;
    const char *salt_b64;
    const char *client_first;
    const char *server_first;
    const char *client_final;
    const char *server_final;
} vector_t;

static const vector_t vectors[] = {
    /* RFC 5802 §5 */
    {PV_SCRAM_SHA1, "fyko+d2lbbFgONRv9qkxdawL", "3rfcNHYJY1ZVvWVs7j",
     "QSXCR+Q6sek8bf92", "n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL",
     "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,"
     "i=4096",
     "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,"
     "p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
     "v=rmF9pqV8S7suAoZWja4dJRkFsKQ="},
    /* RFC 7677 §3 */
    {PV_SCRAM_SHA256, "rOprNGfwEbeRWgbNEkqO", "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
     "W22ZaJ0SNY7soEsUEjb6gQ==", "n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
     "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
     "s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
     "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
     "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
     "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="},
};

/* Keys for "pencil" under the RFC salt, per hash (PBKDF2 is slow: once) */
typedef struct creds_s {
    uint8_t salt[64];
    size_t salt_len;
    uint8_t stored[32];
    uint8_t server[32];
} creds_t;

static void
make_creds(pv_scram_hash_t h, const char *salt_b64, const char *password,
           creds_t *c)
{
    uint8_t *salt = pv_base64_decode(salt_b64, strlen(salt_b64), &c->salt_len);

    CU_ASSERT_FATAL(salt != NULL);
    memcpy(c->salt, salt, c->salt_len);
    free(salt);
    CU_ASSERT_FATAL(pv_scram_derive(h, password, c->salt, c->salt_len, 4096,
                                    c->stored, c->server) == PV_OK);
}

static int
streq_len(const char *got, size_t len, const char *want)
{
    return got != NULL && len == strlen(want) && memcmp(got, want, len) == 0;
}

/* ---- RFC vectors ----------------------------------------------------- */

static void
test_vectors_server(void)
{
    size_t i, len = 0;

    for (i = 0; i < PV_COUNTOF(vectors); i++) {
        const vector_t *v = &vectors[i];
        pv_scram_server_t *s = pv_scram_server_new(v->hash, 0, 0, NULL);
        creds_t c;
        const char *out;

        make_creds(v->hash, v->salt_b64, "pencil", &c);
        CU_ASSERT_FATAL(s != NULL);
        CU_ASSERT_EQUAL(pv_scram_server_set_nonce(s, v->snonce), PV_OK);
        CU_ASSERT_EQUAL(pv_scram_server_client_first(s, v->client_first,
                                                     strlen(v->client_first)),
                        PV_OK);
        ASSERT_STR(pv_scram_server_username(s), "user");
        CU_ASSERT_PTR_NULL(pv_scram_server_authzid(s));
        CU_ASSERT_PTR_NULL(pv_scram_server_cb_type(s));
        CU_ASSERT_PTR_NULL(pv_scram_server_first(s, &len));
        CU_ASSERT_EQUAL(pv_scram_server_set_credentials(s, c.salt, c.salt_len,
                                                        4096, c.stored,
                                                        c.server, NULL),
                        PV_OK);
        out = pv_scram_server_first(s, &len);
        CU_ASSERT(streq_len(out, len, v->server_first));
        CU_ASSERT_PTR_NULL(pv_scram_server_final(s, &len));
        CU_ASSERT_EQUAL(pv_scram_server_client_final(s, v->client_final,
                                                     strlen(v->client_final),
                                                     NULL, 0),
                        PV_OK);
        out = pv_scram_server_final(s, &len);
        CU_ASSERT(streq_len(out, len, v->server_final));
        CU_ASSERT_PTR_NULL(pv_scram_server_error(s));
        pv_scram_server_free(s);
    }
}

static void
test_vectors_client(void)
{
    size_t i, len = 0;

    for (i = 0; i < PV_COUNTOF(vectors); i++) {
        const vector_t *v = &vectors[i];
        pv_scram_client_t *c =
            pv_scram_client_new(v->hash, "user", "pencil", NULL, NULL, 0);
        const char *out;

        CU_ASSERT_FATAL(c != NULL);
        CU_ASSERT_EQUAL(pv_scram_client_set_nonce(c, v->cnonce), PV_OK);
        out = pv_scram_client_first(c, &len);
        CU_ASSERT(streq_len(out, len, v->client_first));
        CU_ASSERT_PTR_NULL(pv_scram_client_final(c, &len));
        CU_ASSERT_EQUAL(pv_scram_client_server_first(c, v->server_first,
                                                     strlen(v->server_first)),
                        PV_OK);
        out = pv_scram_client_final(c, &len);
        CU_ASSERT(streq_len(out, len, v->client_final));
        CU_ASSERT_EQUAL(pv_scram_client_ssdp_verified(c), 0);
        CU_ASSERT_EQUAL(pv_scram_client_server_final(c, v->server_final,
                                                     strlen(v->server_final)),
                        PV_OK);
        CU_ASSERT_PTR_NULL(pv_scram_client_error(c));
        pv_scram_client_free(c);
    }
}

/* A tampered server signature must be caught by the client */
static void
test_client_bad_server_final(void)
{
    static const struct {
        const char *msg;
        const char *error;
    } cases[] = {
        {"v=rmF9pqV8S7suAoZWja4dJRkFsKQ=", NULL},
        {"v=rmF9pqV8S7suAoZWja4dJRkFsKU=", "server-signature-mismatch"},
        {"v=rmF9pqV8S7suAoZWja4dJRkFsA==", "server-signature-mismatch"},
        {"v=rmF9pqV8S7suAoZWja4dJRkFsKQ", "malformed-server-final"},
        {"e=invalid-proof", "server-error"},
        {"v=", "malformed-server-final"},
        {"", "malformed-server-final"},
        {"x=rmF9pqV8S7suAoZWja4dJRkFsKQ=", "malformed-server-final"},
        {"v=rmF9pqV8S7suAoZWja4dJRkFsKQ=,", "malformed-server-final"},
        {"v=rmF9pqV8S7suAoZWja4dJRkFsKQ=,z=ok", NULL},
    };
    const vector_t *v = &vectors[0];
    size_t i;

    for (i = 0; i < PV_COUNTOF(cases); i++) {
        pv_scram_client_t *c =
            pv_scram_client_new(v->hash, "user", "pencil", NULL, NULL, 0);
        int rc;

        pv_scram_client_set_nonce(c, v->cnonce);
        pv_scram_client_first(c, NULL);
        CU_ASSERT_EQUAL(pv_scram_client_server_first(c, v->server_first,
                                                     strlen(v->server_first)),
                        PV_OK);
        rc =
            pv_scram_client_server_final(c, cases[i].msg, strlen(cases[i].msg));
        if (cases[i].error == NULL) {
            CU_ASSERT_EQUAL(rc, PV_OK);
        } else {
            CU_ASSERT_EQUAL(rc, PV_ERROR);
            ASSERT_STR(pv_scram_client_error(c), cases[i].error);
        }
        pv_scram_client_free(c);
    }
}

static void
test_client_bad_server_first(void)
{
    static const struct {
        const char *msg;
        const char *error;
    } cases[] = {
        /* server nonce missing: it must extend ours */
        {"r=fyko+d2lbbFgONRv9qkxdawL,s=QSXCR+Q6sek8bf92,i=4096",
         "nonce-mismatch"},
        {"r=Xyko+d2lbbFgONRv9qkxdawL3rfc,s=QSXCR+Q6sek8bf92,i=4096",
         "nonce-mismatch"},
        {"r=fyko+d2lbbFgONRv9qkxdawL3rfc,s=QSXCR+Q6sek8bf92,i=4095",
         "bad-iteration-count"},
        {"r=fyko+d2lbbFgONRv9qkxdawL3rfc,s=QSXCR+Q6sek8bf92,i=04096",
         "bad-iteration-count"},
        {"r=fyko+d2lbbFgONRv9qkxdawL3rfc,s=QSXCR+Q6sek8bf92,i=99999999999",
         "bad-iteration-count"},
        {"r=fyko+d2lbbFgONRv9qkxdawL3rfc,s=QSXCR+Q6sek8bf92,i=-1",
         "bad-iteration-count"},
        {"r=fyko+d2lbbFgONRv9qkxdawL3rfc,s=QSXCR+Q6sek8bf9,i=4096",
         "malformed-server-first"},
        {"r=fyko+d2lbbFgONRv9qkxdawL3rfc,s=,i=4096", "malformed-server-first"},
        {"r=fyko+d2lbbFgONRv9qkxdawL3rfc,i=4096,s=QSXCR+Q6sek8bf92",
         "malformed-server-first"},
        {"m=x,r=fyko+d2lbbFgONRv9qkxdawL3rfc,s=QSXCR+Q6sek8bf92,i=4096",
         "malformed-server-first"},
        {"r=fyko+d2lbbFgONRv9qkxdawL3rfc,s=QSXCR+Q6sek8bf92",
         "malformed-server-first"},
        {"r=fyko+d2lbbFgONRv9qkxdawL3rfc,s=QSXCR+Q6sek8bf92,i=4096,=x",
         "malformed-server-first"},
    };
    size_t i;

    for (i = 0; i < PV_COUNTOF(cases); i++) {
        pv_scram_client_t *c =
            pv_scram_client_new(PV_SCRAM_SHA1, "user", "pencil", NULL, NULL, 0);

        pv_scram_client_set_nonce(c, "fyko+d2lbbFgONRv9qkxdawL");
        pv_scram_client_first(c, NULL);
        CU_ASSERT_EQUAL(
            pv_scram_client_server_first(c, cases[i].msg, strlen(cases[i].msg)),
            PV_ERROR);
        ASSERT_STR(pv_scram_client_error(c), cases[i].error);
        CU_ASSERT_PTR_NULL(pv_scram_client_final(c, NULL));
        pv_scram_client_free(c);
    }
}

/* ---- XEP-0474 -------------------------------------------------------- */

/* The XEP-0474 v0.5.0 §3.3 example, verified independently: h= over
 * "SCRAM-SHA-1\x1eSCRAM-SHA-1-PLUS\x1ftls-exporter\x1etls-server-end-point",
 * and a client-final carrying an x= extension. */
#define X474_CNONCE "12C4CD5C-E38E-4A98-8F6D-15C38F51CCC6"
#define X474_SNONCE "a09117a6-ac50-4f2f-93f1-93799c2bddf6"
#define X474_CB "THIS IS FAKE CB DATA"
static const char x474_first[] = "p=tls-exporter,,n=user,r=" X474_CNONCE;
static const char x474_server_first[] =
    "r=" X474_CNONCE X474_SNONCE ",s=QSXCR+Q6sek8bf92,i=4096,"
    "h=G6k/rBLDqgOhRRaCuuatSDFkJ08=";
static const char x474_final[] =
    "c=cD10bHMtZXhwb3J0ZXIsLFRISVMgSVMgRkFLRSBDQiBEQVRB,"
    "r=" X474_CNONCE X474_SNONCE ",x=19C6532F-1CF4-4A27-A18D-DC9CEA41BBB3,"
    "p=M/SIDjT+dfcxUh89jZEypRvFxB4=";
static const char *const x474_mechs[] = {"SCRAM-SHA-1-PLUS", "SCRAM-SHA-1",
                                         NULL};
static const char *const x474_cbs[] = {"tls-server-end-point", "tls-exporter",
                                       NULL};

static void
test_xep0474_server(void)
{
    pv_scram_server_t *s = pv_scram_server_new(PV_SCRAM_SHA1, 1, 1, x474_cbs);
    creds_t c;
    const char *out;
    size_t len = 0;

    make_creds(PV_SCRAM_SHA1, "QSXCR+Q6sek8bf92", "pencil", &c);
    CU_ASSERT_EQUAL(pv_scram_server_set_nonce(s, X474_SNONCE), PV_OK);
    CU_ASSERT_EQUAL(pv_scram_server_client_first(s, LIT(x474_first)), PV_OK);
    ASSERT_STR(pv_scram_server_cb_type(s), "tls-exporter");
    CU_ASSERT_EQUAL(pv_scram_server_set_credentials(s, c.salt, c.salt_len, 4096,
                                                    c.stored, c.server,
                                                    x474_mechs),
                    PV_OK);
    out = pv_scram_server_first(s, &len);
    CU_ASSERT(streq_len(out, len, x474_server_first));
    CU_ASSERT_EQUAL(pv_scram_server_client_final(s, LIT(x474_final),
                                                 (const uint8_t *)X474_CB,
                                                 strlen(X474_CB)),
                    PV_OK);
    out = pv_scram_server_final(s, &len);
    CU_ASSERT(streq_len(out, len, "v=MQrMPvv7yv4x4Cq4W4Ih25EqS2c="));
    pv_scram_server_free(s);
}

static void
test_xep0474_client(void)
{
    static const char *const mitm_mechs[] = {"SCRAM-SHA-1", NULL};
    static const char *const mitm_cbs[] = {"tls-server-end-point", NULL};
    static const struct {
        const char *const *mechs;
        const char *const *cbs;
        int ok;
    } cases[] = {
        {x474_mechs, x474_cbs, 1},
        {mitm_mechs, x474_cbs, 0}, /* -PLUS stripped */
        {x474_mechs, mitm_cbs, 0}, /* tls-exporter stripped */
        {x474_mechs, NULL, 0},     /* XEP-0440 list stripped */
    };
    size_t i, len;

    for (i = 0; i < PV_COUNTOF(cases); i++) {
        pv_scram_client_t *c =
            pv_scram_client_new(PV_SCRAM_SHA1, "user", "pencil", "tls-exporter",
                                (const uint8_t *)X474_CB, strlen(X474_CB));
        const char *out;
        int rc;

        CU_ASSERT_EQUAL(pv_scram_client_set_nonce(c, X474_CNONCE), PV_OK);
        CU_ASSERT_EQUAL(
            pv_scram_client_set_advertised(c, cases[i].mechs, cases[i].cbs),
            PV_OK);
        out = pv_scram_client_first(c, &len);
        CU_ASSERT(streq_len(out, len, x474_first));
        rc = pv_scram_client_server_first(c, LIT(x474_server_first));
        if (cases[i].ok) {
            CU_ASSERT_EQUAL(rc, PV_OK);
            CU_ASSERT_EQUAL(pv_scram_client_ssdp_verified(c), 1);
            /* our client sends no x=, so compare up to r= */
            out = pv_scram_client_final(c, &len);
            CU_ASSERT_FATAL(out != NULL);
            CU_ASSERT(
                strncmp(out, x474_final,
                        (size_t)(strstr(x474_final, ",x=") - x474_final)) == 0);
        } else {
            CU_ASSERT_EQUAL(rc, PV_ERROR);
            ASSERT_STR(pv_scram_client_error(c), "downgrade-detected");
            CU_ASSERT_PTR_NULL(pv_scram_client_final(c, &len));
        }
        pv_scram_client_free(c);
    }
}

/* ---- round trips ----------------------------------------------------- */

typedef struct trip_s {
    pv_scram_hash_t hash;
    const char *cb_type; /* NULL: no channel binding */
    const char *client_pw;
    const char *server_cb; /* channel binding data the server sees */
    const char *user;
    const char *authzid;
    int cb_supported;        /* client sends 'y' */
    int server_plus;         /* server advertised -PLUS */
    const char *first_error; /* expected failure at client_first */
    const char *final_error; /* expected failure at client_final */
} trip_t;

static const char cb_data[] = "binding-data-from-tls";

static void
run_trip(const trip_t *t, const creds_t *cr)
{
    pv_scram_server_t *s;
    pv_scram_client_t *c;
    const char *msg, *sdata;
    size_t len, slen;
    int rc;

    c = pv_scram_client_new(t->hash, t->user, t->client_pw, t->cb_type,
                            t->cb_type ? (const uint8_t *)cb_data : NULL,
                            t->cb_type ? strlen(cb_data) : 0);
    CU_ASSERT_FATAL(c != NULL);
    s = pv_scram_server_new(t->hash, t->cb_type != NULL, t->server_plus,
                            t->server_plus ? all_cb : NULL);
    CU_ASSERT_FATAL(s != NULL);
    if (t->authzid) {
        CU_ASSERT_EQUAL(pv_scram_client_set_authzid(c, t->authzid), PV_OK);
    }
    if (t->cb_supported) {
        CU_ASSERT_EQUAL(pv_scram_client_set_cb_supported(c), PV_OK);
    }
    CU_ASSERT_EQUAL(pv_scram_client_set_advertised(
                        c, all_mechs, t->server_plus ? all_cb : NULL),
                    PV_OK);

    msg = pv_scram_client_first(c, &len);
    CU_ASSERT_FATAL(msg != NULL);
    rc = pv_scram_server_client_first(s, msg, len);
    if (t->first_error != NULL) {
        CU_ASSERT_EQUAL(rc, PV_ERROR);
        ASSERT_STR(pv_scram_server_error(s), t->first_error);
        goto out;
    }
    CU_ASSERT_EQUAL_FATAL(rc, PV_OK);
    ASSERT_STR(pv_scram_server_username(s), t->user);
    if (t->authzid) {
        ASSERT_STR(pv_scram_server_authzid(s), t->authzid);
    }
    if (t->cb_type) {
        ASSERT_STR(pv_scram_server_cb_type(s), t->cb_type);
    }
    CU_ASSERT_EQUAL(pv_scram_server_set_credentials(s, cr->salt, cr->salt_len,
                                                    4096, cr->stored,
                                                    cr->server, all_mechs),
                    PV_OK);
    msg = pv_scram_server_first(s, &len);
    CU_ASSERT_FATAL(msg != NULL);
    CU_ASSERT_EQUAL_FATAL(pv_scram_client_server_first(c, msg, len), PV_OK);
    CU_ASSERT_EQUAL(pv_scram_client_ssdp_verified(c), 1);
    msg = pv_scram_client_final(c, &len);
    CU_ASSERT_FATAL(msg != NULL);
    sdata = t->server_cb;
    slen = sdata ? strlen(sdata) : 0;
    rc =
        pv_scram_server_client_final(s, msg, len, (const uint8_t *)sdata, slen);
    if (t->final_error != NULL) {
        CU_ASSERT_EQUAL(rc, PV_ERROR);
        ASSERT_STR(pv_scram_server_error(s), t->final_error);
        CU_ASSERT_PTR_NULL(pv_scram_server_final(s, NULL));
        goto out;
    }
    CU_ASSERT_EQUAL_FATAL(rc, PV_OK);
    msg = pv_scram_server_final(s, &len);
    CU_ASSERT_FATAL(msg != NULL);
    CU_ASSERT_EQUAL(pv_scram_client_server_final(c, msg, len), PV_OK);
out:
    pv_scram_server_free(s);
    pv_scram_client_free(c);
}

static void
test_round_trips(void)
{
    static const pv_scram_hash_t hashes[] = {PV_SCRAM_SHA1, PV_SCRAM_SHA256};
    static const char *const cbs[] = {NULL, "tls-unique", "tls-exporter",
                                      "tls-server-end-point"};
    size_t h, i;

    for (h = 0; h < PV_COUNTOF(hashes); h++) {
        creds_t cr;

        make_creds(hashes[h], "QSXCR+Q6sek8bf92", "pencil", &cr);
        for (i = 0; i < PV_COUNTOF(cbs); i++) {
            trip_t t = {hashes[h], cbs[i], "pencil", cbs[i] ? cb_data : NULL,
                        "user",    NULL,   0,        1,
                        NULL,      NULL};

            run_trip(&t, &cr);
            /* escaping and authzid on the same path */
            t.user = "o,dd=name";
            t.authzid = "ju,li=et@example.org";
            run_trip(&t, &cr);
        }
    }
}

static void
test_failures(void)
{
    static const trip_t cases[] = {
        /* wrong password */
        {PV_SCRAM_SHA1, NULL, "pencil2", NULL, "user", NULL, 0, 1, NULL,
         "not-authorized"},
        {PV_SCRAM_SHA256, "tls-exporter", "Pencil", cb_data, "user", NULL, 0, 1,
         NULL, "not-authorized"},
        /* the channel binding data differs (MITM) */
        {PV_SCRAM_SHA256, "tls-exporter", "pencil", "other-tls-session", "user",
         NULL, 0, 1, NULL, "not-authorized"},
        {PV_SCRAM_SHA1, "tls-unique", "pencil", NULL, "user", NULL, 0, 1, NULL,
         "not-authorized"},
        /* 'y': the client could bind; fine unless the server offers -PLUS */
        {PV_SCRAM_SHA1, NULL, "pencil", NULL, "user", NULL, 1, 1,
         "not-authorized", NULL},
        {PV_SCRAM_SHA1, NULL, "pencil", NULL, "user", NULL, 1, 0, NULL, NULL},
        /* p= on a connection without channel binding */
        {PV_SCRAM_SHA256, "tls-exporter", "pencil", cb_data, "user", NULL, 0, 0,
         "not-authorized", NULL},
        /* p= with a type the server does not have */
        {PV_SCRAM_SHA256, "tls-foo", "pencil", cb_data, "user", NULL, 0, 1,
         "not-authorized", NULL},
    };
    creds_t cr1, cr256;
    size_t i;

    make_creds(PV_SCRAM_SHA1, "QSXCR+Q6sek8bf92", "pencil", &cr1);
    make_creds(PV_SCRAM_SHA256, "QSXCR+Q6sek8bf92", "pencil", &cr256);
    for (i = 0; i < PV_COUNTOF(cases); i++)
        run_trip(&cases[i], cases[i].hash == PV_SCRAM_SHA1 ? &cr1 : &cr256);
}

/* gs2 flag against the selected mechanism (RFC 5802 §6) */
static void
test_gs2_flags(void)
{
    static const struct {
        int plus;
        int supports_plus;
        const char *msg;
        const char *error; /* NULL: accepted */
        const char *scram;
    } cases[] = {
        {0, 0, "n,,n=user,r=abc", NULL, NULL},
        {0, 1, "n,,n=user,r=abc", NULL, NULL},
        {0, 0, "y,,n=user,r=abc", NULL, NULL},
        {0, 1, "y,,n=user,r=abc", "not-authorized",
         "server-does-support-channel-binding"},
        {0, 1, "p=tls-exporter,,n=user,r=abc", "invalid-mechanism",
         "channel-binding-not-supported"},
        {1, 1, "p=tls-exporter,,n=user,r=abc", NULL, NULL},
        {1, 1, "p=tls-unique,,n=user,r=abc", NULL, NULL},
        {1, 1, "p=tls-bogus,,n=user,r=abc", "not-authorized",
         "unsupported-channel-binding-type"},
        {1, 1, "p=TLS-EXPORTER,,n=user,r=abc", "not-authorized",
         "unsupported-channel-binding-type"},
        {1, 1, "n,,n=user,r=abc", "invalid-mechanism",
         "channel-binding-not-supported"},
        {1, 1, "y,,n=user,r=abc", "invalid-mechanism",
         "channel-binding-not-supported"},
    };
    size_t i;

    for (i = 0; i < PV_COUNTOF(cases); i++) {
        pv_scram_server_t *s = pv_scram_server_new(
            PV_SCRAM_SHA256, cases[i].plus, cases[i].supports_plus,
            cases[i].supports_plus ? all_cb : NULL);
        int rc =
            pv_scram_server_client_first(s, cases[i].msg, strlen(cases[i].msg));

        if (cases[i].error == NULL) {
            CU_ASSERT_EQUAL(rc, PV_OK);
        } else {
            CU_ASSERT_EQUAL(rc, PV_ERROR);
            ASSERT_STR(pv_scram_server_error(s), cases[i].error);
            ASSERT_STR(pv_scram_server_scram_error(s), cases[i].scram);
        }
        pv_scram_server_free(s);
    }
}

/* ---- hostile client-first -------------------------------------------- */

static void
test_malformed_client_first(void)
{
    static const struct {
        const char *msg;
        size_t len;       /* 0: strlen */
        const char *user; /* NULL: must fail with malformed-request */
    } cases[] = {
        {"n,,n=user,r=abc", 0, "user"},
        {"n,,n=a=2Cb=3Dc,r=abc", 0, "a,b=c"},
        {"n,,n=a=2cb=3dc,r=abc", 0, "a,b=c"}, /* RFC 5234 §2.3 */
        {"n,,n=user,r=abc,x=yz,q=1", 0, "user"},
        {"n,,n=\xc3\xa9l\xc3\xa8ve,r=abc", 0, "\xc3\xa9l\xc3\xa8ve"},
        {"n,a=admin,n=user,r=abc", 0, "user"},
        {"", 0, NULL},
        {"n", 0, NULL},
        {"n,,", 0, NULL},
        {"n,,n=user", 0, NULL},
        {"n,,n=user,r", 0, NULL},
        {"n,,n=user,r=", 0, NULL},
        {"n,,r=abc,n=user", 0, NULL},
        {"n,,n=,r=abc", 0, NULL},
        {"n,,n=us=2Xer,r=abc", 0, NULL},
        {"n,,n=us=er,r=abc", 0, NULL},
        {"n,,n=user=2,r=abc", 0, NULL},
        {"n,,n=user=,r=abc", 0, NULL},
        {"n,,n=user=3,r=abc", 0, NULL},
        {"n,,m=ext,n=user,r=abc", 0, NULL},
        {"x,,n=user,r=abc", 0, NULL},
        {"nn,,n=user,r=abc", 0, NULL},
        {"p=,,n=user,r=abc", 0, NULL},
        {"p=tls unique,,n=user,r=abc", 0, NULL},
        {"n,a,n=user,r=abc", 0, NULL},
        {"n,a=,n=user,r=abc", 0, NULL},
        {"n,b=x,n=user,r=abc", 0, NULL},
        {"n,a=x=2,n=user,r=abc", 0, NULL},
        {"n,,N=user,r=abc", 0, NULL},
        {"n,,n=user,r=ab c", 0, NULL},
        {"n,,n=user,r=ab\x7f", 0, NULL},
        {"n,,n=user,r=abc,", 0, NULL},
        {"n,,n=user,r=abc,ext", 0, NULL},
        {"n,,n=user,r=abc,1=x", 0, NULL},
        {"n,,n=user,r=abc,x=", 0, NULL},
        {"n,,n=us\xff,r=abc", 0, NULL},
        {"n,,n=us\xc3,r=abc", 0, NULL},
        {"n,,n=user\0x,r=abc", 17, NULL},
        {"n,,n=user,r=abc\0", 16, NULL},
        {"\0,,n=user,r=abc", 15, NULL},
        /* the message is not NUL-terminated: a short len must not read on */
        {"n,,n=user,r=abc", 11, NULL},
        {"n,,n=user,r=abc", 13, "user"},
    };
    size_t i;

    for (i = 0; i < PV_COUNTOF(cases); i++) {
        pv_scram_server_t *s = pv_scram_server_new(PV_SCRAM_SHA1, 0, 0, NULL);
        size_t len = cases[i].len ? cases[i].len : strlen(cases[i].msg);
        char *copy = malloc(len ? len : 1); /* exact size: ASan sees */
        int rc;

        memcpy(copy, cases[i].msg, len);
        rc = pv_scram_server_client_first(s, copy, len);
        if (cases[i].user != NULL) {
            CU_ASSERT_EQUAL(rc, PV_OK);
            ASSERT_STR(pv_scram_server_username(s), cases[i].user);
        } else {
            if (rc != PV_ERROR)
                fprintf(stderr, "accepted: case %zu\n", i);
            CU_ASSERT_EQUAL(rc, PV_ERROR);
            ASSERT_STR(pv_scram_server_error(s), "malformed-request");
            /* dead: a retry fails the same way */
            CU_ASSERT_EQUAL(
                pv_scram_server_client_first(s, LIT("n,,n=user,r=abc")),
                PV_ERROR);
        }
        free(copy);
        pv_scram_server_free(s);
    }
}

static void
test_oversized(void)
{
    size_t len = PV_SCRAM_MAX_MSG + 1, i;
    char *big = malloc(len);
    pv_scram_server_t *s;

    /* "n,,n=aaaa...,r=abc" with len just above the limit */
    memset(big, 'a', len);
    memcpy(big, "n,,n=", 5);
    memcpy(big + len - 6, ",r=abc", 6);
    s = pv_scram_server_new(PV_SCRAM_SHA1, 0, 0, NULL);
    CU_ASSERT_EQUAL(pv_scram_server_client_first(s, big, len), PV_ERROR);
    ASSERT_STR(pv_scram_server_error(s), "malformed-request");
    pv_scram_server_free(s);
    /* one byte shorter is fine */
    s = pv_scram_server_new(PV_SCRAM_SHA1, 0, 0, NULL);
    memcpy(big + 1, "n,,n=", 5);
    CU_ASSERT_EQUAL(pv_scram_server_client_first(s, big + 1, len - 1), PV_OK);
    CU_ASSERT_EQUAL(strlen(pv_scram_server_username(s)), len - 1 - 11);
    pv_scram_server_free(s);
    /* a flood of extensions */
    s = pv_scram_server_new(PV_SCRAM_SHA1, 0, 0, NULL);
    for (i = 0; i + 4 <= 400; i += 4)
        memcpy(big + i, ",x=y", 4);
    memcpy(big, "n,,n=user,r=abcd", 16);
    CU_ASSERT_EQUAL(pv_scram_server_client_first(s, big, 400), PV_ERROR);
    pv_scram_server_free(s);
    /* ...while a few are fine */
    s = pv_scram_server_new(PV_SCRAM_SHA1, 0, 0, NULL);
    CU_ASSERT_EQUAL(pv_scram_server_client_first(s, big, 16 + 4 * 20), PV_OK);
    pv_scram_server_free(s);
    free(big);
}

/* ---- hostile client-final -------------------------------------------- */

#define V1_NONCE "fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j"
#define V1_PROOF "p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts="

static pv_scram_server_t *
challenged_server(const creds_t *cr)
{
    pv_scram_server_t *s = pv_scram_server_new(PV_SCRAM_SHA1, 0, 0, NULL);

    pv_scram_server_set_nonce(s, "3rfcNHYJY1ZVvWVs7j");
    CU_ASSERT_FATAL(pv_scram_server_client_first(
                        s, LIT("n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL")) ==
                    PV_OK);
    CU_ASSERT_FATAL(pv_scram_server_set_credentials(s, cr->salt, cr->salt_len,
                                                    4096, cr->stored,
                                                    cr->server, NULL) == PV_OK);
    return s;
}

static void
test_malformed_client_final(void)
{
    static const struct {
        const char *msg;
        size_t len;
        const char *error; /* NULL: accepted */
    } cases[] = {
        {"c=biws,r=" V1_NONCE "," V1_PROOF, 0, NULL},
        {"c=biws," V1_PROOF, 0, "malformed-request"},
        {"c=biws,r=" V1_NONCE, 0, "malformed-request"},
        {"r=" V1_NONCE ",c=biws," V1_PROOF, 0, "malformed-request"},
        {"c=biws," V1_PROOF ",r=" V1_NONCE, 0, "malformed-request"},
        {"c=biw,r=" V1_NONCE "," V1_PROOF, 0, "malformed-request"},
        {"c=bi ws,r=" V1_NONCE "," V1_PROOF, 0, "malformed-request"},
        {"c= biws,r=" V1_NONCE "," V1_PROOF, 0, "malformed-request"},
        {"c=biws=,r=" V1_NONCE "," V1_PROOF, 0, "malformed-request"},
        {"c=bi=s,r=" V1_NONCE "," V1_PROOF, 0, "malformed-request"},
        {"c=biws,r=" V1_NONCE ",p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts", 0,
         "malformed-request"},
        /* non-zero pad bits: a second spelling of the same proof */
        {"c=biws,r=" V1_NONCE ",p=v0X8v3Bz2T0CJGbJQyF0X+HI4Tt=", 0,
         "malformed-request"},
        {"c=biws,r=" V1_NONCE ",p=", 0, "malformed-request"},
        {"c=biws,r=" V1_NONCE ",x," V1_PROOF, 0, "malformed-request"},
        {"c=biws,r=" V1_NONCE ",," V1_PROOF, 0, "malformed-request"},
        {"c=biws,r=" V1_NONCE "," V1_PROOF, 20, "malformed-request"},
        {"c=biws,r=" V1_NONCE "\0," V1_PROOF, 83, "malformed-request"},
        /* well-formed but wrong */
        {"c=biws,r=" V1_NONCE "X," V1_PROOF, 0, "not-authorized"},
        {"c=biws,r=fyko+d2lbbFgONRv9qkxdawL," V1_PROOF, 0, "not-authorized"},
        {"c=eSws,r=" V1_NONCE "," V1_PROOF, 0, "not-authorized"},
        {"c=biwsYWJj,r=" V1_NONCE "," V1_PROOF, 0, "not-authorized"},
        {"c=biws,r=" V1_NONCE ",p=v0X8v3Bz2T0CJGbJQyF0X+HI4TQ=", 0,
         "not-authorized"},
        {"c=biws,r=" V1_NONCE ",p=v0X8v3Bz2T0CJGbJQyF0X+HI", 0,
         "not-authorized"},
        /* an extension changes the AuthMessage, so the proof fails */
        {"c=biws,r=" V1_NONCE ",x=1," V1_PROOF, 0, "not-authorized"},
    };
    creds_t cr;
    size_t i;

    make_creds(PV_SCRAM_SHA1, "QSXCR+Q6sek8bf92", "pencil", &cr);
    for (i = 0; i < PV_COUNTOF(cases); i++) {
        pv_scram_server_t *s = challenged_server(&cr);
        size_t len = cases[i].len ? cases[i].len : strlen(cases[i].msg);
        char *copy = malloc(len);
        int rc;

        memcpy(copy, cases[i].msg, len);
        rc = pv_scram_server_client_final(s, copy, len, NULL, 0);
        if (cases[i].error == NULL) {
            CU_ASSERT_EQUAL(rc, PV_OK);
        } else {
            if (rc != PV_ERROR)
                fprintf(stderr, "accepted: final case %zu\n", i);
            CU_ASSERT_EQUAL(rc, PV_ERROR);
            ASSERT_STR(pv_scram_server_error(s), cases[i].error);
            CU_ASSERT_PTR_NULL(pv_scram_server_final(s, NULL));
            /* no second chance after a failure */
            CU_ASSERT_EQUAL(
                pv_scram_server_client_final(
                    s, LIT("c=biws,r=" V1_NONCE "," V1_PROOF), NULL, 0),
                PV_ERROR);
        }
        free(copy);
        pv_scram_server_free(s);
    }
    /* oversized */
    {
        pv_scram_server_t *s = challenged_server(&cr);
        char *big = malloc(PV_SCRAM_MAX_MSG + 1);

        memset(big, 'A', PV_SCRAM_MAX_MSG + 1);
        memcpy(big, "c=", 2);
        CU_ASSERT_EQUAL(
            pv_scram_server_client_final(s, big, PV_SCRAM_MAX_MSG + 1, NULL, 0),
            PV_ERROR);
        ASSERT_STR(pv_scram_server_error(s), "malformed-request");
        free(big);
        pv_scram_server_free(s);
    }
}

static void
test_server_order(void)
{
    creds_t cr;
    pv_scram_server_t *s;

    make_creds(PV_SCRAM_SHA1, "QSXCR+Q6sek8bf92", "pencil", &cr);
    /* client-final before the challenge */
    s = pv_scram_server_new(PV_SCRAM_SHA1, 0, 0, NULL);
    CU_ASSERT_EQUAL(pv_scram_server_client_final(
                        s, LIT("c=biws,r=" V1_NONCE "," V1_PROOF), NULL, 0),
                    PV_ERROR);
    ASSERT_STR(pv_scram_server_error(s), "malformed-request");
    pv_scram_server_free(s);
    /* credentials before client-first */
    s = pv_scram_server_new(PV_SCRAM_SHA1, 0, 0, NULL);
    CU_ASSERT_EQUAL(pv_scram_server_set_credentials(s, cr.salt, cr.salt_len,
                                                    4096, cr.stored, cr.server,
                                                    NULL),
                    PV_ERROR);
    pv_scram_server_free(s);
    /* a replayed client-final after success */
    s = challenged_server(&cr);
    CU_ASSERT_EQUAL(pv_scram_server_client_final(
                        s, LIT("c=biws,r=" V1_NONCE "," V1_PROOF), NULL, 0),
                    PV_OK);
    CU_ASSERT_EQUAL(pv_scram_server_client_final(
                        s, LIT("c=biws,r=" V1_NONCE "," V1_PROOF), NULL, 0),
                    PV_ERROR);
    pv_scram_server_free(s);
    CU_ASSERT_PTR_NULL(pv_scram_server_new((pv_scram_hash_t)7, 0, 0, NULL));
}

/* Two fresh servers must produce the random nonce afresh */
static void
test_random_nonce(void)
{
    creds_t cr;
    pv_scram_server_t *a, *b;
    const char *fa, *fb;

    make_creds(PV_SCRAM_SHA1, "QSXCR+Q6sek8bf92", "pencil", &cr);
    a = pv_scram_server_new(PV_SCRAM_SHA1, 0, 0, NULL);
    b = pv_scram_server_new(PV_SCRAM_SHA1, 0, 0, NULL);
    pv_scram_server_client_first(a, LIT("n,,n=user,r=abc"));
    pv_scram_server_client_first(b, LIT("n,,n=user,r=abc"));
    pv_scram_server_set_credentials(a, cr.salt, cr.salt_len, 4096, cr.stored,
                                    cr.server, NULL);
    pv_scram_server_set_credentials(b, cr.salt, cr.salt_len, 4096, cr.stored,
                                    cr.server, NULL);
    fa = pv_scram_server_first(a, NULL);
    fb = pv_scram_server_first(b, NULL);
    CU_ASSERT_FATAL(fa != NULL && fb != NULL);
    CU_ASSERT(strncmp(fa, "r=abc", 5) == 0);
    CU_ASSERT(strcmp(fa, fb) != 0);
    CU_ASSERT(strlen(fa) == strlen("r=abc,s=QSXCR+Q6sek8bf92,i=4096") + 24);
    pv_scram_server_free(a);
    pv_scram_server_free(b);
}

/* ---- unknown users --------------------------------------------------- */

static char *
fake_first(pv_scram_hash_t h, const char *first, const char *secret)
{
    pv_scram_server_t *s = pv_scram_server_new(h, 0, 0, NULL);
    char *out;

    CU_ASSERT_EQUAL(pv_scram_server_client_first(s, first, strlen(first)),
                    PV_OK);
    CU_ASSERT_EQUAL(pv_scram_server_set_fake(s, (const uint8_t *)secret,
                                             strlen(secret), 4096, NULL),
                    PV_OK);
    out = strdup(pv_scram_server_first(s, NULL));
    pv_scram_server_free(s);
    return out;
}

static void
test_fake(void)
{
    char *a = fake_first(PV_SCRAM_SHA1, "n,,n=ghost,r=abc", "secret");
    char *b = fake_first(PV_SCRAM_SHA256, "n,,n=ghost,r=abc", "secret");
    char *c = fake_first(PV_SCRAM_SHA1, "n,,n=ghost2,r=abc", "secret");
    char *d = fake_first(PV_SCRAM_SHA1, "n,,n=ghost,r=abc", "secret2");
    pv_scram_server_t *s;
    pv_scram_client_t *cl;
    const char *msg;
    size_t len;

    /* same salt for the same name every time, another for another name */
    CU_ASSERT(strstr(a, ",s=") != NULL);
    ASSERT_STR(strstr(a, ",s="), strstr(b, ",s="));
    CU_ASSERT_STRING_NOT_EQUAL(strstr(a, ",s="), strstr(c, ",s="));
    CU_ASSERT_STRING_NOT_EQUAL(strstr(a, ",s="), strstr(d, ",s="));
    /* 16 bytes of salt: 24 base64 characters then ",i=4096" */
    CU_ASSERT_EQUAL(strlen(strstr(a, ",s=")), 3 + 24 + 7);
    free(a);
    free(b);
    free(c);
    free(d);

    /* a full exchange fails like a wrong password */
    cl = pv_scram_client_new(PV_SCRAM_SHA256, "ghost", "pencil", NULL, NULL, 0);
    s = pv_scram_server_new(PV_SCRAM_SHA256, 0, 1, all_cb);
    msg = pv_scram_client_first(cl, &len);
    CU_ASSERT_EQUAL(pv_scram_server_client_first(s, msg, len), PV_OK);
    CU_ASSERT_EQUAL(
        pv_scram_server_set_fake(s, (const uint8_t *)"k", 1, 4096, all_mechs),
        PV_OK);
    msg = pv_scram_server_first(s, &len);
    CU_ASSERT_EQUAL(pv_scram_client_server_first(cl, msg, len), PV_OK);
    msg = pv_scram_client_final(cl, &len);
    CU_ASSERT_EQUAL(pv_scram_server_client_final(s, msg, len, NULL, 0),
                    PV_ERROR);
    ASSERT_STR(pv_scram_server_error(s), "not-authorized");
    ASSERT_STR(pv_scram_server_scram_error(s), "invalid-proof");
    pv_scram_server_free(s);
    pv_scram_client_free(cl);
}

/* ---- key derivation -------------------------------------------------- */

static void
test_derive(void)
{
    uint8_t st[32], sv[32];
    const uint8_t salt[] = "salt";

    CU_ASSERT_EQUAL(pv_scram_digest_len(PV_SCRAM_SHA1), 20);
    CU_ASSERT_EQUAL(pv_scram_digest_len(PV_SCRAM_SHA256), 32);
    ASSERT_STR(pv_scram_mech_name(PV_SCRAM_SHA256, 1), "SCRAM-SHA-256-PLUS");
    ASSERT_STR(pv_scram_mech_name(PV_SCRAM_SHA1, 0), "SCRAM-SHA-1");
    CU_ASSERT_EQUAL(pv_scram_derive(PV_SCRAM_SHA1, "pw", salt, 4, 0, st, sv),
                    PV_ERROR);
    CU_ASSERT_EQUAL(pv_scram_derive(PV_SCRAM_SHA1, "pw", salt, 0, 1, st, sv),
                    PV_ERROR);
    CU_ASSERT_EQUAL(pv_scram_derive(PV_SCRAM_SHA1, NULL, salt, 4, 1, st, sv),
                    PV_ERROR);
    CU_ASSERT_EQUAL(
        pv_scram_derive((pv_scram_hash_t)9, "pw", salt, 4, 1, st, sv),
        PV_ERROR);
    CU_ASSERT_EQUAL(pv_scram_derive(PV_SCRAM_SHA256, "", salt, 4, 1, st, sv),
                    PV_OK);
}

/* ---- PLAIN ----------------------------------------------------------- */

static void
test_plain(void)
{
    static const struct {
        const char *msg;
        size_t len;
        const char *zid, *cid, *pw; /* cid NULL: must fail */
    } cases[] = {
        {"\0tim\0tanstaaftanstaaf", 21, NULL, "tim", "tanstaaftanstaaf"},
        {"Ursel\0Kurt\0xipj3plmq", 20, "Ursel", "Kurt", "xipj3plmq"},
        {"\0\xc3\xa9\0p\xc3\xa0ss", 9, NULL, "\xc3\xa9", "p\xc3\xa0ss"},
        {"\0u\0 ", 4, NULL, "u", " "},
        {"", 0, NULL, NULL, NULL},
        {"\0", 1, NULL, NULL, NULL},
        {"\0\0", 2, NULL, NULL, NULL},
        {"\0u\0", 3, NULL, NULL, NULL},
        {"\0\0pw", 4, NULL, NULL, NULL},
        {"u\0pw", 4, NULL, NULL, NULL},
        {"tim", 3, NULL, NULL, NULL},
        {"\0u\0p\0w", 6, NULL, NULL, NULL},
        {"\0u\0pw\0", 6, NULL, NULL, NULL},
        {"a\0u\0p\0", 7, NULL, NULL, NULL},
        {"\0u\xff\0pw", 6, NULL, NULL, NULL},
        {"\0u\0p\xc3", 5, NULL, NULL, NULL},
        {"\xe2\x82\0u\0pw", 7, NULL, NULL, NULL},
    };
    size_t i;
    char *zid, *cid, *pw, *big;

    for (i = 0; i < PV_COUNTOF(cases); i++) {
        char *copy = malloc(cases[i].len ? cases[i].len : 1);
        int rc;

        memcpy(copy, cases[i].msg, cases[i].len);
        rc = pv_sasl_plain_parse(copy, cases[i].len, &zid, &cid, &pw);
        if (cases[i].cid == NULL) {
            CU_ASSERT_EQUAL(rc, PV_ERROR);
            CU_ASSERT(zid == NULL && cid == NULL && pw == NULL);
        } else {
            CU_ASSERT_EQUAL_FATAL(rc, PV_OK);
            if (cases[i].zid == NULL) {
                CU_ASSERT_PTR_NULL(zid);
            } else {
                ASSERT_STR(zid, cases[i].zid);
            }
            ASSERT_STR(cid, cases[i].cid);
            ASSERT_STR(pw, cases[i].pw);
        }
        free(zid);
        free(cid);
        free(pw);
        free(copy);
    }
    big = calloc(1, PV_SCRAM_MAX_MSG + 1);
    memset(big + 1, 'a', PV_SCRAM_MAX_MSG);
    big[2] = '\0';
    CU_ASSERT_EQUAL(
        pv_sasl_plain_parse(big, PV_SCRAM_MAX_MSG + 1, &zid, &cid, &pw),
        PV_ERROR);
    CU_ASSERT_EQUAL(pv_sasl_plain_parse(big, PV_SCRAM_MAX_MSG, &zid, &cid, &pw),
                    PV_OK);
    CU_ASSERT_EQUAL(strlen(pw), PV_SCRAM_MAX_MSG - 3);
    free(zid);
    free(cid);
    free(pw);
    free(big);
}

/* ---- base64 ---------------------------------------------------------- */

static void
test_base64(void)
{
    static const struct {
        const char *raw;
        const char *b64;
    } good[] = {
        {"", ""}, /* RFC 4648 §10 */
        {"f", "Zg=="},
        {"fo", "Zm8="},
        {"foo", "Zm9v"},
        {"foob", "Zm9vYg=="},
        {"fooba", "Zm9vYmE="},
        {"foobar", "Zm9vYmFy"},
        {"n,,", "biws"},
    };
    static const char *const bad[] = {
        "Zg",     "Zg=",   "Zg===", "Z===",     "====",  "Zm9",
        "Zm9v\n", " Zm9v", "Zm 9v", "Zm9v=",    "Zh==",  "Zm9=",
        "Zg=A",   "Z=g=",  "Zm-_",  "Zm9v====", "Zm\0v",
    };
    size_t i, n;
    uint8_t *d;
    char *e;

    for (i = 0; i < PV_COUNTOF(good); i++) {
        e = pv_base64_encode(good[i].raw, strlen(good[i].raw), &n);
        ASSERT_STR(e, good[i].b64);
        CU_ASSERT_EQUAL(n, strlen(good[i].b64));
        free(e);
        d = pv_base64_decode(good[i].b64, strlen(good[i].b64), &n);
        CU_ASSERT_FATAL(d != NULL);
        CU_ASSERT_EQUAL(n, strlen(good[i].raw));
        CU_ASSERT(memcmp(d, good[i].raw, n) == 0 && d[n] == '\0');
        free(d);
    }
    /* RFC 6120 §6.4.2: "=" is the empty response */
    d = pv_base64_decode("=", 1, &n);
    CU_ASSERT(d != NULL && n == 0);
    free(d);
    for (i = 0; i < PV_COUNTOF(bad); i++) {
        size_t len = strlen(bad[i]);

        if (i == PV_COUNTOF(bad) - 1)
            len = 4;
        d = pv_base64_decode(bad[i], len, &n);
        if (d != NULL)
            fprintf(stderr, "accepted base64 \"%s\"\n", bad[i]);
        CU_ASSERT_PTR_NULL(d);
        free(d);
    }
    /* binary round trip over all byte values and lengths */
    {
        uint8_t raw[256];

        for (i = 0; i < sizeof(raw); i++)
            raw[i] = (uint8_t)(255 - i);
        for (i = 0; i <= sizeof(raw); i++) {
            e = pv_base64_encode(raw, i, NULL);
            d = pv_base64_decode(e, strlen(e), &n);
            CU_ASSERT(d != NULL && n == i && memcmp(d, raw, i) == 0);
            free(e);
            free(d);
        }
    }
}

static void
test_client_args(void)
{
    pv_scram_client_t *c;

    CU_ASSERT_PTR_NULL(
        pv_scram_client_new(PV_SCRAM_SHA1, "", "p", NULL, NULL, 0));
    CU_ASSERT_PTR_NULL(
        pv_scram_client_new(PV_SCRAM_SHA1, "u\xff", "p", NULL, NULL, 0));
    CU_ASSERT_PTR_NULL(
        pv_scram_client_new(PV_SCRAM_SHA1, "u", NULL, NULL, NULL, 0));
    CU_ASSERT_PTR_NULL(pv_scram_client_new(PV_SCRAM_SHA1, "u", "p", "tls,x",
                                           (const uint8_t *)"d", 1));
    CU_ASSERT_PTR_NULL(
        pv_scram_client_new(PV_SCRAM_SHA1, "u", "p", "tls-unique", NULL, 0));
    c = pv_scram_client_new(PV_SCRAM_SHA1, "u", "p", "tls-unique",
                            (const uint8_t *)"d", 1);
    CU_ASSERT_FATAL(c != NULL);
    CU_ASSERT_EQUAL(pv_scram_client_set_cb_supported(c), PV_ERROR);
    CU_ASSERT_EQUAL(pv_scram_client_set_nonce(c, "a,b"), PV_ERROR);
    CU_ASSERT_EQUAL(pv_scram_client_set_nonce(c, ""), PV_ERROR);
    CU_ASSERT_EQUAL(pv_scram_client_set_authzid(c, "a,b"), PV_OK);
    CU_ASSERT_EQUAL(pv_scram_client_set_nonce(c, "xyz"), PV_OK);
    ASSERT_STR(pv_scram_client_first(c, NULL),
               "p=tls-unique,a=a=2Cb,n=u,r=xyz");
    /* too late for options; a random nonce is otherwise 24 chars */
    CU_ASSERT_EQUAL(pv_scram_client_set_nonce(c, "abc"), PV_ERROR);
    CU_ASSERT_EQUAL(pv_scram_client_server_final(c, LIT("v=AAAA")), PV_ERROR);
    ASSERT_STR(pv_scram_client_error(c), "wrong-state");
    pv_scram_client_free(c);
    c = pv_scram_client_new(PV_SCRAM_SHA256, "u", "p", NULL, NULL, 0);
    CU_ASSERT_EQUAL(strlen(pv_scram_client_first(c, NULL)),
                    strlen("n,,n=u,r=") + 24);
    pv_scram_client_free(c);
}

void
test_suite_scram(void)
{
    CU_pSuite s = CU_add_suite("scram", NULL, NULL);

    CU_add_test(s, "RFC 5802/7677 vectors, server", test_vectors_server);
    CU_add_test(s, "RFC 5802/7677 vectors, client", test_vectors_client);
    CU_add_test(s, "client checks server-final", test_client_bad_server_final);
    CU_add_test(s, "client checks server-first", test_client_bad_server_first);
    CU_add_test(s, "XEP-0474 example, server", test_xep0474_server);
    CU_add_test(s, "XEP-0474 downgrade, client", test_xep0474_client);
    CU_add_test(s, "round trips hash x channel binding", test_round_trips);
    CU_add_test(s, "wrong password, cb mismatch, y, p=", test_failures);
    CU_add_test(s, "gs2 flag vs mechanism", test_gs2_flags);
    CU_add_test(s, "malformed client-first", test_malformed_client_first);
    CU_add_test(s, "oversized client-first", test_oversized);
    CU_add_test(s, "malformed client-final", test_malformed_client_final);
    CU_add_test(s, "server call order", test_server_order);
    CU_add_test(s, "random server nonce", test_random_nonce);
    CU_add_test(s, "unknown users", test_fake);
    CU_add_test(s, "key derivation", test_derive);
    CU_add_test(s, "PLAIN", test_plain);
    CU_add_test(s, "base64", test_base64);
    CU_add_test(s, "client arguments", test_client_args);
}
