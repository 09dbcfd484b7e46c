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
Suite *ws_message_suite(void);
Suite *metrics_suite(void);
Suite *sse_suite(void);
Suite *fcgi_suite(void);
Suite *listen_suite(void);
Suite *notify_suite(void);
Suite *fcgi_record_suite(void);
Suite *proxy_suite(void);
Suite *text_suite(void);
Suite *jitter_suite(void);
Suite *umap_suite(void);
Suite *slab_suite(void);
Suite *revoke_suite(void);
Suite *cluster_suite(void);

#endif
