#!/usr/bin/env bash
# Vendor the web console's front-end libraries into plinth/web/static/vendor/.
#
# The console serves these files itself: no CDN at run time, no build step for whoever
# installs Plinth. Run this only to change a version (edit the pins below), then commit
# the files it writes. Each tarball comes from the npm registry through `npm pack`
# (npm checks the registry's integrity hash); the sha256 of every vendored file is
# written to VERSIONS so a review sees what changed.
set -euo pipefail

HTMX_VERSION=2.0.11   # htmx.org: polling fragments (hx-get + hx-trigger)
UPLOT_VERSION=1.6.32  # uplot: the training-metric charts

cd "$(dirname "$0")/.."
dest=plinth/web/static/vendor
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

fetch() {  # fetch PACKAGE VERSION -> unpacked into $work/PACKAGE/package
    mkdir -p "$work/$1"
    (cd "$work/$1" && npm pack --silent "$1@$2" >/dev/null && tar -xzf ./*.tgz)
}

fetch htmx.org "$HTMX_VERSION"
fetch uplot "$UPLOT_VERSION"

mkdir -p "$dest"
cp "$work/htmx.org/package/dist/htmx.min.js" "$dest/htmx.min.js"
cp "$work/uplot/package/dist/uPlot.iife.min.js" "$dest/uPlot.iife.min.js"
cp "$work/uplot/package/dist/uPlot.min.css" "$dest/uPlot.min.css"
cp "$work/htmx.org/package/LICENSE" "$dest/htmx.LICENSE"
cp "$work/uplot/package/LICENSE" "$dest/uPlot.LICENSE"

{
    echo "# written by scripts/vendor_console.sh; do not edit"
    echo "htmx.org $HTMX_VERSION"
    echo "uplot $UPLOT_VERSION"
    (cd "$dest" && sha256sum htmx.min.js uPlot.iife.min.js uPlot.min.css)
} > "$dest/VERSIONS"
echo "vendored htmx.org@$HTMX_VERSION and uplot@$UPLOT_VERSION into $dest"
