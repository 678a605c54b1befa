/*
 * replay.c - run a libFuzzer harness over a corpus directory without libFuzzer
 *
 * Every build links each tests/fuzz/fuzz_<parser>.c with this main(), so ctest replays the
 * committed corpus (and every past crash) under whatever sanitizers the build uses.
 * Usage: fuzz_<parser> DIR_OR_FILE...; exit 0 when every input ran, 1 when none was found.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int
replay_file(const char *path)
{
    FILE *fp = fopen(path, "rb");
    uint8_t *buf;
    long n;

    if (fp == NULL)
        return -1;
    fseek(fp, 0, SEEK_END);
    n = ftell(fp);
    rewind(fp);
    buf = malloc(n > 0 ? (size_t)n : 1);
    if (buf == NULL || (n > 0 && fread(buf, 1, (size_t)n, fp) != (size_t)n)) {
        free(buf);
        fclose(fp);
        return -1;
    }
    fclose(fp);
    (void)LLVMFuzzerTestOneInput(buf, (size_t)n);
    free(buf);
    return 0;
}

int
main(int argc, char **argv)
{
    int ran = 0;

    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) != 0)
            continue;
        if (S_ISDIR(st.st_mode)) {
            DIR *d = opendir(argv[i]);
            struct dirent *e;
            char path[4096];
            while (d != NULL && (e = readdir(d)) != NULL) {
                if (e->d_name[0] == '.')
                    continue;
                snprintf(path, sizeof(path), "%s/%s", argv[i], e->d_name);
                if (replay_file(path) == 0)
                    ran++;
            }
            if (d != NULL)
                closedir(d);
        } else if (replay_file(argv[i]) == 0) {
            ran++;
        }
    }
    printf("replayed %d input(s)\n", ran);
    return ran > 0 ? 0 : 1;
}
