/* msginfo.h — everything FETCH needs about one message, computed once.
 *
 * At import the store hands the message's canonical (CRLF) octets to
 * msginfo_build(), which runs the MIME parser and serialises the part table,
 * the ENVELOPE, BODYSTRUCTURE and BODY strings (ready to send, exactly as
 * RFC 3501 7.4.2 and Dovecot write them), the parsed Date: header and the
 * BINARY.SIZE of every leaf part into one opaque, versioned byte string.
 * The store keeps it (with a CRC) next to the message; FETCH opens it with
 * msginfo_open() — zero-copy, no parsing — and asks for byte ranges.
 *
 * Part tree. Index 0 is the whole message (its header = the message header,
 * its body = everything after the blank line). Children of a multipart are
 * its body parts; a message/rfc822 or message/global part has exactly one
 * child: the encapsulated message, whose header is that message's header.
 * Section numbers (RFC 3501 6.4.5) are resolved by msginfo_section(). */
#ifndef COFFER_MSGINFO_H
#define COFFER_MSGINFO_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "proto/buf.h"

/* Bump when the parser's output changes: `coffer reindex` rebuilds records
 * whose version differs. */
#define MSGINFO_VERSION 1

#define MSGINFO_NONE UINT32_MAX
#define MSGINFO_MAX_PARTS 10000   /* more parts are folded into their parent */
#define MSGINFO_MAX_DEPTH 100
#define MSGINFO_MAX_SECTION_DEPTH 32

enum msginfo_type {
    MSGINFO_T_TEXT = 0,       /* text/... leaf (lines counted) */
    MSGINFO_T_OTHER = 1,      /* any other leaf */
    MSGINFO_T_MULTIPART = 2,
    MSGINFO_T_MESSAGE = 3,    /* message/rfc822 or message/global */
};

enum msginfo_cte {
    MSGINFO_CTE_7BIT = 0, MSGINFO_CTE_8BIT, MSGINFO_CTE_BINARY,
    MSGINFO_CTE_BASE64, MSGINFO_CTE_QP, MSGINFO_CTE_UNKNOWN,
};

struct msginfo_part {
    uint64_t hdr_off, hdr_len;    /* MIME header incl. the empty line ending it */
    uint64_t body_off, body_len;  /* octets of the body in canonical form */
    uint64_t lines;               /* CRLF count of the body */
    uint64_t binary_size;         /* decoded size of a leaf; UINT64_MAX if the CTE is unknown */
    uint32_t parent, first_child, next_sibling;   /* indexes or MSGINFO_NONE */
    uint8_t type;                 /* enum msginfo_type */
    uint8_t cte;                  /* enum msginfo_cte */
};

/* A zero-copy view of a serialised record. Valid while the record's memory
 * is (for the store: until the read transaction ends). */
struct msginfo {
    const unsigned char *data;
    size_t len;
    uint32_t nparts;
    /* private: offsets into data, filled by msginfo_open */
    size_t off_parts, off_envelope, len_envelope, off_bodystructure,
        len_bodystructure, off_body, len_body;
    int64_t sent_date;            /* Date: as UTC seconds; INT64_MIN if absent/invalid */
    int32_t sent_tz;              /* minutes east of UTC */
    uint64_t size;                /* canonical size (RFC822.SIZE) */
};

/* Parse the canonical message and append its serialised record to out.
 * Never fails on malformed mail (it is parsed the way Dovecot recovers);
 * fails only on allocation/limit errors, with *err set. */
int msginfo_build(const unsigned char *canon, size_t len, struct buf *out,
                  const char **err);

/* Open a serialised record; -1 with *err when it is not one (or has another
 * MSGINFO_VERSION: the caller reports it as needing `coffer reindex`). */
int msginfo_open(struct msginfo *mi, const void *data, size_t len, const char **err);
uint32_t msginfo_version(const void *data, size_t len);

/* Ready-to-send strings WITHOUT their outer parentheses, e.g.
 * `"Mon, 1 Jan 2024 ..." "subj" ((...)) ...`: the writer adds them. */
void msginfo_envelope(const struct msginfo *mi, const char **s, size_t *len);
void msginfo_bodystructure(const struct msginfo *mi, const char **s, size_t *len);
void msginfo_body(const struct msginfo *mi, const char **s, size_t *len);
int msginfo_part(const struct msginfo *mi, uint32_t idx, struct msginfo_part *out);

enum msginfo_sect {
    MSGINFO_S_ALL,            /* BODY[] or BODY[1.2] (the part's body) */
    MSGINFO_S_HEADER,         /* [HEADER], [1.HEADER] (message/rfc822 part) */
    MSGINFO_S_HEADER_FIELDS,  /* range of the header; filter with msginfo_header_filter */
    MSGINFO_S_HEADER_FIELDS_NOT,
    MSGINFO_S_TEXT,
    MSGINFO_S_MIME,           /* [1.MIME]: the part's own MIME header */
};

/* Resolve BODY[path.which] to a byte range of the canonical message.
 * A part that does not exist is not an error: *exists = false, range empty
 * (Dovecot answers an empty string; see docs/COMPATIBILITY.md). *part_idx
 * gets the part (for BINARY: its cte and binary_size). Returns -1 only for
 * a section that is syntactically valid but meaningless (e.g. MIME on the
 * whole message), with *err. */
int msginfo_section(const struct msginfo *mi, const uint32_t *path, size_t npath,
                    enum msginfo_sect which, uint64_t *off, uint64_t *len,
                    uint32_t *part_idx, bool *exists, const char **err);

/* HEADER.FIELDS / HEADER.FIELDS.NOT: copy the fields of hdr[0..len) whose
 * names match (case-insensitive) one of names[] — or, with not_, do not —
 * in their original order and bytes, then the terminating CRLF. */
int msginfo_header_filter(const unsigned char *hdr, size_t len,
                          const char *const *names, const size_t *name_lens,
                          size_t nnames, bool not_, struct buf *out);

/* A HEADER.FIELDS name list prepared once per command: a field is compared
 * with the names only when its name's length and first octet (folded) are
 * among theirs. names and lens must outlive the set. */
struct msginfo_fieldset {
    const char *const *names;
    const size_t *lens;
    size_t n;
    uint64_t lenbits;        /* bit min(len, 63) per name */
    uint32_t first[8];       /* bit per folded first octet */
    uint64_t bylen[64];      /* n <= 64: the names (bit i) of each length min(len, 63) */
};
void msginfo_fieldset_init(struct msginfo_fieldset *fs, const char *const *names,
                           const size_t *lens, size_t n);
/* msginfo_header_filter with a prepared set. to_crlf: hdr is a header as
 * stored (bare LF line ends allowed) and out gets exactly what filtering
 * its canonical form (proto/canon.h) would give. */
int msginfo_header_filter_set(const unsigned char *hdr, size_t len,
                              const struct msginfo_fieldset *fs, bool not_, bool to_crlf,
                              struct buf *out);

#endif
