#include "base/sl_addr.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool sl_hostport_parse(const char *s, const char *stops, const char *def_port, sl_hostport *out,
                       const char **rest) {
    const char *h = s, *he, *r;
    if (*h == '[') {
        he = strchr(h, ']');
        if (!he) return false;
        h++;
        r = he + 1;
    } else {
        char set[16];
        snprintf(set, sizeof set, ":%s", stops ? stops : "");
        he = h + strcspn(h, set);
        r = he;
    }
    size_t hl = (size_t)(he - h);
    if (!hl || hl >= sizeof out->host) return false;
    memcpy(out->host, h, hl);
    out->host[hl] = 0;
    for (size_t i = 0; i < hl; i++) {
        char c = out->host[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '-' || c == ':'))
            return false;
    }
    snprintf(out->port, sizeof out->port, "%s", def_port);
    if (*r == ':') {
        size_t pl = strspn(r + 1, "0123456789");
        if (pl == 0 || pl > 5 || atoi(r + 1) > 65535 || atoi(r + 1) == 0) return false;
        memcpy(out->port, r + 1, pl);
        out->port[pl] = 0;
        r += 1 + pl;
    }
    unsigned char tmp[16];
    out->ip = inet_pton(AF_INET, out->host, tmp) == 1 || inet_pton(AF_INET6, out->host, tmp) == 1;
    if (rest) *rest = r;
    return true;
}
