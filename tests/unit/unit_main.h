/* unit_main.h — the one Check runner every unit test program uses:
 * run a suite, report, and turn failures into the exit status `make check`
 * reads. Included by exactly one file per test program. */
#ifndef COFFER_UNIT_MAIN_H
#define COFFER_UNIT_MAIN_H
#include <check.h>
#include <stdlib.h>

static inline int unit_run(Suite *s)
{
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

#endif
