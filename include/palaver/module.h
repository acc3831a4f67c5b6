/* include/palaver/module.h: the module API. A module is one PV_MODULE
 * declaration (name, ABI, dependencies, disco features and identities,
 * hooks, directives, per-session data); the core registers all of it per
 * host and removes all of it on unload. Modules include only
 * <palaver/...> headers and talk to each other through events. */
#ifndef PALAVER_MODULE_H
#define PALAVER_MODULE_H

#include <palaver/config.h>
#include <palaver/defs.h>
#include <palaver/event.h>
#include <palaver/jid.h>
#include <palaver/log.h>
#include <palaver/mem.h>
#include <palaver/stanza.h>
#include <palaver/storage.h>
#include <palaver/xml.h>

#define PV_MODULE_ABI "palaver-1.0"

typedef struct pv_identity_s {
    const char *category;
    const char *type;
    const char *name;
} pv_identity_t;

#define PV_IDENTITIES_END { NULL, NULL, NULL }

typedef struct pv_module_def_s {
    const char *abi;                  /* PV_MODULE_ABI */
    const char *name;
    const char *const *depends;       /* modules that must be enabled too */
    const char *const *features;      /* disco features on every host */
    const pv_identity_t *identities;  /* disco identities */
    const pv_hook_t *hooks;
    const pv_directive_t *directives;
    size_t conf_size;                 /* per-host conf struct */
    size_t session_data_size;         /* per-session slot, zeroed at bind */
    int (*init)(pv_module_t *m);      /* once per process */
    void (*fini)(pv_module_t *m);
    int (*host_init)(pv_module_t *m, pv_host_t *h);
    void (*host_fini)(pv_module_t *m, pv_host_t *h);
    /* frees what a module put into its session slot; optional */
    void (*session_fini)(pv_module_t *m, pv_session_t *s, void *data);
    /* A service module on its own domain (CONTRACTS.md §3): enabled on a
     * vhost D it runs instead on the component "<component>.D" (or the
     * name in its "<name>_domain" directive, which it must declare), not
     * on D itself. NULL for ordinary modules. */
    const char *component;
} pv_module_def_t;

/* The exported symbol is pv_module_<name>; the loader looks it up with
 * dlsym, or in the static table with --enable-static-modules. */
#define PV_MODULE(name) const pv_module_def_t pv_module_##name

/* --- modules and hosts --------------------------------------------- */

const char *pv_module_name(const pv_module_t *m);
/* The module's conf struct for host h (filled from the configuration);
 * borrowed, valid for the host's lifetime. */
void *pv_module_conf(pv_module_t *m, pv_host_t *h);
/* Module state per host: owned by the module, free it in host_fini. */
void *pv_module_host_data(pv_module_t *m, pv_host_t *h);
void pv_module_set_host_data(pv_module_t *m, pv_host_t *h, void *data);
/* The module's per-session slot (session_data_size bytes), or NULL when
 * the session is not bound or the module is not enabled on its host. */
void *pv_session_data(pv_session_t *s, pv_module_t *m);

const char *pv_host_name(const pv_host_t *h);
pv_server_t *pv_host_server(const pv_host_t *h);
/* Adds a disco feature for host h owned by m (removed with the module). */
void pv_host_add_feature(pv_host_t *h, pv_module_t *m, const char *feature);
/* Calls cb for every disco identity / feature of h (sorted, unique). */
void pv_host_each_identity(pv_host_t *h,
                           void (*cb)(void *arg, const pv_identity_t *id),
                           void *arg);
void pv_host_each_feature(pv_host_t *h,
                          void (*cb)(void *arg, const char *feature),
                          void *arg);
/* XEP-0157 addresses configured for the host: kind is "abuse", "admin",
 * ... Returns a NULL-terminated list (possibly empty), never NULL. */
const char *const *pv_host_contact(pv_host_t *h, const char *kind);
/* The server's XEP-0115 verification string for h. */
const char *pv_host_caps_ver(pv_host_t *h);
/* The host serving domain (vhost or component) in the current
 * configuration, or NULL. Borrowed: valid until the next reload, so do
 * not keep it across loop turns. */
pv_host_t *pv_host_find(pv_server_t *srv, const char *domain);
/* True when domain is served here (vhost or component). */
int pv_host_is_local(pv_server_t *srv, const char *domain);
/* Calls cb with the domain of every component served under h. */
void pv_host_each_component(pv_host_t *h,
                            void (*cb)(void *arg, const char *domain),
                            void *arg);
/* Routes st on behalf of host h (the server itself is the sender).
 * Borrows st. */
void pv_host_route(pv_host_t *h, pv_stanza_t *st);
/* Sessions of a local user (NULL user: every session of the host). */
void pv_host_each_session(pv_host_t *h, const char *user,
                          void (*cb)(void *arg, pv_session_t *s), void *arg);
/* Opens (or returns) the store "<module>.<name>" for use on host h. */
pv_store_t *pv_store_open(pv_host_t *h, pv_module_t *m, const char *name,
                          pv_store_kind_t kind);

/* --- accounts ------------------------------------------------------ */

/* Completion of an account operation, on the loop thread: rc is PV_OK,
 * PV_AGAIN (the account exists), PV_NOTFOUND (no such account) or
 * PV_ERROR. */
typedef void (*pv_user_done_fn)(void *arg, int rc);

/* True when user (a prepared localpart) has an account on h. */
int pv_user_exists(pv_host_t *h, const char *user);
/* Creates an account. The password is prepared and hashed on a worker
 * thread (never on the loop); fires PV_EV_USER_CREATED once stored. cb
 * may be NULL. */
void pv_user_create(pv_host_t *h, const char *user, const char *password,
                    pv_user_done_fn cb, void *arg);
/* Replaces the credentials of an existing account (PV_NOTFOUND if none). */
void pv_user_set_password(pv_host_t *h, const char *user,
                          const char *password, pv_user_done_fn cb,
                          void *arg);
/* Fires PV_EV_USER_DELETING (the user's rows are still readable), removes
 * every row of the user in every store, fires PV_EV_USER_DELETED and
 * closes the user's sessions with <not-authorized/>. */
void pv_user_delete(pv_host_t *h, const char *user, pv_user_done_fn cb,
                    void *arg);

/* Runs work(arg) on a worker thread, then done(arg, cancelled) on the
 * loop. For blocking or slow work only (hashing, file I/O). */
void pv_host_work(pv_host_t *h, void (*work)(void *arg),
                  void (*done)(void *arg, int cancelled), void *arg);

/* --- sessions ------------------------------------------------------ */

const pv_jid_t *pv_session_jid(const pv_session_t *s);
pv_host_t *pv_session_host(const pv_session_t *s);
int pv_session_priority(const pv_session_t *s);
int pv_session_is_available(const pv_session_t *s);
/* Loop time (ms) of the last byte received from the session's client. */
uint64_t pv_session_last_active(const pv_session_t *s);
/* Queues st for the session's client; borrows st (takes its own ref). */
void pv_session_send(pv_session_t *s, pv_stanza_t *st);
/* The bound local session of a full JID, or NULL. Borrowed: do not keep
 * it across loop turns. */
pv_session_t *pv_session_lookup(pv_server_t *srv, const pv_jid_t *full);
/* Fan-out without copies (DESIGN.md §3): sends one shared stanza to a
 * local session, written with to='the session's full JID'. st must have
 * no 'to' attribute and must not change once sent; it is delivered to
 * the session directly (the destination's stanza hooks do not run), so
 * use it for what needs none of them: groupchat messages to occupants.
 * Borrows st. */
void pv_session_fanout(pv_session_t *s, pv_stanza_t *st);
/* Ends the session with a stream error (NULL: a clean </stream>). */
void pv_session_close(pv_session_t *s, const char *condition);

/* True while the session has a client connection (not hibernated). */
int pv_session_is_connected(const pv_session_t *s);
/* Bytes that may still be queued for the session's client before its
 * output queue limit (c2s_send_queue_max) ends the stream; SIZE_MAX when
 * there is no such limit (framed transports, hibernated sessions); 0 for
 * a closing stream. Modules may lower it (PV_EV_SESSION_ROOM: XEP-0198
 * while many stanzas wait for acknowledgement). For modules that send a
 * backlog (offline messages): send while there is room, continue later. */
size_t pv_session_send_room(const pv_session_t *s);
/* Stanzas the session's client has sent on its streams since binding
 * (XEP-0198 counts from here). */
uint32_t pv_session_stanzas_in(const pv_session_t *s);
/* Writes st to the session's client without firing PV_EV_SESSION_SEND
 * (for the module that held or queued it). Borrows st. No-op while
 * hibernated. */
void pv_session_write(pv_session_t *s, pv_stanza_t *st);
/* True when the router delivers message st (addressed to s's account,
 * bare or full JID, no module taking it) to session s itself: the bound
 * full JID alone, else RFC 6121 §8.5.2.1.1 (highest non-negative
 * priority; headline and XEP-0353 propose/retract to every non-negative
 * resource). For modules that must not duplicate that delivery (carbons). */
int pv_message_reaches(const pv_session_t *s, const pv_stanza_t *st);
/* Destroys a session (hibernated or not) at once: PV_EV_SESSION_CLOSED,
 * session_fini of every module, its stream closed cleanly. */
void pv_session_end(pv_session_t *s);

/* --- streams (XEP-0198, XEP-0352, XEP-0388) ------------------------- */
/* The session's client stream, NULL while hibernated. */
pv_stream_t *pv_session_stream(const pv_session_t *s);
/* The stream's bound session or NULL. */
pv_session_t *pv_stream_session(const pv_stream_t *c);
/* Authenticated localpart or NULL; host (NULL before the header). */
const char *pv_stream_user(const pv_stream_t *c);
pv_host_t *pv_stream_host(const pv_stream_t *c);
/* Writes a serialized nonza (<r/>, <a h='1'/>) on the stream. */
void pv_stream_write(pv_stream_t *c, const char *xml, size_t len);
/* Ends the stream with a stream error (NULL: clean </stream:stream>). */
void pv_stream_close(pv_stream_t *c, const char *condition);
/* Moves session s onto stream c (XEP-0198 resumption): c must be
 * authenticated as s's user on s's host and not bound. An old stream
 * still attached to s is closed (nothing more is written to it). From
 * then on c is bound to s. PV_ERROR when the rules are not met. */
pv_rc_t pv_stream_resume(pv_stream_t *c, pv_session_t *s);
/* Runs cb(arg, PV_OK) once every store write submitted so far on the
 * server is committed: acknowledge (XEP-0198 <a/>) from there. */
void pv_host_after_commit(pv_host_t *h, void (*cb)(void *arg, int rc),
                          void *arg);

/* --- routing and replies ------------------------------------------- */

/* Routes st as if sent by from (NULL: the server itself). Borrows st.
 * to/from attributes must be set (from is stamped for c2s input). */
void pv_route(pv_session_t *from, pv_stanza_t *st);
/* Routes st and drops the caller's reference. */
void pv_send(pv_session_t *origin, pv_stanza_t *st);
/* New IQ result for req (to/from swapped, same id), refs 1; add a payload
 * with pv_node_new(st->arena, ..., st->root) then pv_send(). */
pv_stanza_t *pv_iq_result(const pv_stanza_t *req);
/* Sends an empty IQ result (payload NULL) or one with a copy of payload. */
void pv_send_result(pv_session_t *origin, const pv_stanza_t *req,
                    const pv_node_t *payload);
/* Error types of RFC 6120 §8.3.2. */
typedef enum {
    PV_ERR_AUTH,
    PV_ERR_CANCEL,
    PV_ERR_CONTINUE,
    PV_ERR_MODIFY,
    PV_ERR_WAIT
} pv_err_type_t;
/* New error reply for req with condition (RFC 6120 §8.3.3) and optional
 * text; refs 1. NULL when req itself is an error (never answer errors). */
pv_stanza_t *pv_stanza_error(const pv_stanza_t *req, pv_err_type_t type,
                             const char *condition, const char *text);
/* Builds and sends the error reply (nothing when req is an error). */
void pv_send_error(pv_session_t *origin, const pv_stanza_t *req,
                   pv_err_type_t type, const char *condition,
                   const char *text);
/* pv_send_result()/pv_send_error() for ev->stanza, answered the way
 * pv_event_reply() does: to the local session, the unauthenticated
 * stream, or (a remote sender, ev->origin NULL) routed from ev->host over
 * s2s. Use these in handlers instead of pv_send*(ev->origin, ...). */
void pv_event_result(pv_event_t *ev, const pv_node_t *payload);
void pv_event_error(pv_event_t *ev, pv_err_type_t type,
                    const char *condition, const char *text);

/* --- raw listeners (service modules: TURN, proxy65) ----------------- */

/* A socket the core bound from listen = ( ... ) for a kind that a module
 * serves itself. */
typedef struct pv_raw_listener_s {
    const char *kind;       /* "turn_udp", "turn_tcp", "turns", "proxy65" */
    const char *address;    /* as configured, NULL = any */
    int port;               /* the bound port (also in <storage>/ports) */
    int fd;                 /* UDP: bound; TCP: listening. Owned by the
                             * core: dup() it and open the copy with
                             * uv_udp_open()/uv_tcp_open() on
                             * pv_server_uv_loop() */
} pv_raw_listener_t;

/* Calls cb for every listener of kind bound at start-up (none before
 * the server listens, e.g. in palaverctl). Listeners are process-wide:
 * a module enabled on several hosts serves each socket once. */
void pv_server_each_raw_listener(pv_server_t *srv, const char *kind,
                                 void (*cb)(void *arg,
                                            const pv_raw_listener_t *l),
                                 void *arg);
/* The libuv loop every module runs on (one thread; DESIGN.md §1). */
struct uv_loop_s *pv_server_uv_loop(pv_server_t *srv);

/* --- timers --------------------------------------------------------- */

typedef struct pv_mtimer_s pv_mtimer_t;
/* A timer owned by module m on host h: cancelled automatically when the
 * module is unloaded from the host. repeat_ms 0 = one-shot (then freed
 * after it fires). */
pv_mtimer_t *pv_module_timer(pv_module_t *m, pv_host_t *h, uint64_t ms,
                             uint64_t repeat_ms, void (*cb)(void *arg),
                             void *arg);
void pv_module_timer_cancel(pv_mtimer_t *t);
/* Milliseconds of the loop clock. */
uint64_t pv_now_ms(pv_server_t *srv);

#endif
