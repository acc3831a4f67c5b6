/* include/palaver/datetime.h: XEP-0082 DateTime profile
 * ("CCYY-MM-DDThh:mm:ss[.sss]TZD") to and from microseconds since the
 * Unix epoch, UTC. Pure functions: no allocation, no state, no dependence
 * on the process time zone or locale. Used by modules (MAM, MUC history,
 * delayed delivery) for 'stamp', 'start', 'end' and 'since' values. */
#ifndef PALAVER_DATETIME_H
#define PALAVER_DATETIME_H

#include <stddef.h>
#include <stdint.h>

#include <palaver/defs.h>

/* Room for any formatted stamp, including the NUL
 * ("9999-12-31T23:59:59.999999Z" is 27 bytes; years past 9999 are
 * refused). */
#define PV_DATETIME_MAX 32

/* Parse the XEP-0082 DateTime 's' into microseconds since the epoch.
 * Accepted: exactly "CCYY-MM-DDThh:mm:ss", then an optional fraction
 * "." + one or more digits (digits past the microsecond are truncated),
 * then a TZD that is "Z" or "+hh:mm" / "-hh:mm" (hh < 24, mm < 60); the
 * stamp is converted to UTC. The calendar date must exist (leap years
 * checked); ss may be 60 (a leap second, XEP-0082 §3), which counts as
 * the first second of the next minute, as POSIX time has no leap seconds.
 * Returns PV_OK and sets *us; PV_ERROR, *us untouched, when 's' is NULL,
 * malformed, has trailing bytes, or lies before 1970-01-01T00:00:00Z. */
pv_rc_t pv_datetime_parse(const char *s, uint64_t *us);

/* Format 'us' (microseconds since the epoch) as an XEP-0082 DateTime in
 * UTC ("CCYY-MM-DDThh:mm:ss[.f]Z") into 'out' of 'len' bytes, always
 * NUL-terminated when len > 0. 'frac_digits' is 0 (whole seconds), 3
 * (milliseconds) or 6 (microseconds, so that a stamp fed back as a MAM
 * 'start'/'end' selects exactly that instant); the fraction is truncated,
 * not rounded. Returns the length written without the NUL, or 0 (out set
 * to "" when len > 0) when 'out' is too small (PV_DATETIME_MAX always
 * suffices), frac_digits is not 0/3/6, or the year would exceed 9999. */
size_t pv_datetime_format(uint64_t us, int frac_digits, char *out,
                          size_t len);

#endif
