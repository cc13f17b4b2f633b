/* `sluice protect` and `sluice reveal`: field protection from the shell (docs/field-protection.md).
 * The filters run the library (include/sluice.h) over stdin; grant, revoke, list and status ask
 * the running broker over its control socket. */
#ifndef SL_CLI_PROTECT_H
#define SL_CLI_PROTECT_H

/* `sluice protect ...` (argv[0] is the first word after "protect": a subcommand or an option of
 * the filter). Returns the process exit status: 0 ok, 1 failure (the reason on stderr), 2
 * usage or configuration. */
int sl_cli_protect(int argc, char **argv);
/* `sluice reveal ...`: the revealing filter. Same exit statuses. */
int sl_cli_reveal(int argc, char **argv);

#endif
