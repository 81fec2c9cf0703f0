/*  utf8.c - the one UTF-8 checker (RFC 3629); see utf8.h.
 */
#include "utf8.h"

size_t utf8_sequence (const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    uint8_t c = data[0];
    size_t len = c < 0x80                 ? 1
                 : c >= 0xC2 && c <= 0xDF ? 2
                 : c >= 0xE0 && c <= 0xEF ? 3
                 : c >= 0xF0 && c <= 0xF4 ? 4
                                          : 0;
    if (len == 0 || len > size)
        return 0;
    if (len == 1)
        return 1;
    uint8_t lo = c == 0xE0 ? 0xA0 : c == 0xF0 ? 0x90 : 0x80;
    uint8_t hi = c == 0xED ? 0x9F : c == 0xF4 ? 0x8F : 0xBF;
    if (data[1] < lo || data[1] > hi)
        return 0;
    for (size_t k = 2; k < len; k++)
        if ((data[k] & 0xC0) != 0x80)
            return 0;
    return len;
}

bool utf8_valid (const uint8_t *data, size_t size)
{
    size_t i = 0;
    while (i < size) {
        size_t len = utf8_sequence (data + i, size - i);
        if (len == 0)
            return false;
        i += len;
    }
    return true;
}
