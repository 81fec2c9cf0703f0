/*  log.c - one line per event, with time, level and key=value fields.

    Each line is formatted whole into a buffer and written with one write(2),
    so lines from several processes sharing a terminal do not interleave.
*/
#include "log.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

log_level_t log_threshold = LOG_LEVEL_INFO;
static char s_log_program[64] = "amaas";
static const char *s_level_names[] = {"error", "warn", "info", "debug"};
static bool s_to_syslog = false;

void log_to_syslog (void)
{
    openlog (s_log_program, LOG_PID, LOG_DAEMON);
    s_to_syslog = true;
}

void log_setup (const char *program, log_level_t level)
{
    snprintf (s_log_program, sizeof s_log_program, "%s", program);
    log_threshold = level;
}

int log_level_from_name (const char *name)
{
    for (int i = 0; i < 4; i++)
        if (strcmp (name, s_level_names[i]) == 0)
            return i;
    return -1;
}

void log_print (log_level_t level, const char *fmt, ...)
{
    if (level > log_threshold)
        return;
    char line[2048];
    struct timeval now;
    gettimeofday (&now, NULL);
    struct tm tm;
    gmtime_r (&now.tv_sec, &tm);
    int n = (int)strftime (line, sizeof line, "%Y-%m-%dT%H:%M:%S", &tm);
    n += snprintf (line + n, sizeof line - (size_t)n, ".%03dZ %s[%d] %s ",
                   (int)(now.tv_usec / 1000), s_log_program, (int)getpid (), s_level_names[level]);
    va_list args;
    va_start (args, fmt);
    int body = vsnprintf (line + n, sizeof line - (size_t)n - 1, fmt, args);
    va_end (args);
    if (s_to_syslog) {
        //  syslog stamps time, program and pid itself: the level and the event
        static const int priorities[] = {LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};
        syslog (priorities[level], "%s %s", s_level_names[level], line + n);
        return;
    }
    if (body < 0)
        body = 0;
    n += body;
    if (n > (int)sizeof line - 2)
        n = (int)sizeof line - 2;
    line[n++] = '\n';
    ssize_t rc = write (STDERR_FILENO, line, (size_t)n);
    (void)rc;
}
