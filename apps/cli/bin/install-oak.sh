#!/bin/sh
# Puts `oak` on the PATH: a symlink to apps/cli/bin/oak.mjs (which runs the TypeScript sources of
# this checkout through tsx). Where: $OAK_BIN_DIR, else /usr/local/bin as root, else ~/.local/bin.
# Idempotent; meant to be called by `make up` after `npm install`.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
target="$here/oak.mjs"
if [ -n "${OAK_BIN_DIR:-}" ]; then dir=$OAK_BIN_DIR
elif [ "$(id -u)" = 0 ]; then dir=/usr/local/bin
else dir="$HOME/.local/bin"
fi
mkdir -p "$dir"
chmod +x "$target"
ln -sfn "$target" "$dir/oak"
case ":$PATH:" in
  *":$dir:"*) echo "oak: installed $dir/oak" ;;
  *) echo "oak: installed $dir/oak ($dir is not on your PATH: add it, or run 'npx oak' in the repository)" ;;
esac
