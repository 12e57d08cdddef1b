#!/usr/bin/env bash
# `tinygpt serve` from the outside: the official `openai` Python client, a real headless Chromium
# driven by Selenium, and a bounded load test, all against the real binary on 127.0.0.1.
#
#   tools/test-serve.sh
#
# First `cargo test --features serve`: the server's own tests (the feature is off in a plain
# build, so `cargo test --workspace` skips them). Then it installs what it needs when missing
# (idempotent): Debian's chromium and chromium-driver, and a Python venv .venv-serve with openai
# and selenium from PyPI. Builds `tinygpt --features serve`, writes synthetic models (a
# character model, a chat model, a slower 1M-parameter model), then runs
#   tools/serve-tests/test_openai.py  completions and chat completions, streamed and not, against
#                                     `tinygpt generate` and `tinygpt chat -p`; errors as exceptions;
#   tools/serve-tests/test_page.py    the page: type, press the button, compare the streamed text
#                                     with the CLI's; the chat view with history; the stop button;
#   tools/serve-tests/load_test.py    200 requests, 16 at once (streamed, whole, hung up early).
# Screenshots and the log go to target/serve-tests/. Prints `N passed, N failed` over all of them
# and exits 1 if any failed.
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
out=target/serve-tests
mkdir -p "$out"

tools/need-debs chromium chromium-driver python3-venv || exit 1
venv=.venv-serve
if ! "$venv/bin/python" -c "import openai, selenium" 2>/dev/null; then
    echo "setting up $venv (openai, selenium)" >&2
    python3 -m venv "$venv" && "$venv/bin/pip" install -q openai selenium ||
        { echo "error: could not set up $venv" >&2; exit 1; }
fi

# The Rust side first: the server's unit tests and tools/tests/serve.rs (cargo's own report).
cargo test -q -p tinygpt --features serve --bin tinygpt --test serve -- --test-threads 2 || { echo "FAIL cargo test --features serve"; cargo_failed=1; }
cargo build -q -p tinygpt --features serve --bin tinygpt --example make-model || { echo "error: build failed" >&2; exit 1; }
models=$(mktemp -d)
trap 'rm -rf "$models"' EXIT
target/debug/examples/make-model -o "$models/base.tgpt" &&
    target/debug/examples/make-model --chat --arch gpt2 --dtype int8 -o "$models/chat.tgpt" &&
    target/debug/examples/make-model --shape 1m -o "$models/slow.tgpt" ||
    { echo "error: cannot write the test models" >&2; exit 1; }

export TINYGPT=target/debug/tinygpt SERVE_TEST_OUT="$out"
passed=0
failed=${cargo_failed:-0}
for t in test_openai test_page load_test; do
    echo "--- $t"
    "$venv/bin/python" "tools/serve-tests/$t.py" "$models" 2>&1 | tee "$out/$t.log"
    line=$(tail -n 1 "$out/$t.log")
    if [[ $line =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed$ ]]; then
        passed=$((passed + BASH_REMATCH[1]))
        failed=$((failed + BASH_REMATCH[2]))
    else
        echo "FAIL $t did not finish"
        failed=$((failed + 1))
    fi
done
echo "screenshots: $out/page-completion.png $out/page-chat.png"
echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
