/*
 * cli - subcommands of the same binary (stats, reset, keygen, check-keys, report, ...)
 *
 * DESCRIPTION  um_cli_run() looks at argv[1] only; it returns the subcommand's exit
 *              status, or -1 when argv[1] names no subcommand (then the daemon starts).
 */
#ifndef UM_CLI_H
#define UM_CLI_H

int um_cli_run(int argc, char **argv);

#endif
