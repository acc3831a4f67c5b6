/* src/conf_core.h: the core's view of a configuration generation: the
 * core directives (pv_core_conf_t, table in conf_core.c), listeners, hosts
 * with their resolved module lists and module conf structs, and the
 * loader (src/config.c). Modules see only include/palaver/config.h. */
#ifndef PV_CONF_CORE_H
#define PV_CONF_CORE_H

#include <stddef.h>

#include <palaver/config.h>
#include <palaver/log.h>
#include <palaver/mem.h>

#ifndef PV_DEFAULT_STORAGE_PATH
#define PV_DEFAULT_STORAGE_PATH "data"
#endif
#ifndef PV_DEFAULT_MODULE_PATH
#define PV_DEFAULT_MODULE_PATH "modules"
#endif

/* XEP-0157 contact addresses (URIs), each a NULL-terminated list or
 * NULL when not configured. */
typedef struct pv_contact_info_s {
    char **abuse;
    char **admin;
    char **feedback;
    char **sales;
    char **security;
    char **support;
} pv_contact_info_t;

/* Core directives. Global-only ones are meaningful in cfg->global; the
 * rest are copied into every host and overridden there. Every pointer is
 * owned by the generation's arena. */
typedef struct pv_core_conf_s {
    /* global only */
    char *user;
    int run_as_root;
    char *storage_path;         /* absolute */
    char *module_path;          /* absolute */
    char *control_socket;       /* after load never NULL:
                                 * <storage_path>/control by default */
    char *log;                  /* "stderr", "syslog" or an absolute path */
    int log_level;              /* pv_log_level_t */
    char **log_debug;           /* debug categories, "*" for all */
    long long max_connections;          /* PV_COUNT_OFF = no limit */
    long long max_connections_per_ip;
    /* server-to-server (global only; src/s2s.c) */
    char **dns_servers;                 /* "ip[:port]"; NULL: resolv.conf */
    char **s2s_override;                /* "domain target [target...]" */
    char *s2s_ca_file;                  /* NULL: the system store */
    int s2s_require_encryption;
    int s2s_secure_auth;
    char **s2s_insecure_domains;        /* prepared domains */
    long long s2s_queue_max;            /* stanzas per link while it
                                         * comes up */
    pv_duration_t s2s_connect_timeout;
    pv_duration_t s2s_idle_timeout;
    char **s2s_allow_domains;           /* NULL/empty: every domain */
    char **s2s_deny_domains;            /* "*.example" = its subdomains */
    size_t s2s_rate_limit;              /* bytes/s read per remote domain,
                                         * PV_SIZE_OFF = off */
    /* global, vhost and component */
    char *tls_certificate;
    char *tls_key;
    char **sasl_mechanisms;
    long long scram_iterations;
    int c2s_require_encryption;
    size_t c2s_max_stanza_size;
    size_t s2s_max_stanza_size;
    long long xml_max_depth;
    long long xml_max_attrs;
    pv_duration_t c2s_auth_timeout;
    size_t c2s_rate_limit;              /* bytes/s, PV_SIZE_OFF = off */
    long long c2s_stanza_rate;          /* stanzas/s, PV_COUNT_OFF = off */
    size_t c2s_send_queue_max;
    long long auth_failure_limit;       /* per IP per window */
    pv_duration_t auth_failure_window;
    pv_duration_t fast_token_lifetime; /* XEP-0484 tokens */
    pv_contact_info_t contact_info;
    /* http.c, websocket_c2s.c (global only) */
    size_t http_max_header_size;
    size_t http_max_request_size;       /* body; PV_SIZE_OFF = no limit */
    pv_duration_t http_request_timeout;
    char **http_metrics_allow;          /* IPs and CIDR blocks */
    size_t websocket_max_message;
} pv_core_conf_t;

/* The core directive table (PV_DIRECTIVES_END-terminated). Entries with
 * set == NULL (listen, vhosts, components, modules_enabled) are parsed
 * by the engine itself; the table still gives their contexts. */
extern const pv_directive_t pv_core_directives[];

typedef enum {
    PV_LISTEN_C2S,
    PV_LISTEN_C2S_DIRECT_TLS,
    PV_LISTEN_S2S,
    PV_LISTEN_S2S_DIRECT_TLS,
    PV_LISTEN_HTTP,
    PV_LISTEN_HTTPS,
    PV_LISTEN_TURN_UDP,
    PV_LISTEN_TURN_TCP,
    PV_LISTEN_TURNS,
    PV_LISTEN_PROXY65
} pv_listen_kind_t;

/* "c2s", "c2s_direct_tls", ... (CONTRACTS.md §3); NULL when out of range. */
const char *pv_listen_kind_name(pv_listen_kind_t kind);
/* Default port of a kind (5222, 5223, 5269, ...). */
int pv_listen_default_port(pv_listen_kind_t kind);

typedef struct pv_listen_conf_s {
    pv_listen_kind_t kind;
    const char *address;        /* numeric IPv4/IPv6; NULL = all */
    int port;                   /* 0 = any free port */
    const char *file;
    int line;
} pv_listen_conf_t;

/* What a module declares to the configuration engine. */
typedef struct pv_conf_module_s {
    const char *name;
    const pv_directive_t *directives;   /* may be NULL */
    size_t conf_size;                   /* 0 when no directives */
    const char *component;              /* default subdomain label of a
                                         * service module, or NULL */
} pv_conf_module_t;

/* Returns the declaration of module_name, or NULL with a message in err
 * ("unknown module 'x'" or why loading failed). The engine calls it for
 * every name in any modules_enabled list, and also with each '_'-prefix
 * of an unknown directive ("muc" for "muc_history_default") to say which
 * module the directive belongs to; so it must be cheap and must not fail
 * the load on an unknown name. The returned declaration must outlive the
 * generation (static tables of loaded modules). */
typedef const pv_conf_module_t *(*pv_conf_resolve_fn)(void *arg,
                                                      const char *name,
                                                      char *err,
                                                      size_t errlen);

typedef struct pv_host_conf_s {
    const char *name;           /* prepared domain (pv_jid_prep_domain) */
    int is_component;
    const char *component_module;   /* explicit components only */
    const char *parent;         /* vhost a component inherits from, or
                                 * NULL (inherits from global) */
    pv_core_conf_t core;        /* global, then vhost, then component */
    const char **modules;       /* resolved, ordered, no duplicates */
    const pv_conf_module_t **module_decls;  /* parallel to modules */
    void **module_confs;        /* parallel; NULL when conf_size == 0 */
    size_t n_modules;
    const char *file;
    int line;
} pv_host_conf_t;

/* One configuration generation. Everything hangs off arena and is freed
 * by pv_config_free(); nothing points into libconfig after load. */
typedef struct pv_config_s {
    pv_arena_t *arena;
    const char *path;           /* as given to pv_config_load() */
    const char *base_dir;       /* absolute directory of path */
    pv_core_conf_t global;
    const char **modules;       /* the global modules_enabled, resolved */
    const pv_conf_module_t **module_decls;
    void **module_confs;        /* global scope values */
    size_t n_modules;
    pv_listen_conf_t *listeners;
    size_t n_listeners;
    pv_host_conf_t *hosts;      /* vhosts first, then components */
    size_t n_hosts;
} pv_config_t;

/* Error messages of one load, each "FILE:LINE: message" (or "FILE:
 * message" when there is no line). Zero-initialise; free with
 * pv_conf_errors_free(). */
typedef struct pv_conf_errors_s {
    char **msgs;                /* malloc'd */
    size_t n;
    size_t cap;
} pv_conf_errors_t;

void pv_conf_errors_free(pv_conf_errors_t *errs);

/* Reads path (libconfig; @include relative to the directory of path),
 * checks every key against the core table and the tables of the modules
 * enabled in its scope, and builds a generation. Collects every error it
 * can find into errs (appending; errs may hold earlier messages) rather
 * than stopping at the first; returns NULL when there was any, else a
 * new generation the caller frees with pv_config_free(). Pure apart from
 * reading the file(s) and calling resolve: no logging, no global state. */
pv_config_t *pv_config_load(const char *path, pv_conf_resolve_fn resolve,
                            void *arg, pv_conf_errors_t *errs);

/* As pv_config_load() on text in memory. name is used as FILE in
 * messages, base_dir (absolute) for relative paths. @include directives
 * in text are still honoured by libconfig (relative to base_dir): callers
 * holding untrusted text must refuse it first (the fuzzer does). */
pv_config_t *pv_config_load_string(const char *text, const char *name,
                                   const char *base_dir,
                                   pv_conf_resolve_fn resolve, void *arg,
                                   pv_conf_errors_t *errs);

/* Frees the generation and everything in it. NULL is a no-op. */
void pv_config_free(pv_config_t *cfg);

/* The host named name (prepared), or NULL. */
const pv_host_conf_t *pv_config_host(const pv_config_t *cfg,
                                     const char *name);

/* The conf struct of module in host (NULL host: global scope), or NULL
 * when the module is not enabled there or has no directives. */
void *pv_config_module_conf(const pv_config_t *cfg,
                            const pv_host_conf_t *host, const char *module);

#endif
