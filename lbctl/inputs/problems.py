"""Problems with an input: the field path, the reason and the line, always as one line of text.

Every refusal of every input reads the same way, on the command line and on the serial console:

    services.DICOM.servers[1].address: '10.0.52.300' is not an IPv4 or IPv6 address (line 12)
    line 9: YAML syntax error: expected ',' or '}', but got '<stream end>'

The text of a problem is made of pieces of the input (keys, values), so it is forced onto one
line here, once: control characters, line and paragraph separators are written as escapes. A key
holding "\\nerror: ..." cannot forge a second error line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

FieldPath = tuple[str | int, ...]  # keys and list indices from the top of the document

PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]+")
# C0 and C1 controls, DEL, and the separators that some terminals and logs break lines at.
UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def one_line(text: str) -> str:
    """`text` with every control character and line separator written as an escape."""
    return UNPRINTABLE.sub(
        lambda m: repr(m.group())[1:-1] if m.group() not in "\u2028\u2029" else f"\\u{ord(m.group()):04x}", text
    )


def format_path(path: FieldPath) -> str:
    """services.DICOM.servers[1].address; keys that are not plain names are quoted."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        elif PLAIN_KEY.fullmatch(part):
            text += f".{part}" if text else part
        else:
            quoted = '"' + part.replace("\\", "\\\\").replace('"', '\\"') + '"'
            text += f"[{quoted}]"
    return text


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input."""

    path: FieldPath
    reason: str
    line: int | None = None
    show_line: bool = True  # False when the reason names its lines itself ("given twice (lines 4 and 9)")

    def __str__(self) -> str:
        where = format_path(self.path)
        if where:
            text = f"{where}: {self.reason}" + (f" (line {self.line})" if self.line and self.show_line else "")
        elif self.line:
            text = f"line {self.line}: {self.reason}"
        else:
            text = self.reason
        return one_line(text)


class InputInvalid(Exception):
    """An input was refused: every problem found, in the order of the file.

    `source` names the input in messages that need it (the file, or a provisioning input).
    """

    def __init__(self, problems: list[Problem], source: str = ""):
        self.problems = sorted(problems, key=lambda p: p.line or 0)
        self.source = source
        super().__init__("\n".join(str(p) for p in self.problems))

    def lines(self) -> list[str]:
        """One line per problem, as `lbctl validate` prints them (without the 'error: ')."""
        return [str(p) for p in self.problems]
