/* include/palaver/event.h: what a module can hook. Stanza hooks are keyed by
 * (kind/type, addressing, payload namespace, payload name); lifecycle
 * events are enum constants. Handlers run by ascending priority and return
 * PV_HANDLED (stop) or PV_PASS. */
#ifndef PALAVER_EVENT_H
#define PALAVER_EVENT_H

#include <palaver/defs.h>
#include <palaver/jid.h>
#include <palaver/stanza.h>

typedef struct pv_server_s pv_server_t;
typedef struct pv_host_s pv_host_t;
typedef struct pv_session_s pv_session_t;
typedef struct pv_module_s pv_module_t;

typedef enum {
    PV_EV_NONE = 0,
    /* stanza events: fired on the host the stanza is addressed to */
    PV_MESSAGE,
    PV_PRESENCE,
    PV_IQ_GET,
    PV_IQ_SET,
    PV_IQ_RESULT,
    PV_IQ_ERROR,
    /* lifecycle events */
    PV_EV_STREAM_FEATURES,  /* data: the <stream:features/> node being
                               built (allocate in stanza->arena); user:
                               NULL before authentication */
    PV_EV_SESSION_BOUND,    /* session: a c2s resource was bound */
    PV_EV_SESSION_CLOSED,   /* session: about to be destroyed */
    PV_EV_PRESENCE_CHANGED, /* session: its broadcast presence changed */
    PV_EV_USER_CREATED,     /* user: a new account */
    PV_EV_USER_DELETING,    /* user: about to be removed; rows readable */
    PV_EV_USER_DELETED,     /* user: account removed (store rows gone) */
    PV_EV_DISCO_INFO,       /* data: the <query/> of a server disco#info */
    PV_EV_HOST_ACTIVATED,   /* host: its modules are all initialised */
    PV_EV_ROSTER_GET,       /* user: roster owner; data: pv_roster_get_t
                               (roster.h); answered by mod_roster */
    PV_EV_ROSTER_SET_STATE, /* user: roster owner; data:
                               pv_roster_state_t (roster.h); mod_roster
                               stores the item's state and pushes it */
    PV_EV_ROSTER_CHANGED,   /* user: roster owner; data:
                               pv_roster_change_t (roster.h); fired by
                               mod_roster after an item changed */
    PV_EV_COUNT_
} pv_event_kind_t;

/* Addressing of a stanza hook (RFC 6121 §8.5 classes). */
typedef enum {
    PV_TO_ANY = 0,
    PV_TO_HOST, /* "domain" or "domain/resource" */
    PV_TO_BARE, /* "user@domain" */
    PV_TO_FULL  /* "user@domain/resource" */
} pv_addr_t;

/* Hook flags. */
#define PV_HOOK_PRE 0x1 /* run before routing, only for stanzas a local
                           client sent (Prosody's pre-* events) */
#define PV_HOOK_PREAUTH 0x2 /* IQs of a client stream that has not
                               authenticated yet (in-band registration):
                               origin is NULL, answer with
                               pv_event_reply() */

typedef struct pv_event_s {
    pv_event_kind_t kind;
    pv_addr_t addr;
    pv_server_t *server;
    pv_host_t *host;       /* host the event fires on */
    pv_module_t *module;   /* module whose handler runs now */
    pv_session_t *origin;  /* sender's session (c2s) or NULL */
    pv_stanza_t *stanza;   /* borrowed for the duration of the call */
    pv_node_t *payload;    /* IQ: the first child element */
    const pv_jid_t *to;    /* parsed to (never NULL for stanza events) */
    const pv_jid_t *from;  /* parsed from */
    pv_session_t *session; /* lifecycle: the session concerned */
    const char *user;      /* lifecycle: local part concerned */
    void *data;            /* event-specific, see pv_event_kind_t */
    void *stream;          /* core-private: the client stream of a
                              PV_HOOK_PREAUTH event */
} pv_event_t;

typedef pv_rc_t (*pv_handler_t)(pv_event_t *ev);

typedef struct pv_hook_s {
    pv_event_kind_t kind;
    pv_addr_t to;
    const char *xmlns;     /* payload namespace filter or NULL */
    const char *name;      /* payload element filter or NULL */
    pv_handler_t handler;
    int priority;          /* ascending: lower runs first */
    unsigned flags;        /* PV_HOOK_PRE */
} pv_hook_t;

#define PV_HOOKS_END { PV_EV_NONE, PV_TO_ANY, NULL, NULL, NULL, 0, 0 }

/* Sends st (a reply to ev->stanza) back to where ev->stanza came from,
 * also on a stream that has not authenticated; drops the caller's
 * reference. */
void pv_event_reply(pv_event_t *ev, pv_stanza_t *st);
/* A reply held past the handler: for a PV_HOOK_PREAUTH request whose
 * answer waits on asynchronous work (XEP-0077 answers a sign-up once the
 * account is committed, so that the client can authenticate at once). */
typedef struct pv_reply_s pv_reply_t;
/* Keeps the unauthenticated stream ev->stanza came from reachable after
 * the handler returns (the stream itself may close meanwhile). Returns a
 * new handle, or NULL when ev is not a PV_HOOK_PREAUTH event (answer
 * authenticated requests by address with pv_host_route()). Hand it to
 * pv_reply_send() exactly once. */
pv_reply_t *pv_event_defer(pv_event_t *ev);
/* Sends st on the stream if it is still open, else drops it; takes the
 * caller's reference on st (NULL: only releases r). Frees r; r NULL is a
 * no-op apart from dropping st. Loop thread only. */
void pv_reply_send(pv_reply_t *r, pv_stanza_t *st);
/* IP address of the client that sent ev->stanza, or NULL when unknown. */
const char *pv_event_peer_ip(const pv_event_t *ev);

/* Fires a lifecycle event on host; returns PV_HANDLED if a handler
 * claimed it. ev->kind and ev->host must be set; the rest as the kind
 * documents. May be called from handlers. */
pv_rc_t pv_event_fire(pv_event_t *ev);

#endif
