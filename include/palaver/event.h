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
/* A client stream (one connection); a bound session has one unless it is
 * hibernated (XEP-0198). See the streams part of module.h. */
typedef struct pv_c2s_s pv_stream_t;

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
    PV_EV_USER_DELETING,    /* user: about to be removed; rows readable.
                               Fired on the vhost, then on each of its
                               components with data = the vhost's name
                               (const char *) */
    PV_EV_USER_DELETED,     /* user: account removed (store rows gone);
                               on components too, as DELETING */
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
    PV_EV_STREAM_ELEMENT,   /* stream, session (NULL before bind), user:
                               an authenticated stream received data: a
                               top-level pv_node_t in a namespace the core
                               does not own (XEP-0198 <enable/> <r/> <a/>
                               <resume/>, XEP-0352 <active/>). PV_HANDLED:
                               consumed; unclaimed ones end the stream
                               with <unsupported-stanza-type/> */
    PV_EV_SESSION_SEND,     /* session, stanza: about to be written to the
                               session's client. PV_HANDLED: a module took
                               its own reference and holds it (CSI) or
                               queues it (hibernated session). Not fired
                               by pv_session_write() */
    PV_EV_SESSION_DISCONNECTED, /* session: its connection was lost
                               without a clean end (no </stream:stream>
                               from the client, no stream error other
                               than connection-timeout). PV_HANDLED:
                               the session stays bound without a stream
                               (hibernated) until the module calls
                               pv_session_end() or pv_stream_resume();
                               PV_PASS: it is destroyed */
    PV_EV_SASL2_FEATURES,   /* data: pv_inline_t, node the <inline/> of
                               the XEP-0388 <authentication/> feature */
    PV_EV_BIND2_FEATURES,   /* data: pv_inline_t, node the <inline/> of
                               the XEP-0386 <bind/> feature (modules add
                               <feature var='...'/>) */
    PV_EV_SASL2_INLINE,     /* stream, user: SASL2 succeeded; data:
                               pv_inline_t, request the <authenticate/>,
                               node the <success/> being built. A module
                               that resumes a session there (XEP-0198
                               inline <resume/>) returns PV_HANDLED and
                               no resource is bound */
    PV_EV_ACCOUNT_DISCO_INFO, /* user: the account; data: the <query/>
                               of the disco#info answer its bare JID
                               gives (XEP-0030 §3.1 for accounts): add
                               features such as urn:xmpp:mam:2 */
    PV_EV_BIND2,            /* stream, session, user: a resource was
                               bound inline (XEP-0386); data: pv_inline_t,
                               request the client's <bind/>, node the
                               <bound/> reply: modules act on their
                               elements in request and add their answers
                               to node */
    PV_EV_LISTENING,        /* host: the server has bound its listeners
                               (fired once at start-up on every host,
                               after host activation); raw listeners
                               (pv_server_each_raw_listener) exist from
                               here. After a reload they already exist
                               at host_init */
    PV_EV_SESSION_ROOM,     /* session: pv_session_send_room() asks how
                               much more may be queued for the session;
                               data: size_t *, the answer so far, which a
                               module may lower (XEP-0198: unacknowledged
                               stanzas), never raise */
    PV_EV_TURN_SECRET,      /* host: asks the embedded TURN server
                               (mod_turn) enabled on host for the shared
                               secret of its credentials; data: a
                               const char ** the handler points at the
                               secret (borrowed, valid until the next
                               reload) and returns PV_HANDLED. Fired by
                               mod_extdisco */
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
    pv_stream_t *stream;   /* the client stream of a PV_HOOK_PREAUTH
                              event and of the stream lifecycle events */
} pv_event_t;

/* Data of the SASL2/Bind2 events: a request element (NULL for the
 * feature events) and the node to add answers to, both in arena. */
typedef struct pv_inline_s {
    const pv_node_t *request;
    pv_node_t *node;
    pv_arena_t *arena;
} pv_inline_t;

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
