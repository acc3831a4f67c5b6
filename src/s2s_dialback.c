/* src/s2s_dialback.c: Server Dialback (XEP-0220) for s2s.c: keys
 * (XEP-0185), <db:result/> as originating server, the receiving
 * server's check through its own outgoing link (<db:verify/>), and the
 * authoritative server's answers. Streams, TLS and SASL are s2s.c's. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include "s2s.h"

/* Pending db:verify requests per outgoing link: a peer cannot make us
 * hold more than this. */
#define PV_S2S_MAX_VERIFIES 64

void
pv_s2s_dialback_key(const uint8_t *secret, size_t secret_len,
                    const char *receiving, const char *originating,
                    const char *stream_id, char out[65])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char k[SHA256_DIGEST_LENGTH], mac[EVP_MAX_MD_SIZE];
    char khex[2 * SHA256_DIGEST_LENGTH];
    unsigned int mac_len = 0;
    pv_buf_t b = {0};
    unsigned i;

    /* XEP-0185 §3: the HMAC key is SHA256(secret) as lowercase hex text
     * (its example vector only matches that reading) */
    SHA256(secret, secret_len, k);
    for (i = 0; i < SHA256_DIGEST_LENGTH; i++) {
        khex[2 * i] = hex[k[i] >> 4];
        khex[2 * i + 1] = hex[k[i] & 15];
    }
    pv_buf_printf(&b, "%s %s %s", receiving, originating, stream_id);
    HMAC(EVP_sha256(), khex, sizeof(khex), (const unsigned char *)b.data,
         b.len, mac, &mac_len);
    pv_buf_free(&b);
    for (i = 0; i < 32 && i < mac_len; i++) {
        out[2 * i] = hex[mac[i] >> 4];
        out[2 * i + 1] = hex[mac[i] & 15];
    }
    out[2 * i] = '\0';
}

void
pv_s2s_db_send_result(pv_s2s_stream_t *s)
{
    char key[65];
    pv_buf_t b = {0};

    pv_s2s_dialback_key(s->s2s->secret, sizeof(s->s2s->secret), s->remote,
                        s->local, s->stream_id, key);
    pv_buf_printf(&b, "<db:result from='%s' to='%s'>%s</db:result>",
                  s->local, s->remote, key);
    pv_s2s_write(s, b.data, b.len);
    pv_buf_free(&b);
    s->state = PV_S2S_DIALBACK;
}

void
pv_s2s_db_flush(pv_s2s_stream_t *s)
{
    pv_s2s_verify_t *v;
    pv_buf_t b = {0};

    for (v = s->verifies; v != NULL; v = v->next) {
        if (v->sent)
            continue;
        v->sent = 1;
        pv_buf_printf(&b, "<db:verify from='%s' to='%s' id='%s'>%s"
                      "</db:verify>", s->local, s->remote, v->stream_id,
                      v->key);
    }
    if (b.len > 0)
        pv_s2s_write(s, b.data, b.len);
    pv_buf_free(&b);
}

/* The answer to a db:verify we sent for an incoming stream: tell that
 * stream's peer (XEP-0220 §2.3, step 4). */
void
pv_s2s_db_out_verify(pv_s2s_stream_t *s, pv_stanza_t *st)
{
    const char *id = pv_node_attr(st->root, "id");
    const char *type = pv_node_attr(st->root, "type");
    int valid = type != NULL && strcmp(type, "valid") == 0;
    pv_s2s_verify_t **pp, *v;
    pv_s2s_stream_t *in;

    for (pp = &s->verifies; id != NULL && (v = *pp) != NULL;
         pp = &v->next) {
        if (!v->sent || strcmp(v->stream_id, id) != 0)
            continue;
        *pp = v->next;
        for (in = s->s2s->streams; in != NULL; in = in->next) {
            pv_buf_t b = {0};

            if (in->is_out || strcmp(in->stream_id, id) != 0)
                continue;
            if (valid) {
                pv_s2s_in_add_pair(in, s->remote, s->local);
                pv_log(PV_LOG_INFO, "s2s", "s2sin#%lu %s->%s: "
                       "authenticated (dialback)", in->id, s->remote,
                       s->local);
            }
            pv_buf_printf(&b, "<db:result from='%s' to='%s' "
                          "type='%s'/>", s->local, s->remote,
                          valid ? "valid" : "invalid");
            pv_s2s_write(in, b.data, b.len);
            pv_buf_free(&b);
        }
        free(v->stream_id);
        free(v->key);
        free(v);
        break;
    }
}

/* The outgoing link failed: every incoming stream waiting on it gets
 * its dialback refused. */
void
pv_s2s_db_fail_all(pv_s2s_stream_t *s)
{
    pv_s2s_verify_t *v;
    pv_s2s_stream_t *in;

    for (v = s->verifies; v != NULL; v = v->next) {
        for (in = s->s2s->streams; in != NULL; in = in->next) {
            if (!in->is_out && strcmp(in->stream_id, v->stream_id) == 0) {
                pv_buf_t b = {0};
                pv_buf_printf(&b, "<db:result from='%s' to='%s' "
                              "type='invalid'/>", s->local, s->remote);
                pv_s2s_write(in, b.data, b.len);
                pv_buf_free(&b);
            }
        }
    }
}

/* <db:result/> from an originating server (XEP-0220 §2.1). */
void
pv_s2s_db_in_result(pv_s2s_stream_t *s, pv_stanza_t *st)
{
    pv_s2s_t *s2s = s->s2s;
    const char *from = pv_node_attr(st->root, "from");
    const char *to = pv_node_attr(st->root, "to");
    const char *key = pv_node_text(st->root, st->arena);
    char *remote, *local;
    pv_buf_t b = {0};
    pv_s2s_stream_t *out;
    pv_s2s_verify_t *v;
    size_t n;

    if (from == NULL || to == NULL || *key == '\0') {
        pv_s2s_stream_error(s, "improper-addressing", NULL);
        return;
    }
    remote = pv_jid_prep_domain(from, strlen(from));
    local = pv_jid_prep_domain(to, strlen(to));
    if (remote == NULL || local == NULL ||
        pv_server_host(s2s->srv, local) == NULL) {
        pv_s2s_stream_error(s, "host-unknown", NULL);
        goto out;
    }
    if (!s->tls && pv_s2s_conf(s2s)->s2s_require_encryption) {
        pv_s2s_stream_error(s, "policy-violation", "encryption required");
        goto out;
    }
    if (pv_s2s_peer_cert_ok(s, remote)) {
        /* the certificate already proves the identity (XEP-0344 §2.4);
         * calling back would prove nothing more */
        pv_s2s_in_add_pair(s, remote, local);
        pv_log(PV_LOG_INFO, "s2s", "s2sin#%lu %s->%s: authenticated "
               "(dialback with a valid certificate)", s->id, remote, local);
        pv_buf_printf(&b, "<db:result from='%s' to='%s' type='valid'/>",
                      local, remote);
        pv_s2s_write(s, b.data, b.len);
        goto out;
    }
    if (!pv_s2s_insecure_ok(s2s, remote)) {
        pv_log(PV_LOG_INFO, "s2s", "s2sin#%lu %s->%s: refusing dialback "
               "without a valid certificate (s2s_secure_auth)", s->id,
               remote, local);
        pv_buf_printf(&b, "<db:result from='%s' to='%s' type='error'>"
                      "<error type='cancel'><not-authorized xmlns='"
                      NS_STANZA_ERR "'/></error></db:result>", local,
                      remote);
        pv_s2s_write(s, b.data, b.len);
        goto out;
    }
    /* XEP-0220 §2.3: ask the authoritative server over our own link */
    out = pv_s2s_out_get(s2s, local, remote);
    for (n = 0, v = out->verifies; v != NULL; v = v->next)
        n++;
    if (n >= PV_S2S_MAX_VERIFIES) {
        pv_s2s_stream_error(s, "resource-constraint",
                            "too many dialback requests");
        goto out;
    }
    v = pv_xcalloc(1, sizeof(*v));
    v->stream_id = pv_xstrdup(s->stream_id);
    v->key = pv_xstrndup(key, strspn(key, "0123456789abcdefABCDEF"));
    v->next = out->verifies;
    out->verifies = v;
    if ((out->tls || !pv_s2s_conf(s2s)->s2s_require_encryption) &&
        (out->state == PV_S2S_OPEN || out->state == PV_S2S_DIALBACK ||
         out->state == PV_S2S_SASL || out->state == PV_S2S_FEATURES))
        pv_s2s_db_flush(out);
out:
    pv_buf_free(&b);
    free(remote);
    free(local);
}

/* <db:verify/> from a receiving server checking a key we gave it
 * (XEP-0220 §2.4): we are the authoritative server. */
void
pv_s2s_db_in_verify(pv_s2s_stream_t *s, pv_stanza_t *st)
{
    pv_s2s_t *s2s = s->s2s;
    const char *from = pv_node_attr(st->root, "from");
    const char *to = pv_node_attr(st->root, "to");
    const char *id = pv_node_attr(st->root, "id");
    const char *key = pv_node_text(st->root, st->arena);
    char *remote = NULL, *local = NULL;
    char want[65];
    pv_buf_t b = {0};
    int valid;

    if (from == NULL || to == NULL || id == NULL) {
        pv_s2s_stream_error(s, "improper-addressing", NULL);
        return;
    }
    remote = pv_jid_prep_domain(from, strlen(from));
    local = pv_jid_prep_domain(to, strlen(to));
    if (remote == NULL || local == NULL ||
        pv_server_host(s2s->srv, local) == NULL) {
        pv_s2s_stream_error(s, "host-unknown", NULL);
        goto out;
    }
    pv_s2s_dialback_key(s2s->secret, sizeof(s2s->secret), remote, local, id,
                        want);
    valid = CRYPTO_memcmp(want, key, 64) == 0 && strlen(key) == 64;
    pv_buf_printf(&b, "<db:verify from='%s' to='%s' type='%s' id='", local,
                  remote, valid ? "valid" : "invalid");
    pv_buf_append_escaped(&b, id, strlen(id), 1);
    pv_buf_puts(&b, "'/>");
    pv_s2s_write(s, b.data, b.len);
out:
    pv_buf_free(&b);
    free(remote);
    free(local);
}
