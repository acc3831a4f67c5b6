/* include/palaver/stanza.h: a stanza is one top-level element of a stream
 * in its own arena, refcounted so that fan-out never copies it, with a
 * lazily built serialisation shared by every recipient. The tree is
 * xml.h's; reply and error helpers follow the lifecycle part below. */
#ifndef PALAVER_STANZA_H
#define PALAVER_STANZA_H

#include <stddef.h>

#include <palaver/defs.h>
#include <palaver/mem.h>
#include <palaver/xml.h>

/* --- structure and lifecycle (src/xml.c) ---------------------------- */

typedef enum {
    PV_STANZA_MESSAGE,
    PV_STANZA_PRESENCE,
    PV_STANZA_IQ,
    PV_STANZA_OTHER       /* anything else: <starttls/>, <db:result/> */
} pv_stanza_kind_t;

struct pv_jid_s;

/* The struct itself lives in arena, so the last unref frees everything in
 * one go. A stanza is immutable once routed (refs > 1): change a copy. */
typedef struct pv_stanza_s {
    unsigned refs;
    pv_arena_t *arena;          /* owns root and everything below */
    pv_node_t *root;
    pv_stanza_kind_t kind;      /* MESSAGE/PRESENCE/IQ only in jabber:client
                                 * or jabber:server */
    const char *type;           /* type attribute or NULL */
    const char *id;
    struct pv_jid_s *to, *from; /* filled by the core router (NULL until
                                 * then); must live in arena */
    char *wire;                 /* cached serialisation, malloc'd */
    size_t wire_len;
    int readdress;              /* written to each session with to= that
                                 * session's full JID (pv_session_fanout):
                                 * the tree itself has no to */
} pv_stanza_t;

/* New stanza, refs 1, for root (which must live in arena). Takes ownership
 * of arena: the last pv_stanza_unref() frees it. Sets kind, type and id
 * from root. */
pv_stanza_t *pv_stanza_new(pv_arena_t *arena, pv_node_t *root);
/* New arena and empty root element name in jabber:client, refs 1. */
pv_stanza_t *pv_stanza_build(const char *name);
/* Takes a reference; returns st. */
pv_stanza_t *pv_stanza_ref(pv_stanza_t *st);
/* Drops a reference; the last one frees the wire cache and the arena
 * (and with it the stanza). NULL is ignored. */
void pv_stanza_unref(pv_stanza_t *st);
/* Deep copy in a new arena, refs 1, no cached wire form. to and from are
 * NULL in the copy (they point into the original's arena): the router
 * fills them again. */
pv_stanza_t *pv_stanza_copy(const pv_stanza_t *st);
/* The serialisation of root with stream_ns jabber:client (identical on an
 * s2s stream, see pv_node_serialize), built on first use and cached until
 * the stanza is freed or touched. Borrowed: valid until the last unref or
 * pv_stanza_touch(). len may be NULL. */
const char *pv_stanza_wire(pv_stanza_t *st, size_t *len);
/* Call after modifying the tree: drops the cached wire form and re-reads
 * kind, type and id from root. Only allowed while refs == 1. */
void pv_stanza_touch(pv_stanza_t *st);

/* --- end of the structure and lifecycle part (xml.c); reply and error
 * helpers (src/stanza.c) follow --------------------------------------- */

#endif
