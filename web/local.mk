# web/: herald.js, the demo page, and the browser tests (issue 5).  Included by Makefile.am.
# The web files install into $(pkgdatadir)/web (/usr/share/herald/web with
# --prefix=/usr), the root the shipped nginx configs serve /herald.js and the
# demo page from.
webdir = $(pkgdatadir)/web
dist_web_DATA = web/herald.js web/herald.classic.js web/index.html web/demo.css web/demo.js

dist_doc_DATA += docs/client.md

# Headless Chromium; skipped when chromium, node or npm is missing.
TESTS += tests/browser/browser.sh
EXTRA_DIST += tests/browser/browser.sh tests/browser/run.mjs

# playwright-core (npm) and the screenshots stay across `make clean`.
distclean-local:
	rm -rf tests/browser/node tests/browser/artifacts
