#!/usr/bin/env bash
# Stand-in agent that crashes on every prompt.
echo "about to crash" >&2
exit 3
