/* tests/unit/test_config.c: the configuration engine (src/config.c) and
 * the core directives (src/conf_core.c): typed setters, scopes and
 * inheritance, module lists, file:line errors, and the shipped example
 * conf/palaver.conf. Files are written into a private temporary dir. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE     /* nftw, realpath */
#endif
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CUnit/CUnit.h>

#include <palaver/config.h>
#include "conf_core.h"

/* --- a fake module registry ------------------------------------------ */

typedef struct {
    long long history;
    char *domain;
    long long max_rooms;
} muc_conf_t;

typedef struct {
    size_t max_size;
    pv_duration_t expire;
    char *dir;
    double ratio;
    int mode;
    size_t rate;
    char **types;
    int enabled;
} upload_conf_t;

static const pv_directive_t muc_directives[] = {
    { "muc_history_default", PV_CTX_ANY, pv_conf_int,
      offsetof(muc_conf_t, history), "20", 0, 100, NULL },
    { "muc_domain", PV_CTX_HOST, pv_conf_string,
      offsetof(muc_conf_t, domain), NULL, 0, 0, NULL },
    { "muc_max_rooms", PV_CTX_ANY, pv_conf_count_or_off,
      offsetof(muc_conf_t, max_rooms), "off", 0, 0, NULL },
    PV_DIRECTIVES_END
};

static const char *const upload_modes[] = { "public", "private", NULL };

static const pv_directive_t upload_directives[] = {
    { "http_upload_max_size", PV_CTX_ANY, pv_conf_size,
      offsetof(upload_conf_t, max_size), "10M", 0, 0, NULL },
    { "http_upload_expire", PV_CTX_ANY, pv_conf_duration,
      offsetof(upload_conf_t, expire), "30d", 0, 0, NULL },
    { "http_upload_dir", PV_CTX_ANY, pv_conf_path,
      offsetof(upload_conf_t, dir), NULL, 0, 0, NULL },
    { "http_upload_ratio", PV_CTX_ANY, pv_conf_float,
      offsetof(upload_conf_t, ratio), "1.5", 0, 0, NULL },
    { "http_upload_mode", PV_CTX_ANY, pv_conf_enum,
      offsetof(upload_conf_t, mode), "public", 0, 0, upload_modes },
    { "http_upload_rate", PV_CTX_ANY, pv_conf_rate,
      offsetof(upload_conf_t, rate), "off", 0, 0, NULL },
    { "http_upload_types", PV_CTX_ANY, pv_conf_string_list,
      offsetof(upload_conf_t, types), "image/jpeg image/png", 0, 0, NULL },
    { "http_upload_enabled", PV_CTX_ANY, pv_conf_bool,
      offsetof(upload_conf_t, enabled), "true", 0, 0, NULL },
    PV_DIRECTIVES_END
};

/* A service module (like mod_muc): enabled on a vhost, it runs on its
 * own component domain. */
typedef struct {
    char *domain;
    long long limit;
} svc_conf_t;

static const pv_directive_t svc_directives[] = {
    { "svc_domain", PV_CTX_ANY, pv_conf_string,
      offsetof(svc_conf_t, domain), NULL, 0, 0, NULL },
    { "svc_limit", PV_CTX_ANY, pv_conf_int,
      offsetof(svc_conf_t, limit), "5", 0, 100, NULL },
    PV_DIRECTIVES_END
};

static const pv_conf_module_t fake_modules[] = {
    { "disco", NULL, 0, NULL },
    { "ping", NULL, 0, NULL },
    { "version", NULL, 0, NULL },
    { "time", NULL, 0, NULL },
    { "muc", muc_directives, sizeof(muc_conf_t), NULL },
    { "http_upload", upload_directives, sizeof(upload_conf_t), NULL },
    { "svc", svc_directives, sizeof(svc_conf_t), "svc" },
};

static int resolve_calls;

static const pv_conf_module_t *
fake_resolve(void *arg, const char *name, char *err, size_t errlen)
{
    size_t i, n = arg ? *(size_t *)arg : PV_COUNTOF(fake_modules);

    resolve_calls++;
    for (i = 0; i < n; i++)
        if (strcmp(fake_modules[i].name, name) == 0)
            return &fake_modules[i];
    snprintf(err, errlen, "unknown module '%s'", name);
    return NULL;
}

/* --- files ------------------------------------------------------------ */

static char tmpdir[PATH_MAX];
static char conf_path[PATH_MAX + 32];

static void
write_file(const char *rel, const char *text)
{
    char path[PATH_MAX + 64];
    FILE *fp;

    snprintf(path, sizeof(path), "%s/%s", tmpdir, rel);
    fp = fopen(path, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(fp);
    fputs(text, fp);
    fclose(fp);
}

static int
rm_entry(const char *path, const struct stat *st, int flag, struct FTW *f)
{
    (void)st;
    (void)flag;
    (void)f;
    return remove(path);
}

static int
suite_init(void)
{
    char tmpl[] = "/tmp/pv-test-config-XXXXXX";
    char sub[PATH_MAX + 16];

    if (mkdtemp(tmpl) == NULL || realpath(tmpl, tmpdir) == NULL)
        return -1;
    snprintf(conf_path, sizeof(conf_path), "%s/palaver.conf", tmpdir);
    snprintf(sub, sizeof(sub), "%s/conf.d", tmpdir);
    return mkdir(sub, 0700);
}

static int
suite_clean(void)
{
    return nftw(tmpdir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
}

static pv_config_t *
load_text(const char *text, pv_conf_errors_t *errs)
{
    write_file("palaver.conf", text);
    return pv_config_load(conf_path, fake_resolve, NULL, errs);
}

static void
dump_errors(const pv_conf_errors_t *errs)
{
    size_t i;

    for (i = 0; i < errs->n; i++)
        fprintf(stderr, "  [%s]\n", errs->msgs[i]);
}

/* Loads text, which must fail with, among others, exactly
 * "<conf_path>:<line>: <msg>" (line 0: "<conf_path>: <msg>"). */
static void
expect_error(const char *text, int line, const char *msg)
{
    pv_conf_errors_t errs = {0};
    pv_config_t *cfg = load_text(text, &errs);
    char want[PATH_MAX + 512];
    size_t i;
    int found = 0;

    if (line > 0)
        snprintf(want, sizeof(want), "%s:%d: %s", conf_path, line, msg);
    else
        snprintf(want, sizeof(want), "%s: %s", conf_path, msg);
    CU_ASSERT_PTR_NULL(cfg);
    pv_config_free(cfg);
    for (i = 0; i < errs.n; i++)
        if (strcmp(errs.msgs[i], want) == 0)
            found = 1;
    if (!found) {
        fprintf(stderr, "\nwanted [%s], got:\n", want);
        dump_errors(&errs);
    }
    CU_ASSERT(found);
    pv_conf_errors_free(&errs);
}

/* The source tree: the build passes PV_TEST_SRCDIR; make check also
 * exports PV_SRCDIR and srcdir. */
static const char *
src_dir(void)
{
#ifdef PV_TEST_SRCDIR
    return PV_TEST_SRCDIR;
#else
    const char *d = getenv("PV_SRCDIR");

    if (d == NULL)
        d = getenv("srcdir");
    return d ? d : ".";
#endif
}

static char *
under_tmp(const char *rel)
{
    static char buf[PATH_MAX + 64];

    snprintf(buf, sizeof(buf), "%s/%s", tmpdir, rel);
    return buf;
}

/* --- setters, table-driven ------------------------------------------- */

static void
test_parse_size(void)
{
    static const struct {
        const char *in;
        int ok;
        size_t out;
    } cases[] = {
        { "0", 1, 0 },
        { "512", 1, 512 },
        { "512B", 1, 512 },
        { "64K", 1, 65536 },
        { "64k", 1, 65536 },
        { "10M", 1, 10485760 },
        { "10MB", 1, 10485760 },
        { "10MiB", 1, 10485760 },
        { "2 G", 1, 2147483648u },
        { "4G", 1, 4294967296u },
        { "", 0, 0 },
        { "M", 0, 0 },
        { "-1K", 0, 0 },
        { "10X", 0, 0 },
        { "10MM", 0, 0 },
        { "1.5M", 0, 0 },
        { " 10M", 0, 0 },
        { "10M ", 0, 0 },
        { "99999999999999999999999", 0, 0 },
        { "17179869184G", 0, 0 },   /* 2^64 bytes */
    };
    size_t i, out;
    char err[256];

    for (i = 0; i < PV_COUNTOF(cases); i++) {
        int rc = pv_conf_parse_size(cases[i].in, &out, err, sizeof(err));
        CU_ASSERT_EQUAL(rc == PV_OK, cases[i].ok);
        if (rc == PV_OK && cases[i].ok)
            CU_ASSERT_EQUAL(out, cases[i].out);
        if ((rc == PV_OK) != cases[i].ok)
            fprintf(stderr, "\nsize case '%s' failed\n", cases[i].in);
    }
}

static void
test_parse_duration(void)
{
    static const struct {
        const char *in;
        int ok;
        pv_duration_t out;
    } cases[] = {
        { "250ms", 1, 250 },
        { "30s", 1, 30000 },
        { "1m", 1, 60000 },
        { "2h", 1, 7200000 },
        { "7d", 1, 604800000 },
        { "30 s", 1, 30000 },
        { "0s", 1, 0 },
        { "30", 0, 0 },         /* the unit is required */
        { "s", 0, 0 },
        { "30S", 0, 0 },
        { "1w", 0, 0 },
        { "1.5h", 0, 0 },
        { "-1s", 0, 0 },
        { "1sm", 0, 0 },
        { "99999999999999999999d", 0, 0 },
        { "999999999999999d", 0, 0 },   /* overflows ms */
    };
    size_t i;
    pv_duration_t out;
    char err[256];

    for (i = 0; i < PV_COUNTOF(cases); i++) {
        int rc = pv_conf_parse_duration(cases[i].in, &out, err,
                                        sizeof(err));
        CU_ASSERT_EQUAL(rc == PV_OK, cases[i].ok);
        if (rc == PV_OK && cases[i].ok)
            CU_ASSERT_EQUAL(out, cases[i].out);
        if ((rc == PV_OK) != cases[i].ok)
            fprintf(stderr, "\nduration case '%s' failed\n", cases[i].in);
    }
}

/* Calls setters directly with hand-made values. */
static void
test_setters(void)
{
    static const char *const colours[] = { "red", "green", NULL };
    pv_directive_t d = { "x", PV_CTX_ANY, NULL, 0, NULL, 0, 0, NULL };
    pv_arena_t *a = pv_arena_new(0);
    pv_conf_value_t v;
    char err[256], *s = NULL, **list = NULL;
    long long n = 0;
    size_t sz = 0;
    int i = 0;

    memset(&v, 0, sizeof(v));
    v.arena = a;
    v.base_dir = "/etc/palaver";

    /* bare integers are refused for sizes, durations and rates */
    v.type = PV_CONF_INT;
    v.i = 262144;
    CU_ASSERT_EQUAL(pv_conf_size(&d, &v, &sz, err, sizeof(err)), PV_ERROR);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "expected a string with a unit like "
                                  "\"10M\""));
    CU_ASSERT_EQUAL(pv_conf_duration(&d, &v, &sz, err, sizeof(err)),
                    PV_ERROR);
    CU_ASSERT_EQUAL(pv_conf_rate(&d, &v, &sz, err, sizeof(err)), PV_ERROR);
    CU_ASSERT_EQUAL(pv_conf_string(&d, &v, &s, err, sizeof(err)), PV_ERROR);
    CU_ASSERT_PTR_NULL(s);  /* untouched on error */

    /* ints and ranges */
    d.min = 4096;
    d.max = 0;
    v.i = 4095;
    CU_ASSERT_EQUAL(pv_conf_int(&d, &v, &n, err, sizeof(err)), PV_ERROR);
    CU_ASSERT_STRING_EQUAL(err, "must be at least 4096");
    v.i = 4096;
    CU_ASSERT_EQUAL(pv_conf_int(&d, &v, &n, err, sizeof(err)), PV_OK);
    CU_ASSERT_EQUAL(n, 4096);
    d.min = 0;
    v.i = -3;
    CU_ASSERT_EQUAL(pv_conf_count_or_off(&d, &v, &n, err, sizeof(err)),
                    PV_ERROR);

    /* "off" */
    v.type = PV_CONF_STRING;
    v.str = "off";
    CU_ASSERT_EQUAL(pv_conf_count_or_off(&d, &v, &n, err, sizeof(err)),
                    PV_OK);
    CU_ASSERT_EQUAL(n, PV_COUNT_OFF);
    CU_ASSERT_EQUAL(pv_conf_size(&d, &v, &sz, err, sizeof(err)), PV_OK);
    CU_ASSERT_EQUAL(sz, PV_SIZE_OFF);
    v.str = "OFF";
    sz = 0;
    CU_ASSERT_EQUAL(pv_conf_rate(&d, &v, &sz, err, sizeof(err)), PV_OK);
    CU_ASSERT_EQUAL(sz, PV_SIZE_OFF);

    /* rate with /s */
    v.str = "64K/s";
    CU_ASSERT_EQUAL(pv_conf_rate(&d, &v, &sz, err, sizeof(err)), PV_OK);
    CU_ASSERT_EQUAL(sz, 65536);

    /* paths */
    v.str = "tls/key.pem";
    CU_ASSERT_EQUAL(pv_conf_path(&d, &v, &s, err, sizeof(err)), PV_OK);
    CU_ASSERT_STRING_EQUAL(s, "/etc/palaver/tls/key.pem");
    v.str = "/abs/key.pem";
    CU_ASSERT_EQUAL(pv_conf_path(&d, &v, &s, err, sizeof(err)), PV_OK);
    CU_ASSERT_STRING_EQUAL(s, "/abs/key.pem");
    v.str = "";
    CU_ASSERT_EQUAL(pv_conf_path(&d, &v, &s, err, sizeof(err)), PV_ERROR);

    /* enums */
    d.choices = colours;
    v.str = "GREEN";
    CU_ASSERT_EQUAL(pv_conf_enum(&d, &v, &i, err, sizeof(err)), PV_OK);
    CU_ASSERT_EQUAL(i, 1);
    v.str = "blue";
    CU_ASSERT_EQUAL(pv_conf_enum(&d, &v, &i, err, sizeof(err)), PV_ERROR);
    CU_ASSERT_STRING_EQUAL(err, "unknown value 'blue' (expected one of: "
                           "red, green)");

    /* string lists: one string is a list of one; choices are checked */
    v.str = "red";
    CU_ASSERT_EQUAL(pv_conf_string_list(&d, &v, &list, err, sizeof(err)),
                    PV_OK);
    CU_ASSERT_STRING_EQUAL(list[0], "red");
    CU_ASSERT_PTR_NULL(list[1]);

    /* defaults are text parsed by the same setter */
    v.is_default = 1;
    v.str = "red, green";
    CU_ASSERT_EQUAL(pv_conf_string_list(&d, &v, &list, err, sizeof(err)),
                    PV_OK);
    CU_ASSERT_STRING_EQUAL(list[0], "red");
    CU_ASSERT_STRING_EQUAL(list[1], "green");
    CU_ASSERT_PTR_NULL(list[2]);
    v.str = "";
    CU_ASSERT_EQUAL(pv_conf_string_list(&d, &v, &list, err, sizeof(err)),
                    PV_OK);
    CU_ASSERT_PTR_NULL(list[0]);
    d.choices = NULL;
    CU_ASSERT_EQUAL(pv_conf_string(&d, &v, &s, err, sizeof(err)), PV_OK);
    CU_ASSERT_PTR_NULL(s);
    v.str = "yes";
    CU_ASSERT_EQUAL(pv_conf_bool(&d, &v, &i, err, sizeof(err)), PV_OK);
    CU_ASSERT_EQUAL(i, 1);
    v.str = "maybe";
    CU_ASSERT_EQUAL(pv_conf_bool(&d, &v, &i, err, sizeof(err)), PV_ERROR);
    v.str = "12x";
    CU_ASSERT_EQUAL(pv_conf_int(&d, &v, &n, err, sizeof(err)), PV_ERROR);

    pv_arena_free(a);
}

/* --- whole files -------------------------------------------------------- */

static const char good_conf[] =
    "# every type, three scopes, +/- lists, relative paths, @include\n"
    "storage_path = \"var/data\";\n"
    "log_level = \"debug\";\n"
    "log_debug = [ \"xml\", \"tls\" ];\n"
    "max_connections = \"off\";\n"
    "max_connections_per_ip = 5;\n"
    "c2s_max_stanza_size = \"64K\";\n"
    "c2s_auth_timeout = \"2m\";\n"
    "c2s_rate_limit = \"off\";\n"
    "sasl_mechanisms = [ \"scram-sha-1\", \"PLAIN\" ];\n"
    "scram_iterations = 4096;\n"
    "run_as_root = true;\n"
    "modules_enabled = [ \"disco\", \"ping\", \"version\" ];\n"
    "muc_history_default = 30;   # muc is enabled on a vhost only\n"
    "http_upload_max_size = \"1G\";\n"
    "listen = ( { kind = \"c2s\"; address = \"127.0.0.1\"; },\n"
    "           { kind = \"c2s_direct_tls\"; port = 0; },\n"
    "           { kind = \"turn_udp\"; port = 3478; },\n"
    "           { kind = \"turn_tcp\"; address = \"::1\"; } );\n"
    "contact_info = { abuse = [ \"mailto:abuse@example.org\" ];\n"
    "                 admin = \"xmpp:admin@example.org\"; };\n"
    "vhosts = (\n"
    "  { name = \"Example.ORG\";\n"
    "    modules_enabled = [ \"+muc\", \"-ping\", \"+http_upload\" ];\n"
    "    tls_certificate = \"tls/example.org.crt\";\n"
    "    muc_history_default = 50;\n"
    "    muc_domain = \"rooms.example.org\";\n"
    "    c2s_require_encryption = false;\n"
    "    http_upload_expire = \"7d\";\n"
    "    http_upload_ratio = 0.5;\n"
    "    http_upload_mode = \"PRIVATE\";\n"
    "    http_upload_rate = \"64K/s\";\n"
    "    http_upload_types = [ \"image/png\" ];\n"
    "    http_upload_enabled = false;\n"
    "  },\n"
    "  { name = \"other.example\";\n"
    "    modules_enabled = [ \"time\" ];   # no +/-: replaces\n"
    "  }\n"
    ");\n"
    "components = (\n"
    "  { name = \"conference.example.org\"; module = \"muc\";\n"
    "    modules_enabled = [ \"+disco\" ];\n"
    "    muc_history_default = 70;\n"
    "  },\n"
    "  { name = \"gateway.example.net\"; module = \"ping\"; }\n"
    ");\n"
    "@include \"conf.d/extra.conf\"\n";

static const char extra_conf[] =
    "xml_max_depth = 32;\n"
    "http_upload_dir = \"uploads\";   # relative to conf.d/\n";

static void
test_good_file(void)
{
    pv_conf_errors_t errs = {0};
    const pv_host_conf_t *ex, *other, *conf, *gw;
    const pv_core_conf_t *g;
    const muc_conf_t *mc;
    const upload_conf_t *uc;
    pv_config_t *cfg;
    char want[PATH_MAX + 64];

    write_file("conf.d/extra.conf", extra_conf);
    cfg = load_text(good_conf, &errs);
    if (cfg == NULL) {
        dump_errors(&errs);
        pv_conf_errors_free(&errs);
    }
    CU_ASSERT_PTR_NOT_NULL_FATAL(cfg);
    CU_ASSERT_EQUAL(errs.n, 0);
    g = &cfg->global;

    CU_ASSERT_STRING_EQUAL(cfg->base_dir, tmpdir);
    CU_ASSERT_STRING_EQUAL(g->storage_path, under_tmp("var/data"));
    CU_ASSERT_STRING_EQUAL(g->control_socket, under_tmp("var/data/control"));
    snprintf(want, sizeof(want), "%s/%s", tmpdir, PV_DEFAULT_MODULE_PATH);
    if (PV_DEFAULT_MODULE_PATH[0] != '/')
        CU_ASSERT_STRING_EQUAL(g->module_path, want);
    CU_ASSERT_STRING_EQUAL(g->log, "stderr");
    CU_ASSERT_EQUAL(g->log_level, PV_LOG_DEBUG);
    CU_ASSERT_STRING_EQUAL(g->log_debug[0], "xml");
    CU_ASSERT_STRING_EQUAL(g->log_debug[1], "tls");
    CU_ASSERT_PTR_NULL(g->log_debug[2]);
    CU_ASSERT_EQUAL(g->max_connections, PV_COUNT_OFF);
    CU_ASSERT_EQUAL(g->max_connections_per_ip, 5);
    CU_ASSERT_EQUAL(g->c2s_max_stanza_size, 65536);
    CU_ASSERT_EQUAL(g->s2s_max_stanza_size, 512 * 1024);  /* default */
    CU_ASSERT_EQUAL(g->c2s_auth_timeout, 120000);
    CU_ASSERT_EQUAL(g->c2s_rate_limit, PV_SIZE_OFF);
    CU_ASSERT_EQUAL(g->c2s_send_queue_max, 1024 * 1024);
    CU_ASSERT_EQUAL(g->auth_failure_window, 60000);
    CU_ASSERT_EQUAL(g->auth_failure_limit, 10);
    CU_ASSERT_EQUAL(g->c2s_stanza_rate, 200);
    CU_ASSERT_STRING_EQUAL(g->sasl_mechanisms[0], "SCRAM-SHA-1");
    CU_ASSERT_STRING_EQUAL(g->sasl_mechanisms[1], "PLAIN");
    CU_ASSERT_PTR_NULL(g->sasl_mechanisms[2]);
    CU_ASSERT_EQUAL(g->scram_iterations, 4096);
    CU_ASSERT_EQUAL(g->run_as_root, 1);
    CU_ASSERT_EQUAL(g->c2s_require_encryption, 1);
    CU_ASSERT_EQUAL(g->xml_max_depth, 32);      /* from the @include */
    CU_ASSERT_EQUAL(g->xml_max_attrs, 64);
    CU_ASSERT_STRING_EQUAL(g->contact_info.abuse[0],
                           "mailto:abuse@example.org");
    CU_ASSERT_STRING_EQUAL(g->contact_info.admin[0],
                           "xmpp:admin@example.org");
    CU_ASSERT_PTR_NULL(g->contact_info.support);

    /* listeners: default ports, UDP and TCP may share 3478 */
    CU_ASSERT_EQUAL_FATAL(cfg->n_listeners, 4);
    CU_ASSERT_EQUAL(cfg->listeners[0].kind, PV_LISTEN_C2S);
    CU_ASSERT_EQUAL(cfg->listeners[0].port, 5222);
    CU_ASSERT_STRING_EQUAL(cfg->listeners[0].address, "127.0.0.1");
    CU_ASSERT_EQUAL(cfg->listeners[0].line, 16);
    CU_ASSERT_EQUAL(cfg->listeners[1].kind, PV_LISTEN_C2S_DIRECT_TLS);
    CU_ASSERT_EQUAL(cfg->listeners[1].port, 0);
    CU_ASSERT_PTR_NULL(cfg->listeners[1].address);
    CU_ASSERT_EQUAL(cfg->listeners[2].port, 3478);
    CU_ASSERT_EQUAL(cfg->listeners[3].kind, PV_LISTEN_TURN_TCP);
    CU_ASSERT_EQUAL(cfg->listeners[3].port, 3478);

    /* global module list */
    CU_ASSERT_EQUAL_FATAL(cfg->n_modules, 3);
    CU_ASSERT_STRING_EQUAL(cfg->modules[0], "disco");
    CU_ASSERT_STRING_EQUAL(cfg->modules[2], "version");
    CU_ASSERT_PTR_NULL(pv_config_module_conf(cfg, NULL, "muc"));

    /* hosts: vhosts first, names prepared */
    CU_ASSERT_EQUAL_FATAL(cfg->n_hosts, 4);
    ex = pv_config_host(cfg, "example.org");
    other = pv_config_host(cfg, "other.example");
    conf = pv_config_host(cfg, "conference.example.org");
    gw = pv_config_host(cfg, "gateway.example.net");
    CU_ASSERT_PTR_NOT_NULL_FATAL(ex);
    CU_ASSERT_PTR_NOT_NULL_FATAL(other);
    CU_ASSERT_PTR_NOT_NULL_FATAL(conf);
    CU_ASSERT_PTR_NOT_NULL_FATAL(gw);
    CU_ASSERT_PTR_EQUAL(ex, &cfg->hosts[0]);
    CU_ASSERT_PTR_EQUAL(other, &cfg->hosts[1]);
    CU_ASSERT_FALSE(ex->is_component);
    CU_ASSERT_EQUAL(ex->line, 23);
    CU_ASSERT_STRING_EQUAL(ex->file, conf_path);
    CU_ASSERT_TRUE(conf->is_component);
    CU_ASSERT_STRING_EQUAL(conf->component_module, "muc");
    CU_ASSERT_STRING_EQUAL(conf->parent, "example.org");
    CU_ASSERT_PTR_NULL(gw->parent);

    /* +/- against the inherited list; a plain list replaces */
    CU_ASSERT_EQUAL_FATAL(ex->n_modules, 4);
    CU_ASSERT_STRING_EQUAL(ex->modules[0], "disco");
    CU_ASSERT_STRING_EQUAL(ex->modules[1], "version");
    CU_ASSERT_STRING_EQUAL(ex->modules[2], "muc");
    CU_ASSERT_STRING_EQUAL(ex->modules[3], "http_upload");
    CU_ASSERT_PTR_EQUAL(ex->module_decls[2], &fake_modules[4]);
    CU_ASSERT_PTR_NULL(ex->module_confs[0]);   /* no directives */
    CU_ASSERT_EQUAL_FATAL(other->n_modules, 1);
    CU_ASSERT_STRING_EQUAL(other->modules[0], "time");
    /* a component starts from its own module */
    CU_ASSERT_EQUAL_FATAL(conf->n_modules, 2);
    CU_ASSERT_STRING_EQUAL(conf->modules[0], "muc");
    CU_ASSERT_STRING_EQUAL(conf->modules[1], "disco");
    CU_ASSERT_EQUAL_FATAL(gw->n_modules, 1);
    CU_ASSERT_STRING_EQUAL(gw->modules[0], "ping");

    /* module values: default, then global, vhost, component */
    mc = pv_config_module_conf(cfg, ex, "muc");
    CU_ASSERT_PTR_NOT_NULL_FATAL(mc);
    CU_ASSERT_EQUAL(mc->history, 50);
    CU_ASSERT_STRING_EQUAL(mc->domain, "rooms.example.org");
    CU_ASSERT_EQUAL(mc->max_rooms, PV_COUNT_OFF);
    mc = pv_config_module_conf(cfg, conf, "muc");
    CU_ASSERT_PTR_NOT_NULL_FATAL(mc);
    CU_ASSERT_EQUAL(mc->history, 70);
    CU_ASSERT_STRING_EQUAL(mc->domain, "rooms.example.org");
    CU_ASSERT_PTR_NULL(pv_config_module_conf(cfg, other, "muc"));

    uc = pv_config_module_conf(cfg, ex, "http_upload");
    CU_ASSERT_PTR_NOT_NULL_FATAL(uc);
    CU_ASSERT_EQUAL(uc->max_size, (size_t)1 << 30);
    CU_ASSERT_EQUAL(uc->expire, 7ULL * 86400000);
    CU_ASSERT_STRING_EQUAL(uc->dir, under_tmp("conf.d/uploads"));
    CU_ASSERT_DOUBLE_EQUAL(uc->ratio, 0.5, 1e-9);
    CU_ASSERT_EQUAL(uc->mode, 1);
    CU_ASSERT_EQUAL(uc->rate, 65536);
    CU_ASSERT_STRING_EQUAL(uc->types[0], "image/png");
    CU_ASSERT_PTR_NULL(uc->types[1]);
    CU_ASSERT_EQUAL(uc->enabled, 0);

    /* core values inherit too */
    CU_ASSERT_STRING_EQUAL(ex->core.tls_certificate,
                           under_tmp("tls/example.org.crt"));
    CU_ASSERT_EQUAL(ex->core.c2s_require_encryption, 0);
    CU_ASSERT_EQUAL(ex->core.c2s_max_stanza_size, 65536);
    CU_ASSERT_EQUAL(conf->core.c2s_require_encryption, 0);
    CU_ASSERT_STRING_EQUAL(conf->core.tls_certificate,
                           under_tmp("tls/example.org.crt"));
    CU_ASSERT_EQUAL(other->core.c2s_require_encryption, 1);
    CU_ASSERT_PTR_NULL(other->core.tls_certificate);
    CU_ASSERT_EQUAL(gw->core.c2s_require_encryption, 1);

    pv_config_free(cfg);
    pv_conf_errors_free(&errs);
}

static void
test_module_defaults(void)
{
    pv_conf_errors_t errs = {0};
    const upload_conf_t *uc;
    pv_config_t *cfg;

    cfg = load_text("modules_enabled = [ \"http_upload\" ];\n", &errs);
    CU_ASSERT_PTR_NOT_NULL_FATAL(cfg);
    uc = pv_config_module_conf(cfg, NULL, "http_upload");
    CU_ASSERT_PTR_NOT_NULL_FATAL(uc);
    CU_ASSERT_EQUAL(uc->max_size, 10 * 1024 * 1024);
    CU_ASSERT_EQUAL(uc->expire, 30ULL * 86400000);
    CU_ASSERT_PTR_NULL(uc->dir);
    CU_ASSERT_DOUBLE_EQUAL(uc->ratio, 1.5, 1e-9);
    CU_ASSERT_EQUAL(uc->mode, 0);
    CU_ASSERT_EQUAL(uc->rate, PV_SIZE_OFF);
    CU_ASSERT_STRING_EQUAL(uc->types[0], "image/jpeg");
    CU_ASSERT_STRING_EQUAL(uc->types[1], "image/png");
    CU_ASSERT_EQUAL(uc->enabled, 1);
    CU_ASSERT_EQUAL(cfg->n_hosts, 0);
    CU_ASSERT_EQUAL(cfg->n_listeners, 0);
    /* the core defaults */
    CU_ASSERT_EQUAL(cfg->global.scram_iterations, 10000);
    CU_ASSERT_EQUAL(cfg->global.c2s_max_stanza_size, 256 * 1024);
    CU_ASSERT_EQUAL(cfg->global.c2s_rate_limit, 256 * 1024);
    CU_ASSERT_EQUAL(cfg->global.c2s_auth_timeout, 30000);
    CU_ASSERT_EQUAL(cfg->global.log_level, PV_LOG_INFO);
    CU_ASSERT_EQUAL(cfg->global.run_as_root, 0);
    CU_ASSERT_PTR_NULL(cfg->global.user);
    CU_ASSERT_PTR_NULL(cfg->global.log_debug[0]);
    CU_ASSERT_STRING_EQUAL(cfg->global.sasl_mechanisms[4], "PLAIN");
    pv_config_free(cfg);
    pv_conf_errors_free(&errs);
}

static void
test_errors_single(void)
{
    static const struct {
        const char *text;
        int line;
        const char *msg;
    } cases[] = {
        { "log_level = \"info\";\nfoo = 2;\n", 2,
          "unknown directive 'foo'" },
        { "\n\nlog_level = 3;\n", 3,
          "log_level: expected a string, got an integer" },
        { "c2s_max_stanza_size = 262144;\n", 1,
          "c2s_max_stanza_size: expected a string with a unit like "
          "\"10M\", not a bare integer" },
        { "c2s_auth_timeout = 30;\n", 1,
          "c2s_auth_timeout: expected a string with a unit like \"30s\", "
          "not a bare integer" },
        { "c2s_auth_timeout = \"30\";\n", 1,
          "c2s_auth_timeout: duration \"30\" needs a unit (ms, s, m, h or "
          "d)" },
        { "run_as_root = \"yes\";\n", 1,
          "run_as_root: expected true or false, got a string" },
        { "scram_iterations = 1000;\n", 1,
          "scram_iterations: must be at least 4096" },
        { "sasl_mechanisms = [ \"DIGEST-MD5\" ];\n", 1,
          "sasl_mechanisms: unknown item 'DIGEST-MD5' (expected one of: "
          "SCRAM-SHA-1, SCRAM-SHA-1-PLUS, SCRAM-SHA-256, "
          "SCRAM-SHA-256-PLUS, PLAIN)" },
        { "sasl_mechanisms = [ ];\n", 1,
          "sasl_mechanisms: needs at least 1 item" },
        { "log_level = \"verbose\";\n", 1,
          "log_level: unknown value 'verbose' (expected one of: error, "
          "warn, info, debug)" },
        { "max_connections_per_ip = -1;\n", 1,
          "max_connections_per_ip: must not be negative (use \"off\" for "
          "no limit)" },
        { "storage_path = \"\";\n", 1, "storage_path: empty path" },
        { "a = 1;\nb = ;\n", 2, "syntax error" },
        { "a = 1;\n@include \"nope.conf\"\n", 2,
          "cannot open include file" },
        { "vhosts = ( { name = \"x.org\"; listen = ( ); } );\n", 1,
          "'listen' is only allowed at global scope" },
        { "vhosts = ( { name = \"x.org\";\n  log_level = \"info\"; } );\n",
          2, "'log_level' is only allowed at global scope" },
        { "components = ( { name = \"c.x.org\"; module = \"ping\";\n"
          "  components = ( ); } );\n", 2,
          "'components' is only allowed at global scope and in vhosts" },
        { "modules_enabled = [ \"muc\" ];\n"
          "vhosts = ( { name = \"x.org\";\n  muc_domain = \"r.x.org\"; } );\n"
          "muc_domain = \"oops\";\n", 4,
          "'muc_domain' is only allowed in vhosts" },
        { "modules_enabled = [ \"disco\", \"nosuch\" ];\n", 1,
          "modules_enabled: unknown module 'nosuch'" },
        { "modules_enabled = [ \"Disco\" ];\n", 1,
          "modules_enabled: bad module name 'Disco'" },
        { "modules_enabled = \"disco\";\n", 1,
          "modules_enabled: expected a list of module names like "
          "[ \"disco\", \"+muc\" ]" },
        { "vhosts = ( { name = \"example.org\"; },\n"
          "  { name = \"EXAMPLE.org.\"; } );\n", 2,
          "duplicate vhost 'example.org' (already defined at PLACEHOLDER:1)"
        },
        { "vhosts = ( { name = \"a b\"; } );\n", 1,
          "vhost name 'a b' is not a valid domain" },
        { "vhosts = ( { tls_key = \"k\"; } );\n", 1,
          "vhost without a name (add name = \"example.org\";)" },
        { "vhosts = { name = \"x.org\"; };\n", 1,
          "vhosts: expected a list of groups like ( { name = "
          "\"example.org\"; } )" },
        { "components = ( { name = \"c.org\"; } );\n", 1,
          "component without a module (add module = \"muc\"; or similar)" },
        { "components = ( { name = \"c.org\"; module = \"ping\";\n"
          " vhost = \"nosuch.org\"; } );\n", 2,
          "component vhost: 'nosuch.org' is not a vhost defined in vhosts" },
        { "listen = ( { kind = \"c2s\"; },\n { kind = \"c2s\"; } );\n", 2,
          "listen: port 5222 is already used by the listener at "
          "PLACEHOLDER:1" },
        { "listen = ( { kind = \"xmpp\"; } );\n", 1,
          "listen: unknown kind 'xmpp' (expected one of: c2s, "
          "c2s_direct_tls, s2s, s2s_direct_tls, http, https, turn_udp, "
          "turn_tcp, turns, proxy65)" },
        { "listen = ( { kind = \"c2s\"; address = \"localhost\"; } );\n", 1,
          "listen: address 'localhost' is not a numeric IPv4 or IPv6 "
          "address" },
        { "listen = ( { kind = \"c2s\"; port = 70000; } );\n", 1,
          "listen: port: expected an integer from 0 (any free port) to "
          "65535" },
        { "listen = ( { kind = \"c2s\"; tls = true; } );\n", 1,
          "listen: unknown key 'tls' (expected kind, address, port)" },
        { "listen = ( { port = 5222; } );\n", 1,
          "listen: entry without a kind" },
        { "contact_info = { abuse = [ \"abuse@example.org\" ]; };\n", 1,
          "contact_info: abuse: 'abuse@example.org' is not a URI (write "
          "\"mailto:abuse@example.org\" or \"xmpp:abuse@example.org\")" },
        { "contact_info = { owner = [ \"mailto:a@b.c\" ]; };\n", 1,
          "contact_info: unknown key 'owner' (expected abuse, admin, "
          "feedback, sales, security, support)" },
        { "log = 3;\n", 1,
          "log: expected \"stderr\", \"syslog\" or a file path" },
    };
    char msg[PATH_MAX + 8192];
    size_t i;

    for (i = 0; i < PV_COUNTOF(cases); i++) {
        const char *ph = strstr(cases[i].msg, "PLACEHOLDER");
        if (ph != NULL)
            snprintf(msg, sizeof(msg), "%.*s%s%s",
                     (int)(ph - cases[i].msg), cases[i].msg, conf_path,
                     ph + strlen("PLACEHOLDER"));
        else
            snprintf(msg, sizeof(msg), "%s", cases[i].msg);
        expect_error(cases[i].text, cases[i].line, msg);
    }
}

static void
test_missing_file(void)
{
    pv_conf_errors_t errs = {0};
    pv_config_t *cfg;
    char want[PATH_MAX + 128];

    cfg = pv_config_load(under_tmp("nonexistent.conf"), fake_resolve, NULL,
                         &errs);
    CU_ASSERT_PTR_NULL(cfg);
    CU_ASSERT_EQUAL_FATAL(errs.n, 1);
    snprintf(want, sizeof(want), "%s: cannot open: No such file or "
             "directory", under_tmp("nonexistent.conf"));
    CU_ASSERT_STRING_EQUAL(errs.msgs[0], want);
    pv_conf_errors_free(&errs);
}

/* Several errors in one file are all reported, in file order. */
static void
test_errors_all_reported(void)
{
    pv_conf_errors_t errs = {0};
    pv_config_t *cfg;
    char want[3][PATH_MAX + 128];

    cfg = load_text("bogus = 1;\n"
                    "c2s_max_stanza_size = 1024000;\n"
                    "log_level = \"info\";\n"
                    "vhosts = ( { name = \"x.org\";\n"
                    "   scram_iterations = \"many\"; } );\n", &errs);
    CU_ASSERT_PTR_NULL(cfg);
    if (errs.n != 3)
        dump_errors(&errs);
    CU_ASSERT_EQUAL_FATAL(errs.n, 3);
    snprintf(want[0], sizeof(want[0]), "%s:1: unknown directive 'bogus'",
             conf_path);
    snprintf(want[1], sizeof(want[1]), "%s:2: c2s_max_stanza_size: "
             "expected a string with a unit like \"10M\", not a bare "
             "integer", conf_path);
    snprintf(want[2], sizeof(want[2]), "%s:5: scram_iterations: expected "
             "an integer, got a string", conf_path);
    CU_ASSERT_STRING_EQUAL(errs.msgs[0], want[0]);
    CU_ASSERT_STRING_EQUAL(errs.msgs[1], want[1]);
    CU_ASSERT_STRING_EQUAL(errs.msgs[2], want[2]);
    pv_conf_errors_free(&errs);
}

/* A module directive is accepted where its module is enabled (or in a
 * scope that such a scope inherits from), refused elsewhere. */
static void
test_module_scope(void)
{
    pv_conf_errors_t errs = {0};
    pv_config_t *cfg;
    const muc_conf_t *mc;

    expect_error("muc_history_default = 10;\n", 1,
                 "directive 'muc_history_default' belongs to module muc, "
                 "which is not enabled here");
    expect_error("modules_enabled = [ \"disco\" ];\n"
                 "vhosts = ( { name = \"a.org\";\n"
                 "  modules_enabled = [ \"+muc\" ]; },\n"
                 "  { name = \"b.org\";\n"
                 "  muc_history_default = 10; } );\n", 5,
                 "directive 'muc_history_default' belongs to module muc, "
                 "which is not enabled here");
    expect_error("modules_enabled = [ \"muc\" ];\n"
                 "vhosts = ( { name = \"a.org\";\n"
                 "  modules_enabled = [ \"-muc\" ];\n"
                 "  muc_history_default = 10; } );\n", 4,
                 "directive 'muc_history_default' belongs to module muc, "
                 "which is not enabled here");
    expect_error("modules_enabled = [ \"muc\" ];\n"
                 "muc_history_default = 1000;\n", 2,
                 "muc_history_default: must be at most 100");
    expect_error("modules_enabled = [ \"muc\" ];\nmuc_bogus = 1;\n", 2,
                 "unknown directive 'muc_bogus'");

    /* global value inherited by the one vhost that enables muc */
    cfg = load_text("muc_history_default = 10;\n"
                    "vhosts = ( { name = \"a.org\";\n"
                    "  modules_enabled = [ \"muc\" ]; },\n"
                    "  { name = \"b.org\"; } );\n", &errs);
    if (cfg == NULL)
        dump_errors(&errs);
    CU_ASSERT_PTR_NOT_NULL_FATAL(cfg);
    mc = pv_config_module_conf(cfg, pv_config_host(cfg, "a.org"), "muc");
    CU_ASSERT_PTR_NOT_NULL_FATAL(mc);
    CU_ASSERT_EQUAL(mc->history, 10);
    CU_ASSERT_EQUAL(pv_config_host(cfg, "b.org")->n_modules, 0);
    pv_config_free(cfg);

    /* a vhost value reaches a component of that vhost */
    cfg = load_text("vhosts = ( { name = \"a.org\"; muc_history_default = 5;"
                    "\n components = ( { name = \"rooms.a.org\"; "
                    "module = \"muc\"; } ); } );\n", &errs);
    if (cfg == NULL)
        dump_errors(&errs);
    CU_ASSERT_PTR_NOT_NULL_FATAL(cfg);
    mc = pv_config_module_conf(cfg, pv_config_host(cfg, "rooms.a.org"),
                               "muc");
    CU_ASSERT_PTR_NOT_NULL_FATAL(mc);
    CU_ASSERT_EQUAL(mc->history, 5);
    CU_ASSERT_STRING_EQUAL(pv_config_host(cfg, "rooms.a.org")->parent,
                           "a.org");
    pv_config_free(cfg);
    pv_conf_errors_free(&errs);
}

/* Each module name is resolved once per load, whatever the number of
 * lists naming it. */
static void
test_resolve_once(void)
{
    pv_conf_errors_t errs = {0};
    pv_config_t *cfg;

    resolve_calls = 0;
    cfg = load_text("modules_enabled = [ \"disco\", \"ping\" ];\n"
                    "vhosts = ( { name = \"a.org\";\n"
                    "  modules_enabled = [ \"-ping\", \"+disco\" ]; },\n"
                    "  { name = \"b.org\";\n"
                    "  modules_enabled = [ \"ping\" ]; } );\n", &errs);
    CU_ASSERT_PTR_NOT_NULL_FATAL(cfg);
    CU_ASSERT_EQUAL(resolve_calls, 2);
    CU_ASSERT_EQUAL(pv_config_host(cfg, "a.org")->n_modules, 1);
    pv_config_free(cfg);
    pv_conf_errors_free(&errs);
}

/* A string load reports errors under the given name. */
static void
test_load_string(void)
{
    pv_conf_errors_t errs = {0};
    pv_config_t *cfg;

    cfg = pv_config_load_string("storage_path = \"d\";\n", "<test>", "/srv",
                                fake_resolve, NULL, &errs);
    CU_ASSERT_PTR_NOT_NULL_FATAL(cfg);
    CU_ASSERT_STRING_EQUAL(cfg->global.storage_path, "/srv/d");
    pv_config_free(cfg);
    cfg = pv_config_load_string("x = 1;\n", "<test>", "/srv", fake_resolve,
                                NULL, &errs);
    CU_ASSERT_PTR_NULL(cfg);
    CU_ASSERT_EQUAL_FATAL(errs.n, 1);
    CU_ASSERT_STRING_EQUAL(errs.msgs[0], "<test>:1: unknown directive 'x'");
    pv_conf_errors_free(&errs);
}

/* The shipped example loads as-is with the modules it names. */
static void
test_example_conf(void)
{
    size_t n_known = 4;     /* disco, ping, version, time */
    pv_conf_errors_t errs = {0};
    pv_config_t *cfg;
    char path[PATH_MAX];
    size_t i;
    int c2s = 0, tls = 0;

    snprintf(path, sizeof(path), "%s/conf/palaver.conf", src_dir());
    cfg = pv_config_load(path, fake_resolve, &n_known, &errs);
    if (cfg == NULL) {
        dump_errors(&errs);
        pv_conf_errors_free(&errs);
    }
    CU_ASSERT_PTR_NOT_NULL_FATAL(cfg);
    CU_ASSERT_EQUAL(cfg->global.run_as_root, 1);
    CU_ASSERT_PTR_NOT_NULL(pv_config_host(cfg, "localhost"));
    for (i = 0; i < cfg->n_listeners; i++) {
        if (cfg->listeners[i].kind == PV_LISTEN_C2S
            && cfg->listeners[i].port == 5222)
            c2s = 1;
        if (cfg->listeners[i].kind == PV_LISTEN_C2S_DIRECT_TLS
            && cfg->listeners[i].port == 5223)
            tls = 1;
    }
    CU_ASSERT(c2s && tls);
    CU_ASSERT_PTR_NOT_NULL(cfg->global.tls_certificate);
    CU_ASSERT_EQUAL(cfg->global.tls_certificate[0], '/');
    pv_config_free(cfg);
    pv_conf_errors_free(&errs);
}

/* Every core directive has its entry in palaver.conf(5) (STYLE.md §8). */
static void
test_man_page(void)
{
    const pv_directive_t *d;
    char path[PATH_MAX], line[512], want[128];
    FILE *fp;
    int found;

    snprintf(path, sizeof(path), "%s/man/palaver.conf.5", src_dir());
    fp = fopen(path, "r");
    CU_ASSERT_PTR_NOT_NULL_FATAL(fp);
    for (d = pv_core_directives; d->name != NULL; d++) {
        snprintf(want, sizeof(want), ".BI \"%s ", d->name);
        found = 0;
        rewind(fp);
        while (!found && fgets(line, sizeof(line), fp) != NULL)
            found = strncmp(line, want, strlen(want)) == 0;
        if (!found)
            fprintf(stderr, "\nno man page entry for %s\n", d->name);
        CU_ASSERT(found);
    }
    fclose(fp);
}

void test_suite_config(void);

/* CONTRACTS.md §3: "svc" enabled on a vhost runs on svc.<vhost> (or its
 * svc_domain), with the vhost's settings, and not on the vhost itself; an
 * explicit component of the same name wins. */
static void
test_implicit_component(void)
{
    pv_conf_errors_t errs = {0};
    pv_config_t *cfg;
    const pv_host_conf_t *a, *b, *sa, *sb, *c;
    const svc_conf_t *sc;

    cfg = load_text(
        "modules_enabled = [ \"disco\" ];\n"
        "svc_limit = 7;\n"
        "vhosts = (\n"
        "  { name = \"a.example\"; modules_enabled = [ \"+svc\" ];\n"
        "    svc_limit = 9; },\n"
        "  { name = \"b.example\"; modules_enabled = [ \"+svc\" ];\n"
        "    svc_domain = \"Rooms.B.example\"; },\n"
        "  { name = \"c.example\"; modules_enabled = [ \"+svc\" ];\n"
        "    components = ( { name = \"svc.c.example\"; module = \"svc\";\n"
        "                     svc_limit = 11; } ); }\n"
        ");\n", &errs);
    dump_errors(&errs);
    CU_ASSERT_PTR_NOT_NULL_FATAL(cfg);
    CU_ASSERT_EQUAL(cfg->n_hosts, 6);
    a = pv_config_host(cfg, "a.example");
    b = pv_config_host(cfg, "b.example");
    sa = pv_config_host(cfg, "svc.a.example");
    sb = pv_config_host(cfg, "rooms.b.example");
    c = pv_config_host(cfg, "svc.c.example");
    CU_ASSERT_PTR_NOT_NULL_FATAL(a);
    CU_ASSERT_PTR_NOT_NULL_FATAL(b);
    CU_ASSERT_PTR_NOT_NULL_FATAL(sa);
    CU_ASSERT_PTR_NOT_NULL_FATAL(sb);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    CU_ASSERT_PTR_NULL(pv_config_host(cfg, "svc.b.example"));
    /* the vhost keeps its other modules, without the service */
    CU_ASSERT_EQUAL_FATAL(a->n_modules, 1);
    CU_ASSERT_STRING_EQUAL(a->modules[0], "disco");
    CU_ASSERT_PTR_NULL(pv_config_module_conf(cfg, a, "svc"));
    CU_ASSERT_TRUE(sa->is_component);
    CU_ASSERT_STRING_EQUAL(sa->component_module, "svc");
    CU_ASSERT_STRING_EQUAL(sa->parent, "a.example");
    CU_ASSERT_EQUAL_FATAL(sa->n_modules, 1);
    CU_ASSERT_STRING_EQUAL(sa->modules[0], "svc");
    sc = pv_config_module_conf(cfg, sa, "svc");
    CU_ASSERT_PTR_NOT_NULL_FATAL(sc);
    CU_ASSERT_EQUAL(sc->limit, 9);
    sc = pv_config_module_conf(cfg, sb, "svc");
    CU_ASSERT_PTR_NOT_NULL_FATAL(sc);
    CU_ASSERT_EQUAL(sc->limit, 7);
    CU_ASSERT_STRING_EQUAL(sb->parent, "b.example");
    sc = pv_config_module_conf(cfg, c, "svc");
    CU_ASSERT_PTR_NOT_NULL_FATAL(sc);
    CU_ASSERT_EQUAL(sc->limit, 11);
    pv_config_free(cfg);
    pv_conf_errors_free(&errs);
}

void
test_suite_config(void)
{
    CU_pSuite s = CU_add_suite("config", suite_init, suite_clean);

    CU_add_test(s, "size units", test_parse_size);
    CU_add_test(s, "duration units", test_parse_duration);
    CU_add_test(s, "generic setters", test_setters);
    CU_add_test(s, "good file, all scopes", test_good_file);
    CU_add_test(s, "module defaults", test_module_defaults);
    CU_add_test(s, "one error each, FILE:LINE", test_errors_single);
    CU_add_test(s, "missing file", test_missing_file);
    CU_add_test(s, "several errors at once", test_errors_all_reported);
    CU_add_test(s, "module directives and scopes", test_module_scope);
    CU_add_test(s, "each module resolved once", test_resolve_once);
    CU_add_test(s, "load from a string", test_load_string);
    CU_add_test(s, "service modules get their component",
                test_implicit_component);
    CU_add_test(s, "conf/palaver.conf loads", test_example_conf);
    CU_add_test(s, "man page lists every directive", test_man_page);
}
