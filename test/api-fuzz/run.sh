#!/usr/bin/env bash
# Property-based test of the HTTP API against its own OpenAPI document (schemathesis).
# Starts the server on the tiny test library, with the admin API enabled and writing to a
# temporary copy of that library, then generates requests from /docs/json and checks every
# answer: no 5xx, every status documented for its operation, every body as its schema says.
#
#   test/api-fuzz/run.sh                 # the run the README reports
#   test/api-fuzz/run.sh -n 200 --seed 7 # any further schemathesis options
#
# Needs python3 (3.11 or later); the first run installs schemathesis into .venv-apitest/ (gitignored).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
VENV="${APITEST_VENV:-$ROOT/.venv-apitest}"
REQUIREMENTS="$ROOT/test/api-fuzz/requirements.txt"

if ! "$VENV/bin/python" -m pip freeze 2>/dev/null | grep -qxFf "$REQUIREMENTS"; then
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet -r "$REQUIREMENTS"
fi

WORK="$(mktemp -d)"
SERVER_PID=""
cleanup() {
  if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

# The library's version folders are links into the engine fixtures: copy their contents, and the
# backbone beside them, so that admin changes never touch the fixtures.
cp -RL "$ROOT/test/fixtures/tiny-library" "$WORK/library"
cp -RL "$ROOT/test/fixtures/engine/backbone" "$WORK/library/backbone"
node -e '
  const fs = require("node:fs");
  const file = process.argv[1];
  fs.writeFileSync(file, JSON.stringify({ ...JSON.parse(fs.readFileSync(file, "utf8")), backbone: "backbone" }));
' "$WORK/library/library.json"

TOKEN="$(node -e 'process.stdout.write(require("node:crypto").randomBytes(24).toString("hex"))')"
cd "$ROOT"
# The API key is the admin token: the one header schemathesis sends passes both, and its requests without it meet both.
ADMIN_TOKEN="$TOKEN" FUSION_API_KEY="$TOKEN" node --import tsx src/main.ts --library "$WORK/library" --host 127.0.0.1 --port 0 --threads 1 \
  >"$WORK/server.log" 2>&1 &
SERVER_PID=$!

URL=""
for _ in $(seq 1 120); do
  if grep -q '"model library loaded"' "$WORK/server.log"; then
    URL="$(sed -n 's/.*"msg":"Server listening at \(http:\/\/127\.0\.0\.1:[0-9]*\)".*/\1/p' "$WORK/server.log" | head -n 1)"
    break
  fi
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then break; fi
  sleep 0.5
done
if [ -z "$URL" ]; then
  echo "the server did not start:" >&2
  cat "$WORK/server.log" >&2
  exit 1
fi

# Run from the temporary folder, so that nothing the tester writes to its working directory stays behind.
cd "$WORK"
set +e
timeout 1200 "$VENV/bin/schemathesis" --config-file "$ROOT/test/api-fuzz/schemathesis.toml" run "$URL/docs/json" \
  --header "Authorization: Bearer $TOKEN" \
  --checks all \
  --max-examples 100 \
  --seed 1 \
  --workers 1 \
  --generation-database none \
  --request-timeout 20 \
  --no-color \
  "$@"
STATUS=$?
set -e
echo "answers by status, from the server's log:"
sed -n 's/.*"res":{"statusCode":\([0-9]*\)}.*/\1/p' "$WORK/server.log" | sort | uniq -c
if grep -q '"level":[56]0' "$WORK/server.log"; then
  echo "the server logged errors:" >&2
  grep '"level":[56]0' "$WORK/server.log" >&2
  STATUS=1
fi
exit "$STATUS"
