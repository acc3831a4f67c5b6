/* src/module.c: finding and loading module declarations (dlopen from
 * module_path, or the static table), the ABI and dependency checks, and
 * the module-facing accessors for per-host conf, state and session slots.
 * Hook registration per host is event.c's; host setup is host.c's. */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <palaver/dataform.h>
#include <palaver/datetime.h>
#include <palaver/stun.h>

#include "palaver.h"

/* palaverd links the core as a static archive, from which the linker
 * takes only the objects something in palaverd refers to. Parts of the
 * module API that only modules call (the STUN codec, DateTime, forms)
 * would be left out, and a dlopen'ed module could not resolve them: one
 * reference per such object keeps it in, and -export-dynamic exports it
 * whole. A new core file with module-only API gets an entry here. */
void (*const pv_module_api_objects[])(void) = {
    (void (*)(void))pv_stun_parse,
    (void (*)(void))pv_datetime_parse,
    (void (*)(void))pv_form_add_field,
    NULL
};

#ifdef PV_STATIC_MODULES
#define PV_STATIC(n) extern const pv_module_def_t pv_module_##n;
#include "modules.inc"
#undef PV_STATIC
static const pv_module_def_t *const static_modules[] = {
#define PV_STATIC(n) &pv_module_##n,
#include "modules.inc"
#undef PV_STATIC
    NULL
};
#endif

const pv_module_def_t *
pv_module_find_static(const char *name)
{
#ifdef PV_STATIC_MODULES
    size_t i;

    for (i = 0; static_modules[i] != NULL; i++)
        if (strcmp(static_modules[i]->name, name) == 0)
            return static_modules[i];
#else
    (void)name;
#endif
    return NULL;
}

static int
module_name_ok(const char *name)
{
    const char *p;

    if (*name == '\0' || strlen(name) > 64)
        return 0;
    for (p = name; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
              *p == '_'))
            return 0;
    return 1;
}

pv_module_t *
pv_module_load(pv_server_t *srv, const char *name, const char *module_path,
               char *err, size_t errlen)
{
    const pv_module_def_t *def;
    pv_module_t *m;
    void *dl = NULL;

    for (m = srv->modules; m != NULL; m = m->next)
        if (strcmp(m->def->name, name) == 0)
            return m;
    if (!module_name_ok(name)) {
        snprintf(err, errlen, "invalid module name '%s'", name);
        return NULL;
    }
    def = pv_module_find_static(name);
    if (def == NULL) {
        const char *dir = module_path;
        char path[4096], sym[96];

        if (dir == NULL) {
            snprintf(err, errlen, "unknown module '%s'", name);
            return NULL;
        }
        snprintf(path, sizeof(path), "%s/mod_%s.so", dir, name);
        dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
        if (dl == NULL) {
            snprintf(err, errlen, "unknown module '%s' (%s)", name,
                     dlerror());
            return NULL;
        }
        snprintf(sym, sizeof(sym), "pv_module_%s", name);
        def = dlsym(dl, sym);
        if (def == NULL) {
            snprintf(err, errlen, "%s does not define %s", path, sym);
            dlclose(dl);
            return NULL;
        }
    }
    if (def->abi == NULL || strcmp(def->abi, PV_MODULE_ABI) != 0) {
        snprintf(err, errlen, "module '%s' was built for ABI %s, not %s",
                 name, def->abi ? def->abi : "(none)", PV_MODULE_ABI);
        if (dl)
            dlclose(dl);
        return NULL;
    }
    m = pv_xcalloc(1, sizeof(*m));
    m->def = def;
    m->decl.name = def->name;
    m->decl.directives = def->directives;
    m->decl.conf_size = def->conf_size;
    m->decl.component = def->component;
    m->dl = dl;
    m->next = srv->modules;
    srv->modules = m;
    return m;
}

void
pv_module_unload_all(pv_server_t *srv)
{
    pv_module_t *m, *next;

    for (m = srv->modules; m != NULL; m = next) {
        next = m->next;
        if (m->initialised && m->def->fini)
            m->def->fini(m);
        /* dlclose is skipped on purpose: sanitizer builds need the symbols
         * for leak reports, and the process is exiting anyway */
        free(m);
    }
    srv->modules = NULL;
}

pv_modinst_t *
pv_host_modinst(pv_host_t *h, const pv_module_t *m)
{
    size_t i;

    for (i = 0; i < h->n_mods; i++)
        if (h->mods[i].module == m)
            return &h->mods[i];
    return NULL;
}

const char *
pv_module_name(const pv_module_t *m)
{
    return m->def->name;
}

void *
pv_module_conf(pv_module_t *m, pv_host_t *h)
{
    pv_modinst_t *mi = pv_host_modinst(h, m);

    return mi ? mi->conf : NULL;
}

void *
pv_module_host_data(pv_module_t *m, pv_host_t *h)
{
    pv_modinst_t *mi = pv_host_modinst(h, m);

    return mi ? mi->data : NULL;
}

void
pv_module_set_host_data(pv_module_t *m, pv_host_t *h, void *data)
{
    pv_modinst_t *mi = pv_host_modinst(h, m);

    if (mi != NULL)
        mi->data = data;
}

void *
pv_session_data(pv_session_t *s, pv_module_t *m)
{
    pv_modinst_t *mi;

    if (s->mod_data == NULL || m->def->session_data_size == 0)
        return NULL;
    mi = pv_host_modinst(s->host, m);
    return mi ? s->mod_data + mi->slot_offset : NULL;
}
