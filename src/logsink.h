/* src/logsink.h: core-only control of the log sinks (src/log.c). */
#ifndef PV_LOGSINK_H
#define PV_LOGSINK_H

#include <palaver/log.h>

/* sink: "stderr" (or NULL), "syslog", or a file path. debug: a comma list
 * of debug categories, "*" for all. Safe to call again on reload. */
void pv_log_configure(pv_log_level_t level, const char *sink,
                      const char *debug);

#endif
