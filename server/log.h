/* log.h — one place for cofferd/coffer logging: stderr (journald adds the
 * timestamp) or syslog. Call log_open() before confinement (syslog's
 * socket is opened with LOG_NDELAY). */
#ifndef COFFER_LOG_H
#define COFFER_LOG_H
#include <stdbool.h>
#include <syslog.h>

void log_open(const char *ident, bool use_syslog);
void log_set_prefix(const char *prefix);   /* e.g. "conn 127.0.0.1:5544" */
void log_msg(int prio, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define log_info(...)  log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_WARNING, __VA_ARGS__)
#define log_err(...)   log_msg(LOG_ERR, __VA_ARGS__)

#endif
