/*
 * version - the versions of unimilter and of the libraries it runs on
 *
 * DESCRIPTION  um_version_print() writes one "name version" line per component, using
 *              the libraries' runtime version calls where they have one and their header
 *              macros otherwise (libspf2, libopendmarc). libmilter's runtime version is
 *              printed by milter/ (only it sees libmilter).
 * THREADS      Reentrant.
 */
#ifndef UM_VERSION_H
#define UM_VERSION_H

#include <stdio.h>

void um_version_print(FILE *fp);

#endif
