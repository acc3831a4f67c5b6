/* tests/unit/test_websocket.c: table-driven tests of src/websocket.c: the
 * RFC 6455 §5.7 examples byte for byte (encoder and decoder), every frame
 * rule (masking, RSV, opcodes, minimal lengths, control frames, fragments,
 * close codes, UTF-8, size limits) with the close code it must produce,
 * every stream split at every byte boundary and byte by byte, and the
 * message buffer's release. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <CUnit/CUnit.h>

#include <palaver/mem.h>

#include "websocket.h"

static const uint8_t key[4] = {0x37, 0xfa, 0x21, 0x3d};

/* Appends a client frame: b0 is FIN|RSV|opcode; lenform 0 = minimal, 16 or
 * 64 forces that encoding; masked 0 sends it in the clear. */
static void
frame(pv_buf_t *out, int b0, int masked, int lenform, const void *payload,
      size_t len)
{
    uint8_t h[14];
    size_t n = 0, i;
    const uint8_t *p = payload;

    h[n++] = (uint8_t)b0;
    if (lenform == 0 && len < 126) {
        h[n++] = (uint8_t)len;
    } else if (lenform == 16 || (lenform == 0 && len <= 0xffff)) {
        h[n++] = 126;
        h[n++] = (uint8_t)(len >> 8);
        h[n++] = (uint8_t)len;
    } else {
        h[n++] = 127;
        for (i = 0; i < 8; i++)
            h[n++] = (uint8_t)((uint64_t)len >> (56 - 8 * i));
    }
    if (masked) {
        h[1] |= 0x80;
        memcpy(h + n, key, 4);
        n += 4;
    }
    pv_buf_append(out, h, n);
    for (i = 0; i < len; i++) {
        uint8_t c = masked ? p[i] ^ key[i & 3] : p[i];

        pv_buf_append(out, &c, 1);
    }
}

/* FNV-1a, to log big binary messages compactly */
static uint32_t
fnv(const uint8_t *p, size_t n)
{
    uint32_t h = 2166136261u;

    while (n--)
        h = (h ^ *p++) * 16777619u;
    return h;
}

/* Decodes in[0..len) (split after `split` bytes, or in pieces of `step`)
 * and logs the events: "T:text", "B:len:hash", "PING:p", "PONG:p",
 * "CLOSE:code:reason", "ERR:code", one per line. */
static void
decode(const uint8_t *in, size_t len, size_t split, size_t step,
       size_t max_message, pv_buf_t *log)
{
    pv_ws_decoder_t *d = pv_ws_decoder_new(max_message);
    size_t off = 0;
    int done = 0;

    while (off < len && !done) {
        size_t piece = len - off, n;
        pv_ws_event_t ev;

        if (off == 0 && split > 0)
            piece = split;
        else if (step > 0 && step < piece)
            piece = step;
        while (piece > 0 && !done) {
            n = pv_ws_decoder_feed(d, in + off, piece, &ev);
            CU_ASSERT(n <= piece);
            CU_ASSERT(n == piece || ev.type != PV_WS_EV_NONE);
            off += n;
            piece -= n;
            switch (ev.type) {
            case PV_WS_EV_NONE: CU_ASSERT(piece == 0); break;
            case PV_WS_EV_TEXT:
                CU_ASSERT(ev.data[ev.len] == '\0');
                pv_buf_printf(log, "T:%.*s\n", (int)ev.len,
                              (const char *)ev.data);
                break;
            case PV_WS_EV_BINARY:
                pv_buf_printf(log, "B:%zu:%08x\n", ev.len,
                              fnv(ev.data, ev.len));
                break;
            case PV_WS_EV_PING:
            case PV_WS_EV_PONG:
                pv_buf_printf(log, "%s:%.*s\n",
                              ev.type == PV_WS_EV_PING ? "PING" : "PONG",
                              (int)ev.len, (const char *)ev.data);
                break;
            case PV_WS_EV_CLOSE:
                pv_buf_printf(log, "CLOSE:%u:%.*s\n", ev.code, (int)ev.len,
                              (const char *)ev.data);
                done = 1;
                break;
            case PV_WS_EV_ERROR:
                CU_ASSERT(ev.error != NULL && ev.error[0] != '\0');
                pv_buf_printf(log, "ERR:%u\n", ev.code);
                done = 1;
                break;
            }
        }
    }
    if (done) {
        /* finished: everything after is swallowed without events */
        pv_ws_event_t ev;

        CU_ASSERT_EQUAL(pv_ws_decoder_feed(d, "\x81\x80xxxx", 6, &ev), 6);
        CU_ASSERT_EQUAL(ev.type, PV_WS_EV_NONE);
    }
    pv_ws_decoder_trim(d);
    pv_ws_decoder_free(d);
}

/* Runs a stream with every split (up to 2 KiB streams) and byte by byte;
 * all must log the same as one feed and as want. */
static void
check_stream(const char *name, const pv_buf_t *in, size_t max_message,
             const char *want)
{
    pv_buf_t ref = {0};
    size_t k;

    decode((const uint8_t *)in->data, in->len, 0, 0, max_message, &ref);
    if (ref.len != strlen(want) ||
        (ref.len && memcmp(ref.data, want, ref.len) != 0))
        fprintf(stderr, "\n  %s: got \"%s\", want \"%s\"\n", name,
                ref.data ? ref.data : "", want);
    CU_ASSERT_EQUAL(ref.len, strlen(want));
    CU_ASSERT(ref.len == 0 || memcmp(ref.data, want, ref.len) == 0);
    for (k = 1; k <= in->len; k++) {
        pv_buf_t got = {0};

        if (k < in->len && in->len > 2048 && k % 997 != 0)
            continue;
        if (k < in->len)
            decode((const uint8_t *)in->data, in->len, k, 0, max_message, &got);
        else
            decode((const uint8_t *)in->data, in->len, 0, 1, max_message, &got);
        if (got.len != ref.len ||
            (got.len && memcmp(got.data, ref.data, got.len) != 0)) {
            fprintf(stderr, "\n  %s: split %zu: \"%s\"\n", name, k,
                    got.data ? got.data : "");
            CU_FAIL("split changes the events");
            pv_buf_free(&got);
            break;
        }
        pv_buf_free(&got);
    }
    pv_buf_free(&ref);
}

static void
test_rfc_examples_decode(void)
{
    /* RFC 6455 §5.7, the masked examples exactly as printed */
    static const uint8_t hello[] = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d,
                                    0x7f, 0x9f, 0x4d, 0x51, 0x58};
    static const uint8_t pong[] = {0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d,
                                   0x7f, 0x9f, 0x4d, 0x51, 0x58};
    /* the unmasked ones must be refused by a server */
    static const uint8_t unmasked[] = {0x81, 0x05, 0x48, 0x65,
                                       0x6c, 0x6c, 0x6f};
    pv_buf_t in = {0};

    pv_buf_append(&in, hello, sizeof(hello));
    check_stream("5.7 masked text", &in, 0, "T:Hello\n");
    pv_buf_reset(&in);
    pv_buf_append(&in, pong, sizeof(pong));
    check_stream("5.7 masked pong", &in, 0, "PONG:Hello\n");
    pv_buf_reset(&in);
    pv_buf_append(&in, unmasked, sizeof(unmasked));
    check_stream("5.7 unmasked text", &in, 0, "ERR:1002\n");
    pv_buf_reset(&in);
    /* §5.7 fragmented "Hel" + "lo", masked */
    frame(&in, 0x01, 1, 0, "Hel", 3);
    frame(&in, 0x80, 1, 0, "lo", 2);
    check_stream("5.7 fragmented", &in, 0, "T:Hello\n");
    pv_buf_free(&in);
}

static void
test_rfc_examples_encode(void)
{
    static const uint8_t hello[] = {0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f};
    static const uint8_t frag1[] = {0x01, 0x03, 0x48, 0x65, 0x6c};
    static const uint8_t frag2[] = {0x80, 0x02, 0x6c, 0x6f};
    static const uint8_t ping[] = {0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f};
    static const uint8_t h256[] = {0x82, 0x7e, 0x01, 0x00};
    static const uint8_t h64k[] = {0x82, 0x7f, 0x00, 0x00, 0x00,
                                   0x00, 0x00, 0x01, 0x00, 0x00};
    uint8_t h[10];
    pv_buf_t out = {0};
    uint8_t *big = pv_xcalloc(1, 65536);

    CU_ASSERT_EQUAL(pv_ws_encode(&out, PV_WS_OP_TEXT, "Hello", 5), PV_OK);
    CU_ASSERT_EQUAL(out.len, sizeof(hello));
    CU_ASSERT(memcmp(out.data, hello, sizeof(hello)) == 0);
    pv_buf_reset(&out);

    CU_ASSERT_EQUAL(pv_ws_frame_header(h, PV_WS_OP_TEXT, 0, 3), 2);
    CU_ASSERT(memcmp(h, frag1, 2) == 0);
    CU_ASSERT_EQUAL(pv_ws_frame_header(h, PV_WS_OP_CONT, 1, 2), 2);
    CU_ASSERT(memcmp(h, frag2, 2) == 0);

    CU_ASSERT_EQUAL(pv_ws_encode(&out, PV_WS_OP_PING, "Hello", 5), PV_OK);
    CU_ASSERT(out.len == sizeof(ping) &&
              memcmp(out.data, ping, sizeof(ping)) == 0);
    pv_buf_reset(&out);

    CU_ASSERT_EQUAL(pv_ws_encode(&out, PV_WS_OP_BINARY, big, 256), PV_OK);
    CU_ASSERT_EQUAL(out.len, 4 + 256);
    CU_ASSERT(memcmp(out.data, h256, 4) == 0);
    pv_buf_reset(&out);
    CU_ASSERT_EQUAL(pv_ws_encode(&out, PV_WS_OP_BINARY, big, 65536), PV_OK);
    CU_ASSERT_EQUAL(out.len, 10 + 65536);
    CU_ASSERT(memcmp(out.data, h64k, 10) == 0);
    pv_buf_reset(&out);

    /* length encodings at their edges */
    CU_ASSERT_EQUAL(pv_ws_frame_header(h, PV_WS_OP_TEXT, 1, 125), 2);
    CU_ASSERT_EQUAL(h[1], 125);
    CU_ASSERT_EQUAL(pv_ws_frame_header(h, PV_WS_OP_TEXT, 1, 126), 4);
    CU_ASSERT(h[1] == 126 && h[2] == 0 && h[3] == 126);
    CU_ASSERT_EQUAL(pv_ws_frame_header(h, PV_WS_OP_TEXT, 1, 65535), 4);
    CU_ASSERT_EQUAL(pv_ws_frame_header(h, PV_WS_OP_TEXT, 1, 65536), 10);

    /* control frame rules */
    CU_ASSERT_EQUAL(pv_ws_encode(&out, PV_WS_OP_PONG, big, 125), PV_OK);
    pv_buf_reset(&out);
    CU_ASSERT_EQUAL(pv_ws_encode(&out, PV_WS_OP_PONG, big, 126), PV_ERROR);
    CU_ASSERT_EQUAL(out.len, 0);
    CU_ASSERT_EQUAL(pv_ws_encode(&out, PV_WS_OP_CONT, "x", 1), PV_ERROR);
    CU_ASSERT_EQUAL(pv_ws_encode(&out, (pv_ws_opcode_t)3, "x", 1), PV_ERROR);
    CU_ASSERT_EQUAL(out.len, 0);
    free(big);
    pv_buf_free(&out);
}

static void
test_encode_close(void)
{
    pv_buf_t out = {0};
    char reason[200];

    CU_ASSERT_EQUAL(pv_ws_encode_close(&out, 0, NULL, 0), PV_OK);
    CU_ASSERT(out.len == 2 && memcmp(out.data, "\x88\x00", 2) == 0);
    pv_buf_reset(&out);
    CU_ASSERT_EQUAL(pv_ws_encode_close(&out, 1000, "bye", 3), PV_OK);
    CU_ASSERT(out.len == 7 && memcmp(out.data,
                                     "\x88\x05\x03\xe8"
                                     "bye",
                                     7) == 0);
    pv_buf_reset(&out);
    CU_ASSERT_EQUAL(pv_ws_encode_close(&out, 1009, NULL, 5), PV_OK);
    CU_ASSERT(out.len == 4 && memcmp(out.data, "\x88\x02\x03\xf1", 4) == 0);
    pv_buf_reset(&out);
    CU_ASSERT_EQUAL(pv_ws_encode_close(&out, 1005, NULL, 0), PV_ERROR);
    CU_ASSERT_EQUAL(pv_ws_encode_close(&out, 1006, NULL, 0), PV_ERROR);
    CU_ASSERT_EQUAL(pv_ws_encode_close(&out, 999, NULL, 0), PV_ERROR);
    CU_ASSERT_EQUAL(pv_ws_encode_close(&out, 5000, NULL, 0), PV_ERROR);
    CU_ASSERT_EQUAL(out.len, 0);

    /* 122 ASCII bytes + a 2-byte character: cut before it, not inside */
    memset(reason, 'a', 122);
    memcpy(reason + 122, "\xc3\xa9zz", 4);
    CU_ASSERT_EQUAL(pv_ws_encode_close(&out, 1000, reason, 126), PV_OK);
    CU_ASSERT_EQUAL(out.len, 2 + 2 + 122);
    CU_ASSERT_EQUAL((uint8_t)out.data[1], 124);
    pv_buf_reset(&out);
    /* 121 + the character fits exactly 123 */
    CU_ASSERT_EQUAL(pv_ws_encode_close(&out, 1000, reason + 1, 125), PV_OK);
    CU_ASSERT_EQUAL(out.len, 2 + 2 + 123);
    pv_buf_free(&out);
}

typedef struct {
    int b0, masked, lenform;
    const char *payload;
    size_t len; /* 0 = strlen(payload) */
} fspec_t;

typedef struct {
    const char *name;
    fspec_t frames[4];
    size_t max_message;
    const char *want;
} ws_case_t;

#define F(b0, p)       \
    {                  \
        b0, 1, 0, p, 0 \
    }
#define END              \
    {                    \
        0, 0, 0, NULL, 0 \
    }

static const ws_case_t cases[] = {
    {"empty text", {F(0x81, ""), END}, 0, "T:\n"},
    {"empty binary", {F(0x82, ""), END}, 0, "B:0:811c9dc5\n"},
    {"two messages", {F(0x81, "a"), F(0x81, "b"), END}, 0, "T:a\nT:b\n"},
    {"ping", {F(0x89, "are you there"), END}, 0, "PING:are you there\n"},
    {"empty ping", {F(0x89, ""), END}, 0, "PING:\n"},
    {"ping between fragments",
     {F(0x01, "Hel"), F(0x89, "p"), F(0x8a, "q"), F(0x80, "lo")},
     0,
     "PING:p\nPONG:q\nT:Hello\n"},
    {"close inside a fragmented message",
     {F(0x01, "Hel"), F(0x88, "\x03\xe8"), END},
     0,
     "CLOSE:1000:\n"},
    {"three fragments",
     {F(0x02, "ab"), F(0x00, "cd"), F(0x80, "ef"), END},
     0,
     "B:6:ff478a2a\n"},
    {"empty fragments",
     {F(0x01, ""), F(0x00, ""), F(0x80, ""), END},
     0,
     "T:\n"},
    {"UTF-8 split across fragments",
     {F(0x01, "caf\xc3"), F(0x80, "\xa9"), END},
     0,
     "T:caf\xc3\xa9\n"},
    {"4-byte UTF-8",
     {F(0x81, "\xf0\x9f\x98\x80"), END},
     0,
     "T:\xf0\x9f\x98\x80\n"},
    /* close frames */
    {"close without code", {F(0x88, ""), END}, 0, "CLOSE:1005:\n"},
    {"close 1000 with reason",
     {F(0x88, "\x03\xe8"
              "bye"),
      END},
     0,
     "CLOSE:1000:bye\n"},
    {"close 1001", {F(0x88, "\x03\xe9"), END}, 0, "CLOSE:1001:\n"},
    {"close 1011", {F(0x88, "\x03\xf3"), END}, 0, "CLOSE:1011:\n"},
    {"close 3000", {F(0x88, "\x0b\xb8"), END}, 0, "CLOSE:3000:\n"},
    {"close 4999", {F(0x88, "\x13\x87"), END}, 0, "CLOSE:4999:\n"},
    {"data after close is ignored",
     {F(0x88, "\x03\xe8"), F(0x81, "late"), END},
     0,
     "CLOSE:1000:\n"},
    {"close of one byte", {F(0x88, "\x03"), END}, 0, "ERR:1002\n"},
    {"close code 0", {{0x88, 1, 0, "\x00\x00", 2}, END}, 0, "ERR:1002\n"},
    {"close code 999", {F(0x88, "\x03\xe7"), END}, 0, "ERR:1002\n"},
    {"close code 1004", {F(0x88, "\x03\xec"), END}, 0, "ERR:1002\n"},
    {"close code 1005", {F(0x88, "\x03\xed"), END}, 0, "ERR:1002\n"},
    {"close code 1006", {F(0x88, "\x03\xee"), END}, 0, "ERR:1002\n"},
    {"close code 1015", {F(0x88, "\x03\xf7"), END}, 0, "ERR:1002\n"},
    {"close code 2999", {F(0x88, "\x0b\xb7"), END}, 0, "ERR:1002\n"},
    {"close code 5000", {F(0x88, "\x13\x88"), END}, 0, "ERR:1002\n"},
    {"close code 65535", {F(0x88, "\xff\xff"), END}, 0, "ERR:1002\n"},
    {"close reason not UTF-8", {F(0x88, "\x03\xe8\xff"), END}, 0, "ERR:1007\n"},
    /* framing violations */
    {"unmasked", {{0x81, 0, 0, "Hello", 0}, END}, 0, "ERR:1002\n"},
    {"unmasked ping", {{0x89, 0, 0, "", 0}, END}, 0, "ERR:1002\n"},
    {"RSV1", {F(0xc1, "x"), END}, 0, "ERR:1002\n"},
    {"RSV2", {F(0xa1, "x"), END}, 0, "ERR:1002\n"},
    {"RSV3", {F(0x91, "x"), END}, 0, "ERR:1002\n"},
    {"opcode 3", {F(0x83, "x"), END}, 0, "ERR:1002\n"},
    {"opcode 7", {F(0x87, "x"), END}, 0, "ERR:1002\n"},
    {"opcode 0xB", {F(0x8b, ""), END}, 0, "ERR:1002\n"},
    {"opcode 0xF", {F(0x8f, ""), END}, 0, "ERR:1002\n"},
    {"continuation first", {F(0x80, "x"), END}, 0, "ERR:1002\n"},
    {"continuation after a whole message",
     {F(0x81, "a"), F(0x80, "b"), END},
     0,
     "T:a\nERR:1002\n"},
    {"text inside a fragmented message",
     {F(0x01, "a"), F(0x81, "b"), END},
     0,
     "ERR:1002\n"},
    {"fragmented ping", {F(0x09, "a"), END}, 0, "ERR:1002\n"},
    {"fragmented close", {F(0x08, ""), END}, 0, "ERR:1002\n"},
    {"non-minimal 16-bit length",
     {{0x81, 1, 16, "Hello", 0}, END},
     0,
     "ERR:1002\n"},
    {"non-minimal 64-bit length",
     {{0x81, 1, 64, "Hello", 0}, END},
     0,
     "ERR:1002\n"},
    {"ping with 16-bit length",
     {{0x89, 1, 16, "Hello", 0}, END},
     0,
     "ERR:1002\n"},
    /* UTF-8 */
    {"invalid UTF-8", {F(0x81, "\xff"), END}, 0, "ERR:1007\n"},
    {"overlong slash", {F(0x81, "\xc0\xaf"), END}, 0, "ERR:1007\n"},
    {"surrogate", {F(0x81, "\xed\xa0\x80"), END}, 0, "ERR:1007\n"},
    {"above U+10FFFF", {F(0x81, "\xf4\x90\x80\x80"), END}, 0, "ERR:1007\n"},
    {"truncated sequence", {F(0x81, "caf\xc3"), END}, 0, "ERR:1007\n"},
    {"truncated across fragments",
     {F(0x01, "ok"), F(0x80, "\xe2\x82"), END},
     0,
     "ERR:1007\n"},
    {"binary need not be UTF-8",
     {F(0x82, "\xff\xfe"), END},
     0,
     "B:2:d01ebb10\n"},
    {"NUL in text is UTF-8", {{0x81, 1, 0, "a\0b", 3}, END}, 0, "T:a\n"},
    /* sizes */
    {"message at the limit",
     {F(0x81, "0123456789abcdef"), END},
     16,
     "T:0123456789abcdef\n"},
    {"message over the limit",
     {F(0x81, "0123456789abcdefg"), END},
     16,
     "ERR:1009\n"},
    {"fragments over the limit",
     {F(0x01, "0123456789"), F(0x80, "0123456789"), END},
     16,
     "ERR:1009\n"},
    {"ping not counted in the limit",
     {F(0x01, "0123456789"), F(0x89, "0123456789"), F(0x80, "012345"), END},
     16,
     "PING:0123456789\nT:0123456789012345\n"},
};

static void
build(const ws_case_t *c, pv_buf_t *in)
{
    size_t i;

    for (i = 0; i < 4 && c->frames[i].payload != NULL; i++) {
        const fspec_t *f = &c->frames[i];

        frame(in, f->b0, f->masked, f->lenform, f->payload,
              f->len ? f->len : strlen(f->payload));
    }
}

static void
test_frame_table(void)
{
    size_t i;

    for (i = 0; i < PV_COUNTOF(cases); i++) {
        pv_buf_t in = {0};

        build(&cases[i], &in);
        check_stream(cases[i].name, &in, cases[i].max_message, cases[i].want);
        pv_buf_free(&in);
    }
}

static void
test_hostile_headers(void)
{
    /* raw headers: lengths a hostile client might send */
    static const struct {
        const char *name;
        uint8_t bytes[14];
        size_t len;
        const char *want;
    } raw[] = {
        {"64-bit length with the top bit",
         {0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4},
         14,
         "ERR:1002\n"},
        {"2^63-1 bytes",
         {0x82, 0xff, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1, 2, 3,
          4},
         14,
         "ERR:1009\n"},
        {"4 GiB",
         {0x82, 0xff, 0, 0, 0, 1, 0, 0, 0, 0, 1, 2, 3, 4},
         14,
         "ERR:1009\n"},
        {"ping of 126 via 7-bit field",
         {0x89, 0xfe, 0x00, 0x7e, 1, 2, 3, 4},
         8,
         "ERR:1002\n"},
        {"ping of 127", {0x89, 0xff}, 2, "ERR:1002\n"},
        {"header only, incomplete", {0x81, 0xfe, 0x01}, 3, ""},
    };
    size_t i;

    for (i = 0; i < PV_COUNTOF(raw); i++) {
        pv_buf_t in = {0};

        pv_buf_append(&in, raw[i].bytes, raw[i].len);
        check_stream(raw[i].name, &in, 0, raw[i].want);
        pv_buf_free(&in);
    }
}

static void
test_big_messages(void)
{
    size_t sizes[] = {125, 126, 65535, 65536, 200000};
    uint8_t *data = pv_xmalloc(200000);
    size_t i;
    char want[64];

    for (i = 0; i < 200000; i++)
        data[i] = (uint8_t)(i * 7 + (i >> 8));
    for (i = 0; i < PV_COUNTOF(sizes); i++) {
        pv_buf_t in = {0};

        frame(&in, 0x82, 1, 0, data, sizes[i]);
        snprintf(want, sizeof(want), "B:%zu:%08x\n", sizes[i],
                 fnv(data, sizes[i]));
        check_stream("binary sizes", &in, 0, want);
        /* one byte under the size is too big */
        check_stream("binary over limit", &in, sizes[i] - 1, "ERR:1009\n");
        pv_buf_free(&in);
    }
    /* a big message fragmented into 1000-byte frames, a ping between */
    {
        pv_buf_t in = {0};
        size_t off;

        for (off = 0; off < 200000; off += 1000) {
            int b0 =
                (off == 0 ? 0x02 : 0x00) | (off + 1000 == 200000 ? 0x80 : 0);

            frame(&in, b0, 1, 0, data + off, 1000);
            if (off == 100000)
                frame(&in, 0x89, 1, 0, "mid", 3);
        }
        snprintf(want, sizeof(want), "PING:mid\nB:200000:%08x\n",
                 fnv(data, 200000));
        check_stream("fragmented 200000", &in, 0, want);
        pv_buf_free(&in);
    }
    free(data);
}

static void
test_round_trip_and_trim(void)
{
    pv_ws_decoder_t *d = pv_ws_decoder_new(0);
    pv_buf_t out = {0}, in = {0};
    pv_ws_event_t ev;
    size_t n;

    /* a server frame, masked the way a client would send it */
    CU_ASSERT_EQUAL(pv_ws_encode(&out, PV_WS_OP_TEXT, "<open/>", 7), PV_OK);
    frame(&in, (uint8_t)out.data[0], 1, 0, out.data + 2, out.len - 2);
    n = pv_ws_decoder_feed(d, in.data, in.len, &ev);
    CU_ASSERT_EQUAL(n, in.len);
    CU_ASSERT_EQUAL(ev.type, PV_WS_EV_TEXT);
    CU_ASSERT(ev.len == 7 && memcmp(ev.data, "<open/>", 7) == 0);
    /* trim frees the delivered message; a partial one stays */
    pv_ws_decoder_trim(d);
    pv_buf_reset(&in);
    frame(&in, 0x01, 1, 0, "<mess", 5);
    n = pv_ws_decoder_feed(d, in.data, in.len, &ev);
    CU_ASSERT(n == in.len && ev.type == PV_WS_EV_NONE);
    pv_ws_decoder_trim(d);
    pv_buf_reset(&in);
    frame(&in, 0x80, 1, 0, "age/>", 5);
    n = pv_ws_decoder_feed(d, in.data, in.len, &ev);
    CU_ASSERT(n == in.len && ev.type == PV_WS_EV_TEXT);
    CU_ASSERT(ev.len == 10 && memcmp(ev.data, "<message/>", 10) == 0);
    /* reset forgets a finished state */
    pv_buf_reset(&in);
    frame(&in, 0x88, 1, 0, "", 0);
    n = pv_ws_decoder_feed(d, in.data, in.len, &ev);
    CU_ASSERT(ev.type == PV_WS_EV_CLOSE && ev.code == 1005);
    pv_ws_decoder_reset(d);
    pv_buf_reset(&in);
    frame(&in, 0x81, 1, 0, "again", 5);
    n = pv_ws_decoder_feed(d, in.data, in.len, &ev);
    CU_ASSERT(ev.type == PV_WS_EV_TEXT && ev.len == 5);

    CU_ASSERT(pv_ws_close_code_is_valid(1000));
    CU_ASSERT(pv_ws_close_code_is_valid(1014));
    CU_ASSERT(!pv_ws_close_code_is_valid(1015));
    CU_ASSERT(!pv_ws_close_code_is_valid(1004));
    CU_ASSERT(pv_ws_close_code_is_valid(3000));
    CU_ASSERT(!pv_ws_close_code_is_valid(5000));
    pv_buf_free(&in);
    pv_buf_free(&out);
    pv_ws_decoder_free(d);
}

void test_suite_websocket(void);

void
test_suite_websocket(void)
{
    CU_pSuite s = CU_add_suite("websocket", NULL, NULL);

    CU_add_test(s, "RFC 6455 5.7 examples, decoder", test_rfc_examples_decode);
    CU_add_test(s, "RFC 6455 5.7 examples, encoder", test_rfc_examples_encode);
    CU_add_test(s, "close frame encoding", test_encode_close);
    CU_add_test(s, "frame rules, every split", test_frame_table);
    CU_add_test(s, "hostile lengths", test_hostile_headers);
    CU_add_test(s, "big and fragmented messages", test_big_messages);
    CU_add_test(s, "round trip, trim, reset", test_round_trip_and_trim);
}
