/* include/palaver/defs.h: return codes and compiler helpers shared by the
 * core and every module. Nothing here allocates or holds state. */
#ifndef PALAVER_DEFS_H
#define PALAVER_DEFS_H

#include <stddef.h>
#include <stdint.h>

/* Result of most functions; hooks also return PV_HANDLED or PV_PASS. */
typedef enum {
    PV_OK = 0,
    PV_ERROR = -1,
    PV_AGAIN = -2,
    PV_NOTFOUND = -3,
    PV_HANDLED = 1,
    PV_PASS = 2
} pv_rc_t;

#if defined(__GNUC__)
#define PV_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#define PV_NORETURN __attribute__((noreturn))
#define PV_UNUSED __attribute__((unused))
#else
#define PV_PRINTF(fmt, args)
#define PV_NORETURN
#define PV_UNUSED
#endif

#define PV_COUNTOF(a) (sizeof(a) / sizeof((a)[0]))

#endif
