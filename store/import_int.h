/* import_int.h — shared by the import source readers (store-internal). */
#ifndef COFFER_STORE_IMPORT_INT_H
#define COFFER_STORE_IMPORT_INT_H
#include "store/admin.h"
#include "store/date.h"
#include "proto/buf.h"

#define IMPORT_BATCH_MSGS 250
#define IMPORT_BATCH_BYTES (16u * 1024u * 1024u)
#define IMPORT_HDR_SCAN (256u * 1024u)   /* header octets scanned for dates/flags */

struct imp {
    struct inst *in;
    const char *owner;
    const struct import_opts *o;
    struct import_stats *st;
    struct import_stats pend;      /* counts of the open batch */
    unsigned batch_n;
    uint64_t batch_bytes;
    struct date_zone zone;
    struct buf file;               /* reused read buffer */
    struct buf tmp;                /* reused scratch (mbox un-quoting) */
    double t0, tlast;
    uint64_t total_bytes, done_bytes;
    const char **err;
};

/* One message: dates and flags already known. Commits when a batch fills. */
int imp_message(struct imp *im, const char *folder, const unsigned char *raw, size_t len,
                uint32_t flags, int64_t idate, int32_t tz, const void *srckey, size_t sklen,
                const void *fromline, size_t fllen);
int imp_commit(struct imp *im);
void imp_progress(struct imp *im, bool final);

/* Header helpers. flags_out: STORE_F_* from Status/X-Status; returns
 * whether either header was present. */
bool hdr_status_flags(const unsigned char *raw, size_t len, uint32_t *flags);
/* Newest Received: date, else Date:; false if neither parses. */
bool hdr_best_date(const unsigned char *raw, size_t len, int64_t *utc, int32_t *tz);
void imp_warn(struct imp *im, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int imp_read_file(struct imp *im, const char *path, bool *vanished);
/* Folder name from a base (may be NULL) and a relative part. */
void imp_join(char *out, size_t cap, const char *base, const char *rel);
void imp_fix_users(struct imp *im, char *folder, size_t cap);

int import_mbox(struct imp *im, const char *path, const char *folder);
int import_maildir(struct imp *im, const char *path, const char *folder);
bool is_maildir(const char *path);

#endif
