/* SPDX-License-Identifier: MIT */
/*
 * The shared main() of every Check test program: runs the program's suite and prints TAP on
 * stdout for automake's tap-driver. Failures are reported through TAP, so the exit status is
 * 0 whenever the suite ran (STYLE.md, Tests).
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>

#include "test-util.h"

int main(void) {
        SRunner *sr;

        /* TAP lines must not interleave with buffered output of forked test children. */
        setvbuf(stdout, NULL, _IOLBF, 0);
        sr = srunner_create(test_suite());
        srunner_set_tap(sr, "-");
        srunner_run_all(sr, CK_SILENT);
        srunner_free(sr);
        return EXIT_SUCCESS;
}
