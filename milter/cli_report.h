/*
 * cli_report - the `unimilter report` subcommand (DMARC aggregate reports, issue 8)
 *
 * DESCRIPTION  um_cli_report(argc, argv) runs lib/report over the history database; argv[0]
 *              is "report". Returns the process exit status (0, 1, or 64 for usage).
 */
#ifndef UM_CLI_REPORT_H
#define UM_CLI_REPORT_H

int um_cli_report(int argc, char **argv);

#endif
