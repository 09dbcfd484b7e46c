# herald-ws: the WebSocket helper (issue 4).  Included by Makefile.am.
