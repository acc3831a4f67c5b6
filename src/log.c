/* src/log.c: log sinks (stderr, file, syslog), level filtering and debug
 * categories. Configured once per configuration generation by the core. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>
#include <time.h>

#include <palaver/log.h>
#include "logsink.h"

static struct {
    pv_log_level_t level;
    int use_syslog;
    FILE *file;             /* NULL means stderr */
    char debug_cats[256];   /* ",xml,tls," or "*" for all */
} log_state = { PV_LOG_INFO, 0, NULL, "" };

static const char *const level_names[] = { "error", "warn", "info", "debug" };

void
pv_log_configure(pv_log_level_t level, const char *sink, const char *debug)
{
    log_state.level = level;
    if (log_state.file != NULL) {
        fclose(log_state.file);
        log_state.file = NULL;
    }
    if (log_state.use_syslog) {
        closelog();
        log_state.use_syslog = 0;
    }
    if (sink != NULL && strcmp(sink, "syslog") == 0) {
        openlog("palaverd", LOG_PID | LOG_NDELAY, LOG_DAEMON);
        log_state.use_syslog = 1;
    } else if (sink != NULL && strcmp(sink, "stderr") != 0 && *sink) {
        log_state.file = fopen(sink, "a");
        if (log_state.file == NULL)
            pv_log_errno(NULL, "cannot open log file %s, using stderr", sink);
        else
            setvbuf(log_state.file, NULL, _IOLBF, 0);
    }
    snprintf(log_state.debug_cats, sizeof(log_state.debug_cats), ",%s,",
             debug ? debug : "");
}

int
pv_log_enabled(pv_log_level_t level)
{
    return level <= log_state.level;
}

int
pv_log_debug_enabled(const char *cat)
{
    char key[40];

    if (log_state.level < PV_LOG_DEBUG)
        return 0;
    if (strstr(log_state.debug_cats, ",*,") != NULL)
        return 1;
    snprintf(key, sizeof(key), ",%s,", cat);
    return strstr(log_state.debug_cats, key) != NULL;
}

static void
log_write(pv_log_level_t level, const char *ctx, const char *msg)
{
    static const int prio[] = { LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG };
    FILE *out = log_state.file ? log_state.file : stderr;
    char stamp[32];
    struct timespec ts;
    struct tm tm;

    if (log_state.use_syslog) {
        syslog(prio[level], "%s%s%s", ctx ? ctx : "", ctx ? ": " : "", msg);
        return;
    }
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
    fprintf(out, "%s.%03ldZ %s %s%s%s\n", stamp, ts.tv_nsec / 1000000,
            level_names[level], ctx ? ctx : "", ctx ? ": " : "", msg);
}

static void log_vformat(pv_log_level_t level, const char *ctx,
                        const char *suffix, const char *fmt, va_list ap)
    PV_PRINTF(4, 0);

static void
log_vformat(pv_log_level_t level, const char *ctx, const char *suffix,
            const char *fmt, va_list ap)
{
    char msg[2048];
    int n = vsnprintf(msg, sizeof(msg), fmt, ap);

    if (n >= 0 && suffix != NULL && (size_t)n < sizeof(msg))
        snprintf(msg + n, sizeof(msg) - (size_t)n, ": %s", suffix);
    log_write(level, ctx, msg);
}

void
pv_log(pv_log_level_t level, const char *ctx, const char *fmt, ...)
{
    va_list ap;

    if (!pv_log_enabled(level))
        return;
    va_start(ap, fmt);
    log_vformat(level, ctx, NULL, fmt, ap);
    va_end(ap);
}

void
pv_log_errno(const char *ctx, const char *fmt, ...)
{
    int saved = errno;
    va_list ap;

    va_start(ap, fmt);
    log_vformat(PV_LOG_ERROR, ctx, strerror(saved), fmt, ap);
    va_end(ap);
    errno = saved;
}
