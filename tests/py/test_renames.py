"""src/hf/hfrenames_table.c is what scripts/gen_renames.py writes from the
transformers pinned in tests/py/requirements.txt: regenerating it changes
nothing. Needs transformers (build/venv); without it it fails, unless
MQ_OFFLINE=1."""
import difflib
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
import mqcheck  # noqa: E402

SRC = os.environ.get("MQ_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
try:
    import transformers
except ImportError as e:
    if os.environ.get("MQ_OFFLINE") == "1":
        mqcheck.skip("transformers missing and MQ_OFFLINE=1 (%s)" % e)
    print("FAIL: the rename table check needs transformers (tests/py/requirements.txt): %s" % e)
    sys.exit(1)

with open(os.path.join(SRC, "tests", "py", "requirements.txt")) as f:
    pinned = re.search(r"^transformers==(\S+)", f.read(), re.M).group(1)
if transformers.__version__ != pinned:
    print("FAIL: transformers %s is installed, the table is generated from the pinned %s"
          % (transformers.__version__, pinned))
    sys.exit(1)

p = subprocess.run([sys.executable, os.path.join(SRC, "scripts", "gen_renames.py")],
                   capture_output=True, text=True)
if p.returncode != 0:
    print("FAIL: gen_renames.py: exit %d: %s" % (p.returncode, p.stderr[-2000:]))
    sys.exit(1)
path = os.path.join(SRC, "src", "hf", "hfrenames_table.c")
with open(path) as f:
    committed = f.read()
if p.stdout != committed:
    diff = difflib.unified_diff(committed.splitlines(), p.stdout.splitlines(), "committed",
                                "regenerated", lineterm="", n=1)
    print("FAIL: %s differs from what scripts/gen_renames.py writes now:" % path)
    print("\n".join(list(diff)[:40]))
    sys.exit(1)
print("renames: the table matches transformers %s" % transformers.__version__)
