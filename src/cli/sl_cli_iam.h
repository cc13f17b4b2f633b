/* `sluice iam ...` subcommand (IAM users, access keys, roles, policies; docs/iam.md). */
#ifndef SL_CLI_IAM_H
#define SL_CLI_IAM_H

/* argv[0] is the group (user, key, role, assume-role, policy). Returns the process exit status:
 * 0 success (for `policy simulate`: allowed), 1 failure (denied), 2 usage error. */
int sl_cli_iam(int argc, char **argv);

#endif
