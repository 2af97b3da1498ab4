/* Calls every entry point of killswitch.h with NULL or invalid arguments: each must return
   an error code (and say why), never crash. Exits 0 when every call behaved. */

#include <stdio.h>
#include <string.h>

#include "killswitch.h"

/* 64 characters, but not hex digits: a valid length that the SDK refuses at start. */
#define KEY_HEX "zz00000000000000000000000000000000000000000000000000000000000000"

static int failures = 0;

static void on_log(void *user, ks_log_level level, const char *message, size_t len) {
    (void)user;
    (void)level;
    (void)message;
    (void)len;
}

static void expect(const char *what, ks_result got, ks_result want) {
    if (got != want) {
        fprintf(stderr, "%s: got %d, want %d\n", what, (int)got, (int)want);
        failures++;
        return;
    }
    char message[256] = {0};
    if (want != KS_OK && ks_last_error(message, sizeof message) == 0) {
        fprintf(stderr, "%s: no error message\n", what);
        failures++;
    }
}

int main(void) {
    expect("add_endpoint(NULL)", ks_options_add_endpoint(NULL, "http://x:1"), KS_NULL_ARGUMENT);
    expect("set_collector_id(NULL)", ks_options_set_collector_id(NULL, "c"), KS_NULL_ARGUMENT);
    expect("add_program(NULL)", ks_options_add_program(NULL, "demo"), KS_NULL_ARGUMENT);
    expect("add_label(NULL)", ks_options_add_label(NULL, "k", "v"), KS_NULL_ARGUMENT);
    expect("set_state_file(NULL)", ks_options_set_state_file(NULL, "/tmp/x"), KS_NULL_ARGUMENT);
    expect("set_tls_files(NULL)", ks_options_set_tls_files(NULL, "a", "b", "c"), KS_NULL_ARGUMENT);
    expect("set_tls_pem(NULL)", ks_options_set_tls_pem(NULL, NULL, 0, NULL, 0, NULL, 0),
           KS_NULL_ARGUMENT);
    expect("add_trusted_key(NULL)", ks_options_add_trusted_key(NULL, (const uint8_t *)KEY_HEX, 64), KS_NULL_ARGUMENT);
    expect("set_required_signatures(NULL)", ks_options_set_required_signatures(NULL, 1),
           KS_NULL_ARGUMENT);
    expect("set_max_statement_lifetime_s(NULL)", ks_options_set_max_statement_lifetime_s(NULL, 1),
           KS_NULL_ARGUMENT);
    expect("set_hook_timeout_ms(NULL)", ks_options_set_hook_timeout_ms(NULL, 1), KS_NULL_ARGUMENT);
    expect("set_on_pause(NULL)", ks_options_set_on_pause(NULL, NULL, NULL), KS_NULL_ARGUMENT);
    expect("set_on_resume(NULL)", ks_options_set_on_resume(NULL, NULL, NULL), KS_NULL_ARGUMENT);
    ks_options_free(NULL);

    ks_options *options = ks_options_new();
    if (options == NULL) {
        fprintf(stderr, "ks_options_new returned NULL\n");
        return 1;
    }
    expect("add_endpoint(options, NULL)", ks_options_add_endpoint(options, NULL), KS_NULL_ARGUMENT);
    expect("set_collector_id(options, NULL)", ks_options_set_collector_id(options, NULL),
           KS_NULL_ARGUMENT);
    expect("add_program(options, NULL)", ks_options_add_program(options, NULL), KS_NULL_ARGUMENT);
    expect("add_label(options, NULL, v)", ks_options_add_label(options, NULL, "v"), KS_NULL_ARGUMENT);
    expect("add_label(options, k, NULL)", ks_options_add_label(options, "k", NULL), KS_NULL_ARGUMENT);
    expect("set_tls_files(options, NULL...)", ks_options_set_tls_files(options, NULL, "b", "c"),
           KS_NULL_ARGUMENT);
    expect("set_tls_pem(options, NULL...)",
           ks_options_set_tls_pem(options, NULL, 3, (const uint8_t *)"abc", 3,
                                  (const uint8_t *)"abc", 3),
           KS_NULL_ARGUMENT);
    expect("set_on_pause(options, NULL hook)", ks_options_set_on_pause(options, NULL, NULL),
           KS_NULL_ARGUMENT);
    expect("add_endpoint(options, invalid UTF-8)", ks_options_add_endpoint(options, "\xff\xfe"),
           KS_INVALID_UTF8);

    /* Starting without endpoint, id or program is refused with the SDK's reason. */
    ks_client *client = NULL;
    expect("client_start(NULL, out)", ks_client_start(NULL, &client), KS_NULL_ARGUMENT);
    expect("client_start(options, NULL)", ks_client_start(options, NULL), KS_NULL_ARGUMENT);
    expect("client_start(empty options)", ks_client_start(options, &client), KS_BUILD_ERROR);
    expect("add_trusted_key(options, NULL)", ks_options_add_trusted_key(options, NULL, 32),
           KS_NULL_ARGUMENT);
    expect("add_trusted_key(options, 5 bytes)",
           ks_options_add_trusted_key(options, (const uint8_t *)"abcde", 5), KS_INVALID_ARGUMENT);
    expect("add_trusted_key(options, 64 non-hex)",
           ks_options_add_trusted_key(options, (const uint8_t *)KEY_HEX, 64), KS_OK);
    ks_options_add_endpoint(options, "http://127.0.0.1:1");
    ks_options_set_collector_id(options, "c1");
    ks_options_add_program(options, "demo");
    ks_options_set_required_signatures(options, 1);
    expect("client_start(bad trusted key)", ks_client_start(options, &client), KS_BUILD_ERROR);
    ks_options_free(options);

    /* Values the setters accept and the SDK refuses at start, each naming the problem. */
    struct {
        const char *what;
        int field;
    } refused[] = {{"invalid endpoint", 0}, {"invalid program name", 1},
                   {"zero hook timeout", 2}, {"zero statement lifetime", 3},
                   {"unusable TLS PEM", 4}, {"unreadable TLS files", 5}};
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        options = ks_options_new();
        ks_options_add_endpoint(options, refused[i].field == 0 ? "not a url" : "http://127.0.0.1:1");
        ks_options_set_collector_id(options, "c1");
        ks_options_add_program(options, refused[i].field == 1 ? "Not A Name!" : "demo");
        if (refused[i].field == 2) {
            ks_options_set_hook_timeout_ms(options, 0);
        }
        if (refused[i].field == 3) {
            ks_options_set_max_statement_lifetime_s(options, 0);
        }
        if (refused[i].field == 4) {
            ks_options_set_tls_pem(options, (const uint8_t *)"abc", 3, (const uint8_t *)"abc", 3,
                                   (const uint8_t *)"abc", 3);
        }
        if (refused[i].field == 5) {
            ks_options_set_tls_files(options, "/nonexistent/ca.pem", "/nonexistent/c.pem",
                                     "/nonexistent/k.pem");
        }
        client = NULL;
        expect(refused[i].what, ks_client_start(options, &client), KS_BUILD_ERROR);
        if (client != NULL) {
            fprintf(stderr, "%s: a client was written although start failed\n", refused[i].what);
            failures++;
        }
        ks_options_free(options);
    }

    options = ks_options_new();
    ks_options_add_endpoint(options, "http://127.0.0.1:1");
    ks_options_set_collector_id(options, "c1");
    ks_options_add_program(options, "demo");
    expect("client_start(valid)", ks_client_start(options, &client), KS_OK);
    ks_options_free(options);
    const ks_gate *gate = NULL;
    expect("client_gate(NULL)", ks_client_gate(NULL, "demo", &gate), KS_NULL_ARGUMENT);
    expect("client_gate(client, NULL)", ks_client_gate(client, NULL, &gate), KS_NULL_ARGUMENT);
    expect("client_gate(client, demo, NULL)", ks_client_gate(client, "demo", NULL),
           KS_NULL_ARGUMENT);
    expect("client_gate(client, unknown)", ks_client_gate(client, "other", &gate),
           KS_NOT_REGISTERED);
    expect("client_gate(client, demo)", ks_client_gate(client, "demo", &gate), KS_OK);
    if (ks_gate_is_active(gate)) {
        fprintf(stderr, "a gate is open before the control plane said RUNNING\n");
        failures++;
    }
    if (ks_gate_is_active(NULL)) {
        fprintf(stderr, "a NULL gate reads as open\n");
        failures++;
    }
    ks_client_stop(client);
    ks_client_stop(NULL);

    expect("hook_result_set_error(NULL)", ks_hook_result_set_error(NULL, "x"), KS_NULL_ARGUMENT);
    expect("hook_result_confirm_purge(NULL)", ks_hook_result_confirm_purge(NULL), KS_NULL_ARGUMENT);
    expect("set_logger(NULL)", ks_set_logger(NULL, NULL, KS_LOG_INFO), KS_NULL_ARGUMENT);
    expect("set_logger(level 0)", ks_set_logger(on_log, NULL, 0), KS_INVALID_ARGUMENT);
    expect("set_logger(level 99)", ks_set_logger(on_log, NULL, 99), KS_INVALID_ARGUMENT);
    expect("set_logger(valid)", ks_set_logger(on_log, NULL, KS_LOG_WARN), KS_OK);
    expect("set_logger(twice)", ks_set_logger(on_log, NULL, KS_LOG_WARN), KS_INVALID_ARGUMENT);
    char small[4];
    size_t full = ks_last_error(small, sizeof small);
    if (full < sizeof small || small[sizeof small - 1] != '\0') {
        fprintf(stderr, "ks_last_error did not cut and terminate a long message\n");
        failures++;
    }
    if (ks_last_error(NULL, 0) == 0) {
        fprintf(stderr, "ks_last_error(NULL, 0) did not report the length\n");
        failures++;
    }

    if (failures > 0) {
        fprintf(stderr, "%d calls misbehaved\n", failures);
        return 1;
    }
    printf("all checks passed\n");
    return 0;
}
