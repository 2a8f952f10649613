/* mime.h — the MIME structure parser behind msginfo (internal to proto/).
 *
 * Parses a whole canonical message into a flat part table in document
 * order (a parent always precedes its children). Recovery from broken
 * MIME follows Dovecot's message parser so that part boundaries, sizes and
 * section numbers match the reference server: boundaries are matched by
 * prefix (longest active one wins, innermost first), a missing end boundary
 * ends the part at its parent's end, a header cut short by a boundary line
 * gives its last line end to the parent, and so on. Iterative; depth and
 * part count are capped (MSGINFO_MAX_DEPTH, MSGINFO_MAX_PARTS). */
#ifndef COFFER_MIME_H
#define COFFER_MIME_H
#include <stddef.h>
#include <stdint.h>

enum {
    MIME_F_IS_MIME = 1,     /* MIME-Version or Content-Type seen, or a body part */
    MIME_F_MULTIPART = 2,
    MIME_F_RFC822 = 4,      /* message/rfc822: one child, the message */
    MIME_F_TEXT = 8,
    MIME_F_DIGEST = 16,     /* multipart/digest: children default to message/rfc822 */
};

struct mime_part {
    uint64_t hdr_off, hdr_size, body_size;
    uint64_t lines;                 /* LF count of the body (filled by mime_parse) */
    uint64_t hdr_lines;
    uint32_t parent, first_child, last_child, next_sibling;
    uint32_t flags;
    uint32_t depth;
};

struct mime_tree {
    struct mime_part *parts;
    uint32_t n, cap;
};

#define MIME_NONE UINT32_MAX

void mime_tree_init(struct mime_tree *t);
void mime_tree_free(struct mime_tree *t);
/* 0, or -1 on allocation failure (*err set). */
int mime_parse(const unsigned char *m, size_t len, struct mime_tree *t, const char **err);

#endif
