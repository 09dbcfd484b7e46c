# herald-bench and the Nchan comparison (issue 6).  Included by Makefile.am.
