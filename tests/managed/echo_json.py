#!/usr/bin/env python3
"""Stand-in agent: answers its prompt (argv[1]) as one JSON result, like `claude -p ... --output-format json`."""
import json
import sys

print(json.dumps({"type": "result", "result": "echo: " + sys.argv[1], "is_error": False}))
