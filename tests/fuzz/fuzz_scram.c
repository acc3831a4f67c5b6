/* tests/fuzz/fuzz_scram.c: libFuzzer harness for the SASL message layer
 * (src/scram.c). Feeds arbitrary client-first and client-final messages to
 * a server exchange, and arbitrary bytes to the PLAIN and base64 parsers.
 * Input: one flags byte, then client-first, '\n', client-final. */
#include <stdlib.h>
#include <string.h>

#include "scram.h"

static const char *const fuzz_cb_types[] = {
    "tls-exporter", "tls-server-end-point", "tls-unique", NULL};
static const char *const fuzz_mechs[] = {"SCRAM-SHA-1", "SCRAM-SHA-256",
                                         "SCRAM-SHA-1-PLUS", NULL};

/* flags: bit 0 hash, bit 1 -PLUS selected, bit 2 server offers -PLUS,
 * bit 3 fake user, bit 4 send h=, bits 5-6 what to fuzz */
static void
fuzz_server(uint8_t flags, const char *data, size_t size)
{
    static const uint8_t salt[16] = "0123456789abcdef";
    static const uint8_t keys[32] = "stored-and-server-key-material!";
    const char *nl = memchr(data, '\n', size);
    size_t first_len = nl ? (size_t)(nl - data) : size;
    pv_scram_hash_t h = (flags & 1) ? PV_SCRAM_SHA256 : PV_SCRAM_SHA1;
    const char *const *mechs = (flags & 16) ? fuzz_mechs : NULL;
    pv_scram_server_t *s;
    const char *out;
    size_t len;
    char *copy;
    int rc;

    s = pv_scram_server_new(h, flags & 2, flags & 4,
                            (flags & 4) ? fuzz_cb_types : NULL);
    pv_scram_server_set_nonce(s, "SNONCE");
    /* exact-size heap copies so ASan sees any read past len */
    copy = malloc(first_len ? first_len : 1);
    memcpy(copy, data, first_len);
    rc = pv_scram_server_client_first(s, copy, first_len);
    free(copy);
    if (rc == PV_OK) {
        (void)pv_scram_server_username(s);
        (void)pv_scram_server_authzid(s);
        (void)pv_scram_server_cb_type(s);
        if (flags & 8)
            rc = pv_scram_server_set_fake(s, keys, sizeof(keys), 4096, mechs);
        else
            rc = pv_scram_server_set_credentials(s, salt, sizeof(salt), 4096,
                                                 keys, keys, mechs);
        if (rc == PV_OK && (out = pv_scram_server_first(s, &len)) != NULL &&
            strlen(out) != len)
            abort();
    }
    if (nl != NULL) {
        size_t final_len = size - first_len - 1;

        copy = malloc(final_len ? final_len : 1);
        memcpy(copy, nl + 1, final_len);
        rc = pv_scram_server_client_final(s, copy, final_len,
                                          (const uint8_t *)"cbdata", 6);
        free(copy);
        /* the keys are not derived from any password: no proof can pass */
        if (rc == PV_OK)
            abort();
    }
    if (rc != PV_OK && pv_scram_server_error(s) == NULL)
        abort();
    pv_scram_server_free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *zid, *cid, *pw, *copy;
    uint8_t *dec;
    size_t n;

    if (size < 1)
        return 0;
    switch ((data[0] >> 5) & 3) {
    case 0:
    case 1: fuzz_server(data[0], (const char *)data + 1, size - 1); break;
    case 2:
        copy = malloc(size - 1 ? size - 1 : 1);
        memcpy(copy, data + 1, size - 1);
        if (pv_sasl_plain_parse(copy, size - 1, &zid, &cid, &pw) == PV_OK &&
            (cid == NULL || pw == NULL || *cid == '\0' || *pw == '\0'))
            abort();
        free(zid);
        free(cid);
        free(pw);
        free(copy);
        break;
    default:
        copy = malloc(size - 1 ? size - 1 : 1);
        memcpy(copy, data + 1, size - 1);
        dec = pv_base64_decode(copy, size - 1, &n);
        if (dec != NULL) {
            /* strict decoding: re-encoding gives the input back */
            char *enc = pv_base64_encode(dec, n, NULL);

            if (!(size - 1 == 1 && copy[0] == '=') &&
                (strlen(enc) != size - 1 || memcmp(enc, copy, size - 1) != 0))
                abort();
            free(enc);
        }
        free(dec);
        free(copy);
        break;
    }
    return 0;
}
