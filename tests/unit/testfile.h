/*
 * testfile.h - test helper: a whole file read into a malloc'd, NUL-terminated buffer (the
 * test fails naming the path when it cannot be read). Include after <cmocka.h>, <stdio.h>,
 * <stdlib.h>.
 */
#ifndef UM_TEST_TESTFILE_H
#define UM_TEST_TESTFILE_H

static char *
read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf;
    long n;

    if (f == NULL)
        fail_msg("cannot open %s", path);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    n = ftell(f);
    assert_true(n >= 0);
    rewind(f);
    buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = '\0';
    fclose(f);
    if (len != NULL)
        *len = (size_t)n;
    return buf;
}

#endif
