/* include/palaver/jid.h: XMPP addresses (RFC 7622). A pv_jid_t is a value
 * holding the prepared full, bare and part strings in one allocation; the
 * preparation is PRECIS (RFC 8264/8265) for localparts and resourceparts
 * and IDNA2008 for domainparts. Also exports the OpaqueString profile that
 * SASL uses for passwords. Routing, sessions and escaping (XEP-0106) live
 * elsewhere. */
#ifndef PALAVER_JID_H
#define PALAVER_JID_H

#include <stddef.h>

#include <palaver/defs.h>
#include <palaver/mem.h>

/* Longest prepared localpart, domainpart or resourcepart (RFC 7622 §3.1). */
#define PV_JID_PART_MAX 1023

/* All five strings are NUL-terminated, prepared (so comparing them byte
 * for byte is comparing the addresses) and point into one allocation owned
 * by the arena passed at creation, or by the jid itself when that arena
 * was NULL (release with pv_jid_clear()). bare == full when there is no
 * resource; domain == bare when there is no node. */
typedef struct pv_jid_s {
    const char *full;     /* prepared "node@domain/resource" */
    const char *bare;     /* "node@domain" or "domain" */
    const char *node;     /* NULL when absent */
    const char *domain;   /* U-labels, lowercase, no trailing dot */
    const char *resource; /* NULL when absent */
} pv_jid_t;

/* Parses and prepares len bytes of in (not necessarily NUL-terminated; an
 * embedded NUL makes it invalid) as "[node@]domain[/resource]" following
 * RFC 7622 §3.1: the resource starts after the first '/', the node ends
 * at the first '@' before it. Returns PV_OK and fills *out, or PV_ERROR
 * (invalid UTF-8, a disallowed code point, an empty or over-long part) and
 * zeroes *out. arena may be NULL, in which case *out owns one malloc'd
 * block. Pure: no logging, safe anywhere; aborts only on OOM. */
int pv_jid_parse(const char *in, size_t len, pv_jid_t *out, pv_arena_t *arena);

/* Builds a jid from separate NUL-terminated parts, preparing each as
 * pv_jid_parse() does; node and resource may be NULL (absent), but an
 * empty string is invalid. Same results and ownership as pv_jid_parse().
 * Unlike parsing, '/' and '@' are not separators here: a resource
 * "a/b" is fine, while "@" in a node or domain is rejected by their
 * profiles. */
int pv_jid_make(const char *node, const char *domain, const char *resource,
                pv_jid_t *out, pv_arena_t *arena);

/* Frees the block of a jid made with arena == NULL and zeroes *j. On a
 * jid made in an arena it only zeroes *j (the arena owns the memory). A
 * zeroed jid is a no-op. */
void pv_jid_clear(pv_jid_t *j);

/* Deep copy of an already prepared jid (no re-preparation) into arena, or
 * a malloc'd block when arena is NULL. Returns PV_OK, or PV_ERROR (and a
 * zeroed *dst) when src is zeroed. */
int pv_jid_copy(const pv_jid_t *src, pv_jid_t *dst, pv_arena_t *arena);

/* 1 when the two prepared full (resp. bare) addresses are identical, else
 * 0. Both jids must come from pv_jid_parse/make/copy. */
int pv_jid_equal(const pv_jid_t *a, const pv_jid_t *b);
int pv_jid_bare_equal(const pv_jid_t *a, const pv_jid_t *b);

/* Single-part preparation of len bytes: returns a malloc'd NUL-terminated
 * prepared string (caller frees) or NULL when the input is not a valid
 * part. node: PRECIS UsernameCaseMapped (RFC 8265 §3.3) minus the
 * characters " & ' / : < > @ (RFC 7622 §3.3.1). domain: RFC 7622 §3.2 (one
 * trailing dot stripped, IP literals canonicalised, IDNA2008 to lowercase
 * U-labels). resource: PRECIS OpaqueString (RFC 8265 §4.2). Each result is
 * 1..PV_JID_PART_MAX octets. */
char *pv_jid_prep_node(const char *in, size_t len);
char *pv_jid_prep_domain(const char *in, size_t len);
char *pv_jid_prep_resource(const char *in, size_t len);

/* OpaqueString (RFC 8265 §4.2) enforcement for passwords (SASL PLAIN and
 * SCRAM, RFC 7677): non-ASCII spaces become U+0020, then NFC, then the
 * FreeformClass check. Returns a malloc'd string (caller frees; wipe it
 * when it held a secret) or NULL when invalid or empty. No length limit
 * beyond the caller's. */
char *pv_precis_opaque(const char *in, size_t len);

#endif
