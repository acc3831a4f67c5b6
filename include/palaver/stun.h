/* include/palaver/stun.h: the STUN message codec (RFC 8489) with the TURN
 * attributes and ChannelData framing of RFC 8656: parse and validate,
 * build into a caller's buffer, XOR addresses, MESSAGE-INTEGRITY(-SHA256)
 * with the long-term key, FINGERPRINT. Pure functions: no allocation, no
 * state; used by mod_turn, palaverctl check turn and the tests. */
#ifndef PALAVER_STUN_H
#define PALAVER_STUN_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <palaver/defs.h>

#define PV_STUN_HEADER_LEN 20
#define PV_STUN_MAGIC 0x2112A442u
#define PV_STUN_TID_LEN 12
#define PV_STUN_MAX_ATTRS 48
#define PV_STUN_MAX_UNKNOWN 16
#define PV_STUN_HMAC_SHA1_LEN 20
#define PV_STUN_HMAC_SHA256_LEN 32
#define PV_STUN_KEY_LEN 16          /* MD5 long-term key */

/* Methods (RFC 8489 §18.2, RFC 8656 §17). */
#define PV_STUN_BINDING 0x001
#define PV_STUN_ALLOCATE 0x003
#define PV_STUN_REFRESH 0x004
#define PV_STUN_SEND 0x006
#define PV_STUN_DATA 0x007
#define PV_STUN_CREATE_PERMISSION 0x008
#define PV_STUN_CHANNEL_BIND 0x009

/* Classes (RFC 8489 §5). */
#define PV_STUN_REQUEST 0
#define PV_STUN_INDICATION 1
#define PV_STUN_SUCCESS 2
#define PV_STUN_ERROR 3

/* Attributes (RFC 8489 §18.3, RFC 8656 §18, RFC 8445 §16.1). */
#define PV_STUN_A_MAPPED_ADDRESS 0x0001
#define PV_STUN_A_USERNAME 0x0006
#define PV_STUN_A_MESSAGE_INTEGRITY 0x0008
#define PV_STUN_A_ERROR_CODE 0x0009
#define PV_STUN_A_UNKNOWN_ATTRIBUTES 0x000A
#define PV_STUN_A_CHANNEL_NUMBER 0x000C
#define PV_STUN_A_LIFETIME 0x000D
#define PV_STUN_A_XOR_PEER_ADDRESS 0x0012
#define PV_STUN_A_DATA 0x0013
#define PV_STUN_A_REALM 0x0014
#define PV_STUN_A_NONCE 0x0015
#define PV_STUN_A_XOR_RELAYED_ADDRESS 0x0016
#define PV_STUN_A_REQUESTED_ADDRESS_FAMILY 0x0017
#define PV_STUN_A_EVEN_PORT 0x0018
#define PV_STUN_A_REQUESTED_TRANSPORT 0x0019
#define PV_STUN_A_DONT_FRAGMENT 0x001A
#define PV_STUN_A_MESSAGE_INTEGRITY_SHA256 0x001C
#define PV_STUN_A_PASSWORD_ALGORITHM 0x001D
#define PV_STUN_A_USERHASH 0x001E
#define PV_STUN_A_XOR_MAPPED_ADDRESS 0x0020
#define PV_STUN_A_RESERVATION_TOKEN 0x0022
#define PV_STUN_A_PRIORITY 0x0024
#define PV_STUN_A_USE_CANDIDATE 0x0025
#define PV_STUN_A_PASSWORD_ALGORITHMS 0x8002
#define PV_STUN_A_ALTERNATE_DOMAIN 0x8003
#define PV_STUN_A_SOFTWARE 0x8022
#define PV_STUN_A_ALTERNATE_SERVER 0x8023
#define PV_STUN_A_FINGERPRINT 0x8028
#define PV_STUN_A_ICE_CONTROLLED 0x8029
#define PV_STUN_A_ICE_CONTROLLING 0x802A

/* Why a message was refused by pv_stun_parse(). */
typedef enum {
    PV_STUN_OK = 0,
    PV_STUN_E_SHORT,        /* fewer bytes than the header or its length */
    PV_STUN_E_NOT_STUN,     /* top bits set or magic cookie wrong */
    PV_STUN_E_LENGTH,       /* length not a multiple of 4 / not the size */
    PV_STUN_E_ATTR,         /* attribute overruns the message or its
                             * padding, or too many attributes */
    PV_STUN_E_FINGERPRINT,  /* FINGERPRINT present but not last or wrong */
    PV_STUN_E_INTEGRITY     /* MESSAGE-INTEGRITY of the wrong length */
} pv_stun_err_t;

typedef struct pv_stun_attr_s {
    uint16_t type;
    uint16_t len;           /* value length, without padding */
    const uint8_t *value;   /* points into the parsed message */
    size_t offset;          /* of the attribute header in the message */
} pv_stun_attr_t;

/* A parsed message; borrows the bytes given to pv_stun_parse(). */
typedef struct pv_stun_msg_s {
    const uint8_t *data;
    size_t len;             /* 20 + the header's length */
    uint16_t method;
    uint8_t cls;            /* PV_STUN_REQUEST ... PV_STUN_ERROR */
    uint8_t tid[PV_STUN_TID_LEN];
    size_t n_attrs;         /* attributes up to MESSAGE-INTEGRITY(-SHA256)
                             * and FINGERPRINT; those following integrity
                             * (other than the two) are ignored (§14.5) */
    pv_stun_attr_t attrs[PV_STUN_MAX_ATTRS];
    /* comprehension-required (< 0x8000) types this codec does not know,
     * for a 420 answer with UNKNOWN-ATTRIBUTES */
    size_t n_unknown;
    uint16_t unknown[PV_STUN_MAX_UNKNOWN];
    int has_fingerprint;    /* present and verified */
} pv_stun_msg_t;

/* Parses and validates one whole STUN message of exactly len bytes
 * (RFC 8489 §6, §14): header, magic cookie, length, attributes with
 * their padding, FINGERPRINT last and correct when present. Integrity is
 * checked separately (the key depends on USERNAME/REALM). Returns
 * PV_STUN_OK and fills m (borrowing data), or the reason for refusing. */
pv_stun_err_t pv_stun_parse(pv_stun_msg_t *m, const void *data, size_t len);
/* Text for an error of pv_stun_parse(). Static string. */
const char *pv_stun_strerror(pv_stun_err_t e);
/* Quick test that len bytes look like a STUN message header (first two
 * bits zero, magic cookie) without validating the attributes. */
int pv_stun_is_stun(const void *data, size_t len);

/* The first attribute of type in m, or NULL. */
const pv_stun_attr_t *pv_stun_find(const pv_stun_msg_t *m, uint16_t type);
/* A 32-bit attribute (LIFETIME, PRIORITY...): PV_ERROR if absent or not
 * 4 bytes long. */
pv_rc_t pv_stun_get_u32(const pv_stun_msg_t *m, uint16_t type,
                        uint32_t *out);
/* An XOR-*-ADDRESS attribute decoded into *out (sockaddr_in or
 * sockaddr_in6, port in network order). PV_NOTFOUND if absent, PV_ERROR
 * when malformed (family, length). */
pv_rc_t pv_stun_get_xor_addr(const pv_stun_msg_t *m, uint16_t type,
                             struct sockaddr_storage *out);
/* ERROR-CODE: code 300..699 and the reason phrase (not NUL-terminated,
 * borrowed). PV_NOTFOUND / PV_ERROR as above. */
pv_rc_t pv_stun_get_error(const pv_stun_msg_t *m, int *code,
                          const char **reason, size_t *reason_len);
/* CHANNEL-NUMBER: 0x4000..0x4FFF (RFC 8656 §12); PV_ERROR otherwise. */
pv_rc_t pv_stun_get_channel(const pv_stun_msg_t *m, uint16_t *chan);

/* The long-term key MD5(username ":" realm ":" password) (RFC 8489
 * §9.2.2). The strings are used as given (already SASLprep'd / OpaqueString
 * processed by the caller). */
void pv_stun_long_term_key(const char *username, const char *realm,
                           const char *password,
                           uint8_t key[PV_STUN_KEY_LEN]);
/* Verifies MESSAGE-INTEGRITY (HMAC-SHA1) or MESSAGE-INTEGRITY-SHA256 of
 * m with key (RFC 8489 §14.5, §14.6). PV_OK when it matches, PV_NOTFOUND
 * when m has no such attribute, PV_ERROR when it does not match. */
pv_rc_t pv_stun_check_integrity(const pv_stun_msg_t *m, const void *key,
                                size_t key_len);
pv_rc_t pv_stun_check_integrity_sha256(const pv_stun_msg_t *m,
                                       const void *key, size_t key_len);
/* The password of the TURN REST / shared-secret scheme coturn implements
 * (use-auth-secret): base64(HMAC-SHA1(secret, username)) where username
 * is "<expiry unix time>:<user>". Writes a NUL-terminated string of 28
 * characters into out (out_len >= PV_STUN_REST_PASSWORD_LEN). PV_ERROR
 * only if OpenSSL fails or out is too small. */
#define PV_STUN_REST_PASSWORD_LEN 29
pv_rc_t pv_stun_rest_password(const char *secret, const char *username,
                              char *out, size_t out_len);

/* CRC-32 (ISO 3309, as zlib's crc32) of len bytes; FINGERPRINT is this
 * xor 0x5354554e. */
uint32_t pv_stun_crc32(const void *data, size_t len);

/* --- building -------------------------------------------------------
 * A builder writes into the caller's buffer; once a write does not fit,
 * is_overflow is set and every later call does nothing. Add integrity,
 * then fingerprint, last. */
typedef struct pv_stun_builder_s {
    uint8_t *buf;
    size_t cap;
    size_t len;
    int is_overflow;
} pv_stun_builder_t;

/* Starts a message of method and cls with transaction id tid (12 bytes)
 * in buf (cap bytes). */
void pv_stun_build_init(pv_stun_builder_t *b, void *buf, size_t cap,
                        uint16_t method, uint8_t cls, const uint8_t *tid);
/* Adds an attribute with len bytes of value (zero padding added). */
void pv_stun_add(pv_stun_builder_t *b, uint16_t type, const void *value,
                 size_t len);
void pv_stun_add_str(pv_stun_builder_t *b, uint16_t type, const char *s);
void pv_stun_add_u32(pv_stun_builder_t *b, uint16_t type, uint32_t v);
/* XOR-MAPPED/PEER/RELAYED-ADDRESS of an AF_INET or AF_INET6 address; sa
 * of another family sets is_overflow (the message is unusable). */
void pv_stun_add_xor_addr(pv_stun_builder_t *b, uint16_t type,
                          const struct sockaddr *sa);
/* ERROR-CODE (RFC 8489 §14.8): code 300..699 and a reason phrase. */
void pv_stun_add_error(pv_stun_builder_t *b, int code, const char *reason);
/* UNKNOWN-ATTRIBUTES listing n types. */
void pv_stun_add_unknown(pv_stun_builder_t *b, const uint16_t *types,
                         size_t n);
/* CHANNEL-NUMBER with RFFU zero bits. */
void pv_stun_add_channel(pv_stun_builder_t *b, uint16_t chan);
/* REQUESTED-TRANSPORT (17 = UDP). */
void pv_stun_add_transport(pv_stun_builder_t *b, uint8_t proto);
/* MESSAGE-INTEGRITY / -SHA256 over what was built so far with key. */
void pv_stun_add_integrity(pv_stun_builder_t *b, const void *key,
                           size_t key_len);
void pv_stun_add_integrity_sha256(pv_stun_builder_t *b, const void *key,
                                  size_t key_len);
void pv_stun_add_fingerprint(pv_stun_builder_t *b);
/* The finished message's length, or 0 when it overflowed. */
size_t pv_stun_build_len(const pv_stun_builder_t *b);

/* --- ChannelData (RFC 8656 §12.4) ------------------------------------ */

/* True when the first byte starts a ChannelData message (0b01). */
int pv_stun_is_channel_data(const void *data, size_t len);
/* Parses a ChannelData message of len bytes (padding after the data is
 * allowed, as over TCP). PV_ERROR when the channel is outside
 * 0x4000..0x4FFF or the length overruns. *payload borrows data. */
pv_rc_t pv_stun_channel_data_parse(const void *data, size_t len,
                                   uint16_t *chan, const uint8_t **payload,
                                   size_t *payload_len);
/* Writes a ChannelData header and payload into buf (cap bytes), padded to
 * 4 bytes when is_stream (TCP, §12.5). Returns the length or 0 when it
 * does not fit or payload_len > 65535. */
size_t pv_stun_channel_data_build(void *buf, size_t cap, uint16_t chan,
                                  const void *payload, size_t payload_len,
                                  int is_stream);
/* Stream framing (RFC 8656 §12.5, RFC 8489 §6.2.2): the length of the
 * frame at the start of avail bytes: a STUN message (20 + length) or
 * ChannelData (4 + length padded to 4). Returns PV_OK with *frame_len,
 * PV_AGAIN when fewer than 4 bytes are there, PV_ERROR when the bytes
 * are neither (the stream cannot be resynchronised). */
pv_rc_t pv_stun_frame_len(const void *data, size_t avail, size_t *frame_len);

#endif
