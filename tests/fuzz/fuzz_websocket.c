/* tests/fuzz/fuzz_websocket.c: libFuzzer harness for src/websocket.c. The
 * first byte picks the message limit and seeds the chunking; the rest is a
 * client byte stream decoded once whole and once in random pieces: both
 * must give the same events, text must be UTF-8, control payloads short.
 * The bytes are also encoded as server frames, masked and decoded back,
 * which must round-trip. Any violation aborts. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <unistr.h>

#include <palaver/mem.h>

#include "websocket.h"

static uint32_t
next(uint32_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

/* Decodes the stream; logs events into log; returns the last event type. */
static pv_ws_event_type_t
decode(const uint8_t *data, size_t size, size_t max, uint32_t rng,
       pv_buf_t *log)
{
    pv_ws_decoder_t *d = pv_ws_decoder_new(max);
    pv_ws_event_type_t last = PV_WS_EV_NONE;
    size_t off = 0;

    while (off < size) {
        size_t piece = size - off;

        if (rng != 0)
            piece = 1 + next(&rng) % (piece < 300 ? piece : 300);
        while (piece > 0) {
            pv_ws_event_t ev;
            size_t n = pv_ws_decoder_feed(d, data + off, piece, &ev);

            if (n > piece || (n < piece && ev.type == PV_WS_EV_NONE))
                abort();
            off += n;
            piece -= n;
            if (ev.type == PV_WS_EV_NONE)
                continue;
            last = ev.type;
            switch (ev.type) {
            case PV_WS_EV_TEXT:
                if (u8_check(ev.data, ev.len) != NULL || ev.data[ev.len])
                    abort();
                /* fall through */
            case PV_WS_EV_BINARY:
                if (ev.len > (max ? max : 256 * 1024))
                    abort();
                break;
            case PV_WS_EV_PING:
            case PV_WS_EV_PONG:
                if (ev.len > PV_WS_MAX_CONTROL)
                    abort();
                break;
            case PV_WS_EV_CLOSE:
                if (ev.len > PV_WS_MAX_REASON ||
                    (ev.code != PV_WS_CLOSE_NO_STATUS &&
                     !pv_ws_close_code_is_valid(ev.code)) ||
                    u8_check(ev.data, ev.len) != NULL)
                    abort();
                break;
            case PV_WS_EV_ERROR:
                if (ev.code != 1002 && ev.code != 1007 && ev.code != 1009)
                    abort();
                break;
            default: abort();
            }
            pv_buf_printf(log, "%d:%u:%zu:", (int)ev.type, ev.code, ev.len);
            pv_buf_append(log, ev.data, ev.len);
            pv_buf_puts(log, "\n");
        }
        pv_ws_decoder_trim(d);
    }
    pv_ws_decoder_free(d);
    return last;
}

/* Masks a server frame (header at out[0..hlen)) as a client would. */
static void
mask(const pv_buf_t *server, pv_buf_t *client)
{
    static const uint8_t key[4] = {0xa5, 0x01, 0x7e, 0xff};
    size_t hlen = (uint8_t)server->data[1] == 126   ? 4
                  : (uint8_t)server->data[1] == 127 ? 10
                                                    : 2;
    size_t i;
    uint8_t c;

    pv_buf_append(client, server->data, hlen);
    client->data[1] |= (char)0x80;
    pv_buf_append(client, key, 4);
    for (i = hlen; i < server->len; i++) {
        c = (uint8_t)server->data[i] ^ key[(i - hlen) & 3];
        pv_buf_append(client, &c, 1);
    }
}

static void
round_trip(const uint8_t *data, size_t size)
{
    pv_buf_t s = {0}, c = {0}, log = {0};
    unsigned code = size >= 2 ? (unsigned)data[0] << 8 | data[1] : 0;

    /* binary: any bytes come back as they were */
    if (pv_ws_encode(&s, PV_WS_OP_BINARY, data, size) != PV_OK)
        abort();
    mask(&s, &c);
    if (decode((const uint8_t *)c.data, c.len, size + 1, 0, &log) !=
            PV_WS_EV_BINARY ||
        log.len < size || memcmp(log.data + log.len - size - 1, data, size))
        abort();
    pv_buf_reset(&s);
    pv_buf_reset(&c);
    pv_buf_reset(&log);
    /* close: a sendable code comes back with a prefix of the reason */
    if (pv_ws_encode_close(&s, code, (const char *)data, size) == PV_OK) {
        pv_ws_event_type_t t;

        if (s.len > 2 + PV_WS_MAX_CONTROL)
            abort();
        mask(&s, &c);
        t = decode((const uint8_t *)c.data, c.len, 0, 0, &log);
        if (t != PV_WS_EV_CLOSE && t != PV_WS_EV_ERROR)
            abort();
        if (t == PV_WS_EV_ERROR &&
            u8_check((const uint8_t *)s.data + 4, s.len - 4) == NULL)
            abort();
    } else if (code == 0 || pv_ws_close_code_is_valid(code)) {
        abort();
    }
    pv_buf_free(&s);
    pv_buf_free(&c);
    pv_buf_free(&log);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    pv_buf_t a = {0}, b = {0};
    size_t max;
    uint32_t seed;

    if (size < 1)
        return 0;
    /* small limits make 1009 reachable */
    max = (data[0] & 3) == 0 ? 0 : (size_t)(data[0] & 3) * 40;
    seed = (uint32_t)data[0] * 2654435761u + 1;
    decode(data + 1, size - 1, max, 0, &a);
    decode(data + 1, size - 1, max, seed, &b);
    if (a.len != b.len || (a.len && memcmp(a.data, b.data, a.len) != 0))
        abort();
    pv_buf_free(&a);
    pv_buf_free(&b);
    if (size <= 4096)
        round_trip(data + 1, size - 1);
    return 0;
}
