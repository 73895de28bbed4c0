#!/usr/bin/env bash
# Stand-in agent: prints three progress lines, then a text answer.
for i in 1 2 3; do
  echo "step $i of 3: $1"
  sleep 0.1
done
echo "done"
