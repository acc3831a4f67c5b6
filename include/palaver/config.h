/* include/palaver/config.h: configuration directives as modules declare
 * them (nginx-style tables: name, scope, setter, offsetof, default text)
 * and the generic typed setters. Reading the file, scopes and inheritance
 * live in the core (src/config.c); modules never see libconfig. */
#ifndef PALAVER_CONFIG_H
#define PALAVER_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include <palaver/defs.h>
#include <palaver/mem.h>

/* Where a directive may appear: the top level of the file, a vhosts = (...)
 * entry, a components = (...) entry. */
typedef enum {
    PV_CTX_GLOBAL = 1,
    PV_CTX_HOST = 2,
    PV_CTX_COMPONENT = 4,
    PV_CTX_ANY = 7
} pv_conf_ctx_t;

/* The type of a value as written in the file (libconfig arrays and lists
 * are both PV_CONF_LIST). */
typedef enum {
    PV_CONF_STRING,
    PV_CONF_INT,
    PV_CONF_FLOAT,
    PV_CONF_BOOL,
    PV_CONF_LIST,
    PV_CONF_GROUP
} pv_conf_type_t;

/* Field types filled by the generic setters. A duration is in
 * milliseconds; "off" is PV_DURATION_OFF (never expires). A size or rate
 * of "off" is PV_SIZE_OFF (no limit); a count of "off" is PV_COUNT_OFF. */
typedef uint64_t pv_duration_t;
#define PV_DURATION_OFF UINT64_MAX
#define PV_SIZE_OFF SIZE_MAX
#define PV_COUNT_OFF (-1LL)

/* One value handed to a setter. For a default (is_default = 1) the value
 * is always PV_CONF_STRING holding the directive's def text, setting is
 * NULL, and file/line name the configuration file with line 0. Everything
 * here is borrowed for the duration of the setter call only: a setter
 * copies what it keeps into arena, which is owned by the configuration
 * generation (freed with it, never by the setter). */
typedef struct pv_conf_value_s {
    pv_conf_type_t type;
    const char *name;       /* directive name, or member name in a group */
    const char *str;        /* PV_CONF_STRING */
    long long i;            /* PV_CONF_INT */
    double f;               /* PV_CONF_FLOAT (also set for PV_CONF_INT) */
    int b;                  /* PV_CONF_BOOL */
    const void *setting;    /* the libconfig config_setting_t; NULL for a
                             * default; use pv_conf_value_elem() on it */
    const char *file;
    int line;
    const char *base_dir;   /* absolute directory of file, for paths */
    int is_default;
    pv_arena_t *arena;      /* the generation's arena */
} pv_conf_value_t;

typedef struct pv_directive_s pv_directive_t;

/* Parses v into the field at field (= conf struct + d->offset). Returns
 * PV_OK, or PV_ERROR with a message (lowercase, no file:line, no directive
 * name: the engine adds both) in err. Must not keep pointers into v. */
typedef int (*pv_conf_setter_t)(const pv_directive_t *d,
                                const pv_conf_value_t *v, void *field,
                                char *err, size_t errlen);

/* One directive of a module (or of the core). def is the default as text,
 * parsed by the same setter with is_default = 1 ("10M", "30s", "true",
 * "20", "off"; "" gives NULL for strings and paths; string lists take
 * space-separated items); NULL means no default (the field stays zero).
 * min/max bound counts, ints, sizes and durations (0, 0 = unbounded); for
 * string lists min is the minimum number of items. choices names the
 * values of an enum or the allowed items of a string list. Set names
 * with the module prefix (CONTRACTS.md §3): "muc_history_default". */
struct pv_directive_s {
    const char *name;
    unsigned ctx;               /* pv_conf_ctx_t bits */
    pv_conf_setter_t set;       /* NULL: handled by the engine (core only) */
    size_t offset;
    const char *def;
    long long min, max;
    const char *const *choices; /* NULL-terminated */
};

#define PV_DIRECTIVES_END { NULL, 0, NULL, 0, NULL, 0, 0, NULL }

/* Generic setters. Each rejects a value of the wrong type with a message
 * saying what was expected, and every value it stores (strings, arrays)
 * is allocated in v->arena.
 *
 * pv_conf_string        char *; a string ("" from a default gives NULL)
 * pv_conf_path          char *; a string, relative paths joined to
 *                       v->base_dir; "" from a default gives NULL
 * pv_conf_bool          int; true/false (defaults: "true", "false")
 * pv_conf_int           long long; an integer within min..max
 * pv_conf_float         double; a number within min..max
 * pv_conf_count_or_off  long long; an integer >= 0 (within min..max) or
 *                       "off" (PV_COUNT_OFF)
 * pv_conf_size          size_t; a string "<n>[B|K|M|G]" (1024-based) or
 *                       "off" (PV_SIZE_OFF). A bare integer is refused:
 *                       libconfig 1.5 wraps integers above 2^31 silently
 * pv_conf_duration      pv_duration_t (ms); "<n>ms|s|m|h|d" or "off"
 *                       (PV_DURATION_OFF); the unit is required
 * pv_conf_rate          size_t bytes per second; as a size, with an
 *                       optional "/s" suffix; "off" is PV_SIZE_OFF
 * pv_conf_enum          int; index of the value in d->choices
 *                       (case-insensitive)
 * pv_conf_string_list   char ** (NULL-terminated); a list or array of
 *                       strings, or one string; items must be in
 *                       d->choices when it is set; at least d->min items */
int pv_conf_string(const pv_directive_t *d, const pv_conf_value_t *v,
                   void *field, char *err, size_t errlen);
int pv_conf_path(const pv_directive_t *d, const pv_conf_value_t *v,
                 void *field, char *err, size_t errlen);
int pv_conf_bool(const pv_directive_t *d, const pv_conf_value_t *v,
                 void *field, char *err, size_t errlen);
int pv_conf_int(const pv_directive_t *d, const pv_conf_value_t *v,
                void *field, char *err, size_t errlen);
int pv_conf_float(const pv_directive_t *d, const pv_conf_value_t *v,
                  void *field, char *err, size_t errlen);
int pv_conf_count_or_off(const pv_directive_t *d, const pv_conf_value_t *v,
                         void *field, char *err, size_t errlen);
int pv_conf_size(const pv_directive_t *d, const pv_conf_value_t *v,
                 void *field, char *err, size_t errlen);
int pv_conf_duration(const pv_directive_t *d, const pv_conf_value_t *v,
                     void *field, char *err, size_t errlen);
int pv_conf_rate(const pv_directive_t *d, const pv_conf_value_t *v,
                 void *field, char *err, size_t errlen);
int pv_conf_enum(const pv_directive_t *d, const pv_conf_value_t *v,
                 void *field, char *err, size_t errlen);
int pv_conf_string_list(const pv_directive_t *d, const pv_conf_value_t *v,
                        void *field, char *err, size_t errlen);

/* For custom setters of lists and groups: the number of elements of a
 * PV_CONF_LIST or PV_CONF_GROUP value (0 for scalars and defaults), and
 * element idx as a value of its own (name is the member name in a group,
 * file/line its own position, arena and base_dir inherited). Returns
 * PV_OK, or PV_NOTFOUND when idx is out of range. */
size_t pv_conf_value_count(const pv_conf_value_t *v);
int pv_conf_value_elem(const pv_conf_value_t *v, size_t idx,
                       pv_conf_value_t *out);

/* Parsers behind the setters, for custom setters and tests. Each returns
 * PV_OK or PV_ERROR (with a message in err); "off" is accepted by the
 * callers above, not by these. A size is digits with an optional unit
 * B, K, M or G (any case); a duration is digits with a required unit. */
int pv_conf_parse_size(const char *s, size_t *out, char *err,
                       size_t errlen);
int pv_conf_parse_duration(const char *s, pv_duration_t *out, char *err,
                           size_t errlen);

#endif
