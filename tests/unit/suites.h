/* One Check suite per libherald module; main.c runs them all. */
#ifndef HERALD_TEST_SUITES_H
#define HERALD_TEST_SUITES_H

#include <check.h>

Suite *conf_suite(void);
Suite *log_suite(void);
Suite *http_suite(void);
Suite *auth_suite(void);
Suite *jsonv_suite(void);
Suite *cursor_suite(void);
Suite *envelope_suite(void);
Suite *redis_suite(void);
Suite *hub_suite(void);
Suite *ws_frame_suite(void); Suite *ws_handshake_suite(void);
Suite *metrics_suite(void);
Suite *sse_suite(void);
Suite *fcgi_suite(void);
Suite *listen_suite(void);

#endif
