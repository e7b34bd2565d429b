"""Summarises a py-spy raw (collapsed) profile: `python -m bench.profile_summary FILE [N]`.

Prints the share of samples per thread, the functions with the most samples on top of the
stack (self) and anywhere on it (inclusive), so a profile can be quoted in a document.
"""

import re
import sys
from collections import Counter
from pathlib import Path

_LINE = re.compile(r"^(?P<stack>.*) (?P<count>\d+)$")
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^:]*)(?::\d+)?\)$")


# Frames of this checkout are shown relative to it, wherever it is.
_REPO = str(Path(__file__).resolve().parent.parent) + "/"


def _short(frame: str) -> str:
    match = _FRAME.match(frame)
    if not match:
        return frame
    path = match["file"]
    for marker in ("site-packages/", _REPO, "lib/python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{match['func']} ({path})"


def profile_summarise(path: str, top: int) -> str:
    """Returns the summary text for one raw profile."""
    threads: Counter[str] = Counter()
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    with open(path) as handle:
        for line in handle:
            match = _LINE.match(line.rstrip("\n"))
            if not match:
                continue
            count = int(match["count"])
            frames = match["stack"].split(";")
            total += count
            if frames and frames[0].startswith(("thread ", "process ")):
                threads[frames[0].split(" (")[0] + " " + frames[0].rsplit(" ", 1)[-1]] += count
                frames = [f for f in frames if not f.startswith(("thread ", "process "))]
            if not frames:
                continue
            own[_short(frames[-1])] += count
            for name in {_short(f) for f in frames}:
                inclusive[name] += count
    lines = [f"{total} samples"]
    if threads:
        lines.append(
            "threads: "
            + ", ".join(f"{n} {c * 100 / total:.0f}%" for n, c in threads.most_common(6))
        )
    lines.append("self:")
    lines += [f"  {c * 100 / total:5.1f}%  {n}" for n, c in own.most_common(top)]
    lines.append("inclusive:")
    lines += [f"  {c * 100 / total:5.1f}%  {n}" for n, c in inclusive.most_common(top * 2)]
    return "\n".join(lines)


if __name__ == "__main__":
    print(profile_summarise(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 25))
