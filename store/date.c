/* date.c — the dates import needs: RFC 5322 Date:/Received: values, the
 * asctime date of an mbox From_ line, and zone-less local times. */
#include "store/date.h"
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

static const char *const months[12] = {"jan", "feb", "mar", "apr", "may", "jun",
                                       "jul", "aug", "sep", "oct", "nov", "dec"};

static int month_of(const char *s, size_t n)
{
    if (n < 3)
        return -1;
    for (int i = 0; i < 12; i++)
        if (!strncasecmp(s, months[i], 3))
            return i;
    return -1;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (no libc TZ state). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

int64_t date_utc(int y, int mon, int d, int h, int mi, int s)
{
    return days_from_civil(y, (unsigned)mon + 1, (unsigned)d) * 86400 + h * 3600 + mi * 60 + s;
}

struct tok { const char *p; size_t n; };

/* Split into tokens at white space and commas, dropping (comments). */
static size_t tokenize(const char *s, size_t len, struct tok *t, size_t max)
{
    size_t n = 0, i = 0;
    while (i < len && n < max) {
        char c = s[i];
        if (c == '(') {
            int depth = 0;
            for (; i < len; i++) {
                if (s[i] == '(') depth++;
                else if (s[i] == ')' && --depth == 0) { i++; break; }
            }
            continue;
        }
        if (isspace((unsigned char)c) || c == ',') {
            i++;
            continue;
        }
        size_t st = i;
        while (i < len && !isspace((unsigned char)s[i]) && s[i] != ',' && s[i] != '(')
            i++;
        t[n].p = s + st;
        t[n].n = i - st;
        n++;
    }
    return n;
}

static bool all_digits(const struct tok *t)
{
    if (!t->n)
        return false;
    for (size_t i = 0; i < t->n; i++)
        if (!isdigit((unsigned char)t->p[i]))
            return false;
    return true;
}

static bool parse_time(const struct tok *t, int *h, int *mi, int *s)
{
    char b[16];
    if (t->n >= sizeof b)
        return false;
    memcpy(b, t->p, t->n);
    b[t->n] = 0;
    *s = 0;
    int n = sscanf(b, "%d:%d:%d", h, mi, s);
    return n >= 2 && *h >= 0 && *h < 24 && *mi >= 0 && *mi < 60 && *s >= 0 && *s <= 60;
}

static bool parse_zone(const struct tok *t, int *off)
{
    if (t->n == 5 && (t->p[0] == '+' || t->p[0] == '-')) {
        for (int i = 1; i < 5; i++)
            if (!isdigit((unsigned char)t->p[i]))
                return false;
        int hh = (t->p[1] - '0') * 10 + t->p[2] - '0', mm = (t->p[3] - '0') * 10 + t->p[4] - '0';
        if (mm > 59)
            return false;
        *off = (t->p[0] == '-' ? -1 : 1) * (hh * 60 + mm);
        return true;
    }
    static const struct { const char *n; int off; } z[] = {
        {"UT", 0}, {"UTC", 0}, {"GMT", 0}, {"Z", 0}, {"EST", -300}, {"EDT", -240},
        {"CST", -360}, {"CDT", -300}, {"MST", -420}, {"MDT", -360}, {"PST", -480},
        {"PDT", -420},
    };
    for (size_t i = 0; i < sizeof z / sizeof z[0]; i++)
        if (t->n == strlen(z[i].n) && !strncasecmp(t->p, z[i].n, t->n)) {
            *off = z[i].off;
            return true;
        }
    return false;
}

int date_parse_rfc5322(const char *s, size_t len, int64_t *utc, int32_t *tz)
{
    struct tok t[16];
    size_t n = tokenize(s, len, t, 16), i = 0;
    if (n && !all_digits(&t[0]) && month_of(t[0].p, t[0].n) < 0)
        i = 1;   /* day of week */
    if (i + 4 > n)
        return -1;
    int d, m, y, h, mi, sec, off = 0;
    if (!all_digits(&t[i]) || t[i].n > 2)
        return -1;
    d = atoi(t[i].p);
    if ((m = month_of(t[i + 1].p, t[i + 1].n)) < 0 || !all_digits(&t[i + 2]) || t[i + 2].n > 4)
        return -1;
    y = atoi(t[i + 2].p);
    if (t[i + 2].n <= 2)
        y += y < 50 ? 2000 : 1900;
    else if (t[i + 2].n == 3)
        y += 1900;
    if (!parse_time(&t[i + 3], &h, &mi, &sec) || d < 1 || d > 31)
        return -1;
    if (i + 4 < n && !parse_zone(&t[i + 4], &off))
        off = 0;     /* unknown zone: RFC 5322 4.3 says treat as -0000 */
    *utc = date_utc(y, m, d, h, mi, sec) - (int64_t)off * 60;
    *tz = off;
    return 0;
}

int date_parse_asctime(const char *s, size_t len, struct tm *out)
{
    struct tok t[24];
    size_t n = tokenize(s, len, t, 24);
    for (size_t i = 0; i + 3 < n; i++) {
        int m = month_of(t[i].p, t[i].n);
        if (m < 0 || t[i].n != 3 || !all_digits(&t[i + 1]) || t[i + 1].n > 2)
            continue;
        int h, mi, sec;
        if (!parse_time(&t[i + 2], &h, &mi, &sec))
            continue;
        size_t yi = i + 3;
        if (!(all_digits(&t[yi]) && t[yi].n == 4) && yi + 1 < n)
            yi++;    /* "Mon Jan  1 10:00:00 CET 2024" */
        if (!all_digits(&t[yi]) || t[yi].n != 4)
            continue;
        memset(out, 0, sizeof *out);
        out->tm_year = atoi(t[yi].p) - 1900;
        out->tm_mon = m;
        out->tm_mday = atoi(t[i + 1].p);
        out->tm_hour = h;
        out->tm_min = mi;
        out->tm_sec = sec;
        return out->tm_mday >= 1 && out->tm_mday <= 31 ? 0 : -1;
    }
    return -1;
}

int date_zone_parse(const char *spec, struct date_zone *z)
{
    memset(z, 0, sizeof *z);
    if (!spec || !*spec || !strcasecmp(spec, "UTC") || !strcasecmp(spec, "GMT"))
        return 0;
    struct tok t = {spec, strlen(spec)};
    int off;
    if (parse_zone(&t, &off)) {
        z->fixed_off = off;
        return 0;
    }
    if (strlen(spec) >= sizeof z->name || strstr(spec, ".."))
        return -1;
    strcpy(z->name, spec);
    return 0;
}

/* Named zones go through the C library with TZ set for the duration of
 * the call (the CLI is single-threaded). */
static bool tz_is(const char *name)
{
    const char *cur = getenv("TZ");
    return cur && !strcmp(cur, name);
}

/* store_import() sets TZ once for a whole import (date_zone_enter), so
 * these calls normally find it set and do not reload the zone file. */
static void with_tz(const struct date_zone *z, char *saved, size_t cap, bool *had)
{
    const char *old = getenv("TZ");
    *had = old != NULL;
    if (old)
        snprintf(saved, cap, "%s", old);
    if (tz_is(z->name))
        return;
    setenv("TZ", z->name, 1);
    tzset();
}

static void restore_tz(const char *saved, bool had)
{
    if (had && tz_is(saved))
        return;
    if (had)
        setenv("TZ", saved, 1);
    else
        unsetenv("TZ");
    tzset();
}

void date_zone_enter(const struct date_zone *z, char *saved, size_t cap, bool *had)
{
    if (z->name[0])
        with_tz(z, saved, cap, had);
    else
        *had = false;
}

void date_zone_leave(const struct date_zone *z, const char *saved, bool had)
{
    if (z->name[0])
        restore_tz(saved, had);
}

int64_t date_local_to_utc(const struct tm *tm_in, const struct date_zone *z, int32_t *tz)
{
    if (!z->name[0]) {
        *tz = z->fixed_off;
        return date_utc(tm_in->tm_year + 1900, tm_in->tm_mon, tm_in->tm_mday, tm_in->tm_hour,
                        tm_in->tm_min, tm_in->tm_sec) - (int64_t)z->fixed_off * 60;
    }
    char saved[256];
    bool had;
    struct tm tm = *tm_in;
    with_tz(z, saved, sizeof saved, &had);
    tm.tm_isdst = -1;
    time_t t = mktime(&tm);
    *tz = (int32_t)(tm.tm_gmtoff / 60);
    restore_tz(saved, had);
    return (int64_t)t;
}

int32_t date_zone_offset_at(const struct date_zone *z, int64_t utc)
{
    if (!z->name[0])
        return z->fixed_off;
    char saved[256];
    bool had;
    struct tm tm;
    time_t t = (time_t)utc;
    with_tz(z, saved, sizeof saved, &had);
    localtime_r(&t, &tm);
    int32_t off = (int32_t)(tm.tm_gmtoff / 60);
    restore_tz(saved, had);
    return off;
}
