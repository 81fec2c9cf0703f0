/*  log.h - one line per event, with time, level and key=value fields.

    log_info ("worker ready id=%s models=%zu", ...) prints to stderr
    "2026-11-28T21:47:03.120Z amaas-broker info worker ready id=... models=2".
    The first words say what happened, the key=value fields say to what.
    Levels below the threshold (default info) cost one comparison.
*/
#ifndef AMAAS_LOG_H_INCLUDED
#define AMAAS_LOG_H_INCLUDED

typedef enum { LOG_LEVEL_ERROR = 0, LOG_LEVEL_WARN, LOG_LEVEL_INFO, LOG_LEVEL_DEBUG } log_level_t;

//  Set the program name printed on every line and the lowest level printed.
//  Cannot fail.
void log_setup (const char *program, log_level_t level);

//  Level by name ("error", "warn", "info", "debug"); -1 if unknown.
//  Cannot fail.
int log_level_from_name (const char *name);

//  From now on, lines go to syslog (daemon facility, with the program name
//  and pid) instead of stderr.  Cannot fail.
void log_to_syslog (void);

//  Print one line at level (if at or above the threshold).  Cannot fail: a
//  line that cannot be written is lost.
void log_print (log_level_t level, const char *fmt, ...) __attribute__ ((format (printf, 2, 3)));

extern log_level_t log_threshold; //  lowest level printed (log_setup)

#define log_error(...) log_print (LOG_LEVEL_ERROR, __VA_ARGS__)
#define log_warn(...) log_print (LOG_LEVEL_WARN, __VA_ARGS__)
#define log_info(...)                                                                              \
    do {                                                                                           \
        if (log_threshold >= LOG_LEVEL_INFO)                                                       \
            log_print (LOG_LEVEL_INFO, __VA_ARGS__);                                               \
    } while (0)
#define log_debug(...)                                                                             \
    do {                                                                                           \
        if (log_threshold >= LOG_LEVEL_DEBUG)                                                      \
            log_print (LOG_LEVEL_DEBUG, __VA_ARGS__);                                              \
    } while (0)

#endif
