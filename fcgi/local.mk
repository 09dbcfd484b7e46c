# herald-fcgi and sse/: the FastCGI/CGI process (issue 3).  Included by Makefile.am.
