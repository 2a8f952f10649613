/* fuzz_search.c — SEARCH program parser (proto/search.c) behind the
 * argument tokenizer, as a session feeds it: the input is everything after
 * "tag SEARCH " (RETURN options, CHARSET, keys, literals as "{n}\r\n" +
 * octets). Any crash, leak, UB or unbounded time is a finding. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "proto/imapparse.h"
#include "proto/search.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool inited;
    const char *err = NULL;
    if (!inited) {
        /* iconv descriptors are opened once per process, as in a session. */
        if (search_charsets_init(&err) != 0)
            __builtin_trap();
        inited = true;
    }
    struct imap_parse_limits lim = { 0, 0 };
    struct imap_cmd cmd;
    if (imap_parse_args((const char *)data, size, &lim, &cmd, &err) == 0) {
        struct search_prog *prog = NULL;
        int code = 0;
        if (search_parse(cmd.args, cmd.nargs, &prog, &code, &err) == 0) {
            bool esearch;
            (void)search_return(prog, &esearch);
            search_free(prog);
        } else if (code != SEARCH_ERR_BAD && code != SEARCH_ERR_BADCHARSET) {
            __builtin_trap();   /* failure without a defined error code */
        }
    }
    imap_cmd_free(&cmd);
    return 0;
}
