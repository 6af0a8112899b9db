#!/usr/bin/env python3
"""Fails if a tracked file refers to a path outside the repository.

A fresh `git clone` has nothing beside it, so no source, test, script or doc may reach above the
repository root with a chain of parent-directory steps (such as the workplace's shared folder
beside the repository), nor name an absolute path of the machine it was written on.
"""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# `../`-chains followed by a name; each is resolved against the file's folder and the root.
RELATIVE = re.compile(r"(?<![\w.])((?:\.\./)+)([\w.-]+)")
ABSOLUTE = re.compile(r"(?<![\w.])/(?:work|root|home|tmp/bash_jobs)[\w./-]*")
SKIP_SUFFIXES = {".png", ".jpg", ".lock"}

files = subprocess.run(
    ["git", "ls-files", "-z"], cwd=ROOT, check=True, capture_output=True
).stdout.decode().split("\0")
problems = []
for name in filter(None, files):
    path = ROOT / name
    if path.suffix in SKIP_SUFFIXES or not path.is_file():
        continue
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        continue
    for lineno, line in enumerate(text.splitlines(), 1):
        for m in RELATIVE.finditer(line):
            ups = m.group(1).count("../")
            # Fine only as a path relative to the file's own folder that stays inside and exists
            # (anything else is read from the root, the working directory of builds and tests).
            depth = len(path.parent.relative_to(ROOT).parts)
            inside = ups <= depth and (path.parent / m.group(0)).exists()
            if not inside:
                problems.append(f"{name}:{lineno}: {m.group(0)} leaves the repository")
        for m in ABSOLUTE.finditer(line):
            problems.append(f"{name}:{lineno}: {m.group(0)} is a path on one machine")
if problems:
    print("tracked files refer outside the repository:", *problems, sep="\n  ")
    sys.exit(1)
print(f"self-contained: {len([f for f in files if f])} tracked files refer to nothing outside the repository")
