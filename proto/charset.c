/* charset.c — charset table and iconv conversion (see charset.h). */
#include <ctype.h>
#include <errno.h>
#include <iconv.h>
#include <stdint.h>
#include <string.h>
#include "proto/charset.h"

struct cs {
    const char *name;       /* iconv name and the name we advertise */
    bool search;            /* accepted by SEARCH CHARSET */
    iconv_t cd;
    bool tried;
};

#define NO_CD ((iconv_t)-1)
static struct cs table[] = {
    { "UTF-8", true, NO_CD, true }, { "US-ASCII", true, NO_CD, true },
    { "ISO-8859-1", true, NO_CD, false }, { "ISO-8859-2", true, NO_CD, false },
    { "ISO-8859-3", true, NO_CD, false }, { "ISO-8859-4", true, NO_CD, false },
    { "ISO-8859-5", true, NO_CD, false }, { "ISO-8859-6", true, NO_CD, false },
    { "ISO-8859-7", true, NO_CD, false }, { "ISO-8859-8", true, NO_CD, false },
    { "ISO-8859-9", true, NO_CD, false }, { "ISO-8859-10", true, NO_CD, false },
    { "ISO-8859-11", true, NO_CD, false }, { "ISO-8859-13", true, NO_CD, false },
    { "ISO-8859-14", true, NO_CD, false }, { "ISO-8859-15", true, NO_CD, false },
    { "ISO-8859-16", true, NO_CD, false },
    { "WINDOWS-1250", true, NO_CD, false }, { "WINDOWS-1251", true, NO_CD, false },
    { "WINDOWS-1252", true, NO_CD, false }, { "WINDOWS-1253", true, NO_CD, false },
    { "WINDOWS-1254", true, NO_CD, false }, { "WINDOWS-1255", true, NO_CD, false },
    { "WINDOWS-1256", true, NO_CD, false }, { "WINDOWS-1257", true, NO_CD, false },
    { "WINDOWS-1258", true, NO_CD, false },
    { "KOI8-R", true, NO_CD, false }, { "KOI8-U", true, NO_CD, false },
    /* message-only charsets: decoded in bodies and headers, not SEARCH keys */
    { "SHIFT_JIS", false, NO_CD, false }, { "EUC-JP", false, NO_CD, false },
    { "ISO-2022-JP", false, NO_CD, false }, { "GB2312", false, NO_CD, false },
    { "GBK", false, NO_CD, false }, { "GB18030", false, NO_CD, false },
    { "BIG5", false, NO_CD, false }, { "EUC-KR", false, NO_CD, false },
    { "ISO-2022-KR", false, NO_CD, false }, { "UTF-16", false, NO_CD, false },
    { "UTF-16BE", false, NO_CD, false }, { "UTF-16LE", false, NO_CD, false },
    { "UTF-7", false, NO_CD, false }, { "TIS-620", false, NO_CD, false },
    { "CP850", false, NO_CD, false }, { "CP437", false, NO_CD, false },
    { "CP866", false, NO_CD, false }, { "MACINTOSH", false, NO_CD, false },
    { "CP949", false, NO_CD, false }, { "BIG5-HKSCS", false, NO_CD, false },
    { "CP932", false, NO_CD, false }, { "CP950", false, NO_CD, false },
    { "ISO-2022-JP-2", false, NO_CD, false }, { "ISO-2022-JP-3", false, NO_CD, false },
    { "EUC-TW", false, NO_CD, false }, { "ISO-2022-CN", false, NO_CD, false },
    { "ISO-2022-CN-EXT", false, NO_CD, false }, { "EUC-JISX0213", false, NO_CD, false },
    { "SHIFT_JISX0213", false, NO_CD, false }, { "JOHAB", false, NO_CD, false },
    { "CP737", false, NO_CD, false }, { "CP775", false, NO_CD, false },
    { "CP852", false, NO_CD, false }, { "CP855", false, NO_CD, false },
    { "CP857", false, NO_CD, false }, { "CP860", false, NO_CD, false },
    { "CP861", false, NO_CD, false }, { "CP862", false, NO_CD, false },
    { "CP863", false, NO_CD, false }, { "CP865", false, NO_CD, false },
    { "CP874", false, NO_CD, false }, { "CP1125", false, NO_CD, false },
    { "KOI8-RU", false, NO_CD, false }, { "KOI8-T", false, NO_CD, false },
    { "VISCII", false, NO_CD, false }, { "TCVN5712-1", false, NO_CD, false },
    { "ARMSCII-8", false, NO_CD, false }, { "GEORGIAN-PS", false, NO_CD, false },
    { "PT154", false, NO_CD, false }, { "MAC-CYRILLIC", false, NO_CD, false },
    { "UTF-32", false, NO_CD, false }, { "UTF-32BE", false, NO_CD, false },
    { "UTF-32LE", false, NO_CD, false }, { "UCS-2", false, NO_CD, false },
};
#define NTABLE (sizeof(table) / sizeof(table[0]))

static const struct { const char *alias; const char *name; } aliases[] = {
    { "UTF8", "UTF-8" }, { "ASCII", "US-ASCII" }, { "ANSIX3.41968", "US-ASCII" },
    { "USASCII", "US-ASCII" }, { "LATIN1", "ISO-8859-1" }, { "L1", "ISO-8859-1" },
    { "LATIN2", "ISO-8859-2" }, { "LATIN9", "ISO-8859-15" }, { "CP1250", "WINDOWS-1250" },
    { "CP1251", "WINDOWS-1251" }, { "CP1252", "WINDOWS-1252" }, { "CP1253", "WINDOWS-1253" },
    { "CP1254", "WINDOWS-1254" }, { "CP1255", "WINDOWS-1255" }, { "CP1256", "WINDOWS-1256" },
    { "CP1257", "WINDOWS-1257" }, { "CP1258", "WINDOWS-1258" }, { "SJIS", "SHIFT_JIS" },
    { "XSJIS", "SHIFT_JIS" }, { "MSKANJI", "SHIFT_JIS" }, { "CP936", "GBK" },
    { "KSC56011987", "CP949" }, { "KSC5601", "CP949" }, { "UHC", "CP949" },
    { "WINDOWS949", "CP949" }, { "WINDOWS31J", "CP932" }, { "WINDOWS936", "GBK" },
    { "WINDOWS950", "CP950" }, { "BIG5HKSCS", "BIG5-HKSCS" }, { "XGBK", "GBK" },
    { "XEUCJP", "EUC-JP" }, { "XEUCTW", "EUC-TW" }, { "IBM852", "CP852" },
    { "IBM866", "CP866" }, { "IBM437", "CP437" }, { "IBM850", "CP850" },
    { "XMACROMAN", "MACINTOSH" }, { "MACROMAN", "MACINTOSH" }, { "XMACCYRILLIC", "MAC-CYRILLIC" },
    { "UNICODE11UTF8", "UTF-8" }, { "UNICODE11UTF7", "UTF-7" }, { "UCS2", "UCS-2" },
    { "TIS620", "TIS-620" }, { "WINDOWS874", "TIS-620" },
};

static char search_list[512];

/* Compare names ignoring case, '-', '_', ' ' and ':' (ISO_8859-1:1987 etc.). */
static size_t squash(const char *s, size_t len, char *out, size_t outsz)
{
    size_t n = 0;
    for (size_t i = 0; i < len && n + 1 < outsz; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '-' || c == '_' || c == ' ')
            continue;
        out[n++] = (char)toupper(c);
    }
    out[n] = 0;
    return n;
}

static int find_name(const char *sq)
{
    char t[64];
    for (size_t i = 0; i < NTABLE; i++) {
        squash(table[i].name, strlen(table[i].name), t, sizeof t);
        if (strcmp(t, sq) == 0)
            return (int)i;
    }
    return CHARSET_UNKNOWN;
}

static void open_one(struct cs *c)
{
    if (c->tried)
        return;
    c->tried = true;
    c->cd = iconv_open("UTF-8", c->name);
}

int charset_init(const char **err)
{
    int rc = 0;
    for (size_t i = 2; i < NTABLE; i++) {
        open_one(&table[i]);
        /* only the advertised SEARCH charsets are required; a message
         * charset this libc lacks is read as UTF-8 (everywhere alike) */
        if (table[i].cd == NO_CD && table[i].search && rc == 0) {
            rc = -1;
            if (err)
                *err = table[i].name;
        }
    }
    return rc;
}

int charset_find(const char *name, size_t len)
{
    char sq[64];
    if (len == 0 || len >= sizeof sq)
        return CHARSET_UNKNOWN;
    squash(name, len, sq, sizeof sq);
    int h = find_name(sq);
    if (h != CHARSET_UNKNOWN)
        return h;
    for (size_t i = 0; i < sizeof aliases / sizeof aliases[0]; i++)
        if (strcmp(aliases[i].alias, sq) == 0)
            return charset_find(aliases[i].name, strlen(aliases[i].name));
    /* ISO8859-1:1987 style suffixes */
    char *colon = strchr(sq, ':');
    if (colon) {
        *colon = 0;
        return find_name(sq);
    }
    return CHARSET_UNKNOWN;
}

bool charset_search_ok(int h)
{
    return h >= 0 && (size_t)h < NTABLE && table[h].search;
}

const char *charset_search_list(void)
{
    if (!search_list[0]) {
        size_t n = 0;
        for (size_t i = 0; i < NTABLE && table[i].search; i++) {
            size_t l = strlen(table[i].name);
            if (n + l + 2 > sizeof search_list)
                break;
            if (n)
                search_list[n++] = ' ';
            memcpy(search_list + n, table[i].name, l);
            n += l;
        }
        search_list[n] = 0;
    }
    return search_list;
}

static int put_repl(struct buf *out)
{
    return buf_append(out, "\xEF\xBF\xBD", 3);
}

int charset_to_utf8(int h, const unsigned char *in, size_t len, bool strict,
                    struct buf *out)
{
    int rc;
    if (h == CHARSET_UTF8 || h < 0 || (size_t)h >= NTABLE) {
        if (strict) {
            /* validated by the caller's folder only leniently; check here */
            for (size_t i = 0; i < len;) {
                unsigned char c = in[i];
                size_t n = c < 0x80 ? 1 : c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3
                         : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
                if (n == 0 || i + n > len)
                    return 1;
                for (size_t k = 1; k < n; k++)
                    if ((in[i + k] & 0xC0) != 0x80)
                        return 1;
                i += n;
            }
        }
        return buf_append(out, in, len);
    }
    if (h == CHARSET_ASCII) {
        for (size_t i = 0; i < len; i++) {
            if (in[i] >= 0x80) {
                if (strict)
                    return 1;
                if ((rc = put_repl(out)))
                    return rc;
            } else if ((rc = buf_putc(out, in[i]))) {
                return rc;
            }
        }
        return 0;
    }
    struct cs *c = &table[h];
    open_one(c);
    if (c->cd == NO_CD) {
        /* cannot convert (confined without this module): keep the bytes,
         * the folder turns non-UTF-8 into U+FFFD */
        return strict ? 1 : buf_append(out, in, len);
    }
    iconv(c->cd, NULL, NULL, NULL, NULL);
    char *ip = (char *)(uintptr_t)in;
    size_t il = len;
    while (il > 0) {
        if ((rc = buf_reserve(out, il * 2 + 16)))
            return rc;
        char *op = (char *)out->data + out->len;
        size_t ol = out->cap - out->len - 1;
        size_t before = ol;
        size_t r = iconv(c->cd, &ip, &il, &op, &ol);
        out->len += before - ol;
        if (r != (size_t)-1)
            break;
        if (errno == E2BIG)
            continue;
        if (strict)
            return 1;
        if ((rc = put_repl(out)))
            return rc;
        if (errno == EINVAL)
            break;            /* truncated sequence at the end */
        ip++;
        il--;
    }
    /* flush shift state (ISO-2022-*) */
    if ((rc = buf_reserve(out, 16)))
        return rc;
    char *op = (char *)out->data + out->len;
    size_t ol = out->cap - out->len - 1, before = ol;
    iconv(c->cd, NULL, NULL, &op, &ol);
    out->len += before - ol;
    return 0;
}
