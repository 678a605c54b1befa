/*
 * cli_import - the `unimilter report-import` and `unimilter report-summary` subcommands
 *              (DMARC aggregate reports we receive, issue 8)
 *
 * DESCRIPTION  um_cli_report_import(argc, argv) stores reports (lib/report_import.h) read from
 *              files, directories or stdin; um_cli_report_summary(argc, argv) prints the
 *              per-domain summary. argv[0] is the subcommand's name. Each returns the process
 *              exit status (0, 1, or 64 for usage).
 */
#ifndef UM_CLI_IMPORT_H
#define UM_CLI_IMPORT_H

int um_cli_report_import(int argc, char **argv);
int um_cli_report_summary(int argc, char **argv);

#endif
