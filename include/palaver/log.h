/* include/palaver/log.h: logging for the core and modules. Messages are
 * lowercase, no trailing period; secrets and message bodies never above
 * debug. The sinks (stderr, file, syslog) are configured by the core. */
#ifndef PALAVER_LOG_H
#define PALAVER_LOG_H

#include <palaver/defs.h>

typedef enum {
    PV_LOG_ERROR = 0,
    PV_LOG_WARN = 1,
    PV_LOG_INFO = 2,
    PV_LOG_DEBUG = 3
} pv_log_level_t;

/* ctx is a prefix such as "localhost mod_ping c2s#42" or NULL. */
void pv_log(pv_log_level_t level, const char *ctx, const char *fmt, ...)
    PV_PRINTF(3, 4);
/* As pv_log at error level with ": strerror(errno)" appended. */
void pv_log_errno(const char *ctx, const char *fmt, ...) PV_PRINTF(2, 3);
/* True when a message at level would be written (skip costly formatting). */
int pv_log_enabled(pv_log_level_t level);
/* True when debug category cat ("xml", "tls", "sasl", ...) is enabled. */
int pv_log_debug_enabled(const char *cat);

#define pv_log_debug_cat(cat, ctx, ...)                                     \
    do {                                                                    \
        if (pv_log_debug_enabled(cat))                                      \
            pv_log(PV_LOG_DEBUG, ctx, __VA_ARGS__);                         \
    } while (0)

#endif
