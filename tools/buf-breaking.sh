#!/usr/bin/env bash
# Check proto/ for breaking changes against the right base (called by `make breaking`).
#
#   - Working tree differs from main (a feature branch, or uncommitted proto
#     changes): compare the working tree with the tip of `main`
#     (or `origin/main` in a clone that has no local `main`).
#   - Working tree IS main's HEAD with no proto changes (CI's fresh clone of
#     main): compare with the previous commit, main~1.
#   - No `main`, no previous commit, or a base without proto files: nothing to
#     compare with; say so and pass.
#
# The base is handed to buf as a full commit id: buf clones `.git` with depth
# 50 by default, so `ref=HEAD~60` fails while `ref=<sha>` works at any depth.
#
# Environment: BUF (default: buf), BUF_CACHE_DIR (set by the Makefile).
set -euo pipefail

BUF=${BUF:-buf}
cd "$(dirname "$0")/.."

say() { printf 'buf-breaking: %s\n' "$*"; }

if ! git rev-parse --git-dir >/dev/null 2>&1; then
    say "not a git checkout; nothing to compare with: PASS (skipped)"
    exit 0
fi

if base=$(git rev-parse -q --verify 'refs/heads/main^{commit}'); then
    base_name=main
elif base=$(git rev-parse -q --verify 'refs/remotes/origin/main^{commit}'); then
    base_name=origin/main
else
    say "no 'main' branch (nor origin/main); nothing to compare with: PASS (skipped)"
    exit 0
fi

head=$(git rev-parse -q --verify 'HEAD^{commit}' || true)
if [[ "$head" == "$base" ]] && [[ -z "$(git status --porcelain --untracked-files=all -- proto)" ]]; then
    # The working tree is main itself: check the change main's HEAD made.
    if ! prev=$(git rev-parse -q --verify "$base~1^{commit}"); then
        if [[ "$(git rev-parse --is-shallow-repository)" == true ]]; then
            say "working tree is $base_name's HEAD and this shallow clone has no previous commit; nothing to compare with: PASS (skipped)"
        else
            say "working tree is $base_name's HEAD, which has no previous commit; nothing to compare with: PASS (skipped)"
        fi
        exit 0
    fi
    base=$prev
    base_name="$base_name~1"
fi

short=$(git rev-parse --short "$base")
if ! git ls-tree -r --name-only "$base" -- proto | grep -q '\.proto$'; then
    say "base $base_name ($short) has no proto/*.proto yet; nothing to compare with: PASS (skipped)"
    exit 0
fi

gitdir=$(git rev-parse --git-common-dir)
say "comparing proto/ in the working tree with $base_name ($short)"
if "$BUF" breaking --against "$gitdir#ref=$base,subdir=proto"; then
    say "no breaking changes against $base_name ($short)"
else
    rc=$?
    say "FAILED: breaking changes against $base_name ($short) (buf exit $rc)"
    exit "$rc"
fi
