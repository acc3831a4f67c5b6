/* tests/fuzz/fuzz_config.c: libFuzzer harness for the configuration
 * engine (src/config.c, src/conf_core.c) through pv_config_load_string()
 * with a fake module registry covering every generic setter. Inputs with
 * @include are skipped: libconfig would open the named file. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <palaver/config.h>
#include "conf_core.h"

typedef struct {
    long long i;
    long long count;
    double f;
    int b;
    int e;
    size_t size;
    size_t rate;
    pv_duration_t dur;
    char *s;
    char *path;
    char **list;
} fz_conf_t;

static const char *const fz_modes[] = { "one", "two", "three", NULL };

#define FZ(f) offsetof(fz_conf_t, f)
static const pv_directive_t fz_directives[] = {
    { "fz_int", PV_CTX_ANY, pv_conf_int, FZ(i), "5", -10, 100, NULL },
    { "fz_count", PV_CTX_ANY, pv_conf_count_or_off, FZ(count), "off", 0, 0,
      NULL },
    { "fz_float", PV_CTX_ANY, pv_conf_float, FZ(f), "0.5", 0, 0, NULL },
    { "fz_bool", PV_CTX_HOST, pv_conf_bool, FZ(b), "true", 0, 0, NULL },
    { "fz_mode", PV_CTX_ANY, pv_conf_enum, FZ(e), "two", 0, 0, fz_modes },
    { "fz_size", PV_CTX_ANY, pv_conf_size, FZ(size), "1M", 1024, 0, NULL },
    { "fz_rate", PV_CTX_ANY, pv_conf_rate, FZ(rate), "off", 0, 0, NULL },
    { "fz_expire", PV_CTX_COMPONENT | PV_CTX_GLOBAL, pv_conf_duration,
      FZ(dur), "1h", 1000, 0, NULL },
    { "fz_name", PV_CTX_ANY, pv_conf_string, FZ(s), "", 0, 0, NULL },
    { "fz_dir", PV_CTX_ANY, pv_conf_path, FZ(path), "x", 0, 0, NULL },
    { "fz_list", PV_CTX_ANY, pv_conf_string_list, FZ(list), "a b", 1, 0,
      NULL },
    PV_DIRECTIVES_END
};

static const pv_conf_module_t fz_modules[] = {
    { "disco", NULL, 0 },
    { "ping", NULL, 0 },
    { "fz", fz_directives, sizeof(fz_conf_t) },
    { "muc", fz_directives, sizeof(fz_conf_t) },
};

static const pv_conf_module_t *
fz_resolve(void *arg, const char *name, char *err, size_t errlen)
{
    size_t i;

    (void)arg;
    for (i = 0; i < PV_COUNTOF(fz_modules); i++)
        if (strcmp(fz_modules[i].name, name) == 0)
            return &fz_modules[i];
    if (errlen > 0)
        err[0] = '\0';      /* the engine supplies a message */
    return NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
const char *__lsan_default_suppressions(void);

/* libconfig 1.5's scanner leaks the token it was building when a syntax
 * error interrupts it (a string literal, "a = \"x\" ]"); fixed upstream
 * later, not ours. Nothing of ours is allocated under a libconfig frame,
 * so this hides only those. */
const char *
__lsan_default_suppressions(void)
{
    return "leak:libconfig.so\n";
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    pv_conf_errors_t errs = {0};
    pv_config_t *cfg;
    char *text;
    size_t i;

    if (size > 65536 || memmem(data, size, "@include", 8) != NULL)
        return 0;
    text = malloc(size + 1);
    if (text == NULL)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    cfg = pv_config_load_string(text, "fuzz.conf", "/nonexistent",
                                fz_resolve, NULL, &errs);
    /* touch what a consumer would read */
    if (cfg != NULL) {
        for (i = 0; i < cfg->n_hosts; i++) {
            fz_conf_t *c = pv_config_module_conf(cfg, &cfg->hosts[i], "fz");
            if (c != NULL && c->list != NULL && c->list[0] != NULL
                && strlen(c->list[0]) == 0xffffff)
                abort();
        }
        if (cfg->global.storage_path == NULL
            || cfg->global.control_socket == NULL)
            abort();
    } else if (errs.n == 0) {
        abort();            /* a failed load always says why */
    }
    /* every message is "FILE:LINE: ..." or "FILE: ..." */
    for (i = 0; i < errs.n; i++)
        if (strncmp(errs.msgs[i], "fuzz.conf:", 10) != 0)
            abort();
    pv_config_free(cfg);
    pv_conf_errors_free(&errs);
    free(text);
    return 0;
}
