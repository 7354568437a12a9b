#!/bin/sh
# Prints a greeting.
name="${1:-world}"
echo "Hello, $name!"
