#include "server/log.h"
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static bool log_syslog;
static char log_prefix[128];
static const char *log_ident = "coffer";

void log_open(const char *ident, bool use_syslog)
{
    log_ident = ident;
    log_syslog = use_syslog;
    if (use_syslog)
        openlog(ident, LOG_PID | LOG_NDELAY, LOG_MAIL);
}

void log_set_prefix(const char *prefix)
{
    snprintf(log_prefix, sizeof log_prefix, "%s", prefix ? prefix : "");
}

void log_msg(int prio, const char *fmt, ...)
{
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    /* Log lines must stay one line: client-controlled text could carry CR/LF. */
    for (char *p = line; *p; p++)
        if ((unsigned char)*p < 0x20)
            *p = '?';
    if (log_syslog)
        syslog(prio, "%s%s%s", log_prefix, log_prefix[0] ? ": " : "", line);
    else
        fprintf(stderr, "%s[%ld]: %s%s%s\n", log_ident, (long)getpid(), log_prefix,
                log_prefix[0] ? ": " : "", line);
}
