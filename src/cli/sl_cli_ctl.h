/* The CLI's control-socket client, shared by `sluice keys` and `sluice protect`: finds the
 * socket, sends one request line and renders the answer lines (ctl/sl_ctl.h for the protocol). */
#ifndef SL_CLI_CTL_H
#define SL_CLI_CTL_H
#include <stdbool.h>
#include <stddef.h>

/* Renders a "json" answer line (text[0..len)); returns 0, or 1 when it could not. */
typedef int (*sl_cli_json_fn)(void *arg, const char *text, size_t len);

typedef struct sl_cli_ctl_view {
    const char *prog;       /* message prefix: "sluice keys" */
    bool json;              /* print "json" lines as they are (and no "ok" text) */
    bool tty;               /* progress as a bar on stderr */
    const char *ok_quiet;   /* an "ok" text not worth printing ("status"); NULL: none */
    bool ok_silent;         /* print no "ok" text at all (the answer was the "json" line) */
    sl_cli_json_fn on_json; /* !json: renders "json" lines; NULL: printed as they are */
    void *arg;
    bool bar_shown; /* (state) a bar is on the current line */
} sl_cli_ctl_view;

/* The socket path: `sock` if given, else the one the configuration `cfg_path` names (NULL:
 * defaults). Returns 0, or 2 with the reason on stderr (a configuration that does not load). */
int sl_cli_ctl_socket(const char *prog, const char *cfg_path, const char *sock, char *out,
                      size_t n);

/* Sends `request` (one line, without its newline) and renders the answer until "ok" or "error".
 * Returns the exit status: 0 ok, 1 error or no answer (the reason on stderr), 2 a request too
 * long. */
int sl_cli_ctl_exchange(const char *sock, const char *request, sl_cli_ctl_view *v);

#endif
