"""Print the lines of requirement files that the running Python does not satisfy (nothing when all are).

    python tools/check_requirements.py requirements.txt requirements-dev.txt

Used by tools/setup_env.sh to install only what is missing: reinstalling a satisfied `paddlepaddle` line
would put the CPU build beside an installed paddlepaddle-gpu. Standard library only (it runs before
anything is installed); understands `name`, `name>=x`, `==`, `<=`, `<`, `>` and `!=` (what our files use).
"""
import re
import sys
from importlib import metadata

# A requirement is also met by these distributions (same import name, other build).
ALTERNATIVES = {
    "paddlepaddle": ("paddlepaddle-gpu",),
    "opencv-python": ("opencv-python-headless", "opencv-contrib-python", "opencv-contrib-python-headless"),
}
SPEC = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*((?:[<>=!~]=?\s*[^,;\s]+\s*,?\s*)*)")
CLAUSE = re.compile(r"(<=|>=|==|!=|~=|<|>)\s*([^,\s]+)")


def release(version):
    """(3, 3, 1) of '3.3.1', '3.3.1.post2', '2.0.0rc1' ...: the numeric release part, for comparing."""
    numbers = re.match(r"\d+(?:\.\d+)*", version)
    return tuple(int(n) for n in numbers.group(0).split(".")) if numbers else ()


def compare(installed, op, wanted):
    a, b = release(installed), release(wanted)
    width = max(len(a), len(b))
    a, b = a + (0,) * (width - len(a)), b + (0,) * (width - len(b))
    return {"<=": a <= b, ">=": a >= b, "==": a == b, "!=": a != b, "<": a < b, ">": a > b,
            "~=": a >= b}.get(op, True)


def installed_version(name):
    for candidate in (name,) + ALTERNATIVES.get(name.lower(), ()):
        try:
            return metadata.version(candidate)
        except metadata.PackageNotFoundError:
            continue
    return None


def unmet(path):
    """The requirement lines of `path` the running interpreter does not satisfy."""
    missing = []
    with open(path, encoding="utf-8") as handle:
        for raw in handle:
            line = raw.split("#", 1)[0].strip()
            if not line or line.startswith("-"):
                continue
            match = SPEC.match(line)
            if not match:
                missing.append(line)
                continue
            version = installed_version(match.group(1))
            if version is None or not all(compare(version, op, wanted)
                                          for op, wanted in CLAUSE.findall(match.group(2))):
                missing.append(line)
    return missing


def main(paths):
    for path in paths:
        for line in unmet(path):
            print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
