/*  unit.h - the end of every Check unit test's main(): run the suite, and
    exit 0 only if every test in it passed.
*/
#ifndef AMAAS_TESTS_UNIT_H_INCLUDED
#define AMAAS_TESTS_UNIT_H_INCLUDED

#include <check.h>

//  Runs every test of suite (which it takes over) and prints Check's
//  summary.  Returns 0 if all passed, else 1: main's exit status.
static inline int unit_run (Suite *suite)
{
    SRunner *runner = srunner_create (suite);
    srunner_run_all (runner, CK_NORMAL);
    int failed = srunner_ntests_failed (runner);
    srunner_free (runner);
    return failed ? 1 : 0;
}

#endif
