/* date.h — date parsing for import (store-internal). */
#ifndef COFFER_STORE_DATE_H
#define COFFER_STORE_DATE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

struct date_zone {
    int32_t fixed_off;    /* minutes east of UTC when name is empty */
    char name[128];       /* IANA zone name, e.g. "Europe/Berlin" */
};

int64_t date_utc(int y, int mon0, int d, int h, int mi, int s);
/* "Tue, 1 Jan 2019 10:00:00 +0100 (CET)": 0 or -1. */
int date_parse_rfc5322(const char *s, size_t len, int64_t *utc, int32_t *tz);
/* asctime-style date of an mbox From_ line (zone-less): 0 or -1. */
int date_parse_asctime(const char *s, size_t len, struct tm *out);
/* "UTC", "+0100", "Europe/Berlin": 0 or -1. */
int date_zone_parse(const char *spec, struct date_zone *z);
int64_t date_local_to_utc(const struct tm *tm, const struct date_zone *z, int32_t *tz);
int32_t date_zone_offset_at(const struct date_zone *z, int64_t utc);
/* Keep TZ set to a named zone for a whole import (single-threaded CLI). */
void date_zone_enter(const struct date_zone *z, char *saved, size_t cap, bool *had);
void date_zone_leave(const struct date_zone *z, const char *saved, bool had);

#endif
