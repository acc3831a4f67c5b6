/* src/websocket.h: RFC 6455 framing for the server side: an incremental
 * decoder of (masked) client frames that reassembles messages and checks
 * every framing rule, and an encoder of unmasked server frames. No I/O,
 * no handshake (http_parse.h has those helpers) and no XMPP framing
 * (RFC 7395 <open/>/<close/> is mod_websocket's). */
#ifndef PALAVER_WEBSOCKET_H
#define PALAVER_WEBSOCKET_H

#include <stddef.h>
#include <stdint.h>

#include <palaver/defs.h>
#include <palaver/mem.h>

/* RFC 6455 §5.2 opcodes */
typedef enum {
    PV_WS_OP_CONT = 0x0,
    PV_WS_OP_TEXT = 0x1,
    PV_WS_OP_BINARY = 0x2,
    PV_WS_OP_CLOSE = 0x8,
    PV_WS_OP_PING = 0x9,
    PV_WS_OP_PONG = 0xA
} pv_ws_opcode_t;

/* RFC 6455 §7.4.1 status codes used here */
#define PV_WS_CLOSE_NORMAL 1000
#define PV_WS_CLOSE_GOING_AWAY 1001
#define PV_WS_CLOSE_PROTOCOL 1002
#define PV_WS_CLOSE_NO_STATUS 1005 /* never sent: "the close had no code" */
#define PV_WS_CLOSE_BAD_DATA 1007
#define PV_WS_CLOSE_POLICY 1008
#define PV_WS_CLOSE_TOO_BIG 1009
#define PV_WS_CLOSE_INTERNAL 1011

/* Longest control frame payload (§5.5) and close reason (125 - code). */
#define PV_WS_MAX_CONTROL 125
#define PV_WS_MAX_REASON 123

typedef enum {
    PV_WS_EV_NONE,   /* every byte used, no event yet: read more */
    PV_WS_EV_TEXT,   /* a whole text message, valid UTF-8 */
    PV_WS_EV_BINARY, /* a whole binary message */
    PV_WS_EV_PING,   /* answer with a pong of the same payload (§5.5.2) */
    PV_WS_EV_PONG,   /* unsolicited or a reply; nothing is required */
    PV_WS_EV_CLOSE,  /* the peer's close: echo its code (§5.5.1), then
                         * close the TCP connection */
    PV_WS_EV_ERROR   /* the peer broke the protocol: send a close with
                         * ev->code and drop the connection (§7.1.7) */
} pv_ws_event_type_t;

/* data/len: the message, the ping or pong payload, or the close reason
 * (valid UTF-8, not NUL-terminated; a text message is followed by a NUL
 * that len does not count). code: for CLOSE the peer's status code, or
 * PV_WS_CLOSE_NO_STATUS when its close frame had none; for ERROR the code
 * to send (1002 protocol error, 1007 invalid UTF-8, 1009 too big). error:
 * for ERROR a short static English text for logs. data borrows from the
 * decoder until the next feed, reset or free. */
typedef struct pv_ws_event_s {
    pv_ws_event_type_t type;
    const uint8_t *data;
    size_t len;
    uint16_t code;
    const char *error;
} pv_ws_event_t;

typedef struct pv_ws_decoder_s pv_ws_decoder_t;

/* New decoder for client-to-server frames. max_message bounds a whole
 * (reassembled) data message in bytes; 0 = 256 KiB, the c2s stanza size.
 * The message buffer grows frame by frame (one allocation per data frame,
 * never per byte) to at most max_message + 1 and is released by the next
 * feed or pv_ws_decoder_trim() once its message was delivered. Aborts on
 * OOM (pv_xmalloc). */
pv_ws_decoder_t *pv_ws_decoder_new(size_t max_message);
void pv_ws_decoder_free(pv_ws_decoder_t *d);
/* Forgets any partial frame, message, close or error. */
void pv_ws_decoder_reset(pv_ws_decoder_t *d);
/* Frees the message buffer unless a fragmented message is in progress;
 * call it when done with the last event of a read (the end of on_data) so
 * an idle connection holds no message. Invalidates ev->data. */
void pv_ws_decoder_trim(pv_ws_decoder_t *d);

/* Decodes from buf[0..len) until one event is complete or the bytes run
 * out; fills *ev and returns how many bytes were used. Drive it with
 *     while (len > 0) {
 *         size_t n = pv_ws_decoder_feed(d, buf, len, &ev);
 *         buf += n; len -= n;
 *         if (ev.type == PV_WS_EV_NONE) break;
 *         ... handle ev; stop after CLOSE or ERROR ...
 *     }
 * An event always completes on a byte of buf, so no call with len 0 is
 * needed. Any split of the stream gives the same events. After CLOSE or
 * ERROR the decoder is finished: later feeds use every byte and return
 * PV_WS_EV_NONE (RFC 6455 §5.5.1: nothing may follow a close). Masked
 * payloads are unmasked into the decoder; buf is not modified. */
size_t pv_ws_decoder_feed(pv_ws_decoder_t *d, const void *buf, size_t len,
                          pv_ws_event_t *ev);

/* True for a status code a peer may send in a close frame (§7.4): 1000-
 * 1003, 1007-1014 and 3000-4999. */
int pv_ws_close_code_is_valid(unsigned code);

/* Writes the header of an unmasked server frame (FIN set when fin) with
 * the shortest length encoding into out and returns its size (2, 4 or
 * 10), so a payload held elsewhere can follow in a writev. The caller
 * keeps control frames to 125 bytes and unfragmented (§5.5). */
size_t pv_ws_frame_header(uint8_t out[10], pv_ws_opcode_t op, int fin,
                          uint64_t len);

/* Appends a whole unmasked frame (FIN set) to out. Returns PV_ERROR, with
 * out untouched, for a control opcode with more than 125 bytes or an
 * opcode that is not one of pv_ws_opcode_t but CONT. */
int pv_ws_encode(pv_buf_t *out, pv_ws_opcode_t op, const void *data,
                 size_t len);

/* Appends a close frame (§5.5.1) to out: empty when code is 0, else the
 * code and reason, cut to PV_WS_MAX_REASON bytes at a UTF-8 boundary.
 * reason may be NULL. Returns PV_ERROR, with out untouched, for a code
 * that may not be sent (pv_ws_close_code_is_valid()). */
int pv_ws_encode_close(pv_buf_t *out, unsigned code, const char *reason,
                       size_t reason_len);

#endif
