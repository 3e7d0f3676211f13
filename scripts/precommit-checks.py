#!/usr/bin/env python3
"""Small file checks for the pre-commit hooks (.pre-commit-config.yaml), standard library only.

    precommit-checks.py json FILE...        each file parses as JSON
    precommit-checks.py toml FILE...        each file parses as TOML (needs Python 3.11+)
    precommit-checks.py whitespace FILE...  no spaces or tabs at the end of a line
    precommit-checks.py eof FILE...         a non-empty file ends with exactly one newline
    precommit-checks.py yaml FILE...        each file parses as YAML (needs PyYAML)

Each check reports every problem as `path:line: message` and exits 1 if there was any; none
of them changes a file. The standard library has no YAML parser, so the YAML hook runs in an
environment of its own with PyYAML (see .pre-commit-config.yaml).
"""

import json
import sys


def check_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            json.load(f)
    except (ValueError, UnicodeDecodeError) as error:
        line = getattr(error, "lineno", 1)
        return [f"{path}:{line}: not valid JSON: {error}"]
    return []


def check_toml(path):
    try:
        import tomllib
    except ImportError:  # Python before 3.11: nothing to check with.
        return []
    try:
        with open(path, "rb") as f:
            tomllib.load(f)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        return [f"{path}:1: not valid TOML: {error}"]
    return []


def check_yaml(path):
    import yaml

    try:
        with open(path, encoding="utf-8") as f:
            for _ in yaml.safe_load_all(f):
                pass
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        mark = getattr(error, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        return [f"{path}:{line}: not valid YAML: {error}"]
    return []


def read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def check_whitespace(path):
    data = read_bytes(path)
    if b"\0" in data:  # binary
        return []
    problems = []
    for number, line in enumerate(data.split(b"\n"), start=1):
        line = line.rstrip(b"\r")
        if line != line.rstrip(b" \t"):
            problems.append(f"{path}:{number}: trailing whitespace")
    return problems


def check_eof(path):
    data = read_bytes(path)
    if not data or b"\0" in data:
        return []
    lines = data.count(b"\n") + 1
    if not data.endswith(b"\n"):
        return [f"{path}:{lines}: no newline at the end of the file"]
    if data.endswith(b"\n\n") or data.endswith(b"\r\n\r\n"):
        return [f"{path}:{lines}: blank lines at the end of the file"]
    return []


CHECKS = {
    "json": check_json,
    "toml": check_toml,
    "yaml": check_yaml,
    "whitespace": check_whitespace,
    "eof": check_eof,
}


def main(argv):
    if len(argv) < 2 or argv[1] not in CHECKS:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    check = CHECKS[argv[1]]
    problems = []
    for path in argv[2:]:
        problems.extend(check(path))
    for problem in problems:
        print(problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
