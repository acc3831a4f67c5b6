/* tests/fuzz/fuzz_stun.c: libFuzzer harness for src/stun.c. Every input is
 * parsed as a STUN message, as ChannelData and as a TCP stream of frames;
 * an accepted message is walked (every getter, integrity with a fixed key)
 * and rebuilt attribute by attribute, and the copy must parse to the same
 * method, class and attributes. Any violation aborts. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <palaver/stun.h>

static void
walk(const pv_stun_msg_t *m)
{
    struct sockaddr_storage ss;
    const char *reason;
    size_t rlen;
    uint32_t u;
    uint16_t chan;
    int code;

    (void)pv_stun_get_xor_addr(m, PV_STUN_A_XOR_MAPPED_ADDRESS, &ss);
    (void)pv_stun_get_xor_addr(m, PV_STUN_A_XOR_PEER_ADDRESS, &ss);
    (void)pv_stun_get_xor_addr(m, PV_STUN_A_XOR_RELAYED_ADDRESS, &ss);
    (void)pv_stun_get_u32(m, PV_STUN_A_LIFETIME, &u);
    (void)pv_stun_get_channel(m, &chan);
    if (pv_stun_get_error(m, &code, &reason, &rlen) == PV_OK &&
        (code < 300 || code > 699 || reason + rlen > (const char *)m->data +
                                                     m->len))
        abort();
    (void)pv_stun_check_integrity(m, "key", 3);
    (void)pv_stun_check_integrity_sha256(m, "key", 3);
}

static void
rebuild(const pv_stun_msg_t *m)
{
    static uint8_t out[70000];
    pv_stun_builder_t b;
    pv_stun_msg_t m2;
    size_t i, n = 0;

    pv_stun_build_init(&b, out, sizeof(out), m->method, m->cls, m->tid);
    for (i = 0; i < m->n_attrs; i++) {
        uint16_t t = m->attrs[i].type;

        if (t == PV_STUN_A_FINGERPRINT ||
            t == PV_STUN_A_MESSAGE_INTEGRITY ||
            t == PV_STUN_A_MESSAGE_INTEGRITY_SHA256)
            continue;
        pv_stun_add(&b, t, m->attrs[i].value, m->attrs[i].len);
        n++;
    }
    pv_stun_add_integrity(&b, "key", 3);
    pv_stun_add_fingerprint(&b);
    if (pv_stun_build_len(&b) == 0)
        return;     /* too big once integrity is added: fine */
    if (pv_stun_parse(&m2, out, b.len) != PV_STUN_OK)
        abort();
    if (m2.method != m->method || m2.cls != m->cls || !m2.has_fingerprint ||
        m2.n_attrs != n + 2 ||
        pv_stun_check_integrity(&m2, "key", 3) != PV_OK)
        abort();
    /* integrity attributes can only trail, so the others are the first n
     * of m in order */
    for (i = 0; i < n; i++)
        if (m2.attrs[i].type != m->attrs[i].type ||
            m2.attrs[i].len != m->attrs[i].len ||
            memcmp(m2.attrs[i].value, m->attrs[i].value,
                   m->attrs[i].len) != 0)
            abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    pv_stun_msg_t m;
    const uint8_t *payload;
    size_t plen, off, flen;
    uint16_t chan;

    if (pv_stun_parse(&m, data, size) == PV_STUN_OK) {
        if (m.len != size || m.n_attrs > PV_STUN_MAX_ATTRS)
            abort();
        walk(&m);
        rebuild(&m);
    }
    if (pv_stun_channel_data_parse(data, size, &chan, &payload, &plen) ==
        PV_OK && (payload + plen > data + size || chan < 0x4000))
        abort();
    /* as a TCP byte stream: frames one after another */
    for (off = 0; off < size;) {
        if (pv_stun_frame_len(data + off, size - off, &flen) != PV_OK)
            break;
        if (flen < 4)
            abort();
        if (flen > size - off)
            break;
        if (pv_stun_parse(&m, data + off, flen) == PV_STUN_OK)
            walk(&m);
        off += flen;
    }
    return 0;
}
