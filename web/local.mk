# web/: herald.js, the demo page, and the browser tests (issue 5).  Included by Makefile.am.
