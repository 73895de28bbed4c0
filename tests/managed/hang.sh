#!/usr/bin/env bash
# Stand-in agent that never answers: it starts a grandchild, prints both pids and waits forever,
# ignoring SIGTERM (so only SIGKILL of the process group ends it).
trap '' TERM
sleep 1000 &
echo "pids $$ $!"
wait
