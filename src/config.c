/* src/config.c: the configuration engine. Reads a libconfig file, builds
 * the scopes (global, vhosts, components), resolves module lists, checks
 * every key against the core table and the enabled modules' tables and
 * fills one generation; also the generic typed setters of config.h. The
 * core directives themselves live in conf_core.c. */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <libconfig.h>

#include <palaver/config.h>
#include <palaver/jid.h>
#include "conf_core.h"

/* A hostile file could produce an error per line; keep -t readable. */
#define MAX_ERRORS 100

/* --- errors --------------------------------------------------------- */

void
pv_conf_errors_free(pv_conf_errors_t *errs)
{
    size_t i;

    if (errs == NULL)
        return;
    for (i = 0; i < errs->n; i++)
        free(errs->msgs[i]);
    free(errs->msgs);
    errs->msgs = NULL;
    errs->n = errs->cap = 0;
}

static void
errs_push(pv_conf_errors_t *errs, char *msg)
{
    if (errs->n == errs->cap) {
        errs->cap = errs->cap ? errs->cap * 2 : 8;
        errs->msgs = pv_xrealloc(errs->msgs, errs->cap * sizeof(char *));
    }
    errs->msgs[errs->n++] = msg;
}

/* --- setter helpers --------------------------------------------------- */

static int PV_PRINTF(3, 4)
fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (errlen > 0) {
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return PV_ERROR;
}

static int
is_off(const pv_conf_value_t *v)
{
    return v->type == PV_CONF_STRING && strcasecmp(v->str, "off") == 0;
}

static const char *
type_name(pv_conf_type_t t)
{
    switch (t) {
    case PV_CONF_STRING: return "a string";
    case PV_CONF_INT: return "an integer";
    case PV_CONF_FLOAT: return "a number";
    case PV_CONF_BOOL: return "a boolean";
    case PV_CONF_LIST: return "a list";
    case PV_CONF_GROUP: return "a group";
    }
    return "a value";
}

/* Checks n against d->min/max (0, 0 = unbounded). */
static int
check_range(const pv_directive_t *d, long long n, const char *unit,
            char *err, size_t errlen)
{
    if (d->min == 0 && d->max == 0)
        return PV_OK;
    if (n < d->min)
        return fail(err, errlen, "must be at least %lld%s", d->min, unit);
    if (d->max != 0 && n > d->max)
        return fail(err, errlen, "must be at most %lld%s", d->max, unit);
    return PV_OK;
}

static int
check_urange(const pv_directive_t *d, unsigned long long n,
             const char *unit, char *err, size_t errlen)
{
    if (d->min > 0 && n < (unsigned long long)d->min)
        return fail(err, errlen, "must be at least %lld%s", d->min, unit);
    if (d->max > 0 && n > (unsigned long long)d->max)
        return fail(err, errlen, "must be at most %lld%s", d->max, unit);
    return PV_OK;
}

/* Parses a whole decimal string (defaults only). */
static int
parse_ll(const char *s, long long *out)
{
    char *end;

    errno = 0;
    if (*s == '\0' || isspace((unsigned char)*s))
        return PV_ERROR;
    *out = strtoll(s, &end, 10);
    if (errno != 0 || *end != '\0')
        return PV_ERROR;
    return PV_OK;
}

/* --- generic setters -------------------------------------------------- */

int
pv_conf_string(const pv_directive_t *d, const pv_conf_value_t *v,
               void *field, char *err, size_t errlen)
{
    (void)d;
    if (v->type != PV_CONF_STRING)
        return fail(err, errlen, "expected a string, got %s",
                    type_name(v->type));
    if (v->is_default && v->str[0] == '\0')
        *(char **)field = NULL;
    else
        *(char **)field = pv_arena_strdup(v->arena, v->str);
    return PV_OK;
}

int
pv_conf_path(const pv_directive_t *d, const pv_conf_value_t *v,
             void *field, char *err, size_t errlen)
{
    const char *base = v->base_dir ? v->base_dir : ".";
    size_t blen = strlen(base);

    (void)d;
    if (v->type != PV_CONF_STRING)
        return fail(err, errlen, "expected a path string, got %s",
                    type_name(v->type));
    if (v->str[0] == '\0') {
        if (!v->is_default)
            return fail(err, errlen, "empty path");
        *(char **)field = NULL;
        return PV_OK;
    }
    if (v->str[0] == '/')
        *(char **)field = pv_arena_strdup(v->arena, v->str);
    else if (blen > 0 && base[blen - 1] == '/')
        *(char **)field = pv_arena_printf(v->arena, "%s%s", base, v->str);
    else
        *(char **)field = pv_arena_printf(v->arena, "%s/%s", base, v->str);
    return PV_OK;
}

int
pv_conf_bool(const pv_directive_t *d, const pv_conf_value_t *v,
             void *field, char *err, size_t errlen)
{
    (void)d;
    if (v->is_default && v->type == PV_CONF_STRING) {
        if (strcasecmp(v->str, "true") == 0 || strcasecmp(v->str, "on") == 0
            || strcasecmp(v->str, "yes") == 0)
            *(int *)field = 1;
        else if (strcasecmp(v->str, "false") == 0
                 || strcasecmp(v->str, "off") == 0
                 || strcasecmp(v->str, "no") == 0)
            *(int *)field = 0;
        else
            return fail(err, errlen, "bad boolean default '%s'", v->str);
        return PV_OK;
    }
    if (v->type != PV_CONF_BOOL)
        return fail(err, errlen, "expected true or false, got %s",
                    type_name(v->type));
    *(int *)field = v->b ? 1 : 0;
    return PV_OK;
}

int
pv_conf_int(const pv_directive_t *d, const pv_conf_value_t *v,
            void *field, char *err, size_t errlen)
{
    long long n;

    if (v->is_default && v->type == PV_CONF_STRING) {
        if (parse_ll(v->str, &n) != PV_OK)
            return fail(err, errlen, "bad integer default '%s'", v->str);
    } else if (v->type == PV_CONF_INT) {
        n = v->i;
    } else {
        return fail(err, errlen, "expected an integer, got %s",
                    type_name(v->type));
    }
    if (check_range(d, n, "", err, errlen) != PV_OK)
        return PV_ERROR;
    *(long long *)field = n;
    return PV_OK;
}

int
pv_conf_float(const pv_directive_t *d, const pv_conf_value_t *v,
              void *field, char *err, size_t errlen)
{
    double f;
    char *end;

    if (v->is_default && v->type == PV_CONF_STRING) {
        errno = 0;
        f = strtod(v->str, &end);
        if (errno != 0 || end == v->str || *end != '\0')
            return fail(err, errlen, "bad number default '%s'", v->str);
    } else if (v->type == PV_CONF_FLOAT || v->type == PV_CONF_INT) {
        f = v->f;
    } else {
        return fail(err, errlen, "expected a number, got %s",
                    type_name(v->type));
    }
    if (f != f)
        return fail(err, errlen, "not a number");
    if ((d->min != 0 || d->max != 0) && f < (double)d->min)
        return fail(err, errlen, "must be at least %lld", d->min);
    if (d->max != 0 && f > (double)d->max)
        return fail(err, errlen, "must be at most %lld", d->max);
    *(double *)field = f;
    return PV_OK;
}

int
pv_conf_count_or_off(const pv_directive_t *d, const pv_conf_value_t *v,
                     void *field, char *err, size_t errlen)
{
    long long n;

    if (is_off(v)) {
        *(long long *)field = PV_COUNT_OFF;
        return PV_OK;
    }
    if (v->is_default && v->type == PV_CONF_STRING) {
        if (parse_ll(v->str, &n) != PV_OK)
            return fail(err, errlen, "bad count default '%s'", v->str);
    } else if (v->type == PV_CONF_INT) {
        n = v->i;
    } else {
        return fail(err, errlen, "expected an integer or \"off\", got %s",
                    type_name(v->type));
    }
    if (n < 0)
        return fail(err, errlen, "must not be negative (use \"off\" for "
                    "no limit)");
    if (check_range(d, n, "", err, errlen) != PV_OK)
        return PV_ERROR;
    *(long long *)field = n;
    return PV_OK;
}

int
pv_conf_parse_size(const char *s, size_t *out, char *err, size_t errlen)
{
    unsigned long long n = 0, mult = 1;
    const char *p = s;

    if (!isdigit((unsigned char)*p))
        return fail(err, errlen, "expected a size like \"10M\", got \"%s\"",
                    s);
    while (isdigit((unsigned char)*p)) {
        unsigned d = (unsigned)(*p++ - '0');
        if (n > (ULLONG_MAX - d) / 10)
            return fail(err, errlen, "size \"%s\" is too large", s);
        n = n * 10 + d;
    }
    while (*p == ' ')
        p++;
    switch (*p) {
    case '\0':
        break;
    case 'b': case 'B':
        p++;
        break;
    case 'k': case 'K':
        mult = 1ULL << 10;
        break;
    case 'm': case 'M':
        mult = 1ULL << 20;
        break;
    case 'g': case 'G':
        mult = 1ULL << 30;
        break;
    default:
        return fail(err, errlen, "unknown unit in size \"%s\" (use B, K, M "
                    "or G)", s);
    }
    if (mult > 1) {
        p++;
        /* accept "10MB" and "10MiB" as well */
        if (*p == 'i')
            p++;
        if (*p == 'B' || *p == 'b')
            p++;
    }
    if (*p != '\0')
        return fail(err, errlen, "unknown unit in size \"%s\" (use B, K, M "
                    "or G)", s);
    if (n > (unsigned long long)(SIZE_MAX - 1) / mult)
        return fail(err, errlen, "size \"%s\" is too large", s);
    *out = (size_t)(n * mult);
    return PV_OK;
}

int
pv_conf_parse_duration(const char *s, pv_duration_t *out, char *err,
                       size_t errlen)
{
    static const struct {
        const char *unit;
        uint64_t ms;
    } units[] = {
        { "ms", 1 }, { "s", 1000 }, { "m", 60000 }, { "h", 3600000 },
        { "d", 86400000 },
    };
    unsigned long long n = 0;
    const char *p = s;
    size_t i;

    if (!isdigit((unsigned char)*p))
        return fail(err, errlen, "expected a duration like \"30s\", got "
                    "\"%s\"", s);
    while (isdigit((unsigned char)*p)) {
        unsigned d = (unsigned)(*p++ - '0');
        if (n > (ULLONG_MAX - d) / 10)
            return fail(err, errlen, "duration \"%s\" is too large", s);
        n = n * 10 + d;
    }
    while (*p == ' ')
        p++;
    for (i = 0; i < PV_COUNTOF(units); i++) {
        if (strcmp(p, units[i].unit) != 0)
            continue;
        if (n > (UINT64_MAX - 1) / units[i].ms)
            return fail(err, errlen, "duration \"%s\" is too large", s);
        *out = n * units[i].ms;
        return PV_OK;
    }
    if (*p == '\0')
        return fail(err, errlen, "duration \"%s\" needs a unit (ms, s, m, h "
                    "or d)", s);
    return fail(err, errlen, "unknown unit in duration \"%s\" (use ms, s, "
                "m, h or d)", s);
}

int
pv_conf_size(const pv_directive_t *d, const pv_conf_value_t *v,
             void *field, char *err, size_t errlen)
{
    size_t n;

    if (v->type == PV_CONF_INT)
        return fail(err, errlen, "expected a string with a unit like "
                    "\"10M\", not a bare integer");
    if (v->type != PV_CONF_STRING)
        return fail(err, errlen, "expected a string with a unit like "
                    "\"10M\", got %s", type_name(v->type));
    if (is_off(v)) {
        *(size_t *)field = PV_SIZE_OFF;
        return PV_OK;
    }
    if (pv_conf_parse_size(v->str, &n, err, errlen) != PV_OK)
        return PV_ERROR;
    if (check_urange(d, n, " bytes", err, errlen) != PV_OK)
        return PV_ERROR;
    *(size_t *)field = n;
    return PV_OK;
}

int
pv_conf_rate(const pv_directive_t *d, const pv_conf_value_t *v,
             void *field, char *err, size_t errlen)
{
    char buf[64];
    size_t n, len;

    if (v->type == PV_CONF_INT)
        return fail(err, errlen, "expected a string with a unit like "
                    "\"64K\" (bytes per second), not a bare integer");
    if (v->type != PV_CONF_STRING)
        return fail(err, errlen, "expected a rate like \"64K\", got %s",
                    type_name(v->type));
    if (is_off(v)) {
        *(size_t *)field = PV_SIZE_OFF;
        return PV_OK;
    }
    len = strlen(v->str);
    if (len >= sizeof(buf))
        return fail(err, errlen, "rate is too long");
    memcpy(buf, v->str, len + 1);
    if (len >= 2 && strcmp(buf + len - 2, "/s") == 0)
        buf[len - 2] = '\0';
    if (pv_conf_parse_size(buf, &n, err, errlen) != PV_OK)
        return PV_ERROR;
    if (check_urange(d, n, " bytes/s", err, errlen) != PV_OK)
        return PV_ERROR;
    *(size_t *)field = n;
    return PV_OK;
}

int
pv_conf_duration(const pv_directive_t *d, const pv_conf_value_t *v,
                 void *field, char *err, size_t errlen)
{
    pv_duration_t ms;

    if (v->type == PV_CONF_INT)
        return fail(err, errlen, "expected a string with a unit like "
                    "\"30s\", not a bare integer");
    if (v->type != PV_CONF_STRING)
        return fail(err, errlen, "expected a duration like \"30s\", got %s",
                    type_name(v->type));
    if (is_off(v)) {
        *(pv_duration_t *)field = PV_DURATION_OFF;
        return PV_OK;
    }
    if (pv_conf_parse_duration(v->str, &ms, err, errlen) != PV_OK)
        return PV_ERROR;
    if (check_urange(d, ms, " ms", err, errlen) != PV_OK)
        return PV_ERROR;
    *(pv_duration_t *)field = ms;
    return PV_OK;
}

/* "a, b, c" into err for "expected one of" messages. */
static int
fail_choices(const pv_directive_t *d, const char *what, const char *got,
             char *err, size_t errlen)
{
    pv_buf_t b = {0};
    size_t i;
    int rc;

    for (i = 0; d->choices != NULL && d->choices[i] != NULL; i++)
        pv_buf_printf(&b, "%s%s", i ? ", " : "", d->choices[i]);
    rc = fail(err, errlen, "%s '%s' (expected one of: %s)", what, got,
              b.data ? b.data : "");
    pv_buf_free(&b);
    return rc;
}

static int
choice_index(const pv_directive_t *d, const char *s)
{
    int i;

    for (i = 0; d->choices != NULL && d->choices[i] != NULL; i++)
        if (strcasecmp(d->choices[i], s) == 0)
            return i;
    return -1;
}

int
pv_conf_enum(const pv_directive_t *d, const pv_conf_value_t *v,
             void *field, char *err, size_t errlen)
{
    int i;

    if (v->type != PV_CONF_STRING)
        return fail(err, errlen, "expected a string, got %s",
                    type_name(v->type));
    i = choice_index(d, v->str);
    if (i < 0)
        return fail_choices(d, "unknown value", v->str, err, errlen);
    *(int *)field = i;
    return PV_OK;
}

/* Appends item to a NULL-terminated array under construction. */
static int
list_add(const pv_directive_t *d, pv_arena_t *a, const char **items,
         size_t *n, size_t cap, const char *item, char *err, size_t errlen)
{
    int i;

    if (d->choices != NULL) {
        i = choice_index(d, item);
        if (i < 0)
            return fail_choices(d, "unknown item", item, err, errlen);
        item = d->choices[i];   /* canonical spelling */
    } else {
        item = pv_arena_strdup(a, item);
    }
    if (*n < cap)
        items[(*n)++] = item;
    return PV_OK;
}

int
pv_conf_string_list(const pv_directive_t *d, const pv_conf_value_t *v,
                    void *field, char *err, size_t errlen)
{
    const char **items;
    size_t n = 0, cap, i;
    pv_conf_value_t e;

    if (v->is_default && v->type == PV_CONF_STRING) {
        /* space- or comma-separated items */
        const char *p = v->str;
        char tok[256];

        cap = strlen(p) / 2 + 2;
        items = pv_arena_calloc(v->arena, (cap + 1) * sizeof(char *));
        while (*p) {
            size_t len = strcspn(p, " ,");
            if (len > 0) {
                if (len >= sizeof(tok))
                    return fail(err, errlen, "default item too long");
                memcpy(tok, p, len);
                tok[len] = '\0';
                if (list_add(d, v->arena, items, &n, cap, tok, err,
                             errlen) != PV_OK)
                    return PV_ERROR;
            }
            p += len;
            p += strspn(p, " ,");
        }
    } else if (v->type == PV_CONF_STRING) {
        cap = 1;
        items = pv_arena_calloc(v->arena, 2 * sizeof(char *));
        if (list_add(d, v->arena, items, &n, cap, v->str, err, errlen)
            != PV_OK)
            return PV_ERROR;
    } else if (v->type == PV_CONF_LIST) {
        cap = pv_conf_value_count(v);
        items = pv_arena_calloc(v->arena, (cap + 1) * sizeof(char *));
        for (i = 0; i < cap; i++) {
            pv_conf_value_elem(v, i, &e);
            if (e.type != PV_CONF_STRING)
                return fail(err, errlen, "expected a list of strings, item "
                            "%zu is %s", i + 1, type_name(e.type));
            if (list_add(d, v->arena, items, &n, cap, e.str, err, errlen)
                != PV_OK)
                return PV_ERROR;
        }
    } else {
        return fail(err, errlen, "expected a list of strings like "
                    "[ \"a\", \"b\" ], got %s", type_name(v->type));
    }
    if (d->min > 0 && (long long)n < d->min)
        return fail(err, errlen, "needs at least %lld item%s", d->min,
                    d->min == 1 ? "" : "s");
    items[n] = NULL;
    *(char ***)field = (char **)items;
    return PV_OK;
}

/* --- values ----------------------------------------------------------- */

static void
value_fill(pv_conf_value_t *v, const config_setting_t *s)
{
    v->setting = s;
    v->line = (int)config_setting_source_line(s);
    switch (config_setting_type(s)) {
    case CONFIG_TYPE_INT:
        v->type = PV_CONF_INT;
        v->i = config_setting_get_int(s);
        v->f = (double)v->i;
        break;
    case CONFIG_TYPE_INT64:
        v->type = PV_CONF_INT;
        v->i = config_setting_get_int64(s);
        v->f = (double)v->i;
        break;
    case CONFIG_TYPE_FLOAT:
        v->type = PV_CONF_FLOAT;
        v->f = config_setting_get_float(s);
        break;
    case CONFIG_TYPE_BOOL:
        v->type = PV_CONF_BOOL;
        v->b = config_setting_get_bool(s);
        break;
    case CONFIG_TYPE_STRING:
        v->type = PV_CONF_STRING;
        v->str = config_setting_get_string(s);
        if (v->str == NULL)
            v->str = "";
        break;
    case CONFIG_TYPE_GROUP:
        v->type = PV_CONF_GROUP;
        break;
    default:
        v->type = PV_CONF_LIST;
        break;
    }
}

size_t
pv_conf_value_count(const pv_conf_value_t *v)
{
    if (v->setting == NULL
        || (v->type != PV_CONF_LIST && v->type != PV_CONF_GROUP))
        return 0;
    return (size_t)config_setting_length(v->setting);
}

int
pv_conf_value_elem(const pv_conf_value_t *v, size_t idx,
                   pv_conf_value_t *out)
{
    const config_setting_t *s;

    if (idx >= pv_conf_value_count(v) || idx > UINT_MAX)
        return PV_NOTFOUND;
    s = config_setting_get_elem(v->setting, (unsigned)idx);
    if (s == NULL)
        return PV_NOTFOUND;
    memset(out, 0, sizeof(*out));
    out->name = config_setting_name(s) ? config_setting_name(s) : v->name;
    out->file = v->file;
    out->base_dir = v->base_dir;
    out->arena = v->arena;
    value_fill(out, s);
    return PV_OK;
}

/* --- the loader ------------------------------------------------------- */

/* One module name seen during a load: resolved once. idx >= 0 when it is
 * named in a modules_enabled list (so every scope carries a conf for it),
 * -1 when it was only probed for an unknown directive. */
typedef struct modent_s {
    const char *name;
    const pv_conf_module_t *decl;   /* NULL: unknown */
    char *err;                      /* resolver's message */
    int idx;
    struct modent_s *next;
} modent_t;

typedef struct fileent_s {
    const char *raw;                /* libconfig's name (NULL: main) */
    const char *name;               /* for messages, in the generation */
    const char *dir;                /* absolute, in the generation */
    struct fileent_s *next;
} fileent_t;

typedef struct scope_s {
    unsigned kind;                  /* PV_CTX_GLOBAL/HOST/COMPONENT */
    const config_setting_t *group;
    struct scope_s *parent;
    const char *name;               /* prepared; NULL for global */
    const char *component_module;
    const char *file;
    int line;
    int nested;                     /* component inside a vhost group */
    const char **mods;              /* resolved list */
    const pv_conf_module_t **decls;
    int *mod_idx;
    size_t n_mods;
    unsigned char *in_subtree;      /* per set index */
    unsigned char *own;             /* per set index: conf copied here */
    pv_core_conf_t core;
    void **confs;                   /* per set index */
} scope_t;

typedef struct load_s {
    pv_config_t *cfg;
    pv_arena_t *a;                  /* the generation's */
    pv_arena_t *tmp;                /* load-time only */
    pv_conf_errors_t *errs;
    size_t n_errs0;
    pv_conf_resolve_fn resolve;
    void *arg;
    const char *main_raw;           /* libconfig's name of the main file */
    fileent_t main_file;
    fileent_t *files;
    modent_t *mods;
    modent_t **set;                 /* enabled somewhere, by idx */
    size_t n_set;
    scope_t **scopes;               /* malloc'd */
    size_t n_scopes, cap_scopes;
} load_t;

static void PV_PRINTF(4, 5)
lerr(load_t *L, const char *file, int line, const char *fmt, ...)
{
    pv_buf_t b = {0};
    va_list ap;

    if (L->errs->n - L->n_errs0 == MAX_ERRORS)
        errs_push(L->errs, pv_xasprintf("%s: too many errors, giving up "
                                        "on the rest", L->main_file.name));
    if (L->errs->n - L->n_errs0 > MAX_ERRORS)
        return;
    if (line > 0)
        pv_buf_printf(&b, "%s:%d: ", file, line);
    else
        pv_buf_printf(&b, "%s: ", file);
    va_start(ap, fmt);
    pv_buf_vprintf(&b, fmt, ap);
    va_end(ap);
    errs_push(L->errs, pv_buf_steal(&b, NULL));
}

static int
has_errors(const load_t *L)
{
    return L->errs->n > L->n_errs0;
}

/* Directory part of path ("." when none), made absolute when possible so
 * that paths survive a later chdir. */
static const char *
dir_of(pv_arena_t *a, const char *path)
{
    const char *slash = strrchr(path, '/');
    char *dir, *real;
    const char *res;

    if (slash == NULL)
        dir = pv_xstrdup(".");
    else if (slash == path)
        dir = pv_xstrdup("/");
    else
        dir = pv_xstrndup(path, (size_t)(slash - path));
    real = realpath(dir, NULL);
    res = pv_arena_strdup(a, real ? real : dir);
    free(real);
    free(dir);
    return res;
}

/* libconfig 1.5 names an included file as written in @include, relative
 * to the include dir (the main file's directory). */
static const fileent_t *
file_of(load_t *L, const config_setting_t *s)
{
    const char *raw = config_setting_source_file(s);
    fileent_t *f;
    char *full;

    if (raw == NULL || (L->main_raw && strcmp(raw, L->main_raw) == 0))
        return &L->main_file;
    for (f = L->files; f != NULL; f = f->next)
        if (strcmp(f->raw, raw) == 0)
            return f;
    f = pv_arena_calloc(L->tmp, sizeof(*f));
    f->raw = pv_arena_strdup(L->tmp, raw);
    if (raw[0] == '/')
        full = pv_xstrdup(raw);
    else
        full = pv_xasprintf("%s/%s", L->cfg->base_dir, raw);
    /* errors name a path the operator can open from any directory */
    f->name = pv_arena_strdup(L->a, full);
    f->dir = dir_of(L->a, full);
    free(full);
    f->next = L->files;
    L->files = f;
    return f;
}

static void
value_init(load_t *L, pv_conf_value_t *v, const config_setting_t *s,
           const char *name)
{
    const fileent_t *f = file_of(L, s);

    memset(v, 0, sizeof(*v));
    v->name = name;
    v->file = f->name;
    v->base_dir = f->dir;
    v->arena = L->a;
    value_fill(v, s);
}

static const char *
sfile(load_t *L, const config_setting_t *s)
{
    return file_of(L, s)->name;
}

static int
sline(const config_setting_t *s)
{
    return (int)config_setting_source_line(s);
}

static modent_t *
mod_lookup(load_t *L, const char *name)
{
    modent_t *m;
    char err[256] = "";

    for (m = L->mods; m != NULL; m = m->next)
        if (strcmp(m->name, name) == 0)
            return m;
    m = pv_arena_calloc(L->tmp, sizeof(*m));
    m->name = pv_arena_strdup(L->tmp, name);
    m->idx = -1;
    m->decl = L->resolve ? L->resolve(L->arg, name, err, sizeof(err))
                         : NULL;
    if (m->decl == NULL)
        m->err = pv_arena_strdup(L->tmp, err[0] ? err : "unknown module");
    m->next = L->mods;
    L->mods = m;
    return m;
}

static const pv_directive_t *
find_directive(const pv_directive_t *table, const char *name)
{
    const pv_directive_t *d;

    for (d = table; d != NULL && d->name != NULL; d++)
        if (strcmp(d->name, name) == 0)
            return d;
    return NULL;
}

/* Directive contexts in words for "is only allowed ..." messages. */
static void
check_ctx(load_t *L, const scope_t *sc, const pv_directive_t *d,
          const config_setting_t *s, int *ok)
{
    static const char *const where[] = {
        "nowhere", "at global scope", "in vhosts",
        "at global scope and in vhosts", "in components",
        "at global scope and in components", "in vhosts and components",
        "anywhere",
    };

    if (d->ctx & sc->kind) {
        *ok = 1;
        return;
    }
    *ok = 0;
    lerr(L, sfile(L, s), sline(s), "'%s' is only allowed %s", d->name,
         where[d->ctx & PV_CTX_ANY]);
}

static int
valid_module_name(const char *s)
{
    if (*s == '\0')
        return 0;
    for (; *s; s++)
        if (!(islower((unsigned char)*s) || isdigit((unsigned char)*s)
              || *s == '_'))
            return 0;
    return 1;
}

/* L->set is rebuilt from the list after each change (short, load-time). */
static void
rebuild_set(load_t *L)
{
    modent_t *m;

    L->set = pv_arena_calloc(L->tmp, (L->n_set + 1) * sizeof(modent_t *));
    for (m = L->mods; m != NULL; m = m->next)
        if (m->idx >= 0)
            L->set[m->idx] = m;
}

/* Resolves scope's modules_enabled against the inherited list. With no
 * "+"/"-" item the list replaces the inherited one; with any, it edits
 * it in order ("+x" and plain "x" append when absent, "-x" removes). */
static void
scope_modules(load_t *L, scope_t *sc, const char *const *inh, size_t n_inh)
{
    const config_setting_t *ml = config_setting_get_member(sc->group,
                                                           "modules_enabled");
    const char **list;
    size_t n = 0, cap, i, j;
    int has_ops = 0, count;

    count = ml ? config_setting_length(ml) : 0;
    cap = n_inh + (size_t)count + 1;
    list = pv_arena_calloc(L->tmp, cap * sizeof(char *));
    if (ml != NULL && !config_setting_is_array(ml)
        && !config_setting_is_list(ml)) {
        lerr(L, sfile(L, ml), sline(ml), "modules_enabled: expected a list "
             "of module names like [ \"disco\", \"+muc\" ]");
        ml = NULL;
    }
    for (i = 0; ml != NULL && i < (size_t)count; i++) {
        const char *s = config_setting_get_string_elem(ml, (int)i);
        if (s != NULL && (s[0] == '+' || s[0] == '-'))
            has_ops = 1;
    }
    if (ml == NULL || has_ops)
        for (i = 0; i < n_inh; i++)
            list[n++] = inh[i];
    for (i = 0; ml != NULL && i < (size_t)count; i++) {
        const config_setting_t *e = config_setting_get_elem(ml,
                                                            (unsigned)i);
        const char *s = config_setting_get_string(e);
        char op = '+';
        modent_t *m;

        if (s == NULL) {
            lerr(L, sfile(L, e), sline(e), "modules_enabled: expected a "
                 "module name string");
            continue;
        }
        if (s[0] == '+' || s[0] == '-')
            op = *s++;
        if (!valid_module_name(s)) {
            lerr(L, sfile(L, e), sline(e), "modules_enabled: bad module "
                 "name '%s'", s);
            continue;
        }
        m = mod_lookup(L, s);
        if (m->decl == NULL) {
            lerr(L, sfile(L, e), sline(e), "modules_enabled: %s", m->err);
            continue;
        }
        if (m->idx < 0)
            m->idx = (int)L->n_set++;
        for (j = 0; j < n; j++)
            if (strcmp(list[j], m->name) == 0)
                break;
        if (op == '+' && j == n)
            list[n++] = m->name;
        else if (op == '-' && j < n) {
            memmove(&list[j], &list[j + 1], (n - j - 1) * sizeof(char *));
            n--;
        }
    }
    /* A component always runs its own module, first. */
    if (sc->component_module != NULL) {
        for (j = 0; j < n; j++)
            if (strcmp(list[j], sc->component_module) == 0)
                break;
        if (j == n) {
            memmove(&list[1], &list[0], n * sizeof(char *));
            list[0] = sc->component_module;
            n++;
        }
    }
    sc->mods = list;
    sc->n_mods = n;
    rebuild_set(L);
}

static scope_t *
scope_new(load_t *L, unsigned kind, const config_setting_t *group,
          scope_t *parent)
{
    scope_t *sc = pv_arena_calloc(L->tmp, sizeof(*sc));

    sc->kind = kind;
    sc->group = group;
    sc->parent = parent;
    sc->file = sfile(L, group);
    sc->line = sline(group);
    if (L->n_scopes == L->cap_scopes) {
        L->cap_scopes = L->cap_scopes ? L->cap_scopes * 2 : 16;
        L->scopes = pv_xrealloc(L->scopes,
                                L->cap_scopes * sizeof(scope_t *));
    }
    L->scopes[L->n_scopes++] = sc;
    return sc;
}

static scope_t *
find_host_scope(load_t *L, const char *name)
{
    size_t i;

    for (i = 1; i < L->n_scopes; i++)
        if (L->scopes[i]->name && strcmp(L->scopes[i]->name, name) == 0)
            return L->scopes[i];
    return NULL;
}

/* Reads and prepares the name member of a vhost or component group.
 * Returns the prepared name in the generation or NULL (error reported). */
static const char *
scope_name(load_t *L, const config_setting_t *g, const char *what)
{
    const config_setting_t *n = config_setting_get_member(g, "name");
    const char *s;
    char *prep;
    const char *res;
    scope_t *dup;

    if (n == NULL) {
        lerr(L, sfile(L, g), sline(g), "%s without a name (add name = "
             "\"example.org\";)", what);
        return NULL;
    }
    s = config_setting_get_string(n);
    if (s == NULL) {
        lerr(L, sfile(L, n), sline(n), "%s name: expected a string", what);
        return NULL;
    }
    prep = pv_jid_prep_domain(s, strlen(s));
    if (prep == NULL) {
        lerr(L, sfile(L, n), sline(n), "%s name '%s' is not a valid domain",
             what, s);
        return NULL;
    }
    res = pv_arena_strdup(L->a, prep);
    free(prep);
    dup = find_host_scope(L, res);
    if (dup != NULL) {
        lerr(L, sfile(L, n), sline(n), "duplicate %s '%s' (already "
             "defined at %s:%d)", what, res, dup->file, dup->line);
        return NULL;
    }
    return res;
}

/* Which vhost a top-level component inherits from: "vhost" when given,
 * else the nearest vhost its name is a subdomain of, else global. */
static scope_t *
component_parent(load_t *L, const config_setting_t *g, const char *name)
{
    const config_setting_t *vs = config_setting_get_member(g, "vhost");
    const char *p;
    scope_t *sc;

    if (vs != NULL) {
        const char *s = config_setting_get_string(vs);
        char *prep = s ? pv_jid_prep_domain(s, strlen(s)) : NULL;

        sc = prep ? find_host_scope(L, prep) : NULL;
        free(prep);
        if (sc == NULL || sc->kind != PV_CTX_HOST) {
            lerr(L, sfile(L, vs), sline(vs), "component vhost: '%s' is not "
                 "a vhost defined in vhosts", s ? s : "(not a string)");
            return L->scopes[0];
        }
        return sc;
    }
    for (p = strchr(name, '.'); p != NULL; p = strchr(p + 1, '.')) {
        sc = find_host_scope(L, p + 1);
        if (sc != NULL && sc->kind == PV_CTX_HOST)
            return sc;
    }
    return L->scopes[0];
}

static void
parse_components(load_t *L, const config_setting_t *list, scope_t *vhost)
{
    int i, n;

    if (!config_setting_is_list(list)) {
        lerr(L, sfile(L, list), sline(list), "components: expected a list "
             "of groups like ( { name = \"x.example.org\"; module = "
             "\"muc\"; } )");
        return;
    }
    n = config_setting_length(list);
    for (i = 0; i < n; i++) {
        const config_setting_t *g = config_setting_get_elem(list,
                                                           (unsigned)i);
        const config_setting_t *ms;
        const char *name, *mod = NULL;
        scope_t *sc, *parent;
        modent_t *m;

        if (!config_setting_is_group(g)) {
            lerr(L, sfile(L, g), sline(g), "components: expected a group "
                 "{ name = ...; module = ...; }");
            continue;
        }
        name = scope_name(L, g, "component");
        ms = config_setting_get_member(g, "module");
        if (ms == NULL) {
            lerr(L, sfile(L, g), sline(g), "component without a module "
                 "(add module = \"muc\"; or similar)");
        } else if ((mod = config_setting_get_string(ms)) == NULL
                   || !valid_module_name(mod)) {
            lerr(L, sfile(L, ms), sline(ms), "component module: expected "
                 "a module name");
            mod = NULL;
        } else {
            m = mod_lookup(L, mod);
            if (m->decl == NULL) {
                lerr(L, sfile(L, ms), sline(ms), "component module: %s",
                     m->err);
                mod = NULL;
            } else {
                if (m->idx < 0) {
                    m->idx = (int)L->n_set++;
                    rebuild_set(L);
                }
                mod = m->name;
            }
        }
        if (name == NULL || mod == NULL)
            continue;
        if (vhost != NULL) {
            parent = vhost;
            if (config_setting_get_member(g, "vhost") != NULL)
                lerr(L, sfile(L, g), sline(g), "component '%s': 'vhost' is "
                     "implied inside a vhost", name);
        } else {
            parent = component_parent(L, g, name);
        }
        sc = scope_new(L, PV_CTX_COMPONENT, g, parent);
        sc->name = name;
        sc->nested = vhost != NULL;
        sc->component_module = pv_arena_strdup(L->a, mod);
        /* Components do not inherit the vhost's modules (a MUC service
         * has no rosters): they start from their own module. */
        scope_modules(L, sc, &sc->component_module, 1);
    }
}

static void
parse_vhosts(load_t *L, const config_setting_t *list)
{
    scope_t *global = L->scopes[0];
    int i, n;

    if (!config_setting_is_list(list)) {
        lerr(L, sfile(L, list), sline(list), "vhosts: expected a list of "
             "groups like ( { name = \"example.org\"; } )");
        return;
    }
    n = config_setting_length(list);
    for (i = 0; i < n; i++) {
        const config_setting_t *g = config_setting_get_elem(list,
                                                           (unsigned)i);
        const config_setting_t *cs;
        const char *name;
        scope_t *sc;

        if (!config_setting_is_group(g)) {
            lerr(L, sfile(L, g), sline(g), "vhosts: expected a group "
                 "{ name = \"example.org\"; ... }");
            continue;
        }
        name = scope_name(L, g, "vhost");
        if (name == NULL)
            continue;
        sc = scope_new(L, PV_CTX_HOST, g, global);
        sc->name = name;
        scope_modules(L, sc, global->mods, global->n_mods);
        cs = config_setting_get_member(g, "components");
        if (cs != NULL)
            parse_components(L, cs, sc);
    }
}

/* The "<module>_domain" string set nearest to vhost scope sc (the vhost
 * group, then global), or NULL. */
static const config_setting_t *
component_domain_setting(load_t *L, const scope_t *sc, const char *mod)
{
    char key[96];
    const scope_t *up;

    snprintf(key, sizeof(key), "%s_domain", mod);
    for (up = sc; up != NULL; up = up->parent) {
        const config_setting_t *s;
        if (up->group == NULL)
            continue;
        s = config_setting_get_member(up->group, key);
        if (s != NULL)
            return s;
    }
    (void)L;
    return NULL;
}

/* CONTRACTS.md §3: a service module (MUC, upload, proxy65) enabled on a
 * vhost D runs on its own domain "<label>.D" instead of on D. Done after
 * the explicit components are known, so that an explicit component of the
 * same name wins (and takes its configuration from its own group). */
static void
implicit_components(load_t *L)
{
    size_t i, j, n = L->n_scopes;

    for (i = 1; i < n; i++) {
        scope_t *vh = L->scopes[i];

        if (vh->kind != PV_CTX_HOST)
            continue;
        for (j = 0; j < vh->n_mods;) {
            const pv_conf_module_t *d = mod_lookup(L, vh->mods[j])->decl;
            const config_setting_t *ds;
            const char *mod = vh->mods[j], *name;
            char *prep;
            scope_t *sc;

            if (d == NULL || d->component == NULL) {
                j++;
                continue;
            }
            memmove(&vh->mods[j], &vh->mods[j + 1],
                    (vh->n_mods - j - 1) * sizeof(char *));
            vh->n_mods--;
            ds = component_domain_setting(L, vh, mod);
            if (ds != NULL && config_setting_get_string(ds) == NULL) {
                lerr(L, sfile(L, ds), sline(ds), "%s_domain: expected a "
                     "domain string", mod);
                continue;
            }
            if (ds != NULL)
                prep = pv_jid_prep_domain(config_setting_get_string(ds),
                                          strlen(config_setting_get_string(
                                              ds)));
            else {
                char *label = pv_xasprintf("%s.%s", d->component, vh->name);
                prep = pv_jid_prep_domain(label, strlen(label));
                free(label);
            }
            if (prep == NULL) {
                lerr(L, ds ? sfile(L, ds) : vh->file, ds ? sline(ds)
                     : vh->line, "%s: no valid component domain for "
                     "vhost '%s'", mod, vh->name);
                continue;
            }
            name = pv_arena_strdup(L->a, prep);
            free(prep);
            if (find_host_scope(L, name) != NULL)
                continue;
            /* no group of its own: its settings come from the vhost */
            sc = scope_new(L, PV_CTX_COMPONENT, vh->group, vh);
            sc->group = NULL;
            sc->name = name;
            sc->nested = 1;
            sc->component_module = pv_arena_strdup(L->a, mod);
            sc->mods = pv_arena_calloc(L->tmp, sizeof(char *));
            sc->mods[0] = mod;
            sc->n_mods = 1;
        }
    }
    rebuild_set(L);
}

/* --- listeners -------------------------------------------------------- */

static const char *const listen_kinds[] = {
    "c2s", "c2s_direct_tls", "s2s", "s2s_direct_tls", "http", "https",
    "turn_udp", "turn_tcp", "turns", "proxy65", NULL
};
static const int listen_ports[] = {
    5222, 5223, 5269, 5270, 5280, 5281, 3478, 3478, 5349, 7777
};

const char *
pv_listen_kind_name(pv_listen_kind_t kind)
{
    if ((unsigned)kind >= PV_COUNTOF(listen_ports))
        return NULL;
    return listen_kinds[kind];
}

int
pv_listen_default_port(pv_listen_kind_t kind)
{
    if ((unsigned)kind >= PV_COUNTOF(listen_ports))
        return 0;
    return listen_ports[kind];
}

static int
listen_conflict(const pv_listen_conf_t *a, const pv_listen_conf_t *b)
{
    int udp_a = a->kind == PV_LISTEN_TURN_UDP;
    int udp_b = b->kind == PV_LISTEN_TURN_UDP;

    if (a->port == 0 || a->port != b->port || udp_a != udp_b)
        return 0;
    return a->address == NULL || b->address == NULL
           || strcmp(a->address, b->address) == 0;
}

static void
parse_listen(load_t *L, const config_setting_t *list)
{
    pv_config_t *cfg = L->cfg;
    int i, j, n;

    if (!config_setting_is_list(list)) {
        lerr(L, sfile(L, list), sline(list), "listen: expected a list of "
             "groups like ( { kind = \"c2s\"; port = 5222; } )");
        return;
    }
    n = config_setting_length(list);
    cfg->listeners = pv_arena_calloc(L->a, ((size_t)n + 1)
                                     * sizeof(pv_listen_conf_t));
    for (i = 0; i < n; i++) {
        const config_setting_t *g = config_setting_get_elem(list,
                                                           (unsigned)i);
        pv_listen_conf_t *lc = &cfg->listeners[cfg->n_listeners];
        int kind = -1, port = -1, ok = 1, m;

        if (!config_setting_is_group(g)) {
            lerr(L, sfile(L, g), sline(g), "listen: expected a group "
                 "{ kind = \"c2s\"; ... }");
            continue;
        }
        lc->address = NULL;
        for (m = 0; m < config_setting_length(g); m++) {
            const config_setting_t *s =
                config_setting_get_elem(g, (unsigned)m);
            const char *key = config_setting_name(s);
            const char *str = config_setting_get_string(s);
            unsigned char addr[16];

            if (strcmp(key, "kind") == 0) {
                for (j = 0; str != NULL && listen_kinds[j] != NULL; j++)
                    if (strcmp(listen_kinds[j], str) == 0)
                        kind = j;
                if (kind < 0) {
                    lerr(L, sfile(L, s), sline(s), "listen: unknown kind "
                         "'%s' (expected one of: c2s, c2s_direct_tls, s2s, "
                         "s2s_direct_tls, http, https, turn_udp, turn_tcp, "
                         "turns, proxy65)", str ? str : "(not a string)");
                    ok = 0;
                }
            } else if (strcmp(key, "address") == 0) {
                if (str == NULL) {
                    lerr(L, sfile(L, s), sline(s), "listen: address: "
                         "expected a string");
                    ok = 0;
                } else if (str[0] == '\0' || strcmp(str, "*") == 0) {
                    lc->address = NULL;
                } else if (inet_pton(AF_INET, str, addr) != 1
                           && inet_pton(AF_INET6, str, addr) != 1) {
                    lerr(L, sfile(L, s), sline(s), "listen: address '%s' "
                         "is not a numeric IPv4 or IPv6 address", str);
                    ok = 0;
                } else {
                    lc->address = pv_arena_strdup(L->a, str);
                }
            } else if (strcmp(key, "port") == 0) {
                if (config_setting_type(s) != CONFIG_TYPE_INT
                    || config_setting_get_int(s) < 0
                    || config_setting_get_int(s) > 65535) {
                    lerr(L, sfile(L, s), sline(s), "listen: port: expected "
                         "an integer from 0 (any free port) to 65535");
                    ok = 0;
                } else {
                    port = config_setting_get_int(s);
                }
            } else {
                lerr(L, sfile(L, s), sline(s), "listen: unknown key '%s' "
                     "(expected kind, address, port)", key);
                ok = 0;
            }
        }
        if (kind < 0 && ok) {
            lerr(L, sfile(L, g), sline(g), "listen: entry without a kind");
            ok = 0;
        }
        if (!ok)
            continue;
        lc->kind = (pv_listen_kind_t)kind;
        lc->port = port >= 0 ? port : listen_ports[kind];
        lc->file = sfile(L, g);
        lc->line = sline(g);
        for (j = 0; j < (int)cfg->n_listeners; j++) {
            if (listen_conflict(&cfg->listeners[j], lc)) {
                lerr(L, lc->file, lc->line, "listen: port %d is already "
                     "used by the listener at %s:%d", lc->port,
                     cfg->listeners[j].file, cfg->listeners[j].line);
                ok = 0;
                break;
            }
        }
        if (ok)
            cfg->n_listeners++;
    }
}

/* --- directives ------------------------------------------------------- */

static void
apply_default(load_t *L, const pv_directive_t *d, void *base,
              const char *owner)
{
    pv_conf_value_t v;
    char err[512];

    if (d->def == NULL || d->set == NULL)
        return;
    memset(&v, 0, sizeof(v));
    v.type = PV_CONF_STRING;
    v.name = d->name;
    v.str = d->def;
    v.file = L->main_file.name;
    v.base_dir = L->cfg->base_dir;
    v.is_default = 1;
    v.arena = L->a;
    if (d->set(d, &v, (char *)base + d->offset, err, sizeof(err)) != PV_OK)
        lerr(L, L->main_file.name, 0, "%s: bad built-in default for '%s': "
             "%s", owner, d->name, err);
}

static void
apply_setting(load_t *L, const pv_directive_t *d, void *base,
              const config_setting_t *s)
{
    pv_conf_value_t v;
    char err[512] = "";

    value_init(L, &v, s, d->name);
    if (d->set(d, &v, (char *)base + d->offset, err, sizeof(err)) != PV_OK)
        lerr(L, v.file, v.line, "%s: %s", d->name, err[0] ? err : "bad "
             "value");
}

/* Says which module owns an unknown key, probing each '_'-prefix of the
 * name as a module (directives are module-prefixed, CONTRACTS.md §3). */
static const char *
owner_of(load_t *L, const char *key)
{
    const char *p;
    char prefix[128];
    modent_t *m;

    for (p = strchr(key, '_'); p != NULL; p = strchr(p + 1, '_')) {
        size_t len = (size_t)(p - key);
        if (len >= sizeof(prefix))
            break;
        memcpy(prefix, key, len);
        prefix[len] = '\0';
        if (!valid_module_name(prefix))
            continue;
        m = mod_lookup(L, prefix);
        if (m->decl != NULL && find_directive(m->decl->directives, key))
            return m->name;
    }
    return NULL;
}

static int
is_structural(const scope_t *sc, const char *key)
{
    if (sc->kind == PV_CTX_HOST)
        return strcmp(key, "name") == 0;
    if (sc->kind == PV_CTX_COMPONENT)
        return strcmp(key, "name") == 0 || strcmp(key, "module") == 0
               || (!sc->nested && strcmp(key, "vhost") == 0);
    return 0;
}

static void *
scope_conf(load_t *L, scope_t *sc, size_t idx)
{
    size_t sz = L->set[idx]->decl->conf_size;
    void *c;

    if (!sc->own[idx]) {
        c = pv_arena_calloc(L->a, sz);
        if (sc->confs[idx] != NULL)
            memcpy(c, sc->confs[idx], sz);
        sc->confs[idx] = c;
        sc->own[idx] = 1;
    }
    return sc->confs[idx];
}

static void
process_scope(load_t *L, scope_t *sc)
{
    const config_setting_t *g = sc->group;
    const pv_directive_t *d;
    size_t i;
    int k, n;

    sc->own = pv_arena_calloc(L->tmp, L->n_set + 1);
    sc->confs = pv_arena_calloc(L->tmp, (L->n_set + 1) * sizeof(void *));
    if (sc->parent != NULL) {
        sc->core = sc->parent->core;
        memcpy(sc->confs, sc->parent->confs, L->n_set * sizeof(void *));
    } else {
        for (d = pv_core_directives; d->name != NULL; d++)
            apply_default(L, d, &sc->core, "core");
        for (i = 0; i < L->n_set; i++) {
            const pv_conf_module_t *decl = L->set[i]->decl;
            if (decl->conf_size == 0 || decl->directives == NULL)
                continue;
            scope_conf(L, sc, i);
            for (d = decl->directives; d->name != NULL; d++)
                apply_default(L, d, sc->confs[i], decl->name);
        }
    }

    n = g != NULL ? config_setting_length(g) : 0;
    for (k = 0; k < n; k++) {
        const config_setting_t *s = config_setting_get_elem(g, (unsigned)k);
        const char *key = config_setting_name(s);
        const char *owner;
        int ok;

        if (key == NULL || is_structural(sc, key))
            continue;
        d = find_directive(pv_core_directives, key);
        if (d != NULL) {
            check_ctx(L, sc, d, s, &ok);
            if (ok && d->set != NULL)
                apply_setting(L, d, &sc->core, s);
            continue;
        }
        for (i = 0; i < L->n_set; i++) {
            const pv_conf_module_t *decl = L->set[i]->decl;
            d = find_directive(decl->directives, key);
            if (d == NULL)
                continue;
            if (!sc->in_subtree[i]) {
                lerr(L, sfile(L, s), sline(s), "directive '%s' belongs to "
                     "module %s, which is not enabled here", key,
                     decl->name);
            } else if (d->set == NULL || decl->conf_size == 0) {
                lerr(L, sfile(L, s), sline(s), "directive '%s' of module "
                     "%s has no setter", key, decl->name);
            } else {
                check_ctx(L, sc, d, s, &ok);
                if (ok)
                    apply_setting(L, d, scope_conf(L, sc, i), s);
            }
            break;
        }
        if (i < L->n_set)
            continue;
        owner = owner_of(L, key);
        if (owner != NULL)
            lerr(L, sfile(L, s), sline(s), "directive '%s' belongs to module "
                 "%s, which is not enabled here", key, owner);
        else
            lerr(L, sfile(L, s), sline(s), "unknown directive '%s'", key);
    }

    if (sc->kind == PV_CTX_GLOBAL && sc->core.control_socket == NULL
        && sc->core.storage_path != NULL)
        sc->core.control_socket = pv_arena_printf(L->a, "%s/control",
                                                  sc->core.storage_path);
}

/* --- building the generation ------------------------------------------ */

static void
fill_modules(load_t *L, scope_t *sc, const char ***mods,
             const pv_conf_module_t ***decls, void ***confs, size_t *n)
{
    size_t i;

    *n = sc->n_mods;
    *mods = pv_arena_calloc(L->a, (sc->n_mods + 1) * sizeof(char *));
    *decls = pv_arena_calloc(L->a, (sc->n_mods + 1) * sizeof(void *));
    *confs = pv_arena_calloc(L->a, (sc->n_mods + 1) * sizeof(void *));
    for (i = 0; i < sc->n_mods; i++) {
        modent_t *m = mod_lookup(L, sc->mods[i]);
        (*mods)[i] = pv_arena_strdup(L->a, m->name);
        (*decls)[i] = m->decl;
        (*confs)[i] = m->decl->conf_size ? sc->confs[m->idx] : NULL;
    }
}

static void
build(load_t *L)
{
    pv_config_t *cfg = L->cfg;
    scope_t *global = L->scopes[0];
    size_t i, h = 0;
    int pass;

    cfg->global = global->core;
    fill_modules(L, global, &cfg->modules, &cfg->module_decls,
                 &cfg->module_confs, &cfg->n_modules);
    cfg->n_hosts = L->n_scopes - 1;
    cfg->hosts = pv_arena_calloc(L->a, (cfg->n_hosts + 1)
                                 * sizeof(pv_host_conf_t));
    /* vhosts first, then components */
    for (pass = 0; pass < 2; pass++) {
        for (i = 1; i < L->n_scopes; i++) {
            scope_t *sc = L->scopes[i];
            pv_host_conf_t *hc;

            if ((sc->kind == PV_CTX_COMPONENT) != pass)
                continue;
            hc = &cfg->hosts[h++];
            hc->name = sc->name;
            hc->is_component = sc->kind == PV_CTX_COMPONENT;
            hc->component_module = sc->component_module;
            hc->parent = sc->parent->kind == PV_CTX_HOST ? sc->parent->name
                                                         : NULL;
            hc->core = sc->core;
            hc->file = sc->file;
            hc->line = sc->line;
            fill_modules(L, sc, &hc->modules, &hc->module_decls,
                         &hc->module_confs, &hc->n_modules);
        }
    }
}

static pv_config_t *
load(config_t *lc, int read_ok, const char *name, const char *base_dir,
     pv_conf_resolve_fn resolve, void *arg, pv_conf_errors_t *errs)
{
    load_t L;
    pv_config_t *cfg;
    const config_setting_t *root, *s;
    scope_t *global;
    size_t i, j;

    memset(&L, 0, sizeof(L));
    cfg = pv_xcalloc(1, sizeof(*cfg));
    cfg->arena = pv_arena_new(8192);
    L.cfg = cfg;
    L.a = cfg->arena;
    L.tmp = pv_arena_new(4096);
    L.errs = errs;
    L.n_errs0 = errs->n;
    L.resolve = resolve;
    L.arg = arg;
    cfg->path = pv_arena_strdup(L.a, name);
    cfg->base_dir = pv_arena_strdup(L.a, base_dir);
    L.main_file.name = cfg->path;
    L.main_file.dir = cfg->base_dir;

    if (!read_ok) {
        const char *f = config_error_file(lc);
        if (config_error_type(lc) == CONFIG_ERR_FILE_IO)
            lerr(&L, name, 0, "cannot read the file");
        else
            lerr(&L, f ? f : name, config_error_line(lc), "%s",
                 config_error_text(lc) ? config_error_text(lc)
                                       : "parse error");
        goto out;
    }
    root = config_root_setting(lc);
    L.main_raw = config_setting_source_file(root);

    /* Pass 1: scopes and module lists, so that pass 2 knows which module
     * tables apply where. */
    global = scope_new(&L, PV_CTX_GLOBAL, root, NULL);
    global->file = cfg->path;
    scope_modules(&L, global, NULL, 0);
    if ((s = config_setting_get_member(root, "listen")) != NULL)
        parse_listen(&L, s);
    if ((s = config_setting_get_member(root, "vhosts")) != NULL)
        parse_vhosts(&L, s);
    if ((s = config_setting_get_member(root, "components")) != NULL)
        parse_components(&L, s, NULL);
    implicit_components(&L);
    rebuild_set(&L);

    /* A module enabled in a scope makes its directives valid there and in
     * every scope it inherits from (muc_* at global scope, muc enabled on
     * one vhost). */
    for (i = 0; i < L.n_scopes; i++)
        L.scopes[i]->in_subtree = pv_arena_calloc(L.tmp, L.n_set + 1);
    for (i = 0; i < L.n_scopes; i++) {
        for (j = 0; j < L.scopes[i]->n_mods; j++) {
            int idx = mod_lookup(&L, L.scopes[i]->mods[j])->idx;
            scope_t *up;
            for (up = L.scopes[i]; up != NULL; up = up->parent)
                up->in_subtree[idx] = 1;
        }
    }

    /* Pass 2: directives, parents before children. */
    for (i = 0; i < L.n_scopes; i++)
        process_scope(&L, L.scopes[i]);
    if (!has_errors(&L))
        build(&L);

out:
    free(L.scopes);
    pv_arena_free(L.tmp);
    if (has_errors(&L)) {
        pv_config_free(cfg);
        return NULL;
    }
    return cfg;
}

pv_config_t *
pv_config_load(const char *path, pv_conf_resolve_fn resolve, void *arg,
               pv_conf_errors_t *errs)
{
    config_t lc;
    pv_config_t *cfg;
    pv_arena_t *tmp = pv_arena_new(512);
    const char *dir = dir_of(tmp, path);
    FILE *fp;
    int ok;

    /* libconfig 1.5 reports a missing file only as "file I/O error" */
    fp = fopen(path, "r");
    if (fp == NULL) {
        errs_push(errs, pv_xasprintf("%s: cannot open: %s", path,
                                     strerror(errno)));
        pv_arena_free(tmp);
        return NULL;
    }
    fclose(fp);
    config_init(&lc);
    /* CONTRACTS.md §1: @include relative to the file, not to the cwd */
    config_set_include_dir(&lc, dir);
    ok = config_read_file(&lc, path);
    cfg = load(&lc, ok == CONFIG_TRUE, path, dir, resolve, arg, errs);
    config_destroy(&lc);
    pv_arena_free(tmp);
    return cfg;
}

pv_config_t *
pv_config_load_string(const char *text, const char *name,
                      const char *base_dir, pv_conf_resolve_fn resolve,
                      void *arg, pv_conf_errors_t *errs)
{
    config_t lc;
    pv_config_t *cfg;
    int ok;

    config_init(&lc);
    config_set_include_dir(&lc, base_dir);
    ok = config_read_string(&lc, text);
    cfg = load(&lc, ok == CONFIG_TRUE, name, base_dir, resolve, arg, errs);
    config_destroy(&lc);
    return cfg;
}

void
pv_config_free(pv_config_t *cfg)
{
    if (cfg == NULL)
        return;
    pv_arena_free(cfg->arena);
    free(cfg);
}

const pv_host_conf_t *
pv_config_host(const pv_config_t *cfg, const char *name)
{
    size_t i;

    for (i = 0; i < cfg->n_hosts; i++)
        if (strcmp(cfg->hosts[i].name, name) == 0)
            return &cfg->hosts[i];
    return NULL;
}

void *
pv_config_module_conf(const pv_config_t *cfg, const pv_host_conf_t *host,
                      const char *module)
{
    const char **mods = host ? host->modules : cfg->modules;
    void **confs = host ? host->module_confs : cfg->module_confs;
    size_t n = host ? host->n_modules : cfg->n_modules, i;

    for (i = 0; i < n; i++)
        if (strcmp(mods[i], module) == 0)
            return confs[i];
    return NULL;
}
