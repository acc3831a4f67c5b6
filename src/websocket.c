/* src/websocket.c: RFC 6455 §5 framing. The decoder reads client frames
 * byte-exact whatever the chunking, unmasks them into its own buffers
 * (control frames apart from the message being reassembled, §5.4) and
 * turns every rule violation into the close code to send. The encoder
 * writes unmasked server frames. UTF-8 checks are libunistring's. */
#include <stdlib.h>
#include <string.h>

#include <unistr.h>

#include "websocket.h"

#define DEF_MAX_MESSAGE (256 * 1024)

typedef enum {
    DS_HEADER,
    DS_PAYLOAD,
    DS_DONE /* after a close or an error */
} ws_state_t;

struct pv_ws_decoder_s {
    size_t max_message;
    ws_state_t state;

    /* the frame being read: up to 2 + 8 + 4 header bytes */
    uint8_t hdr[14];
    size_t hdr_len, hdr_need;
    int fin;
    unsigned opcode;
    uint64_t frame_len, frame_pos;

    /* the data message being reassembled; msg_opcode 0 = none */
    unsigned msg_opcode;
    uint8_t *msg;
    size_t msg_len, msg_cap;

    uint8_t ctl[PV_WS_MAX_CONTROL];
};

pv_ws_decoder_t *
pv_ws_decoder_new(size_t max_message)
{
    pv_ws_decoder_t *d = pv_xcalloc(1, sizeof(*d));

    d->max_message = max_message ? max_message : DEF_MAX_MESSAGE;
    return d;
}

void
pv_ws_decoder_free(pv_ws_decoder_t *d)
{
    if (d == NULL)
        return;
    free(d->msg);
    free(d);
}

void
pv_ws_decoder_trim(pv_ws_decoder_t *d)
{
    if (d->msg_opcode == 0) {
        free(d->msg);
        d->msg = NULL;
        d->msg_len = 0;
        d->msg_cap = 0;
    }
}

void
pv_ws_decoder_reset(pv_ws_decoder_t *d)
{
    d->state = DS_HEADER;
    d->hdr_len = 0;
    d->msg_opcode = 0;
    pv_ws_decoder_trim(d);
}

int
pv_ws_close_code_is_valid(unsigned code)
{
    /* RFC 6455 §7.4.1-2: 1004-1006 and 1015 must not be sent; 1012-1014
     * were registered with IANA later; 3000-4999 are for libraries and
     * applications */
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
           (code >= 3000 && code <= 4999);
}

static size_t
fail(pv_ws_decoder_t *d, pv_ws_event_t *ev, uint16_t code, const char *why,
     size_t used)
{
    d->state = DS_DONE;
    d->msg_opcode = 0;
    ev->type = PV_WS_EV_ERROR;
    ev->code = code;
    ev->error = why;
    return used;
}

/* Checks made as soon as the first two header bytes are in, §5.2. */
static const char *
check_first_bytes(pv_ws_decoder_t *d)
{
    unsigned len7 = d->hdr[1] & 0x7f;

    d->fin = (d->hdr[0] & 0x80) != 0;
    d->opcode = d->hdr[0] & 0x0f;
    /* no extension is ever negotiated, so RSV1-3 must be 0 */
    if (d->hdr[0] & 0x70)
        return "reserved bits set";
    switch (d->opcode) {
    case PV_WS_OP_CONT:
        if (d->msg_opcode == 0)
            return "continuation frame outside a message";
        break;
    case PV_WS_OP_TEXT:
    case PV_WS_OP_BINARY:
        if (d->msg_opcode != 0)
            return "new message inside a fragmented one";
        break;
    case PV_WS_OP_CLOSE:
    case PV_WS_OP_PING:
    case PV_WS_OP_PONG:
        /* §5.5: control frames are short and never fragmented */
        if (!d->fin)
            return "fragmented control frame";
        if (len7 > PV_WS_MAX_CONTROL)
            return "control frame too long";
        break;
    default: return "reserved opcode";
    }
    /* §5.1: a server must close on an unmasked client frame */
    if (!(d->hdr[1] & 0x80))
        return "unmasked client frame";
    d->hdr_need = 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + 4;
    return NULL;
}

/* The whole header is in: length rules and the message buffer. Returns
 * the close code on error (why set), 0 otherwise. */
static uint16_t
check_header(pv_ws_decoder_t *d, const char **why)
{
    unsigned len7 = d->hdr[1] & 0x7f;
    uint64_t n = len7;
    size_t i, need;

    if (len7 == 126) {
        n = (uint64_t)d->hdr[2] << 8 | d->hdr[3];
        /* §5.2: "the minimal number of bytes MUST be used" */
        if (n < 126) {
            *why = "non-minimal 16-bit length";
            return PV_WS_CLOSE_PROTOCOL;
        }
    } else if (len7 == 127) {
        if (d->hdr[2] & 0x80) {
            *why = "64-bit length with the high bit set";
            return PV_WS_CLOSE_PROTOCOL;
        }
        for (n = 0, i = 2; i < 10; i++)
            n = n << 8 | d->hdr[i];
        if (n <= 0xffff) {
            *why = "non-minimal 64-bit length";
            return PV_WS_CLOSE_PROTOCOL;
        }
    }
    d->frame_len = n;
    d->frame_pos = 0;
    if (d->opcode & 0x8)
        return 0;
    if (d->opcode != PV_WS_OP_CONT)
        d->msg_len = 0;
    if (n > d->max_message - d->msg_len) {
        *why = "message too big";
        return PV_WS_CLOSE_TOO_BIG;
    }
    if (d->opcode != PV_WS_OP_CONT)
        d->msg_opcode = d->opcode;
    /* the frame's payload and a NUL after a text message */
    need = d->msg_len + (size_t)n + 1;
    if (need > d->msg_cap) {
        size_t cap = d->msg_cap * 2;

        if (cap < need)
            cap = need;
        if (cap > d->max_message + 1)
            cap = d->max_message + 1;
        d->msg = pv_xrealloc(d->msg, cap);
        d->msg_cap = cap;
    }
    return 0;
}

/* The frame's payload is complete. Returns 1 when ev holds an event. */
static int
frame_done(pv_ws_decoder_t *d, pv_ws_event_t *ev)
{
    unsigned code;

    switch (d->opcode) {
    case PV_WS_OP_PING:
    case PV_WS_OP_PONG:
        ev->type = d->opcode == PV_WS_OP_PING ? PV_WS_EV_PING : PV_WS_EV_PONG;
        ev->data = d->ctl;
        ev->len = (size_t)d->frame_len;
        return 1;
    case PV_WS_OP_CLOSE:
        /* §5.5.1: empty, or a 2-byte code and a UTF-8 reason */
        if (d->frame_len == 0) {
            ev->code = PV_WS_CLOSE_NO_STATUS;
        } else if (d->frame_len == 1) {
            fail(d, ev, PV_WS_CLOSE_PROTOCOL, "close frame of one byte", 0);
            return 1;
        } else {
            code = (unsigned)d->ctl[0] << 8 | d->ctl[1];
            if (!pv_ws_close_code_is_valid(code)) {
                fail(d, ev, PV_WS_CLOSE_PROTOCOL, "invalid close code", 0);
                return 1;
            }
            if (u8_check(d->ctl + 2, (size_t)d->frame_len - 2) != NULL) {
                fail(d, ev, PV_WS_CLOSE_BAD_DATA, "close reason not UTF-8", 0);
                return 1;
            }
            ev->code = (uint16_t)code;
            ev->data = d->ctl + 2;
            ev->len = (size_t)d->frame_len - 2;
        }
        ev->type = PV_WS_EV_CLOSE;
        d->state = DS_DONE;
        d->msg_opcode = 0;
        return 1;
    default:
        if (!d->fin)
            return 0;
        /* §8.1: a text message that is not UTF-8 fails the connection */
        if (d->msg_opcode == PV_WS_OP_TEXT &&
            u8_check(d->msg, d->msg_len) != NULL) {
            fail(d, ev, PV_WS_CLOSE_BAD_DATA, "text message not UTF-8", 0);
            return 1;
        }
        d->msg[d->msg_len] = '\0';
        ev->type =
            d->msg_opcode == PV_WS_OP_TEXT ? PV_WS_EV_TEXT : PV_WS_EV_BINARY;
        ev->data = d->msg;
        ev->len = d->msg_len;
        d->msg_opcode = 0;
        d->msg_len = 0;
        return 1;
    }
}

size_t
pv_ws_decoder_feed(pv_ws_decoder_t *d, const void *buf, size_t len,
                   pv_ws_event_t *ev)
{
    const uint8_t *b = buf;
    size_t i = 0;

    memset(ev, 0, sizeof(*ev));
    if (d->state == DS_DONE)
        return len;
    /* the last delivered message is no longer borrowed */
    pv_ws_decoder_trim(d);

    while (i < len) {
        if (d->state == DS_HEADER) {
            const char *why = NULL;
            uint16_t code;

            d->hdr[d->hdr_len++] = b[i++];
            if (d->hdr_len == 2 && (why = check_first_bytes(d)) != NULL)
                return fail(d, ev, PV_WS_CLOSE_PROTOCOL, why, i);
            if (d->hdr_len < 2 || d->hdr_len < d->hdr_need)
                continue;
            if ((code = check_header(d, &why)) != 0)
                return fail(d, ev, code, why, i);
            d->hdr_len = 0;
            d->state = DS_PAYLOAD;
        } else {
            uint64_t left = d->frame_len - d->frame_pos;
            size_t n = len - i, k;
            const uint8_t *mask = d->hdr + d->hdr_need - 4;
            uint8_t *dst;

            if ((uint64_t)n > left)
                n = (size_t)left;
            if (d->opcode & 0x8) {
                dst = d->ctl + d->frame_pos;
            } else {
                dst = d->msg + d->msg_len;
                d->msg_len += n;
            }
            /* §5.3: octet j is XORed with mask octet j mod 4 */
            for (k = 0; k < n; k++)
                dst[k] = b[i + k] ^ mask[(d->frame_pos + k) & 3];
            d->frame_pos += n;
            i += n;
        }
        if (d->state == DS_PAYLOAD && d->frame_pos == d->frame_len) {
            d->state = DS_HEADER;
            if (frame_done(d, ev))
                return i;
        }
    }
    return i;
}

size_t
pv_ws_frame_header(uint8_t out[10], pv_ws_opcode_t op, int fin, uint64_t len)
{
    int i;

    out[0] = (uint8_t)((fin ? 0x80 : 0) | (op & 0x0f));
    if (len < 126) {
        out[1] = (uint8_t)len;
        return 2;
    }
    if (len <= 0xffff) {
        out[1] = 126;
        out[2] = (uint8_t)(len >> 8);
        out[3] = (uint8_t)len;
        return 4;
    }
    out[1] = 127;
    for (i = 0; i < 8; i++)
        out[2 + i] = (uint8_t)(len >> (56 - 8 * i));
    return 10;
}

int
pv_ws_encode(pv_buf_t *out, pv_ws_opcode_t op, const void *data, size_t len)
{
    uint8_t hdr[10];
    size_t n;

    switch (op) {
    case PV_WS_OP_TEXT:
    case PV_WS_OP_BINARY: break;
    case PV_WS_OP_CLOSE:
    case PV_WS_OP_PING:
    case PV_WS_OP_PONG:
        if (len > PV_WS_MAX_CONTROL)
            return PV_ERROR;
        break;
    default: return PV_ERROR;
    }
    n = pv_ws_frame_header(hdr, op, 1, len);
    pv_buf_append(out, hdr, n);
    pv_buf_append(out, data, len);
    return PV_OK;
}

int
pv_ws_encode_close(pv_buf_t *out, unsigned code, const char *reason,
                   size_t reason_len)
{
    uint8_t payload[PV_WS_MAX_CONTROL];
    size_t n = 0;

    if (code == 0)
        return pv_ws_encode(out, PV_WS_OP_CLOSE, NULL, 0);
    if (!pv_ws_close_code_is_valid(code))
        return PV_ERROR;
    if (reason == NULL)
        reason_len = 0;
    n = reason_len < PV_WS_MAX_REASON ? reason_len : PV_WS_MAX_REASON;
    /* never cut a UTF-8 sequence: back off continuation bytes */
    while (n > 0 && n < reason_len && ((unsigned char)reason[n] & 0xc0) == 0x80)
        n--;
    payload[0] = (uint8_t)(code >> 8);
    payload[1] = (uint8_t)code;
    if (n > 0)
        memcpy(payload + 2, reason, n);
    return pv_ws_encode(out, PV_WS_OP_CLOSE, payload, n + 2);
}
