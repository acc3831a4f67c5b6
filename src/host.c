/* src/host.c: served domains. A host belongs to one configuration
 * generation: it owns the module instances enabled on it, its TLS context,
 * its hook tables (event.c), its disco registry and caps hash, its store
 * handles and module timers. Sessions pin it by reference. */
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "palaver.h"

pv_host_t *
pv_host_new(pv_server_t *srv, pv_gen_t *gen, const pv_host_conf_t *conf)
{
    pv_host_t *h = pv_xcalloc(1, sizeof(*h));
    size_t i, off = 0;
    char err[512];

    h->refs = 1;
    h->server = srv;
    h->gen = gen;
    gen->refs++;
    h->conf = conf;
    h->name = conf->name;
    h->n_mods = conf->n_modules;
    h->mods = pv_xcalloc(h->n_mods ? h->n_mods : 1, sizeof(*h->mods));
    for (i = 0; i < conf->n_modules; i++) {
        pv_module_t *m = pv_module_load(srv, conf->modules[i], NULL, err,
                                        sizeof(err));
        if (m == NULL) {
            /* the config engine resolved every name already */
            pv_log(PV_LOG_ERROR, h->name, "%s", err);
            pv_host_unref(h);
            return NULL;
        }
        h->mods[i].module = m;
        h->mods[i].conf = conf->module_confs[i];
        h->mods[i].slot_offset = off;
        off += (m->def->session_data_size + 7) & ~(size_t)7;
    }
    h->session_data_size = off;
    return h;
}

static int
cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void
host_add_feature_raw(pv_host_t *h, const char *f)
{
    size_t i;

    for (i = 0; i < h->n_features; i++)
        if (strcmp(h->features[i], f) == 0)
            return;
    h->features = pv_xrealloc(h->features,
                              (h->n_features + 1) * sizeof(char *));
    h->features[h->n_features++] = pv_xstrdup(f);
    qsort(h->features, h->n_features, sizeof(char *), cmp_str);
}

static int
cmp_identity(const void *a, const void *b)
{
    const pv_identity_t *x = *(const pv_identity_t *const *)a;
    const pv_identity_t *y = *(const pv_identity_t *const *)b;
    int r = strcmp(x->category, y->category);

    if (r == 0)
        r = strcmp(x->type, y->type);
    if (r == 0)
        r = strcmp(x->name ? x->name : "", y->name ? y->name : "");
    return r;
}

/* XEP-0115 §5.1: the verification string over identities and features
 * (the server has no extended forms in its caps). */
static void
host_compute_caps(pv_host_t *h)
{
    pv_buf_t s = {0};
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    size_t i;

    for (i = 0; i < h->n_identities; i++) {
        const pv_identity_t *id = h->identities[i].id;
        pv_buf_printf(&s, "%s/%s//%s<", id->category, id->type,
                      id->name ? id->name : "");
    }
    for (i = 0; i < h->n_features; i++)
        pv_buf_printf(&s, "%s<", h->features[i]);
    EVP_Digest(s.data, s.len, md, &md_len, EVP_sha1(), NULL);
    free(h->caps_ver);
    h->caps_ver = pv_xmalloc(4 * ((md_len + 2) / 3) + 1);
    EVP_EncodeBlock((unsigned char *)h->caps_ver, md, (int)md_len);
    pv_buf_free(&s);
}

static void
host_build_disco(pv_host_t *h)
{
    static const pv_identity_t server_id = { "server", "im", "Palaver" };
    size_t i;

    h->identities = pv_xrealloc(h->identities, sizeof(*h->identities));
    h->identities[0].id = &server_id;
    h->n_identities = h->conf->is_component ? 0 : 1;
    for (i = 0; i < h->n_mods; i++) {
        const pv_module_def_t *d = h->mods[i].module->def;
        const char *const *f;
        const pv_identity_t *id;

        if (!h->mods[i].active)
            continue;
        for (f = d->features; f && *f; f++)
            host_add_feature_raw(h, *f);
        for (id = d->identities; id && id->category; id++) {
            h->identities = pv_xrealloc(h->identities,
                (h->n_identities + 1) * sizeof(*h->identities));
            h->identities[h->n_identities++].id = id;
        }
    }
    qsort(h->identities, h->n_identities, sizeof(*h->identities),
          cmp_identity);
    host_compute_caps(h);
}

int
pv_host_activate(pv_host_t *h)
{
    size_t i;
    pv_event_t ev;

    for (i = 0; i < h->n_mods; i++) {
        pv_module_t *m = h->mods[i].module;
        const char *const *dep;

        for (dep = m->def->depends; dep && *dep; dep++) {
            size_t j;
            for (j = 0; j < h->n_mods; j++)
                if (strcmp(h->mods[j].module->def->name, *dep) == 0)
                    break;
            if (j == h->n_mods) {
                pv_log(PV_LOG_ERROR, h->name,
                       "module %s needs module %s: add it to "
                       "modules_enabled", m->def->name, *dep);
                return PV_ERROR;
            }
        }
        if (!m->initialised && m->def->init != NULL &&
            m->def->init(m) != PV_OK) {
            pv_log(PV_LOG_ERROR, h->name, "module %s failed to initialise",
                   m->def->name);
            return PV_ERROR;
        }
        m->initialised = 1;
    }
    for (i = 0; i < h->n_mods; i++) {
        pv_module_t *m = h->mods[i].module;

        if (m->def->host_init != NULL && m->def->host_init(m, h) != PV_OK) {
            pv_log(PV_LOG_ERROR, h->name, "module %s failed to start",
                   m->def->name);
            return PV_ERROR;
        }
        h->mods[i].active = 1;
    }
    pv_event_build(h);
    host_build_disco(h);
    h->activated = 1;
    memset(&ev, 0, sizeof(ev));
    ev.kind = PV_EV_HOST_ACTIVATED;
    ev.host = h;
    pv_event_fire(&ev);
    return PV_OK;
}

pv_host_t *
pv_host_ref(pv_host_t *h)
{
    h->refs++;
    return h;
}

static void
free_store(void *arg, const char *key, void *value)
{
    (void)arg;
    (void)key;
    (void)value; /* store handles belong to the storage environment */
}

void
pv_host_unref(pv_host_t *h)
{
    size_t i;

    if (h == NULL || --h->refs > 0)
        return;
    while (h->timers != NULL)
        pv_module_timer_cancel(h->timers);
    for (i = h->n_mods; i-- > 0;) {
        pv_module_t *m = h->mods[i].module;
        if (h->mods[i].active && m->def->host_fini != NULL)
            m->def->host_fini(m, h);
    }
    pv_event_clear(h);
    for (i = 0; i < h->n_features; i++)
        free(h->features[i]);
    free(h->features);
    free(h->identities);
    free(h->caps_ver);
    pv_map_each(&h->stores, free_store, NULL);
    pv_map_clear(&h->stores);
    if (h->tls != NULL)
        pv_tls_ctx_unref(h->tls);
    free(h->mods);
    pv_gen_unref(h->gen);
    free(h);
}

const char *
pv_host_name(const pv_host_t *h)
{
    return h->name;
}

pv_server_t *
pv_host_server(const pv_host_t *h)
{
    return h->server;
}

void
pv_host_add_feature(pv_host_t *h, pv_module_t *m, const char *feature)
{
    (void)m; /* features live as long as the host generation */
    host_add_feature_raw(h, feature);
    if (h->activated)
        host_compute_caps(h);
}

void
pv_host_each_identity(pv_host_t *h,
                      void (*cb)(void *arg, const pv_identity_t *id),
                      void *arg)
{
    size_t i;

    for (i = 0; i < h->n_identities; i++)
        cb(arg, h->identities[i].id);
}

void
pv_host_each_feature(pv_host_t *h, void (*cb)(void *arg, const char *f),
                     void *arg)
{
    size_t i;

    for (i = 0; i < h->n_features; i++)
        cb(arg, h->features[i]);
}

const char *const *
pv_host_contact(pv_host_t *h, const char *kind)
{
    static const char *const none[] = { NULL };
    const char *const *l = pv_core_contact(&h->conf->core, kind);

    return l ? l : none;
}

const char *
pv_host_caps_ver(pv_host_t *h)
{
    return h->caps_ver ? h->caps_ver : "";
}

int
pv_host_is_local(pv_server_t *srv, const char *domain)
{
    return pv_map_get(&srv->hosts, domain) != NULL;
}

typedef struct {
    const char *domain;
    void (*cb)(void *arg, pv_session_t *s);
    void *arg;
} each_session_t;

static void
each_user_sessions(void *arg, const char *key, void *value)
{
    each_session_t *e = arg;
    pv_user_t *u = value;
    pv_session_t *s, *next;
    const char *at = strchr(key, '@');

    if (at == NULL || strcmp(at + 1, e->domain) != 0)
        return;
    for (s = u->sessions; s != NULL; s = next) {
        next = s->next_res;
        e->cb(e->arg, s);
    }
}

void
pv_host_each_session(pv_host_t *h, const char *user,
                     void (*cb)(void *arg, pv_session_t *s), void *arg)
{
    pv_server_t *srv = h->server;

    if (user != NULL) {
        char bare[2048];
        pv_user_t *u;
        pv_session_t *s, *next;

        snprintf(bare, sizeof(bare), "%s@%s", user, h->name);
        u = pv_map_get(&srv->users, bare);
        for (s = u ? u->sessions : NULL; s != NULL; s = next) {
            next = s->next_res;
            cb(arg, s);
        }
        return;
    }
    /* every session of the domain: callers must not bind or destroy
     * sessions from cb (the user map may not change while iterating) */
    each_session_t e = { h->name, cb, arg };
    pv_map_each(&srv->users, each_user_sessions, &e);
}

void
pv_host_after_commit(pv_host_t *h, void (*cb)(void *arg, int rc), void *arg)
{
    if (h->server->storage == NULL ||
        pv_storage_barrier(h->server->storage, cb, arg) != PV_OK)
        cb(arg, PV_OK);
}

pv_store_t *
pv_store_open(pv_host_t *h, pv_module_t *m, const char *name,
              pv_store_kind_t kind)
{
    if (h->server->storage == NULL)
        return NULL;
    return pv_storage_store(h->server->storage, pv_module_name(m), name,
                            kind);
}

/* --- module timers --------------------------------------------------- */

static void
mtimer_fire(void *arg)
{
    pv_mtimer_t *t = arg;
    void (*cb)(void *) = t->cb;
    void *cb_arg = t->arg;

    if (t->one_shot) {
        /* unlink first: the callback may free what arg points to */
        t->timer = NULL;
        pv_module_timer_cancel(t);
    }
    cb(cb_arg);
}

pv_mtimer_t *
pv_module_timer(pv_module_t *m, pv_host_t *h, uint64_t ms,
                uint64_t repeat_ms, void (*cb)(void *arg), void *arg)
{
    pv_mtimer_t *t = pv_xcalloc(1, sizeof(*t));

    t->host = h;
    t->module = m;
    t->cb = cb;
    t->arg = arg;
    t->one_shot = repeat_ms == 0;
    t->next = h->timers;
    if (h->timers)
        h->timers->prev = t;
    h->timers = t;
    t->timer = pv_timer_add(h->server->loop, ms, repeat_ms, mtimer_fire, t);
    return t;
}

void
pv_module_timer_cancel(pv_mtimer_t *t)
{
    if (t->timer != NULL)
        pv_timer_cancel(t->timer);
    if (t->prev)
        t->prev->next = t->next;
    else
        t->host->timers = t->next;
    if (t->next)
        t->next->prev = t->prev;
    free(t);
}

uint64_t
pv_now_ms(pv_server_t *srv)
{
    return pv_loop_now_ms(srv->loop);
}

const char *const *
pv_core_contact(const pv_core_conf_t *cc, const char *kind)
{
    const pv_contact_info_t *ci = &cc->contact_info;

    if (strcmp(kind, "abuse") == 0)
        return (const char *const *)ci->abuse;
    if (strcmp(kind, "admin") == 0)
        return (const char *const *)ci->admin;
    if (strcmp(kind, "feedback") == 0)
        return (const char *const *)ci->feedback;
    if (strcmp(kind, "sales") == 0)
        return (const char *const *)ci->sales;
    if (strcmp(kind, "security") == 0)
        return (const char *const *)ci->security;
    if (strcmp(kind, "support") == 0)
        return (const char *const *)ci->support;
    return NULL;
}

void
pv_host_each_component(pv_host_t *h,
                       void (*cb)(void *arg, const char *domain), void *arg)
{
    pv_server_t *srv = h->server;
    size_t i;

    for (i = 0; i < srv->n_hosts; i++) {
        const pv_host_conf_t *c = srv->host_list[i]->conf;
        if (c->is_component && c->parent != NULL &&
            strcmp(c->parent, h->name) == 0)
            cb(arg, c->name);
    }
}

pv_host_t *
pv_host_find(pv_server_t *srv, const char *domain)
{
    return pv_server_host(srv, domain);
}
