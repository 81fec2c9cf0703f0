/*  utf8.h - the one UTF-8 checker (RFC 3629).

    A sequence is valid when it is the shortest form of a code point up to
    U+10FFFF that is not a surrogate: the lead byte says the length and the
    second byte's range rules out overlong forms, surrogates and code points
    past U+10FFFF.  The model loader refuses strings that are not valid; the
    metrics exposition replaces each byte that starts no valid sequence.
*/
#ifndef AMAAS_UTF8_H_INCLUDED
#define AMAAS_UTF8_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

//  Length (1..4) of the valid sequence at the start of data (size bytes),
//  or 0 if none starts there (or size is 0).  Cannot fail.
size_t utf8_sequence (const uint8_t *data, size_t size);

//  Whether all size bytes at data are valid UTF-8.  Cannot fail.
bool utf8_valid (const uint8_t *data, size_t size);

#endif
