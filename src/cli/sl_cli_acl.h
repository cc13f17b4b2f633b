/* `sluice acl ...` subcommand (ACL file management, flags as kafka-acls). */
#ifndef SL_CLI_ACL_H
#define SL_CLI_ACL_H

/* argv[0] is the subcommand (add, rm, list). Returns the process exit status. */
int sl_cli_acl(int argc, char **argv);

#endif
