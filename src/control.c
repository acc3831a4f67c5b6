/* src/control.c: the control socket (CONTRACTS.md §1): a unix socket,
 * mode 0600, where palaverctl sends one request per line (fields
 * separated by tabs) and gets one answer per request: "ok TEXT" or
 * "error TEXT" (TEXT may span lines), then a line holding a single ".". */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "palaver.h"

#define CTL_MAX_LINE 8192

typedef struct {
    pv_server_t *srv;
    pv_conn_t *conn;
    pv_buf_t in;
    unsigned pending;
    int closed;
} ctl_t;

static void
ctl_free_if_done(ctl_t *c)
{
    if (c->closed && c->pending == 0) {
        pv_buf_free(&c->in);
        free(c);
    }
}

static void
ctl_answer(void *arg, int ok, const char *text)
{
    ctl_t *c = arg;

    c->pending--;
    if (!c->closed) {
        pv_buf_t b = {0};
        pv_buf_printf(&b, "%s %s\n.\n", ok ? "ok" : "error", text);
        pv_conn_write(c->conn, b.data, b.len);
        pv_buf_free(&b);
    }
    ctl_free_if_done(c);
}

static void
ctl_line(ctl_t *c, char *line)
{
    char *fields[8], *save = NULL, *tok;
    size_t n = 0;

    for (tok = strtok_r(line, "\t", &save); tok && n < PV_COUNTOF(fields);
         tok = strtok_r(NULL, "\t", &save))
        fields[n++] = tok;
    if (n == 0)
        return;
    c->pending++;
    pv_admin_run(c->srv, fields, n, ctl_answer, c);
}

static void
ctl_on_data(pv_conn_t *conn, const char *data, size_t len)
{
    ctl_t *c = pv_conn_data(conn);
    char *nl;

    pv_buf_append(&c->in, data, len);
    /* the requests of one read (a palaverctl batch) share one commit */
    pv_storage_cork(c->srv->storage);
    while ((nl = memchr(c->in.data, '\n', c->in.len)) != NULL) {
        size_t line_len = (size_t)(nl - c->in.data);
        char *line = pv_xstrndup(c->in.data, line_len);

        memmove(c->in.data, nl + 1, c->in.len - line_len - 1);
        c->in.len -= line_len + 1;
        ctl_line(c, line);
        free(line);
        if (c->closed)
            break;
    }
    pv_storage_uncork(c->srv->storage);
    if (c->closed)
        return;
    if (c->in.len > CTL_MAX_LINE)
        pv_conn_abort(conn, "control line too long");
}

static void
ctl_on_close(pv_conn_t *conn, const char *reason)
{
    ctl_t *c = pv_conn_data(conn);

    (void)reason;
    c->closed = 1;
    c->conn = NULL;
    ctl_free_if_done(c);
}

static const pv_conn_handler_t ctl_handler = {
    .on_data = ctl_on_data,
    .on_close = ctl_on_close,
};

static void
ctl_accept(void *arg, pv_conn_t *conn)
{
    ctl_t *c = pv_xcalloc(1, sizeof(*c));

    c->srv = arg;
    c->conn = conn;
    pv_conn_set_handler(conn, &ctl_handler, c);
}

int
pv_control_listen(pv_server_t *srv, const char *path)
{
    char err[512];

    if (path == NULL)
        return PV_OK;
    /* a stale socket of a dead daemon would make bind fail */
    unlink(path);
    srv->control = pv_listen_unix(srv->loop, path, 0600, 64, ctl_accept, srv,
                                  err, sizeof(err));
    if (srv->control == NULL) {
        pv_log(PV_LOG_ERROR, "server", "control socket %s: %s", path, err);
        return PV_ERROR;
    }
    return PV_OK;
}
