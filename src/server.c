/* src/server.c: the process: configuration generations (load, apply,
 * SIGHUP reload), hosts, TLS contexts with SNI, listeners and the ports
 * file, the store and its completion wake-up, readiness notification,
 * privilege drop, connection and auth-failure counters, and shutdown. */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <libconfig.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <uv.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "fast.h"
#include "http.h"
#include "logsink.h"
#include "palaver.h"

/* --- generations and modules ---------------------------------------- */

void
pv_gen_unref(pv_gen_t *g)
{
    if (g == NULL || --g->refs > 0)
        return;
    pv_config_free(g->cfg);
    free(g);
}

typedef struct {
    pv_server_t *srv;
    char *module_path;
} resolve_ctx_t;

static const pv_conf_module_t *
server_resolve(void *arg, const char *name, char *err, size_t errlen)
{
    resolve_ctx_t *rc = arg;
    pv_server_t *srv = rc->srv;
    const pv_module_def_t *def;
    pv_module_t *m;

    for (m = srv->modules; m != NULL; m = m->next)
        if (strcmp(m->def->name, name) == 0)
            return &m->decl;
    def = pv_module_find_static(name);
    if (def == NULL && rc->module_path != NULL) {
        char path[4096];
        snprintf(path, sizeof(path), "%s/mod_%s.so", rc->module_path, name);
        if (access(path, R_OK) != 0) {
            snprintf(err, errlen, "unknown module '%s' (no %s)", name, path);
            return NULL;
        }
    } else if (def == NULL) {
        snprintf(err, errlen, "unknown module '%s'", name);
        return NULL;
    }
    m = pv_module_load(srv, name, rc->module_path, err, errlen);
    return m ? &m->decl : NULL;
}

/* module_path must be known before the engine resolves module names, so
 * it is read ahead with libconfig (relative to the file's directory). */
static char *
peek_module_path(const char *path)
{
    config_t cf;
    const char *mp = NULL;
    char *out = NULL, *dir, *slash;

    config_init(&cf);
    dir = pv_xstrdup(path);
    slash = strrchr(dir, '/');
    if (slash != NULL)
        *slash = '\0';
    else
        strcpy(dir, ".");
    config_set_include_dir(&cf, dir);
    if (config_read_file(&cf, path) == CONFIG_TRUE &&
        config_lookup_string(&cf, "module_path", &mp) == CONFIG_TRUE) {
        if (mp[0] == '/')
            out = pv_xstrdup(mp);
        else
            out = pv_xasprintf("%s/%s", dir, mp);
    }
    config_destroy(&cf);
    free(dir);
    if (out == NULL)
        out = pv_xstrdup(PV_DEFAULT_MODULE_PATH);
    return out;
}

pv_config_t *
pv_server_load_config(pv_server_t *srv, const char *path, int to_stderr)
{
    pv_conf_errors_t errs = {0};
    resolve_ctx_t rc = { srv, peek_module_path(path) };
    pv_config_t *cfg;
    size_t i;

    cfg = pv_config_load(path, server_resolve, &rc, &errs);
    for (i = 0; i < errs.n; i++) {
        if (to_stderr)
            fprintf(stderr, "%s\n", errs.msgs[i]);
        else
            pv_log(PV_LOG_ERROR, "config", "%s", errs.msgs[i]);
    }
    pv_conf_errors_free(&errs);
    free(rc.module_path);
    return cfg;
}

/* --- TLS ------------------------------------------------------------ */

pv_tls_ctx_t *
pv_server_sni(void *arg, const char *servername)
{
    pv_server_t *srv = arg;
    pv_host_t *h = NULL;
    size_t i;

    if (servername != NULL) {
        char *d = pv_jid_prep_domain(servername, strlen(servername));
        if (d != NULL) {
            h = pv_map_get(&srv->hosts, d);
            free(d);
        }
    }
    if (h != NULL && h->tls != NULL)
        return h->tls;
    for (i = 0; i < srv->n_hosts; i++)
        if (srv->host_list[i]->tls != NULL)
            return srv->host_list[i]->tls;
    return NULL;
}

static int
host_setup_tls(pv_server_t *srv, pv_host_t *h)
{
    static const char *const alpn[] = { "xmpp-client" };
    const pv_core_conf_t *cc = &h->conf->core;
    char err[512];

    if (cc->tls_certificate == NULL || cc->tls_key == NULL) {
        pv_log(PV_LOG_WARN, h->name,
               "no tls_certificate/tls_key: clients cannot use TLS");
        return PV_OK;
    }
    h->tls = pv_tls_ctx_new_server(cc->tls_certificate, cc->tls_key, err,
                                   sizeof(err));
    if (h->tls == NULL) {
        pv_log(PV_LOG_ERROR, h->name, "%s", err);
        return PV_ERROR;
    }
    pv_tls_ctx_set_alpn(h->tls, alpn, 1);
    pv_tls_ctx_set_sni(h->tls, pv_server_sni, srv);
    return PV_OK;
}

/* --- hosts ------------------------------------------------------------ */

static void
configure_logging(const pv_core_conf_t *g)
{
    pv_buf_t cats = {0};
    char **c;

    for (c = g->log_debug; c && *c; c++) {
        if (cats.len)
            pv_buf_puts(&cats, ",");
        pv_buf_puts(&cats, *c);
    }
    pv_log_configure((pv_log_level_t)g->log_level, g->log, cats.data);
    pv_buf_free(&cats);
}

/* Builds hosts for cfg; on success swaps them in (old ones are released
 * when their last session goes) and takes ownership of cfg. */
int
pv_server_apply_config(pv_server_t *srv, pv_config_t *cfg)
{
    pv_gen_t *gen = pv_xcalloc(1, sizeof(*gen));
    pv_host_t **list = pv_xcalloc(cfg->n_hosts + 1, sizeof(*list));
    pv_map_t map = {0};
    size_t i;

    gen->cfg = cfg;
    gen->refs = 1;
    configure_logging(&cfg->global);
    for (i = 0; i < cfg->n_hosts; i++) {
        pv_host_t *h = pv_host_new(srv, gen, &cfg->hosts[i]);
        if (h == NULL || host_setup_tls(srv, h) != PV_OK)
            goto fail;
        list[i] = h;
        pv_map_put(&map, h->name, h);
    }
    /* activation needs srv->gen for module paths and conf */
    {
        pv_gen_t *old_gen = srv->gen;
        pv_host_t **old_list = srv->host_list;
        size_t old_n = srv->n_hosts;
        pv_map_t old_map = srv->hosts;

        srv->gen = gen;
        srv->host_list = list;
        srv->n_hosts = cfg->n_hosts;
        srv->hosts = map;
        for (i = 0; i < cfg->n_hosts; i++) {
            if (pv_host_activate(list[i]) != PV_OK) {
                srv->gen = old_gen;
                srv->host_list = old_list;
                srv->n_hosts = old_n;
                srv->hosts = old_map;
                goto fail;
            }
        }
        for (i = 0; i < old_n; i++) {
            /* a retired host stays for its sessions, but its module
             * timers would go on acting on every session of the domain
             * with the old directives: the new generation's take over */
            while (old_list[i]->timers != NULL)
                pv_module_timer_cancel(old_list[i]->timers);
            pv_host_unref(old_list[i]);
        }
        free(old_list);
        pv_map_clear(&old_map);
        pv_gen_unref(old_gen);
    }
    return PV_OK;
fail:
    for (i = 0; i < cfg->n_hosts; i++)
        if (list[i] != NULL)
            pv_host_unref(list[i]);
    free(list);
    pv_map_clear(&map);
    gen->cfg = NULL;      /* the caller still owns cfg */
    pv_gen_unref(gen);
    return PV_ERROR;
}

pv_host_t *
pv_server_host(pv_server_t *srv, const char *name)
{
    return pv_map_get(&srv->hosts, name);
}

/* --- counters --------------------------------------------------------- */

static pv_counter_t *
counter_get(pv_map_t *m, const char *ip)
{
    pv_counter_t *c = pv_map_get(m, ip);

    if (c == NULL) {
        c = pv_xcalloc(1, sizeof(*c));
        c->key = pv_xstrdup(ip);
        pv_map_put(m, c->key, c);
    }
    return c;
}

static void
counter_del(pv_map_t *m, pv_counter_t *c)
{
    pv_map_del(m, c->key);
    free(c->key);
    free(c);
}

int
pv_server_conn_opened(pv_server_t *srv, const char *ip, const char **reject)
{
    const pv_core_conf_t *g = PV_GLOBAL(srv);
    pv_counter_t *c;

    if (g->max_connections != PV_COUNT_OFF &&
        (long long)srv->n_conns >= g->max_connections) {
        pv_log(PV_LOG_WARN, "c2s", "%s: max_connections (%lld) reached", ip,
               g->max_connections);
        *reject = "resource-constraint";
        return PV_ERROR;
    }
    c = counter_get(&srv->conns_per_ip, ip);
    if (g->max_connections_per_ip != PV_COUNT_OFF &&
        (long long)c->n >= g->max_connections_per_ip) {
        pv_log(PV_LOG_WARN, "c2s", "%s: max_connections_per_ip (%lld) "
               "reached", ip, g->max_connections_per_ip);
        if (c->n == 0)
            counter_del(&srv->conns_per_ip, c);
        *reject = "policy-violation";
        return PV_ERROR;
    }
    c->n++;
    srv->n_conns++;
    return PV_OK;
}

void
pv_server_conn_closed(pv_server_t *srv, const char *ip)
{
    pv_counter_t *c = pv_map_get(&srv->conns_per_ip, ip);

    srv->n_conns--;
    if (c != NULL && --c->n == 0)
        counter_del(&srv->conns_per_ip, c);
}

int
pv_server_auth_blocked(pv_server_t *srv, const char *ip)
{
    const pv_core_conf_t *g = PV_GLOBAL(srv);
    pv_counter_t *c = pv_map_get(&srv->auth_failures, ip);
    uint64_t now = pv_loop_now_ms(srv->loop);

    if (c == NULL || g->auth_failure_limit == PV_COUNT_OFF)
        return 0;
    if (now - c->window_start >= g->auth_failure_window) {
        counter_del(&srv->auth_failures, c);
        return 0;
    }
    return (long long)c->n >= g->auth_failure_limit;
}

void
pv_server_auth_failed(pv_server_t *srv, const char *ip)
{
    const pv_core_conf_t *g = PV_GLOBAL(srv);
    uint64_t now = pv_loop_now_ms(srv->loop);
    pv_counter_t *c;

    srv->metrics.auth_failures++;   /* http.c /metrics */
    if (g->auth_failure_limit == PV_COUNT_OFF)
        return;
    c = counter_get(&srv->auth_failures, ip);
    if (c->n == 0 || now - c->window_start >= g->auth_failure_window) {
        c->n = 0;
        c->window_start = now;
    }
    if ((long long)++c->n == g->auth_failure_limit)
        pv_log(PV_LOG_WARN, "c2s", "%s: %u failed authentications, "
               "refusing more for a while", ip, c->n);
}

/* --- storage ----------------------------------------------------------- */

static void
storage_wake(void *arg)
{
    pv_server_t *srv = arg;

    pv_async_send(srv->storage_wake);
}

static void
storage_completions(void *arg)
{
    pv_server_t *srv = arg;

    pv_storage_run_completions(srv->storage);
}

int
pv_server_open_storage(pv_server_t *srv, const char *path)
{
    pv_storage_opts_t opts;

    memset(&opts, 0, sizeof(opts));
    if (!srv->in_process) {
        srv->storage_wake = pv_async_new(srv->loop, storage_completions,
                                         srv);
        opts.wake = storage_wake;
        opts.wake_arg = srv;
    }
    srv->storage = pv_storage_open(path, &opts);
    if (srv->storage == NULL) {
        pv_log(PV_LOG_ERROR, "storage", "cannot open the store in %s", path);
        return PV_ERROR;
    }
    /* opening a store waits for the writer: do it before any login */
    pv_fast_store(srv->storage);
    return PV_OK;
}

/* --- listeners, readiness, privileges ---------------------------------- */

static int
write_ports_file(pv_server_t *srv)
{
    const pv_config_t *cfg = srv->gen->cfg;
    char *path = pv_xasprintf("%s/ports", cfg->global.storage_path);
    char *tmp = pv_xasprintf("%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    size_t i;
    int rc = PV_OK;

    if (f == NULL) {
        pv_log_errno("server", "cannot write %s", tmp);
        rc = PV_ERROR;
    } else {
        for (i = 0; i < srv->n_listeners; i++) {
            const pv_listen_conf_t *lc = &cfg->listeners[i];
            int port;
            if (srv->listeners[i] != NULL)
                port = pv_listener_port(srv->listeners[i]);
            else if (srv->raw_fds[i] >= 0)
                port = srv->raw_ports[i];
            else
                continue;
            fprintf(f, "%s %s %d\n", pv_listen_kind_name(lc->kind),
                    lc->address ? lc->address : "*", port);
        }
        if (fclose(f) != 0 || rename(tmp, path) != 0) {
            pv_log_errno("server", "cannot write %s", path);
            rc = PV_ERROR;
        }
    }
    free(tmp);
    free(path);
    return rc;
}

/* Binds a socket for a listener that a service module serves itself
 * (TURN over UDP/TCP, proxy65): bound here, before privileges are
 * dropped, and handed over through pv_server_each_raw_listener(). */
static int
bind_raw(const pv_listen_conf_t *lc, int udp, int *port, char *err,
         size_t errlen)
{
    struct sockaddr_storage ss;
    socklen_t sl;
    const char *addr = lc->address ? lc->address : "::";
    int fd, one = 1, v6 = strchr(addr, ':') != NULL;

    memset(&ss, 0, sizeof(ss));
    if (v6 ? uv_ip6_addr(addr, lc->port, (struct sockaddr_in6 *)&ss)
           : uv_ip4_addr(addr, lc->port, (struct sockaddr_in *)&ss)) {
        snprintf(err, errlen, "bad address '%s'", addr);
        return -1;
    }
    fd = socket(v6 ? AF_INET6 : AF_INET,
                (udp ? SOCK_DGRAM : SOCK_STREAM) | SOCK_CLOEXEC
                | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        snprintf(err, errlen, "%s", strerror(errno));
        return -1;
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    sl = v6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    if (bind(fd, (struct sockaddr *)&ss, sl) != 0
        || (!udp && listen(fd, 1024) != 0)
        || getsockname(fd, (struct sockaddr *)&ss, &sl) != 0) {
        snprintf(err, errlen, "%s", strerror(errno));
        close(fd);
        return -1;
    }
    *port = ntohs(ss.ss_family == AF_INET6
                  ? ((struct sockaddr_in6 *)&ss)->sin6_port
                  : ((struct sockaddr_in *)&ss)->sin_port);
    return fd;
}

void
pv_server_each_raw_listener(pv_server_t *srv, const char *kind,
                            void (*cb)(void *arg, const pv_raw_listener_t *l),
                            void *arg)
{
    const pv_config_t *cfg;
    size_t i;

    /* palaverctl and tests run hosts without listeners */
    if (srv->boot_gen == NULL || srv->raw_fds == NULL)
        return;
    cfg = srv->boot_gen->cfg;
    for (i = 0; i < srv->n_listeners; i++) {
        const pv_listen_conf_t *lc = &cfg->listeners[i];
        pv_raw_listener_t l;

        if (srv->raw_fds[i] < 0
            || strcmp(pv_listen_kind_name(lc->kind), kind) != 0)
            continue;
        l.kind = pv_listen_kind_name(lc->kind);
        l.address = lc->address;
        l.port = srv->raw_ports[i];
        l.fd = srv->raw_fds[i];
        cb(arg, &l);
    }
}

struct uv_loop_s *
pv_server_uv_loop(pv_server_t *srv)
{
    return pv_loop_uv(srv->loop);
}

int
pv_server_listen(pv_server_t *srv)
{
    const pv_config_t *cfg = srv->gen->cfg;
    size_t i;
    char err[512];

    srv->n_listeners = cfg->n_listeners;
    srv->listeners = pv_xcalloc(cfg->n_listeners + 1, sizeof(pv_listener_t *));
    srv->raw_fds = pv_xcalloc(cfg->n_listeners + 1, sizeof(int));
    srv->raw_ports = pv_xcalloc(cfg->n_listeners + 1, sizeof(int));
    for (i = 0; i < cfg->n_listeners; i++)
        srv->raw_fds[i] = -1;
    for (i = 0; i < cfg->n_listeners; i++) {
        const pv_listen_conf_t *lc = &cfg->listeners[i];
        void (*accept_cb)(void *, pv_conn_t *);

        switch (lc->kind) {
        case PV_LISTEN_TURN_UDP:        /* modules: mod_turn, mod_proxy65 */
        case PV_LISTEN_TURN_TCP:
        case PV_LISTEN_TURNS:
        case PV_LISTEN_PROXY65:
            srv->raw_fds[i] = bind_raw(lc, lc->kind == PV_LISTEN_TURN_UDP,
                                       &srv->raw_ports[i], err,
                                       sizeof(err));
            if (srv->raw_fds[i] < 0) {
                pv_log(PV_LOG_ERROR, "server", "%s:%d: cannot listen on %s "
                       "port %d: %s", lc->file, lc->line,
                       lc->address ? lc->address : "*", lc->port, err);
                return PV_ERROR;
            }
            pv_log(PV_LOG_INFO, "server", "bound %s on %s port %d for its "
                   "module", pv_listen_kind_name(lc->kind),
                   lc->address ? lc->address : "*", srv->raw_ports[i]);
            continue;
        case PV_LISTEN_C2S:
            accept_cb = pv_c2s_accept;
            break;
        case PV_LISTEN_C2S_DIRECT_TLS:
            accept_cb = pv_c2s_accept_tls;
            break;
        case PV_LISTEN_S2S:             /* s2s.c */
            accept_cb = pv_s2s_accept;
            break;
        case PV_LISTEN_S2S_DIRECT_TLS:
            accept_cb = pv_s2s_accept_tls;
            break;
        case PV_LISTEN_HTTP:            /* http.c */
        case PV_LISTEN_HTTPS:
            if (srv->http == NULL)
                srv->http = pv_http_new(srv);
            accept_cb = lc->kind == PV_LISTEN_HTTP ? pv_http_accept
                                                   : pv_http_accept_tls;
            break;
        default:
            pv_log(PV_LOG_WARN, "server", "%s:%d: listener kind %s is not "
                   "available in this version; ignored", lc->file, lc->line,
                   pv_listen_kind_name(lc->kind));
            continue;
        }
        srv->listeners[i] = pv_listen_tcp(srv->loop, lc->address, lc->port,
                                          1024, accept_cb, srv, err,
                                          sizeof(err));
        if (srv->listeners[i] == NULL) {
            pv_log(PV_LOG_ERROR, "server", "%s:%d: cannot listen on %s "
                   "port %d: %s", lc->file, lc->line,
                   lc->address ? lc->address : "*", lc->port, err);
            return PV_ERROR;
        }
        pv_log(PV_LOG_INFO, "server", "listening for %s on %s port %d",
               pv_listen_kind_name(lc->kind),
               lc->address ? lc->address : "*",
               pv_listener_port(srv->listeners[i]));
    }
    return write_ports_file(srv);
}

/* Connected before the privilege drop: NOTIFY_SOCKET may be writable
 * only by root, and AF_UNIX checks the permission at connect(). */
static int
notify_open(void)
{
    const char *path = getenv("NOTIFY_SOCKET");
    struct sockaddr_un sa;
    socklen_t len;
    int fd;

    if (path == NULL || (path[0] != '/' && path[0] != '@') ||
        strlen(path) >= sizeof(sa.sun_path))
        return -1;
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    strcpy(sa.sun_path, path);
    if (path[0] == '@')
        sa.sun_path[0] = '\0';  /* abstract namespace */
    len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(path));
    fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, (struct sockaddr *)&sa, len) != 0) {
        pv_log_errno("server", "cannot notify %s", path);
        close(fd);
        return -1;
    }
    return fd;
}

static void
notify_ready(int fd)
{
    if (fd < 0)
        return;
    if (send(fd, "READY=1", 7, MSG_NOSIGNAL) < 0)
        pv_log_errno("server", "cannot notify NOTIFY_SOCKET");
    close(fd);
}

static int
chown_tree(const char *dir, const char *control, uid_t uid, gid_t gid)
{
    static const char *const files[] = { "data.mdb", "lock.mdb", "ports",
                                         NULL };
    size_t i;

    if (chown(dir, uid, gid) != 0)
        return PV_ERROR;
    /* palaverctl run as the same user must reach the control socket */
    if (control != NULL && chown(control, uid, gid) != 0 && errno != ENOENT)
        return PV_ERROR;
    for (i = 0; files[i] != NULL; i++) {
        char *p = pv_xasprintf("%s/%s", dir, files[i]);
        if (chown(p, uid, gid) != 0 && errno != ENOENT) {
            free(p);
            return PV_ERROR;
        }
        free(p);
    }
    return PV_OK;
}

/* CONTRACTS.md §1: bind and open as root, then become the configured
 * user; refuse root without user unless run_as_root. */
static int
drop_privileges(pv_server_t *srv)
{
    const pv_core_conf_t *g = PV_GLOBAL(srv);
    struct passwd *pw;

    if (geteuid() != 0)
        return PV_OK;
    if (g->user == NULL) {
        if (g->run_as_root)
            return PV_OK;
        pv_log(PV_LOG_ERROR, "server", "refusing to run as root: set "
               "user = \"NAME\" to drop privileges after binding, or "
               "run_as_root = true to stay root");
        return PV_ERROR;
    }
    pw = getpwnam(g->user);
    if (pw == NULL) {
        pv_log(PV_LOG_ERROR, "server", "user '%s' does not exist", g->user);
        return PV_ERROR;
    }
    /* the log file is opened again on SIGHUP, as this user */
    if (g->log != NULL && g->log[0] == '/' &&
        chown(g->log, pw->pw_uid, pw->pw_gid) != 0 && errno != ENOENT) {
        pv_log_errno("server", "cannot chown %s", g->log);
        return PV_ERROR;
    }
    if (chown_tree(g->storage_path, g->control_socket, pw->pw_uid,
                   pw->pw_gid) != PV_OK ||
        initgroups(pw->pw_name, pw->pw_gid) != 0 ||
        setgid(pw->pw_gid) != 0 || setuid(pw->pw_uid) != 0) {
        pv_log_errno("server", "cannot become user %s", g->user);
        return PV_ERROR;
    }
    if (setuid(0) == 0) {
        pv_log(PV_LOG_ERROR, "server", "privileges could not be dropped");
        return PV_ERROR;
    }
    pv_log(PV_LOG_INFO, "server", "running as user %s", g->user);
    return PV_OK;
}

/* --- signals, reload, shutdown ----------------------------------------- */

static int
listeners_equal(const pv_config_t *a, const pv_config_t *b)
{
    size_t i;

    if (a->n_listeners != b->n_listeners)
        return 0;
    for (i = 0; i < a->n_listeners; i++) {
        const pv_listen_conf_t *x = &a->listeners[i], *y = &b->listeners[i];
        if (x->kind != y->kind || x->port != y->port ||
            strcmp(x->address ? x->address : "", y->address ? y->address : ""))
            return 0;
    }
    return 1;
}

static int
str_differs(const char *a, const char *b)
{
    return strcmp(a ? a : "", b ? b : "") != 0;
}

void
pv_server_reload(pv_server_t *srv)
{
    pv_config_t *cfg, *old;

    pv_log(PV_LOG_INFO, "server", "reloading %s", srv->config_path);
    /* restart-only settings are compared with what runs: the first
     * generation's, not the last file's */
    old = (srv->boot_gen ? srv->boot_gen : srv->gen)->cfg;
    cfg = pv_server_load_config(srv, srv->config_path, 0);
    if (cfg == NULL) {
        pv_log(PV_LOG_ERROR, "server", "reload failed; keeping the running "
               "configuration");
        return;
    }
    if (!listeners_equal(old, cfg))
        pv_log(PV_LOG_WARN, "server", "listener changes need a restart; "
               "not applied");
    if (str_differs(old->global.storage_path, cfg->global.storage_path))
        pv_log(PV_LOG_WARN, "server", "storage_path change needs a restart; "
               "not applied");
    if (str_differs(old->global.user, cfg->global.user))
        pv_log(PV_LOG_WARN, "server", "user change needs a restart; not "
               "applied");
    if (pv_server_apply_config(srv, cfg) != PV_OK) {
        pv_config_free(cfg);
        configure_logging(&srv->gen->cfg->global);
        pv_log(PV_LOG_ERROR, "server", "reload failed; keeping the running "
               "configuration");
        return;
    }
    pv_s2s_reload(srv);
    pv_log(PV_LOG_INFO, "server", "configuration reloaded");
}

static void
shutdown_poll(void *arg)
{
    pv_server_t *srv = arg;

    /* give streams up to 3 s to flush their system-shutdown */
    if (srv->c2s_list == NULL || ++srv->shutdown_polls > 60) {
        pv_session_end_detached(srv);
        if (srv->storage != NULL)
            pv_storage_sync(srv->storage);
        pv_loop_stop(srv->loop);
        return;
    }
    pv_timer_add(srv->loop, 50, 0, shutdown_poll, srv);
}

void
pv_server_shutdown(pv_server_t *srv)
{
    size_t i;

    if (srv->shutting_down)
        return;
    srv->shutting_down = 1;
    pv_log(PV_LOG_INFO, "server", "shutting down");
    for (i = 0; i < srv->n_listeners; i++) {
        if (srv->listeners[i] != NULL)
            pv_listener_close(srv->listeners[i]);
        srv->listeners[i] = NULL;
        /* modules hold their own dup()s of these until host_fini */
        if (srv->raw_fds != NULL && srv->raw_fds[i] >= 0) {
            close(srv->raw_fds[i]);
            srv->raw_fds[i] = -1;
        }
    }
    if (srv->control != NULL) {
        pv_listener_close(srv->control);
        srv->control = NULL;
    }
    pv_c2s_shutdown_all(srv);
    pv_s2s_shutdown(srv);
    pv_http_shutdown(srv->http);
    shutdown_poll(srv);
}

/* Idle streams give their XML parser back (~9.5 KiB each): a stream
 * silent for a second is swept within the next second. */
#define SWEEP_EVERY_MS 1000

static void
sweep(void *arg)
{
    pv_server_t *srv = arg;

    pv_c2s_sweep(srv, SWEEP_EVERY_MS);
    pv_s2s_sweep(srv);
}

static void
on_signal(void *arg, int signum)
{
    pv_server_t *srv = arg;

    if (signum == SIGHUP)
        pv_server_reload(srv);
    else
        pv_server_shutdown(srv);
}

/* --- lifecycle ---------------------------------------------------------- */

pv_server_t *
pv_server_new(const char *config_path, int in_process)
{
    pv_server_t *srv = pv_xcalloc(1, sizeof(*srv));

    srv->config_path = pv_xstrdup(config_path);
    srv->in_process = in_process;
    srv->loop = pv_loop_new();
    if (RAND_bytes(srv->secret, sizeof(srv->secret)) != 1) {
        pv_log(PV_LOG_ERROR, "server", "no randomness available");
        abort();
    }
    return srv;
}

int
pv_server_start(pv_server_t *srv, pv_config_t *cfg)
{
    const pv_core_conf_t *g = &cfg->global;
    int notify_fd;
    size_t i;

    configure_logging(g);
    if (geteuid() == 0 && g->user == NULL && !g->run_as_root) {
        pv_log(PV_LOG_ERROR, "server", "refusing to run as root: set "
               "user = \"NAME\" to drop privileges after binding, or "
               "run_as_root = true to stay root");
        pv_config_free(cfg);
        return PV_ERROR;
    }
    if (mkdir(g->storage_path, 0700) != 0 && errno != EEXIST) {
        pv_log_errno("server", "cannot create %s", g->storage_path);
        pv_config_free(cfg);
        return PV_ERROR;
    }
    if (pv_server_open_storage(srv, g->storage_path) != PV_OK) {
        pv_config_free(cfg);
        return PV_ERROR;
    }
    if (pv_server_apply_config(srv, cfg) != PV_OK) {
        pv_config_free(cfg);
        return PV_ERROR;
    }
    srv->boot_gen = srv->gen;
    srv->boot_gen->refs++;
    if (srv->in_process)
        return PV_OK;
    if (pv_server_listen(srv) != PV_OK ||
        pv_control_listen(srv, g->control_socket) != PV_OK)
        return PV_ERROR;
    for (i = 0; i < srv->n_hosts; i++) {
        pv_event_t ev;

        memset(&ev, 0, sizeof(ev));
        ev.kind = PV_EV_LISTENING;
        ev.server = srv;
        ev.host = srv->host_list[i];
        pv_event_fire(&ev);
    }
    notify_fd = notify_open();
    if (drop_privileges(srv) != PV_OK) {
        if (notify_fd >= 0)
            close(notify_fd);
        return PV_ERROR;
    }
    signal(SIGPIPE, SIG_IGN);
    pv_timer_add(srv->loop, SWEEP_EVERY_MS, SWEEP_EVERY_MS, sweep, srv);
    pv_loop_signal(srv->loop, SIGTERM, on_signal, srv);
    pv_loop_signal(srv->loop, SIGINT, on_signal, srv);
    pv_loop_signal(srv->loop, SIGHUP, on_signal, srv);
    pv_log(PV_LOG_INFO, "server", "palaverd " PV_VERSION_STRING " ready");
    notify_ready(notify_fd);
    return PV_OK;
}

int
pv_server_run(pv_server_t *srv)
{
    return pv_loop_run(srv->loop);
}

static void
free_counter(void *arg, const char *key, void *value)
{
    pv_counter_t *c = value;

    (void)arg;
    (void)key;
    free(c->key);
    free(c);
}

void
pv_server_free(pv_server_t *srv)
{
    size_t i;

    for (i = 0; i < srv->n_listeners; i++)
        if (srv->listeners[i] != NULL)
            pv_listener_close(srv->listeners[i]);
    free(srv->listeners);
    for (i = 0; srv->raw_fds != NULL && i < srv->n_listeners; i++)
        if (srv->raw_fds[i] >= 0)
            close(srv->raw_fds[i]);
    free(srv->raw_fds);
    pv_buf_free(&srv->fanout_buf);
    free(srv->raw_ports);
    if (srv->control != NULL)
        pv_listener_close(srv->control);
    /* before the hosts: s2s streams route nothing once freed */
    pv_s2s_free(srv);
    for (i = 0; i < srv->n_hosts; i++)
        pv_host_unref(srv->host_list[i]);
    free(srv->host_list);
    pv_map_clear(&srv->hosts);
    if (srv->storage != NULL)
        pv_storage_close(srv->storage);
    if (srv->storage_wake != NULL)
        pv_async_free(srv->storage_wake);
    pv_map_each(&srv->conns_per_ip, free_counter, NULL);
    pv_map_clear(&srv->conns_per_ip);
    pv_map_each(&srv->auth_failures, free_counter, NULL);
    pv_map_clear(&srv->auth_failures);
    pv_map_clear(&srv->users);
    pv_map_clear(&srv->deleting);
    pv_gen_unref(srv->gen);
    pv_gen_unref(srv->boot_gen);
    pv_module_unload_all(srv);
    pv_loop_free(srv->loop);
    pv_http_free(srv->http);    /* after its connections have closed */
    free(srv->config_path);
    free(srv);
}
