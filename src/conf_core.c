/* src/conf_core.c: the core directive table (pv_core_conf_t) and its two
 * special setters (log sink, XEP-0157 contact addresses). Reading files,
 * scopes and the generic setters live in config.c; each entry here has
 * one entry in man/palaver.conf.5. */
#include <ctype.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "conf_core.h"
#include "dns.h"

/* "stderr", "syslog", or a log file path resolved like any path. */
static int
core_set_log(const pv_directive_t *d, const pv_conf_value_t *v, void *field,
             char *err, size_t errlen)
{
    if (v->type != PV_CONF_STRING) {
        snprintf(err, errlen, "expected \"stderr\", \"syslog\" or a file "
                 "path");
        return PV_ERROR;
    }
    if (strcmp(v->str, "stderr") == 0 || strcmp(v->str, "syslog") == 0) {
        *(char **)field = pv_arena_strdup(v->arena, v->str);
        return PV_OK;
    }
    return pv_conf_path(d, v, field, err, errlen);
}

/* RFC 3986 §3.1: scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ),
 * followed by ':' and something. XEP-0157 wants URIs (mailto:, xmpp:,
 * https:), and a bare address is the usual mistake. */
static int
looks_like_uri(const char *s)
{
    const char *p = s;

    if (!isalpha((unsigned char)*p))
        return 0;
    while (isalnum((unsigned char)*p) || *p == '+' || *p == '-' || *p == '.')
        p++;
    return *p == ':' && p[1] != '\0';
}

static int
core_set_contact_info(const pv_directive_t *d, const pv_conf_value_t *v,
                      void *field, char *err, size_t errlen)
{
    static const struct {
        const char *key;
        size_t offset;
    } keys[] = {
        { "abuse", offsetof(pv_contact_info_t, abuse) },
        { "admin", offsetof(pv_contact_info_t, admin) },
        { "feedback", offsetof(pv_contact_info_t, feedback) },
        { "sales", offsetof(pv_contact_info_t, sales) },
        { "security", offsetof(pv_contact_info_t, security) },
        { "support", offsetof(pv_contact_info_t, support) },
    };
    pv_contact_info_t ci;
    pv_conf_value_t e;
    size_t i, k, n;
    char sub_err[256];

    (void)d;
    if (v->type != PV_CONF_GROUP) {
        snprintf(err, errlen, "expected a group like { abuse = "
                 "[ \"mailto:abuse@example.org\" ]; }");
        return PV_ERROR;
    }
    memset(&ci, 0, sizeof(ci));
    n = pv_conf_value_count(v);
    for (i = 0; i < n; i++) {
        pv_directive_t sub = { NULL, PV_CTX_ANY, pv_conf_string_list, 0,
                               NULL, 1, 0, NULL };
        char ***slot = NULL;
        char **p;

        pv_conf_value_elem(v, i, &e);
        for (k = 0; k < PV_COUNTOF(keys); k++)
            if (strcmp(e.name, keys[k].key) == 0)
                slot = (char ***)((char *)&ci + keys[k].offset);
        if (slot == NULL) {
            snprintf(err, errlen, "unknown key '%s' (expected abuse, admin, "
                     "feedback, sales, security, support)", e.name);
            return PV_ERROR;
        }
        sub.name = e.name;
        if (pv_conf_string_list(&sub, &e, slot, sub_err, sizeof(sub_err))
            != PV_OK) {
            snprintf(err, errlen, "%s: %s", e.name, sub_err);
            return PV_ERROR;
        }
        for (p = *slot; *p != NULL; p++) {
            if (!looks_like_uri(*p)) {
                snprintf(err, errlen, "%s: '%s' is not a URI (write "
                         "\"mailto:%s\" or \"xmpp:%s\")", e.name, *p, *p,
                         *p);
                return PV_ERROR;
            }
        }
    }
    *(pv_contact_info_t *)field = ci;
    return PV_OK;
}

/* s2s_override = ( { domain = "b.example"; target = "127.0.0.3:5269"; },
 * ... ); target may be a list (tried in order). Stored as strings
 * "domain target [target...]" for src/s2s.c, checked here with
 * pv_dns_check_target() so that -t reports bad ones. Group keys cannot
 * be domains in libconfig (no dots in names), hence the list. */
static int
core_set_s2s_override(const pv_directive_t *d, const pv_conf_value_t *v,
                      void *field, char *err, size_t errlen)
{
    pv_conf_value_t e, m, t;
    size_t i, j, k, n;
    char **out;
    char sub_err[256];

    (void)d;
    if (v->is_default) {
        *(char ***)field = NULL;
        return PV_OK;
    }
    if (v->type != PV_CONF_LIST) {
        snprintf(err, errlen, "expected a list like ( { domain = "
                 "\"b.example\"; target = \"127.0.0.3:5269\"; } )");
        return PV_ERROR;
    }
    n = pv_conf_value_count(v);
    out = pv_arena_calloc(v->arena, (n + 1) * sizeof(*out));
    for (i = 0; i < n; i++) {
        const char *domain = NULL;
        pv_buf_t b = {0};
        size_t n_targets = 0;

        pv_conf_value_elem(v, i, &e);
        if (e.type != PV_CONF_GROUP) {
            snprintf(err, errlen, "entry %zu: expected a group { domain = "
                     "...; target = ...; }", i + 1);
            return PV_ERROR;
        }
        for (j = 0; j < pv_conf_value_count(&e); j++) {
            pv_conf_value_elem(&e, j, &m);
            if (strcmp(m.name, "domain") == 0 && m.type == PV_CONF_STRING) {
                domain = m.str;
            } else if (strcmp(m.name, "target") != 0) {
                snprintf(err, errlen, "entry %zu: unknown key '%s' "
                         "(expected domain, target)", i + 1, m.name);
                pv_buf_free(&b);
                return PV_ERROR;
            }
        }
        if (domain == NULL || *domain == '\0' || strchr(domain, ' ')) {
            snprintf(err, errlen, "entry %zu: needs domain = \"name\"",
                     i + 1);
            pv_buf_free(&b);
            return PV_ERROR;
        }
        pv_buf_puts(&b, domain);
        for (j = 0; j < pv_conf_value_count(&e); j++) {
            pv_conf_value_elem(&e, j, &m);
            if (strcmp(m.name, "target") != 0)
                continue;
            for (k = 0; k < (m.type == PV_CONF_LIST
                             ? pv_conf_value_count(&m) : 1); k++) {
                if (m.type == PV_CONF_LIST)
                    pv_conf_value_elem(&m, k, &t);
                else
                    t = m;
                if (t.type != PV_CONF_STRING ||
                    pv_dns_check_target(t.str, sub_err, sizeof(sub_err))
                    != PV_OK) {
                    snprintf(err, errlen, "entry %zu (%s): bad target: %s",
                             i + 1, domain, t.type == PV_CONF_STRING
                             ? sub_err : "expected \"host:port\"");
                    pv_buf_free(&b);
                    return PV_ERROR;
                }
                pv_buf_puts(&b, " ");
                pv_buf_puts(&b, t.str);
                n_targets++;
            }
        }
        if (n_targets == 0) {
            snprintf(err, errlen, "entry %zu (%s): needs target = "
                     "\"host:port\"", i + 1, domain);
            pv_buf_free(&b);
            return PV_ERROR;
        }
        out[i] = pv_arena_strdup(v->arena, b.data);
        pv_buf_free(&b);
    }
    *(char ***)field = out;
    return PV_OK;
}

static const char *const log_levels[] = {
    "error", "warn", "info", "debug", NULL
};

static const char *const sasl_mechanisms[] = {
    "SCRAM-SHA-1", "SCRAM-SHA-1-PLUS", "SCRAM-SHA-256", "SCRAM-SHA-256-PLUS",
    "PLAIN", NULL
};

#define G PV_CTX_GLOBAL
#define GH (PV_CTX_GLOBAL | PV_CTX_HOST)
#define ANY PV_CTX_ANY
#define F(field) offsetof(pv_core_conf_t, field)

/* Limits follow RFC 6120 §13.12 (stanzas of at least 10000 bytes must be
 * accepted) and CONTRACTS.md §3 (every limit can be "off"). */
const pv_directive_t pv_core_directives[] = {
    { "user", G, pv_conf_string, F(user), NULL, 0, 0, NULL },
    { "run_as_root", G, pv_conf_bool, F(run_as_root), "false", 0, 0, NULL },
    { "storage_path", G, pv_conf_path, F(storage_path),
      PV_DEFAULT_STORAGE_PATH, 0, 0, NULL },
    { "module_path", G, pv_conf_path, F(module_path),
      PV_DEFAULT_MODULE_PATH, 0, 0, NULL },
    { "control_socket", G, pv_conf_path, F(control_socket), "", 0, 0,
      NULL },
    { "log", G, core_set_log, F(log), "stderr", 0, 0, NULL },
    { "log_level", G, pv_conf_enum, F(log_level), "info", 0, 0,
      log_levels },
    { "log_debug", G, pv_conf_string_list, F(log_debug), "", 0, 0, NULL },
    { "listen", G, NULL, 0, NULL, 0, 0, NULL },
    { "vhosts", G, NULL, 0, NULL, 0, 0, NULL },
    { "components", GH, NULL, 0, NULL, 0, 0, NULL },
    { "max_connections", G, pv_conf_count_or_off, F(max_connections),
      "10000", 1, 0, NULL },
    { "max_connections_per_ip", G, pv_conf_count_or_off,
      F(max_connections_per_ip), "100", 1, 0, NULL },
    { "modules_enabled", ANY, NULL, 0, NULL, 0, 0, NULL },
    { "dns_servers", G, pv_conf_string_list, F(dns_servers), "", 0, 0,
      NULL },
    { "s2s_override", G, core_set_s2s_override, F(s2s_override), NULL, 0,
      0, NULL },
    { "s2s_ca_file", G, pv_conf_path, F(s2s_ca_file), "", 0, 0, NULL },
    { "s2s_require_encryption", G, pv_conf_bool,
      F(s2s_require_encryption), "true", 0, 0, NULL },
    { "s2s_secure_auth", G, pv_conf_bool, F(s2s_secure_auth), "true", 0,
      0, NULL },
    { "s2s_insecure_domains", G, pv_conf_string_list,
      F(s2s_insecure_domains), "", 0, 0, NULL },
    { "s2s_queue_max", G, pv_conf_int, F(s2s_queue_max), "1000", 1,
      1000000, NULL },
    { "s2s_connect_timeout", G, pv_conf_duration, F(s2s_connect_timeout),
      "30s", 1000, 0, NULL },
    { "s2s_idle_timeout", G, pv_conf_duration, F(s2s_idle_timeout), "10m",
      1000, 0, NULL },
    { "s2s_allow_domains", G, pv_conf_string_list, F(s2s_allow_domains),
      "", 0, 0, NULL },
    { "s2s_deny_domains", G, pv_conf_string_list, F(s2s_deny_domains), "",
      0, 0, NULL },
    { "s2s_rate_limit", G, pv_conf_rate, F(s2s_rate_limit), "512K", 1024, 0,
      NULL },
    { "tls_certificate", ANY, pv_conf_path, F(tls_certificate), NULL, 0, 0,
      NULL },
    { "tls_key", ANY, pv_conf_path, F(tls_key), NULL, 0, 0, NULL },
    { "sasl_mechanisms", ANY, pv_conf_string_list, F(sasl_mechanisms),
      "SCRAM-SHA-1 SCRAM-SHA-1-PLUS SCRAM-SHA-256 SCRAM-SHA-256-PLUS PLAIN",
      1, 0, sasl_mechanisms },
    { "scram_iterations", ANY, pv_conf_int, F(scram_iterations), "10000",
      4096, 10000000, NULL },
    { "c2s_require_encryption", ANY, pv_conf_bool,
      F(c2s_require_encryption), "true", 0, 0, NULL },
    { "c2s_max_stanza_size", ANY, pv_conf_size, F(c2s_max_stanza_size),
      "256K", 10000, 0, NULL },
    { "s2s_max_stanza_size", ANY, pv_conf_size, F(s2s_max_stanza_size),
      "512K", 10000, 0, NULL },
    { "xml_max_depth", ANY, pv_conf_int, F(xml_max_depth), "64", 4, 10000,
      NULL },
    { "xml_max_attrs", ANY, pv_conf_int, F(xml_max_attrs), "64", 4, 10000,
      NULL },
    { "c2s_auth_timeout", ANY, pv_conf_duration, F(c2s_auth_timeout), "30s",
      1000, 0, NULL },
    { "c2s_rate_limit", ANY, pv_conf_rate, F(c2s_rate_limit), "256K", 1024,
      0, NULL },
    { "c2s_stanza_rate", ANY, pv_conf_count_or_off, F(c2s_stanza_rate),
      "200", 1, 0, NULL },
    { "c2s_send_queue_max", ANY, pv_conf_size, F(c2s_send_queue_max), "1M",
      65536, 0, NULL },
    { "auth_failure_limit", ANY, pv_conf_count_or_off,
      F(auth_failure_limit), "10", 1, 0, NULL },
    { "auth_failure_window", ANY, pv_conf_duration, F(auth_failure_window),
      "1m", 1000, 0, NULL },
    { "fast_token_lifetime", ANY, pv_conf_duration, F(fast_token_lifetime),
      "14d", 60000, 0, NULL },
    { "contact_info", ANY, core_set_contact_info, F(contact_info), NULL, 0,
      0, NULL },
    /* http.c, websocket_c2s.c */
    { "http_max_header_size", G, pv_conf_size, F(http_max_header_size),
      "16K", 1024, 0, NULL },
    { "http_max_request_size", G, pv_conf_size, F(http_max_request_size),
      "1M", 1024, 0, NULL },
    { "http_request_timeout", G, pv_conf_duration, F(http_request_timeout),
      "30s", 1000, 0, NULL },
    { "http_metrics_allow", G, pv_conf_string_list, F(http_metrics_allow),
      "127.0.0.1 ::1", 0, 0, NULL },
    { "websocket_max_message", G, pv_conf_size, F(websocket_max_message),
      "256K", 10000, 0, NULL },
    PV_DIRECTIVES_END
};
