"""Runs the README's examples as written against a running `snapgate demo`.

Every ```sh block preceded by `<!-- demo -->` is an example a reader pastes into the shell that
holds the demo's `export` lines; they run here the same way: in README order, in one bash, with
`set -e`, curl failing on any HTTP error (`--fail-with-body`). An example that names the gateway
or the simulator but is not marked, or that still holds a placeholder (`…`) outside a comment,
fails the check: nothing a reader is told to paste is left unrun.

Usage: python tests/clients/readme_examples.py README.md   (SNAPGATE_* exported)
"""

import os
import re
import subprocess
import sys
import tempfile

MARK = "<!-- demo -->"


def blocks(lines):
    """(first line number, marked, text) of every ```sh block."""
    found, i = [], 0
    while i < len(lines):
        if lines[i].strip() == "```sh":
            start = i + 1
            end = start
            while lines[end].strip() != "```":
                end += 1
            marked = i > 0 and lines[i - 1].strip() == MARK
            found.append((start + 1, marked, "\n".join(lines[start:end])))
            i = end
        i += 1
    return found


def code_part(line):
    """A line without its trailing comment (examples comment with `  #`)."""
    if line.lstrip().startswith("#"):
        return ""
    return re.split(r"\s#\s", line, maxsplit=1)[0]


def main():
    readme = open(sys.argv[1], encoding="utf-8").read().split("\n")
    problems, script = [], [
        "set -eo pipefail",
        'curl() { command curl --fail-with-body --max-time 70 "$@"; }',
    ]
    marked = 0
    for line, is_marked, text in blocks(readme):
        talks_to_demo = re.search(r"\$SNAPGATE_URL|\$SIM\b|_sim/", text)
        if not is_marked:
            if talks_to_demo:
                problems.append(f"README line {line}: an example against the demo is not marked {MARK}")
            continue
        marked += 1
        for offset, code in enumerate(text.split("\n")):
            if "…" in code_part(code):
                problems.append(f"README line {line + offset}: a placeholder a reader cannot paste: {code.strip()}")
        script.append(f'echo "== README line {line}" >&2')
        script.append(text)
        script.append("echo >&2")
    if problems:
        sys.exit("\n".join(problems))
    with tempfile.TemporaryDirectory() as work:
        path = os.path.join(work, "examples.sh")
        with open(path, "w", encoding="utf-8") as f:
            f.write("\n".join(script) + "\n")
        ran = subprocess.run(
            ["bash", path], cwd=work, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600
        )
    log = ran.stdout
    with open("target/readme-examples.log", "w", encoding="utf-8") as f:
        f.write(log)
    if ran.returncode != 0:
        print(log[-4000:], file=sys.stderr)
        sys.exit(f"a README example failed (exit {ran.returncode}); see target/readme-examples.log")
    print(f"README examples: {marked} blocks ran as written against the demo, exit 0")


if __name__ == "__main__":
    main()
