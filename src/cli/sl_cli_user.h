/* `sluice user ...` subcommand (SCRAM credential store management). */
#ifndef SL_CLI_USER_H
#define SL_CLI_USER_H

/* argv[0] is the subcommand (add, passwd, rm, list). Returns the process exit status. */
int sl_cli_user(int argc, char **argv);

#endif
