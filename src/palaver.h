/* src/palaver.h: the core's internal objects (server, host, module,
 * session, c2s stream) and the prototypes shared between core files,
 * grouped by the file that defines them. Modules never include this. */
#ifndef PV_PALAVER_H
#define PV_PALAVER_H

#include <palaver/module.h>

#include "conf_core.h"
#include "conn.h"
#include "loop.h"
#include "map.h"
#include "tls.h"

typedef struct pv_c2s_s pv_c2s_t;
typedef struct pv_user_s pv_user_t;

/* A configuration generation pinned by the hosts built from it. */
typedef struct pv_gen_s {
    pv_config_t *cfg;
    unsigned refs;
} pv_gen_t;

/* A loaded module (process-wide); per-host state is in pv_modinst_t. */
struct pv_module_s {
    const pv_module_def_t *def;
    pv_conf_module_t decl;  /* what the config engine sees */
    void *dl;              /* dlopen handle, NULL when linked in */
    int initialised;
    pv_module_t *next;
};

typedef struct pv_modinst_s {
    pv_module_t *module;
    void *conf;            /* owned by the config generation */
    void *data;            /* module's own, pv_module_set_host_data() */
    size_t slot_offset;    /* into a session's module data block */
    int active;            /* host_init succeeded */
} pv_modinst_t;

typedef struct pv_hentry_s {
    const pv_hook_t *hook;
    pv_module_t *module;
} pv_hentry_t;

typedef struct pv_hlist_s {
    pv_hentry_t *v;
    size_t n;
} pv_hlist_t;

struct pv_mtimer_s {
    pv_timer_t *timer;
    pv_host_t *host;
    pv_module_t *module;
    void (*cb)(void *arg);
    void *arg;
    int one_shot;
    struct pv_mtimer_s *prev, *next;
};

/* A served domain (vhost or component) of one configuration generation.
 * Refcounted: sessions pin the generation their host came from. */
struct pv_host_s {
    unsigned refs;
    pv_server_t *server;
    pv_gen_t *gen;                /* reference */
    const pv_host_conf_t *conf;
    const char *name;             /* conf->name */
    pv_tls_ctx_t *tls;            /* NULL: no certificate for this host */
    pv_modinst_t *mods;
    size_t n_mods;
    size_t session_data_size;
    pv_hlist_t hooks[PV_EV_COUNT_][4];
    pv_hlist_t pre_hooks[PV_EV_COUNT_];
    pv_hlist_t preauth_hooks[PV_EV_COUNT_];
    char **features;              /* sorted, unique, malloc'd */
    size_t n_features;
    struct { const pv_identity_t *id; } *identities;
    size_t n_identities;
    char *caps_ver;
    pv_map_t stores;              /* "module.name" -> pv_store_t */
    struct pv_mtimer_s *timers;
    int activated;
};

/* The registry entry of one local account with bound resources. */
struct pv_user_s {
    char *bare;                   /* map key */
    pv_session_t *sessions;       /* linked by next_res */
};

typedef enum { PV_SESSION_C2S } pv_session_kind_t;

struct pv_session_s {
    pv_session_kind_t kind;
    pv_server_t *server;
    pv_host_t *host;              /* reference */
    pv_jid_t jid;                 /* malloc'd, full JID */
    pv_user_t *user;
    pv_session_t *next_res;
    pv_c2s_t *c2s;                /* transport, NULL when detached */
    unsigned long id;
    uint32_t stanzas_in;          /* from the client, for XEP-0198 */
    int priority;
    unsigned available : 1;
    unsigned closing : 1;
    unsigned char *mod_data;      /* host->session_data_size bytes */
};

typedef struct pv_counter_s {
    char *key;                    /* IP address */
    unsigned n;
    uint64_t window_start;
} pv_counter_t;

struct pv_server_s {
    pv_loop_t *loop;
    pv_gen_t *gen;                /* current generation */
    pv_gen_t *boot_gen;           /* the one the listeners, storage and
                                   * user come from (restart-only) */
    char *config_path;
    pv_module_t *modules;         /* every module loaded so far */
    pv_map_t hosts;               /* name -> pv_host_t (current gen) */
    pv_host_t **host_list;
    size_t n_hosts;
    pv_map_t users;               /* bare JID -> pv_user_t */
    pv_storage_t *storage;
    pv_async_t *storage_wake;
    pv_listener_t **listeners;
    size_t n_listeners;
    pv_listener_t *control;
    pv_c2s_t *c2s_list;           /* every client stream */
    size_t n_conns;
    pv_map_t conns_per_ip;        /* ip -> pv_counter_t */
    pv_map_t auth_failures;       /* ip -> pv_counter_t */
    pv_map_t deleting;            /* "user@host" of accounts being deleted */
    unsigned long next_id;
    uint8_t secret[32];           /* per-process: fake SCRAM salts */
    int shutting_down;
    int shutdown_polls;           /* 50 ms rounds waited for streams */
    int in_process;               /* palaverctl without a daemon */
};

/* server.c */
#define PV_GLOBAL(srv) (&(srv)->gen->cfg->global)
void pv_gen_unref(pv_gen_t *g);
int pv_server_conn_opened(pv_server_t *srv, const char *ip,
                          const char **reject);
pv_server_t *pv_server_new(const char *config_path, int in_process);
/* Loads the configuration; prints every error to stderr as FILE:LINE.
 * Returns the generation or NULL. */
pv_config_t *pv_server_load_config(pv_server_t *srv, const char *path,
                                   int to_stderr);
int pv_server_apply_config(pv_server_t *srv, pv_config_t *cfg);
/* Opens the store, applies cfg (taking ownership, also on failure) and,
 * unless in_process, binds listeners, drops privileges and notifies
 * readiness. */
int pv_server_start(pv_server_t *srv, pv_config_t *cfg);
int pv_server_open_storage(pv_server_t *srv, const char *path);
int pv_server_listen(pv_server_t *srv);
int pv_server_run(pv_server_t *srv);
void pv_server_free(pv_server_t *srv);
pv_host_t *pv_server_host(pv_server_t *srv, const char *name);
/* Per-IP counters with a time window (auth failures). */
int pv_server_auth_blocked(pv_server_t *srv, const char *ip);
void pv_server_auth_failed(pv_server_t *srv, const char *ip);
void pv_server_conn_closed(pv_server_t *srv, const char *ip);
void pv_server_reload(pv_server_t *srv);
void pv_server_shutdown(pv_server_t *srv);
pv_tls_ctx_t *pv_server_sni(void *arg, const char *servername);

/* module.c */
const pv_module_def_t *pv_module_find_static(const char *name);
/* Finds or loads module name (module_path NULL: only already loaded or
 * linked-in modules). */
pv_module_t *pv_module_load(pv_server_t *srv, const char *name,
                            const char *module_path, char *err,
                            size_t errlen);
void pv_module_unload_all(pv_server_t *srv);
pv_modinst_t *pv_host_modinst(pv_host_t *h, const pv_module_t *m);

/* host.c */
const char *const *pv_core_contact(const pv_core_conf_t *cc,
                                   const char *kind);
pv_host_t *pv_host_new(pv_server_t *srv, pv_gen_t *gen,
                       const pv_host_conf_t *conf);
int pv_host_activate(pv_host_t *h);
pv_host_t *pv_host_ref(pv_host_t *h);
void pv_host_unref(pv_host_t *h);

/* event.c */
void pv_event_build(pv_host_t *h);
void pv_event_clear(pv_host_t *h);
/* Dispatches a stanza event; returns PV_HANDLED or PV_PASS. stage 0:
 * main, 1: pre-routing (PV_HOOK_PRE), 2: unauthenticated (PV_HOOK_PREAUTH). */
pv_rc_t pv_event_stanza(pv_event_t *ev, int stage);

/* session.c */
/* Binds resource (NULL: generated) for user on c2s; a session holding
 * the same full JID is closed with <conflict/>. Returns NULL and sets
 * *cond on failure. */
pv_session_t *pv_session_bind(pv_c2s_t *c2s, pv_host_t *h, const char *user,
                              const char *resource, const char **cond);
void pv_session_destroy(pv_session_t *s);
pv_user_t *pv_user_find(pv_server_t *srv, const char *bare);
pv_session_t *pv_session_find(pv_server_t *srv, const pv_jid_t *full);
void pv_session_set_presence(pv_session_t *s, int available, int priority);
/* Destroys every session without a stream (shutdown: hibernated
 * sessions hand their queues over before the store closes). */
void pv_session_end_detached(pv_server_t *srv);

/* router.c */
void pv_route_local(pv_host_t *h, pv_session_t *from, pv_stanza_t *st);

/* stanza.c */
/* Parses st's to/from into its arena (to defaults to def_to when absent).
 * PV_ERROR when either is malformed. */
int pv_stanza_parse_addrs(pv_stanza_t *st, const pv_jid_t *def_to);

/* c2s.c */
void pv_c2s_accept(void *arg, pv_conn_t *conn);
void pv_c2s_accept_tls(void *arg, pv_conn_t *conn);
void pv_c2s_send(pv_c2s_t *c, pv_stanza_t *st);
void pv_c2s_close(pv_c2s_t *c, const char *condition);
void pv_c2s_detach(pv_c2s_t *c);   /* the session is going away */
void pv_c2s_shutdown_all(pv_server_t *srv);
/* Releases the XML parser of streams idle for idle_ms (DESIGN.md §3). */
void pv_c2s_sweep(pv_server_t *srv, uint64_t idle_ms);
uint64_t pv_c2s_last_active(const pv_c2s_t *c);
const char *pv_c2s_peer_ip(const pv_c2s_t *c);
/* Binds resource (NULL: generated) on an authenticated stream; NULL and
 * *cond on failure. */
pv_session_t *pv_c2s_bind(pv_c2s_t *c, const char *resource,
                          const char **cond);
/* Marks the stream authenticated as user without a stream restart
 * (XEP-0388). */
void pv_c2s_set_user(pv_c2s_t *c, const char *user);
/* While on, everything written to the stream is held back; off writes
 * it out. SASL2 holds output so that <success/> goes first. */
void pv_c2s_hold_output(pv_c2s_t *c, int on);
/* Writes past the hold. */
void pv_c2s_write_now(pv_c2s_t *c, const char *xml, size_t len);
pv_host_t *pv_c2s_host(const pv_c2s_t *c);
pv_conn_t *pv_c2s_conn(const pv_c2s_t *c);
int pv_c2s_is_tls(const pv_c2s_t *c);
/* References that keep a pv_c2s_t (not its connection) allocated past
 * its close, for deferred replies (pv_event_defer). */
pv_c2s_t *pv_c2s_ref(pv_c2s_t *c);
void pv_c2s_unref(pv_c2s_t *c);

/* sasl.c */
typedef struct pv_sasl_s pv_sasl_t;
/* Appends <mechanisms/> (and the XEP-0440 channel-binding list) for
 * conn to features. */
void pv_sasl_features(pv_host_t *h, pv_conn_t *conn, pv_node_t *features,
                      pv_arena_t *a);
/* Handles a SASL nonza (<auth/>, <response/>, <abort/>). Calls
 * done(c2s, user) on success (user malloc'd) or sends the failure. */
typedef void (*pv_sasl_done_fn)(void *arg, const char *user);
pv_sasl_t *pv_sasl_new(pv_host_t *h, pv_conn_t *conn,
                       void (*send)(void *arg, const char *xml, size_t len),
                       pv_sasl_done_fn done, void *arg);
void pv_sasl_input(pv_sasl_t *s, pv_node_t *nonza);
void pv_sasl_free(pv_sasl_t *s);

/* sasl2.c: XEP-0388 SASL2 with XEP-0386 Bind2 and XEP-0484 FAST on a
 * client stream. */
typedef struct pv_sasl2_s pv_sasl2_t;
/* Appends <authentication xmlns='urn:xmpp:sasl:2'/> (with its inline
 * Bind2 and FAST features) to features. */
void pv_sasl2_features(pv_c2s_t *c, pv_node_t *features, pv_arena_t *a);
pv_sasl2_t *pv_sasl2_new(pv_c2s_t *c);
/* Handles a nonza in urn:xmpp:sasl:2 (<authenticate/>, <response/>,
 * <abort/>). On success calls pv_c2s_set_user() and binds or resumes as
 * the request asks. */
void pv_sasl2_input(pv_sasl2_t *s, pv_node_t *nonza);
void pv_sasl2_free(pv_sasl2_t *s);

/* admin.c: account administration shared by the control socket and
 * palaverctl's in-process mode. A request is a list of fields:
 *   adduser JID HEXRECORD | passwd JID HEXRECORD | deluser JID |
 *   users DOMAIN
 * where HEXRECORD is a pv_account_record_t in hex (palaverctl hashes the
 * password itself, so the daemon's loop never runs PBKDF2). done(arg, ok,
 * text) is called exactly once, possibly before pv_admin_run returns;
 * text is a human line (several lines for users). Fires the user-created
 * and user-deleted events, and closes a deleted user's sessions. */
typedef void (*pv_admin_done_fn)(void *arg, int ok, const char *text);
void pv_admin_run(pv_server_t *srv, char **fields, size_t n,
                  pv_admin_done_fn done, void *arg);
/* Hex helpers for the record field. */
char *pv_admin_hex(const void *data, size_t len);

/* users.c */
struct pv_account_record_s;
/* Stores a prepared credential record (from palaverctl) for user. */
void pv_user_store_record(pv_host_t *h, const char *user,
                          const struct pv_account_record_s *rec, int create,
                          pv_user_done_fn cb, void *arg);

/* control.c */
int pv_control_listen(pv_server_t *srv, const char *path);

#endif
