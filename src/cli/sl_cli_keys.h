/* `sluice keys ...` subcommand: key lifecycle of a running broker over its control socket
 * (encryption-at-rest keys, field keys, data-subject keys). */
#ifndef SL_CLI_KEYS_H
#define SL_CLI_KEYS_H

/* argv[0] is the subcommand (status, rotate, rewrap, retire, reencrypt, shred, create, forget).
 * Returns the process exit status: 0 ok, 1 failure (one line on stderr), 2 usage. */
int sl_cli_keys(int argc, char **argv);

#endif
