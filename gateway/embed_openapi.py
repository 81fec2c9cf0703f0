#!/usr/bin/python3
"""Converts docs/openapi.yaml to JSON and writes it as a C source file that
defines gateway_openapi_json (NUL-terminated) and gateway_openapi_json_size,
so that amaas-gateway serves GET /openapi.json from memory.

    embed_openapi.py docs/openapi.yaml build/gateway_openapi.c

Run by the build (CMake custom command) with Debian's python3 and
python3-yaml.  A YAML file that does not parse, or is not a mapping with an
'openapi' key, fails the build with the reason.
"""
import json
import os
import sys

import yaml


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: embed_openapi.py OPENAPI.yaml OUTPUT.c")
    source, output = sys.argv[1], sys.argv[2]
    try:
        with open(source, encoding="utf-8") as f:
            doc = yaml.safe_load(f)
    except (OSError, yaml.YAMLError) as e:
        sys.exit("embed_openapi.py: %s: %s" % (source, e))
    if not isinstance(doc, dict) or "openapi" not in doc:
        sys.exit("embed_openapi.py: %s is not an OpenAPI document (no 'openapi' key)" % source)
    # default=str: YAML dates and the like become strings, as JSON has none
    data = json.dumps(doc, ensure_ascii=False, separators=(",", ":"), default=str).encode()
    lines = ["/*  Generated from %s by gateway/embed_openapi.py: do not edit.  */"
             % os.path.basename(source),
             "#include <stddef.h>",
             "",
             "const char gateway_openapi_json[] = {"]
    for i in range(0, len(data), 16):
        lines.append("    " + " ".join("%d," % b for b in data[i:i + 16]))
    lines += ["    0};", "const size_t gateway_openapi_json_size = %d;" % len(data), ""]
    tmp = output + ".tmp"
    with open(tmp, "w") as f:
        f.write("\n".join(lines))
    os.replace(tmp, output)


if __name__ == "__main__":
    main()
