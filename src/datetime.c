/* src/datetime.c: XEP-0082 DateTime parsing and formatting for the
 * modules (see include/palaver/datetime.h). Calendar arithmetic is done
 * here rather than with timegm()/gmtime_r() so the result never depends
 * on the process time zone and years outside time_t's comfort zone are
 * refused up front. */
#include <stdio.h>
#include <string.h>

#include <palaver/datetime.h>

/* 10000-01-01T00:00:00Z: XEP-0082 years have four digits. */
#define DT_END_SECS 253402300800LL

static int
digits(const char *s, int n, int *out)
{
    int v = 0, i;

    for (i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return 0;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 1;
}

static int
is_leap(int y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int
month_days(int y, int m)
{
    static const int days[12] = { 31, 28, 31, 30, 31, 30,
                                  31, 31, 30, 31, 30, 31 };

    return m == 2 && is_leap(y) ? 29 : days[m - 1];
}

/* Days since 1970-01-01 of a proleptic Gregorian date (the usual
 * era/day-of-era decomposition; exact for every year >= 0). */
static long long
days_from_civil(int y, int m, int d)
{
    long long era, yoe, doy, doe;

    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = y - era * 400;
    doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void
civil_from_days(long long z, int *y, int *m, int *d)
{
    long long era, doe, yoe, doy, mp;

    z += 719468;
    era = (z >= 0 ? z : z - 146096) / 146097;
    doe = z - era * 146097;
    yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = (int)(yoe + era * 400 + (*m <= 2));
}

pv_rc_t
pv_datetime_parse(const char *s, uint64_t *us)
{
    int y, mo, d, hh, mi, ss, tzh, tzm;
    long long frac = 0, scale = 1000000, secs;
    const char *p;

    if (s == NULL || strlen(s) < 20 || s[4] != '-' || s[7] != '-' ||
        s[10] != 'T' || s[13] != ':' || s[16] != ':' ||
        !digits(s, 4, &y) || !digits(s + 5, 2, &mo) ||
        !digits(s + 8, 2, &d) || !digits(s + 11, 2, &hh) ||
        !digits(s + 14, 2, &mi) || !digits(s + 17, 2, &ss))
        return PV_ERROR;
    if (mo < 1 || mo > 12 || d < 1 || d > month_days(y, mo) || hh > 23 ||
        mi > 59 || ss > 60)
        return PV_ERROR;
    p = s + 19;
    if (*p == '.') {
        p++;
        if (*p < '0' || *p > '9')
            return PV_ERROR;
        for (; *p >= '0' && *p <= '9'; p++) {
            if (scale > 1) {
                scale /= 10;
                frac += (*p - '0') * scale;
            }
        }
    }
    secs = days_from_civil(y, mo, d) * 86400LL + hh * 3600LL + mi * 60LL +
           ss;
    if (strcmp(p, "Z") == 0) {
        /* already UTC */
    } else if ((p[0] == '+' || p[0] == '-') && strlen(p) == 6 &&
               p[3] == ':' && digits(p + 1, 2, &tzh) &&
               digits(p + 4, 2, &tzm) && tzh < 24 && tzm < 60) {
        /* local time = UTC + offset, so UTC = local - offset */
        long long off = tzh * 3600LL + tzm * 60LL;
        secs += p[0] == '+' ? -off : off;
    } else {
        return PV_ERROR;
    }
    if (secs < 0)
        return PV_ERROR;
    *us = (uint64_t)secs * 1000000u + (uint64_t)frac;
    return PV_OK;
}

size_t
pv_datetime_format(uint64_t us, int frac_digits, char *out, size_t len)
{
    unsigned long long secs = us / 1000000u;
    unsigned frac = (unsigned)(us % 1000000u);
    size_t need = 20 + (frac_digits > 0 ? (size_t)frac_digits + 1 : 0);
    long long days;
    int y, m, d, sod, n;

    if (out != NULL && len > 0)
        out[0] = '\0';
    if (out == NULL || len < need + 1 || secs >= (unsigned long long)
        DT_END_SECS || (frac_digits != 0 && frac_digits != 3 &&
                        frac_digits != 6))
        return 0;
    days = (long long)(secs / 86400u);
    sod = (int)(secs % 86400u);
    civil_from_days(days, &y, &m, &d);
    if (frac_digits == 0)
        n = snprintf(out, len, "%04d-%02d-%02dT%02d:%02d:%02dZ", y, m, d,
                     sod / 3600, sod / 60 % 60, sod % 60);
    else if (frac_digits == 3)
        n = snprintf(out, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03uZ", y, m,
                     d, sod / 3600, sod / 60 % 60, sod % 60, frac / 1000);
    else
        n = snprintf(out, len, "%04d-%02d-%02dT%02d:%02d:%02d.%06uZ", y, m,
                     d, sod / 3600, sod / 60 % 60, sod % 60, frac);
    if (n < 0 || (size_t)n >= len) {
        out[0] = '\0';
        return 0;
    }
    return (size_t)n;
}
