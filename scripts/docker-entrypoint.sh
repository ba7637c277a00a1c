#!/bin/sh
# The container's entry point. The model library lives on a volume (FUSION_LIBRARY, /library in
# the image) so that admin changes survive a new container; the image's own library is only the
# seed. A volume without library.json gets that seed once, written by the server's user, so the
# admin API can later write version folders and the manifest there. Then the server starts.
set -eu

library="${FUSION_LIBRARY:?FUSION_LIBRARY names the library folder}"

# A library on object storage is the bucket's, shared by every replica: nothing to seed here.
case "$library" in s3://*) exec node "$(cd "$(dirname "$0")/.." && pwd)/dist/main.js" "$@" ;; esac

seed="${FUSION_SEED_LIBRARY:?FUSION_SEED_LIBRARY names the library copied into an empty volume}"
app="$(cd "$(dirname "$0")/.." && pwd)"

fail() {
  echo "fusion-serve: $1" >&2
  exit 1
}

[ -d "$library" ] || mkdir -p "$library" 2>/dev/null || fail "cannot create the library folder $library"
probe="$library/.write-probe.$$"
if ! (: >"$probe") 2>/dev/null; then
  fail "the library folder $library is not writable by user $(id -u):$(id -g); mount a volume it owns (docker run -v fusion-library:$library ...), or chown a host folder to $(id -u):$(id -g)"
fi
rm -f "$probe"

if [ ! -e "$library/library.json" ]; then
  echo "fusion-serve: $library holds no library.json: copying the default library into it" >&2
  # The manifest last, under a temporary name the server removes at start: a copy cut short
  # leaves no manifest, and the next start copies again.
  for entry in "$seed"/* "$seed"/.[!.]*; do
    [ -e "$entry" ] || continue
    [ "$(basename "$entry")" = library.json ] && continue
    cp -R "$entry" "$library/"
  done
  cp "$seed/library.json" "$library/library.json.partial"
  mv "$library/library.json.partial" "$library/library.json"
fi

exec node "$app/dist/main.js" "$@"
