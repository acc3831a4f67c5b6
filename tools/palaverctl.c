/* tools/palaverctl.c: the admin CLI (CONTRACTS.md §1). Passwords are
 * hashed here (SCRAM keys, in parallel for --batch), then the request goes
 * to the running daemon's control socket, or, when none answers, runs
 * in-process on the store with the configured modules loaded so they see
 * the same events. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <termios.h>
#include <unistd.h>

#include "accounts.h"
#include "palaver.h"

/* tools/check_turn.c: `check turn [JID]` */
int pv_check_turn(const pv_config_t *cfg, const char *jid);

typedef struct {
    char *jid;
    char *password;
    pv_account_record_t rec;
    int ok;
} batch_item_t;

typedef struct {
    batch_item_t *items;
    size_t n;
    size_t next;
    unsigned iterations;
    pthread_mutex_t lock;
} batch_t;

static void
usage(FILE *out)
{
    fprintf(out,
            "usage: palaverctl -c FILE COMMAND\n"
            "  adduser JID           create an account (password on stdin)\n"
            "  adduser --batch       create accounts from jid:password lines\n"
            "  passwd JID            change a password (password on stdin)\n"
            "  deluser JID           delete an account and all its data\n"
            "  users DOMAIN          list the accounts of a domain\n"
            "  check config          check the configuration file\n"
            "  check dns DOMAIN      show the SRV and address records of a\n"
            "                        remote domain and where s2s would connect\n"
            "  check turn [JID]      allocate a TURN relay as JID and pass a\n"
            "                        packet through it both ways\n");
}

/* One line from stdin without its newline; prompted without echo when
 * stdin is a terminal. */
static char *
read_password(const char *jid)
{
    char buf[1024], again[1024];
    int tty = isatty(STDIN_FILENO);
    struct termios old, noecho;
    size_t n;

    if (tty) {
        tcgetattr(STDIN_FILENO, &old);
        noecho = old;
        noecho.c_lflag &= ~(tcflag_t)ECHO;
        fprintf(stderr, "password for %s: ", jid);
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &noecho);
    }
    if (fgets(buf, sizeof(buf), stdin) == NULL)
        buf[0] = '\0';
    if (tty) {
        fprintf(stderr, "\nagain: ");
        if (fgets(again, sizeof(again), stdin) == NULL)
            again[0] = '\0';
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
        fprintf(stderr, "\n");
        if (strcmp(buf, again) != 0) {
            fprintf(stderr, "palaverctl: the passwords differ\n");
            return NULL;
        }
    }
    n = strcspn(buf, "\r\n");
    buf[n] = '\0';
    if (n == 0) {
        fprintf(stderr, "palaverctl: empty password\n");
        return NULL;
    }
    return pv_xstrdup(buf);
}

static void *
batch_worker(void *arg)
{
    batch_t *b = arg;

    for (;;) {
        size_t i;
        pthread_mutex_lock(&b->lock);
        i = b->next++;
        pthread_mutex_unlock(&b->lock);
        if (i >= b->n)
            return NULL;
        b->items[i].ok = pv_account_record_build(b->items[i].password,
                                                 b->iterations,
                                                 &b->items[i].rec) == PV_OK;
    }
}

static void
batch_hash(batch_t *b)
{
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    pthread_t th[16];
    int i, nth = ncpu < 1 ? 1 : ncpu > 16 ? 16 : (int)ncpu;

    pthread_mutex_init(&b->lock, NULL);
    for (i = 0; i < nth; i++)
        pthread_create(&th[i], NULL, batch_worker, b);
    for (i = 0; i < nth; i++)
        pthread_join(th[i], NULL);
    pthread_mutex_destroy(&b->lock);
}

/* --- transport: control socket or in-process --------------------------- */

static int
ctl_connect(const char *path)
{
    struct sockaddr_un sa;
    int fd;

    if (path == NULL || strlen(path) >= sizeof(sa.sun_path))
        return -1;
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    strcpy(sa.sun_path, path);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

typedef struct {
    int failures;
    size_t answers;
} results_t;

static void
print_answer(void *arg, int ok, const char *text)
{
    results_t *r = arg;

    r->answers++;
    if (!ok)
        r->failures++;
    fprintf(ok ? stdout : stderr, "%s%s\n", ok ? "" : "palaverctl: ", text);
}

/* Sends requests (tab-separated lines) and reads one answer each. */
static int
run_remote(int fd, char **lines, size_t n, results_t *r)
{
    FILE *in = fdopen(fd, "r");
    char line[65536];
    pv_buf_t text = {0};
    int ok = 0, have = 0;
    size_t i;

    for (i = 0; i < n; i++) {
        size_t len = strlen(lines[i]), off = 0;
        while (off < len) {
            ssize_t w = write(fd, lines[i] + off, len - off);
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0) {
                fclose(in);
                return -1;
            }
            off += (size_t)w;
        }
    }
    while (r->answers < n && fgets(line, sizeof(line), in) != NULL) {
        line[strcspn(line, "\n")] = '\0';
        if (!have) {
            ok = strncmp(line, "ok", 2) == 0;
            pv_buf_reset(&text);
            pv_buf_puts(&text, line + (ok ? 3 : 6) > line + strlen(line)
                                   ? "" : line + (ok ? 3 : 6));
            have = 1;
        } else if (strcmp(line, ".") == 0) {
            print_answer(r, ok, text.data ? text.data : "");
            have = 0;
        } else {
            pv_buf_printf(&text, "\n%s", line);
        }
    }
    pv_buf_free(&text);
    fclose(in);
    return r->answers == n ? 0 : -1;
}

static int
run_local(pv_server_t *srv, char **lines, size_t n, results_t *r)
{
    size_t i;

    /* one write transaction for the whole batch */
    pv_storage_cork(srv->storage);
    for (i = 0; i < n; i++) {
        char *copy = pv_xstrdup(lines[i]), *f[8], *save = NULL, *t;
        size_t nf = 0;

        copy[strcspn(copy, "\n")] = '\0';
        for (t = strtok_r(copy, "\t", &save); t && nf < 8;
             t = strtok_r(NULL, "\t", &save))
            f[nf++] = t;
        pv_admin_run(srv, f, nf, print_answer, r);
        free(copy);
    }
    pv_storage_uncork(srv->storage);
    pv_storage_sync(srv->storage);
    return r->answers == n ? 0 : -1;
}

static char *
request(const char *cmd, const char *jid, const pv_account_record_t *rec)
{
    char *hex, *line;

    if (rec == NULL)
        return pv_xasprintf("%s\t%s\n", cmd, jid);
    hex = pv_admin_hex(rec->data, rec->len);
    line = pv_xasprintf("%s\t%s\t%s\n", cmd, jid, hex);
    free(hex);
    return line;
}

int
main(int argc, char **argv)
{
    const char *path = NULL, *cmd;
    pv_server_t *srv;
    pv_config_t *cfg;
    char **lines = NULL;
    size_t n_lines = 0, i;
    results_t res = { 0, 0 };
    unsigned iterations;
    int opt, fd, rc;

    /* what it creates (the store, the log file) is the operator's only,
     * as with palaverd */
    umask(077);
    while ((opt = getopt(argc, argv, "+c:h")) != -1) {
        if (opt == 'c') {
            path = optarg;
        } else {
            usage(opt == 'h' ? stdout : stderr);
            return opt == 'h' ? 0 : 2;
        }
    }
    if (path == NULL || optind >= argc) {
        usage(stderr);
        return 2;
    }
    cmd = argv[optind];
    srv = pv_server_new(path, 1);
    cfg = pv_server_load_config(srv, path, 1);
    if (strcmp(cmd, "check") == 0 && optind + 2 < argc &&
        strcmp(argv[optind + 1], "dns") == 0) {
        pv_buf_t out = {0};

        /* the resolver settings (dns_servers, s2s_override) of the file */
        rc = 1;
        if (cfg != NULL) {
            rc = pv_s2s_check_dns(&cfg->global, argv[optind + 2], &out) ==
                         PV_OK ? 0 : 1;
            fwrite(out.data, 1, out.len, stdout);
        }
        pv_buf_free(&out);
        pv_config_free(cfg);
        pv_server_free(srv);
        return rc;
    }
    if (strcmp(cmd, "check") == 0 && optind + 1 < argc &&
        strcmp(argv[optind + 1], "turn") == 0) {
        rc = cfg != NULL ? pv_check_turn(cfg, optind + 2 < argc ?
                                                  argv[optind + 2] : NULL)
                         : 1;
        pv_config_free(cfg);
        pv_server_free(srv);
        return rc;
    }
    if (strcmp(cmd, "check") == 0) {
        if (optind + 1 >= argc || strcmp(argv[optind + 1], "config") != 0) {
            usage(stderr);
            rc = 2;
        } else {
            rc = cfg != NULL ? 0 : 1;
            printf("%s: configuration %s\n", path, cfg ? "ok" : "has errors");
        }
        pv_config_free(cfg);
        pv_server_free(srv);
        return rc;
    }
    if (cfg == NULL) {
        pv_server_free(srv);
        return 1;
    }
    iterations = (unsigned)cfg->global.scram_iterations;
    if (strcmp(cmd, "adduser") == 0 && optind + 1 < argc &&
        strcmp(argv[optind + 1], "--batch") == 0) {
        batch_t b;
        char buf[2048];
        memset(&b, 0, sizeof(b));
        b.iterations = iterations;
        while (fgets(buf, sizeof(buf), stdin) != NULL) {
            char *colon;
            buf[strcspn(buf, "\r\n")] = '\0';
            if (buf[0] == '\0')
                continue;
            colon = strchr(buf, ':');
            if (colon == NULL) {
                fprintf(stderr, "palaverctl: expected jid:password, got "
                        "'%s'\n", buf);
                continue;
            }
            *colon = '\0';
            b.items = pv_xrealloc(b.items, (b.n + 1) * sizeof(*b.items));
            memset(&b.items[b.n], 0, sizeof(b.items[b.n]));
            b.items[b.n].jid = pv_xstrdup(buf);
            b.items[b.n].password = pv_xstrdup(colon + 1);
            b.n++;
        }
        batch_hash(&b);
        lines = pv_xcalloc(b.n + 1, sizeof(char *));
        for (i = 0; i < b.n; i++) {
            if (b.items[i].ok)
                lines[n_lines++] = request("adduser", b.items[i].jid,
                                           &b.items[i].rec);
            else
                fprintf(stderr, "palaverctl: %s: unusable password\n",
                        b.items[i].jid), res.failures++;
            free(b.items[i].jid);
            free(b.items[i].password);
        }
        free(b.items);
    } else if ((strcmp(cmd, "adduser") == 0 || strcmp(cmd, "passwd") == 0) &&
               optind + 2 == argc) {
        pv_account_record_t rec;
        char *pw = read_password(argv[optind + 1]);
        if (pw == NULL || pv_account_record_build(pw, iterations, &rec) !=
                              PV_OK) {
            if (pw != NULL)
                fprintf(stderr, "palaverctl: unusable password\n");
            free(pw);
            pv_config_free(cfg);
            pv_server_free(srv);
            return 1;
        }
        free(pw);
        lines = pv_xcalloc(2, sizeof(char *));
        lines[n_lines++] = request(cmd, argv[optind + 1], &rec);
    } else if ((strcmp(cmd, "deluser") == 0 || strcmp(cmd, "users") == 0) &&
               optind + 2 == argc) {
        lines = pv_xcalloc(2, sizeof(char *));
        lines[n_lines++] = request(cmd, argv[optind + 1], NULL);
    } else {
        usage(stderr);
        pv_config_free(cfg);
        pv_server_free(srv);
        return 2;
    }
    fd = ctl_connect(cfg->global.control_socket);
    if (fd >= 0) {
        pv_config_free(cfg);
        rc = run_remote(fd, lines, n_lines, &res);
    } else if (pv_server_start(srv, cfg) == PV_OK) {
        rc = run_local(srv, lines, n_lines, &res);
    } else {
        fprintf(stderr, "palaverctl: cannot open the store\n");
        rc = -1;
    }
    for (i = 0; i < n_lines; i++)
        free(lines[i]);
    free(lines);
    pv_server_free(srv);
    return rc == 0 && res.failures == 0 ? 0 : 1;
}
