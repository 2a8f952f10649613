/* search_exec_test.c — the SEARCH executor over a real (temporary) store:
 * every kind of key, combinations, `$`, the index path, the fallback that
 * decodes messages when no stored text exists, and corruption reporting. */
#include <check.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "tests/unit/unit_main.h"
#include "proto/imapparse.h"
#include "proto/search.h"
#include "server/search_exec.h"
#include "store/admin.h"
#include "store/index.h"
#include "store/index_int.h"
#include "store/index_read.h"
#include "store/store.h"

static char dir[64];
static struct store_cfg cfg;
static struct registry *reg;
static struct inst *in;
static uint32_t uids[200];
static size_t nuids;
static struct mbox_rec mb;

#define NFILL 120

static const char *const msgs[] = {
    /* uid 1 */
    ("From: Alice Example <alice@example.org>\r\nTo: bob@x.org\r\n"
    "Subject: Quarterly   report\r\nDate: Mon, 1 Jan 2024 23:30:00 -0500\r\n"
    "Message-ID: <m1@x.org>\r\n\r\nHello world, the numbers are in.\r\n"),
    /* uid 2 */
    ("From: bob@x.org\r\nTo: Alice <alice@example.org>\r\nCc: carol@y.org\r\n"
    "Subject: Re: Quarterly report\r\nDate: Thu, 15 Jun 2023 08:00:00 +0200\r\n"
    "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=XX\r\n\r\n"
    "--XX\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    "R3LDvMOfZSBhdXMgQmVybGlu\r\n"
    "--XX\r\nContent-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
    "caf=E9 cr=E8me\r\n"
    "--XX\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    "c2VjcmV0d29yZA==\r\n--XX--\r\n"),
    /* uid 3 */
    ("From: =?UTF-8?Q?J=C3=BCrgen?= <j@z.org>\r\nSubject: =?UTF-8?B?w5xiZXJ3ZWlzdW5nIGJlc3TDpHRpZ3Q=?=\r\n"
    "X-Custom: marker-value\r\n\r\nkurz\r\n"),
};
static const uint32_t flags[] = { STORE_F_SEEN, STORE_F_FLAGGED, STORE_F_ANSWERED | STORE_F_DRAFT };
static const int64_t idates[] = { 1704153600 /* 2024-01-02 */, 1686787200 /* 2023-06-15 */,
                                  1577836800 /* 2020-01-01 */ };

static void add(const char *raw, uint32_t fl, int64_t idate, const char *key)
{
    const char *err = NULL;
    bool added;
    uint32_t uid;
    struct import_msg m = { .raw = (const unsigned char *)raw, .len = strlen(raw), .flags = fl,
                            .internaldate = idate, .tz = 0, .srckey = key,
                            .srckey_len = strlen(key) };
    ck_assert_int_eq(store_add_message(in, "alice", "INBOX", &m, &added, &uid, &err), 0);
    uids[nuids++] = uid;
}

static void setup(void)
{
    const char *err = NULL;
    char key[32], body[256];
    snprintf(dir, sizeof dir, "/tmp/coffer-sx-test-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    store_cfg_default(&cfg, dir);
    cfg.map_size = 1ull << 32;
    ck_assert_int_eq(registry_open(&cfg, true, &reg, &err), 0);
    ck_assert_int_eq(registry_instance_add(reg, "t", &err), 0);
    ck_assert_int_eq(inst_open(&cfg, "t", true, &in, &err), 0);
    ck_assert_int_eq(inst_user_add(in, "alice", "pw", false, &err), 0);
    ck_assert_int_eq(search_charsets_init(&err), 0);
    nuids = 0;
    ck_assert_int_eq(inst_wr_begin(in, &err), 0);
    for (size_t i = 0; i < 3; i++) {
        snprintf(key, sizeof key, "m%zu", i);
        add(msgs[i], flags[i], idates[i], key);
    }
    /* fillers: uid 4..123; "needle" only in the 77th */
    for (unsigned i = 0; i < NFILL; i++) {
        snprintf(key, sizeof key, "f%u", i);
        snprintf(body, sizeof body, "From: f%u@fill.org\r\nSubject: filler %u\r\n\r\n"
                 "common filler text %s\r\n", i, i, i == 77 ? "with a needle inside" : "");
        add(body, 0, 1600000000 + i * 86400, key);
    }
    ck_assert_int_eq(inst_wr_commit(in, &err), 0);
    ck_assert_int_eq(inst_rd_begin(in), 0);
    ck_assert_int_eq(inst_mbox_get(in, "alice", "INBOX", &mb), 0);
}

static void teardown(void)
{
    char cmd[128];
    inst_close(in);
    registry_close(reg);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
}

static const uint32_t *saved;
static size_t nsaved;
static const uint32_t *vuids;    /* a view other than the whole mailbox */
static size_t nvuids;

/* Run a query; returns its result as "uid,uid,..." (or "ERR:<code>"). */
static const char *run(const char *q)
{
    static char out[2048];
    struct imap_cmd cmd;
    const char *err = NULL;
    struct search_prog *p;
    int code;
    ck_assert_int_eq(imap_parse_args(q, strlen(q), NULL, &cmd, &err), 0);
    ck_assert_msg(search_parse(cmd.args, cmd.nargs, &p, &code, &err) == 0, "%s: %s", q, err);
    imap_cmd_free(&cmd);
    uint8_t match[200];
    const uint32_t *vu = vuids ? vuids : uids;
    size_t vn = vuids ? nvuids : nuids;
    struct search_view v = { mb.id, vu, vn, saved, nsaved };
    int rc = search_exec(in, &v, p, match, &err);
    /* the list form must give the same positions, in order */
    size_t *pos = NULL, npos = 0;
    int rc2 = search_exec_list(in, &v, p, &pos, &npos, &err);
    search_free(p);
    ck_assert_int_eq(rc, rc2);
    if (rc) {
        ck_assert_ptr_null(pos);
        snprintf(out, sizeof out, "ERR:%d", rc);
        return out;
    }
    size_t n = 0, k = 0;
    out[0] = 0;
    for (size_t i = 0; i < vn; i++)
        if (match[i]) {
            ck_assert_msg(k < npos && pos[k] == i, "%s: list and flags differ at %zu", q, i);
            k++;
            n += (size_t)snprintf(out + n, sizeof out - n, n ? ",%u" : "%u", vu[i]);
        }
    ck_assert_uint_eq(k, npos);
    free(pos);
    return out;
}

START_TEST(test_cheap_keys)
{
    ck_assert_uint_eq(nuids, 3 + NFILL);
    ck_assert_str_eq(run("1:3"), "1,2,3");
    ck_assert_str_eq(run("SEEN"), "1");
    ck_assert_str_eq(run("FLAGGED"), "2");
    ck_assert_str_eq(run("ANSWERED DRAFT"), "3");
    ck_assert_str_eq(run("UNSEEN UNFLAGGED UNANSWERED UNDRAFT 1:5"), "4,5");
    ck_assert_str_eq(run("DELETED"), "");
    ck_assert_str_eq(run("RECENT"), "");
    ck_assert_str_eq(run("NEW"), "");
    ck_assert_str_eq(run("KEYWORD $Forwarded"), "");
    ck_assert_str_eq(run("UID 2,3 OLD UNDELETED UNKEYWORD x"), "2,3");
    ck_assert_str_eq(run("UID 123:*"), "123");
    ck_assert_str_eq(run("*"), "123");
    ck_assert_str_eq(run("ON 2-Jan-2024"), "1");
    ck_assert_str_eq(run("BEFORE 16-Jun-2023 SINCE 15-Jun-2023"), "2");
    ck_assert_str_eq(run("1:3 SINCE 1-Jan-2021"), "1,2");
    ck_assert_str_eq(run("1:3 LARGER 400"), "2");
    ck_assert_str_eq(run("1:3 SMALLER 150"), "3");
    ck_assert_str_eq(run("1:3 NOT LARGER 183"), "1,3");
    /* Date: is local: 23:30 -0500 on 1 Jan is still 1 Jan */
    ck_assert_str_eq(run("SENTON 1-Jan-2024"), "1");
    ck_assert_str_eq(run("1:3 SENTBEFORE 1-Jan-1971"), "3");     /* no Date: = 1970 */
    ck_assert_str_eq(run("1:3 SENTSINCE 1-Jun-2023"), "1,2");
}
END_TEST

START_TEST(test_text_keys)
{
    ck_assert_str_eq(run("BODY \"world, the\""), "1");
    ck_assert_str_eq(run("BODY \"grüße aus\""), "2");          /* base64, UTF-8 */
    ck_assert_str_eq(run("CHARSET UTF-8 BODY \"CAFÉ CRÈME\""), "2"); /* QP latin-1 */
    ck_assert_str_eq(run("BODY secretword"), "");              /* not a text part */
    ck_assert_str_eq(run("TEXT \"text/plain; charset=iso\""), "2"); /* MIME headers */
    ck_assert_str_eq(run("BODY \"charset\""), "");
    ck_assert_str_eq(run("TEXT \"subject: quarterly\""), "1");
    ck_assert_str_eq(run("TEXT \"subject: re: quarterly\""), "2");
    ck_assert_str_eq(run("SUBJECT \"quarterly report\""), "1,2");  /* LWSP compressed */
    ck_assert_str_eq(run("HEADER Subject \"quarterly report\""), "2");
    ck_assert_str_eq(run("SUBJECT \"überweisung bestätigt\""), "3");
    ck_assert_str_eq(run("FROM jürgen"), "3");
    ck_assert_str_eq(run("FROM \"alice example\""), "1");
    ck_assert_str_eq(run("FROM \"\\\"alice example\\\" <alice@\""), "1");
    ck_assert_str_eq(run("TO alice"), "2");
    ck_assert_str_eq(run("CC carol"), "2");
    ck_assert_str_eq(run("BCC carol"), "");
    ck_assert_str_eq(run("HEADER Message-ID \"<m1@\""), "1");
    ck_assert_str_eq(run("HEADER X-Custom \"\""), "3");
    ck_assert_str_eq(run("HEADER X-Custom marker"), "3");
    ck_assert_str_eq(run("1:3 SUBJECT \"\""), "1,2,3");
    ck_assert_str_eq(run("1:3 CC \"\""), "2");
    ck_assert_str_eq(run("BODY needle"), "81");
    ck_assert_str_eq(run("UNDELETED BODY \"a needle\""), "81");
    ck_assert_str_eq(run("BODY nee"), "81");                    /* one trigram */
    ck_assert_str_eq(run("BODY ne"), "81");                     /* no trigram: scan */
    ck_assert_str_eq(run("BODY \"\""), run("ALL"));
    ck_assert_str_eq(run("TEXT \"filler 5\" UID 1:9"), "9");
}
END_TEST

START_TEST(test_combinations)
{
    ck_assert_str_eq(run("OR SEEN FLAGGED"), "1,2");
    ck_assert_str_eq(run("1:5 NOT SEEN"), "2,3,4,5");
    ck_assert_str_eq(run("OR BODY needle SUBJECT \"quarterly\""), "1,2,81");
    ck_assert_str_eq(run("NOT (UNSEEN OR BODY filler TEXT x)"), "1");
    ck_assert_str_eq(run("SEEN NOT BODY hello"), "");
    ck_assert_str_eq(run("(1:3) (NOT NOT FROM alice)"), "1");
    static const uint32_t sv[] = { 2, 81, 500 };
    saved = sv;
    nsaved = 3;
    ck_assert_str_eq(run("$"), "2,81");
    ck_assert_str_eq(run("UID $ FLAGGED"), "2");
    saved = NULL;
    nsaved = 0;
    ck_assert_str_eq(run("$"), "");
}
END_TEST

START_TEST(test_fallback_and_corruption)
{
    const char *err = NULL;
    /* without the stored text the executor decodes the messages itself */
    static const char *const qs[] = { "BODY \"grüße aus\"", "TEXT \"subject: quarterly\"",
                                       "FROM jürgen", "BODY needle", "SUBJECT \"quarterly report\"",
                                       "BODY ne", "TO alice" };
    char before[2048] = "", after[2048] = "";
    for (size_t i = 0; i < sizeof qs / sizeof qs[0]; i++) {
        strcat(before, run(qs[i]));
        strcat(before, "|");
    }
    inst_rd_end(in);
    ck_assert_int_eq(inst_wr_begin(in, &err), 0);
    MDB_txn *w = inst_txn(in);
    const struct index_dbs *dbs = inst_index_dbs(in);
    ck_assert_ptr_nonnull(dbs);
    ck_assert_uint_ge(dbs->n, 4);
    ck_assert_int_eq(mdb_drop(w, dbs->dbi[DBI_TEXT], 0), 0);
    ck_assert_int_eq(inst_wr_commit(in, &err), 0);
    ck_assert_int_eq(inst_rd_begin(in), 0);
    for (size_t i = 0; i < sizeof qs / sizeof qs[0]; i++) {
        strcat(after, run(qs[i]));
        strcat(after, "|");
    }
    ck_assert_str_eq(before, after);
    ck_assert_str_eq(after, "2|1|3|81|1,2|81|2|");
    /* a corrupt posting block is reported, never ignored */
    inst_rd_end(in);
    ck_assert_int_eq(inst_wr_begin(in, &err), 0);
    w = inst_txn(in);
    MDB_cursor *c = NULL;
    MDB_val k, v;
    static const unsigned char ft[4] = { 0, 'N', 'E', 'E' };   /* body "NEE" */
    int found = 0;
    for (unsigned l = 0; l < IX_LEVELS; l++) {
        ck_assert_int_eq(mdb_cursor_open(w, dbs->dbi[DBI_L0 + l], &c), 0);
        for (int r = mdb_cursor_get(c, &k, &v, MDB_FIRST); r == 0;
             r = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
            if (k.mv_size != IX_KEYLEN || memcmp((unsigned char *)k.mv_data + 4, ft, 4) != 0)
                continue;
            /* every block of the list: whichever one the join reads */
            unsigned char *copy = malloc(v.mv_size);
            memcpy(copy, v.mv_data, v.mv_size);
            copy[0] ^= 0xFF;
            MDB_val nv = { v.mv_size, copy };
            ck_assert_int_eq(mdb_cursor_put(c, &k, &nv, MDB_CURRENT), 0);
            free(copy);
            found++;
        }
        mdb_cursor_close(c);
    }
    ck_assert_int_gt(found, 0);
    ck_assert_int_eq(inst_wr_commit(in, &err), 0);
    ck_assert_int_eq(inst_rd_begin(in), 0);
    ck_assert_str_eq(run("BODY needle"), "ERR:-2");    /* STORE_ECORRUPT */
    ck_assert_str_eq(run("SEEN"), "1");                /* other keys still work */
}
END_TEST

/* Drop (on = false) or restore the index's "members" mark: without it the
 * executor must walk the mailbox instead of trusting the member map. */
static void set_members_mark(bool on)
{
    const char *err = NULL;
    inst_rd_end(in);
    ck_assert_int_eq(inst_wr_begin(in, &err), 0);
    const struct index_dbs *dbs = inst_index_dbs(in);
    MDB_val k = { 7, (void *)"members" }, v = { 1, (void *)"1" };
    if (on)
        ck_assert_int_eq(mdb_put(inst_txn(in), dbs->dbi[DBI_META], &k, &v, 0), 0);
    else
        ck_assert_int_eq(mdb_del(inst_txn(in), dbs->dbi[DBI_META], &k, NULL), 0);
    ck_assert_int_eq(inst_wr_commit(in, &err), 0);
    ck_assert_int_eq(inst_rd_begin(in), 0);
}

/* Starting from the index (member map) must give exactly what the walk
 * gives: over many segments (each transaction writes one; 8 merge),
 * with a message twice in the mailbox and once in another one, and for
 * views with gaps. */
static void add_segments(void)
{
    const char *err = NULL;
    char key[32], body[256];
    const char *twice = "From: dup@x.org\r\nSubject: twin\r\n\r\nzebracorn twice\r\n";
    inst_rd_end(in);
    for (unsigned t = 0; t < 12; t++) {           /* 12 segments: one level-0 merge */
        ck_assert_int_eq(inst_wr_begin(in, &err), 0);
        for (unsigned i = 0; i < 5; i++) {
            unsigned no = t * 5 + i;
            snprintf(key, sizeof key, "s%u", no);
            snprintf(body, sizeof body, "From: s%u@seg.org\r\nSubject: seg %u\r\n\r\n"
                     "segment body %s%s\r\n", no, no, no % 7 == 3 ? "zebracorn" : "plain",
                     no % 11 == 5 ? " quokkafish" : "");
            add(body, no % 2 ? STORE_F_SEEN : 0, 1600000000 + no * 86400, key);
        }
        if (t == 6) {
            add(twice, 0, 1600000000, "tw1");
            add(twice, STORE_F_FLAGGED, 1600000000, "tw2");   /* same msgnum, new UID */
            bool added;
            struct import_msg m = { .raw = (const unsigned char *)twice, .len = strlen(twice),
                                    .internaldate = 1600000000, .srckey = "o1", .srckey_len = 2 };
            ck_assert_int_eq(store_add_message(in, "alice", "Other", &m, &added, NULL, &err), 0);
        }
        ck_assert_int_eq(inst_wr_commit(in, &err), 0);
    }
    ck_assert_int_eq(inst_rd_begin(in), 0);
}

/* Every query answers the same through the index (members mark set) as
 * through the walk (mark dropped), on the whole view and on gap[0..ng). */
static void same_as_walk(const char *const *qs, size_t nq, const uint32_t *gap, size_t ng)
{
    static char fast[32][2048], walk[32][2048];
    ck_assert_uint_le(nq, 32);
    for (int pass = 0; pass < 2; pass++) {
        vuids = pass ? gap : NULL;
        nvuids = ng;
        for (size_t q = 0; q < nq; q++)
            snprintf(fast[q], sizeof fast[q], "%s", run(qs[q]));
        set_members_mark(false);
        for (size_t q = 0; q < nq; q++)
            snprintf(walk[q], sizeof walk[q], "%s", run(qs[q]));
        set_members_mark(true);
        for (size_t q = 0; q < nq; q++)
            ck_assert_msg(strcmp(fast[q], walk[q]) == 0, "%s (pass %d): index %s, walk %s",
                          qs[q], pass, fast[q], walk[q]);
    }
    vuids = NULL;
}

START_TEST(test_start_from_index)
{
    const char *err = NULL;
    add_segments();
    static const char *const qs[] = {
        "BODY zebracorn", "BODY quokkafish", "TEXT zebracorn", "SEEN BODY zebracorn",
        "BODY zebracorn FLAGGED", "BODY zebracorn NOT BODY twice", "BODY \"zebracorn twice\"",
        "SUBJECT \"seg 4\"", "FROM \"s3@seg\"", "BODY needle", "BODY nowhereword",
        "BODY zebracorn BODY quokkafish", "UID 130:150 BODY zebracorn", "BODY zeb",
        "1:50 BODY zebracorn", "BODY plain SINCE 1-Jan-2021",
    };
    uint32_t gap[200];
    size_t ng = 0;
    for (size_t i = 0; i < nuids; i++)
        if (i % 3 != 1)
            gap[ng++] = uids[i];
    same_as_walk(qs, sizeof qs / sizeof qs[0], gap, ng);
    /* the known answers, so that both paths cannot be wrong together */
    ck_assert_str_eq(run("BODY quokkafish"), "129,140,151,164,175");
    ck_assert_str_eq(run("BODY \"zebracorn twice\""), "159,160");
    ck_assert_str_eq(run("BODY zebracorn FLAGGED"), "160");
    /* the member map is what the index path trusts: drop the needle's
     * entry and the query misses it; without the mark it walks again */
    struct msg_ref r;
    ck_assert_int_eq(inst_msg_get(in, mb.id, 81, &r), 0);
    inst_rd_end(in);
    ck_assert_int_eq(inst_wr_begin(in, &err), 0);
    const struct index_dbs *dbs = inst_index_dbs(in);
    unsigned char mk[16];
    for (int i = 0; i < 8; i++)
        mk[i] = (unsigned char)(r.msgnum >> (56 - 8 * i));
    for (int i = 0; i < 4; i++) {
        mk[8 + i] = (unsigned char)(mb.id >> (24 - 8 * i));
        mk[12 + i] = (unsigned char)(81u >> (24 - 8 * i));
    }
    MDB_val k = { 16, mk };
    ck_assert_int_eq(mdb_del(inst_txn(in), dbs->dbi[DBI_MEM], &k, NULL), 0);
    ck_assert_int_eq(inst_wr_commit(in, &err), 0);
    ck_assert_int_eq(inst_rd_begin(in), 0);
    ck_assert_str_eq(run("BODY needle"), "");
    /* `coffer verify` sees the hole */
    inst_rd_end(in);
    char *rep = NULL;
    size_t replen = 0;
    FILE *f = open_memstream(&rep, &replen);
    ck_assert_int_eq(store_verify_inst(in, f), 1);
    fclose(f);
    ck_assert_msg(strstr(rep, "member map has") != NULL, "%s", rep);
    free(rep);
    ck_assert_int_eq(inst_rd_begin(in), 0);
    set_members_mark(false);
    ck_assert_str_eq(run("BODY needle"), "81");
    /* a full reindex refills the map and sets the mark again */
    inst_rd_end(in);
    uint64_t cnt = 0;
    ck_assert_int_eq(store_reindex(in, true, &cnt, &err), 0);
    ck_assert_int_eq(inst_rd_begin(in), 0);
    ck_assert(ix_members_complete(inst_txn(in), inst_index_dbs(in)));
    ck_assert_str_eq(run("BODY needle"), "81");
    inst_rd_end(in);
    f = open_memstream(&rep, &replen);
    ck_assert_int_eq(store_verify_inst(in, f), 0);
    fclose(f);
    free(rep);
    ck_assert_int_eq(inst_rd_begin(in), 0);
    ck_assert_str_eq(run("BODY \"zebracorn twice\""), "159,160");
}
END_TEST

/* The sparse path (the program run over the index's candidates only, as
 * view positions) against the dense walk, on programs whose other keys
 * need the view position (sequence numbers, `*`), the UID, flags, dates,
 * `$`, and AND/OR/NOT around them; on the whole view and on one with gaps. */
START_TEST(test_sparse_path)
{
    add_segments();
    static const char *const qs[] = {
        "BODY zebracorn OR SEEN FLAGGED", "BODY zebracorn NOT SEEN",
        "BODY segment OR UID 125:140 SINCE 20-Oct-2020", "BODY segment 10:60 NOT UID 140:*",
        "BODY segment 100:*", "* BODY segment", "UID * BODY segment",
        "BODY zebracorn $", "NOT $ BODY segment", "BODY segment SENTBEFORE 1-Jan-1971",
        "BODY segment NOT OR SEEN BEFORE 1-Jun-2020", "BODY zebracorn OR BODY quokkafish DRAFT",
        "BODY segment LARGER 10 NOT (UNSEEN ON 14-Sep-2020)", "BODY segment UID 1:*,130:140",
        "BODY zebracorn NOT BODY twice FLAGGED", "BODY segment UNDELETED NOT 1:100",
    };
    uint32_t gap[200], sv[] = { 1, 80, 129, 131, 140, 159, 160, 170 };
    size_t ng = 0;
    for (size_t i = 0; i < nuids; i++)
        if (i % 4 != 2)
            gap[ng++] = uids[i];
    saved = sv;
    nsaved = sizeof sv / sizeof sv[0];
    same_as_walk(qs, sizeof qs / sizeof qs[0], gap, ng);
    /* known answers on the whole view (segment messages are uids 124..158
     * and 161..185, the twins 159 and 160), so both cannot be wrong alike */
    ck_assert_str_eq(run("* BODY segment"), "185");
    ck_assert_str_eq(run("BODY segment 182:*"), "182,183,184,185");
    ck_assert_str_eq(run("BODY zebracorn $"), "159,160");
    ck_assert_str_eq(run("BODY zebracorn NOT $ SINCE 1-Oct-2020"), "148,155,164,171,178,185");
    ck_assert_str_eq(run("BODY zebracorn NOT BODY twice FLAGGED"), "");
    saved = NULL;
    nsaved = 0;
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("search_exec");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_cheap_keys);
    tcase_add_test(tc, test_text_keys);
    tcase_add_test(tc, test_combinations);
    tcase_add_test(tc, test_fallback_and_corruption);
    tcase_add_test(tc, test_start_from_index);
    tcase_add_test(tc, test_sparse_path);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return unit_run(suite());
}
