"""wasmtime's errors in one line, cause included.

wasmtime reports a compile or parse failure as a headline ("failed to compile:
wasm[0]::function[2]") followed by a "Caused by:" chain whose last entry says what is
wrong ("tail calls support is not enabled"). Keeping only the first line loses the
cause; every role (challenge, submission, conformance) shows the whole chain, joined.
"""

from __future__ import annotations

import re

_NUMBERED = re.compile(r"^\d+:\s*")


def one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    if not text:
        return type(exc).__name__
    parts: list[str] = []
    for raw in text.splitlines():
        line = _NUMBERED.sub("", raw.strip())
        if line and line != "Caused by:" and line not in parts:
            parts.append(line)
    return ": ".join(parts)
