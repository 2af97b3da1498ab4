/* A demo collector in C: "captures" synthetic events while the control plane lets it,
   through the Killswitch C ABI (agent-sdk/ffi/include/killswitch.h).

   Build, from the repository's root (the static library needs only libc and libm on a
   glibc Linux; -lpthread -ldl keep older glibc versions happy):

     cargo build -p killswitch-ffi
     cc -O2 -I agent-sdk/ffi/include agent-sdk/ffi/examples/collector.c \
        target/debug/libkillswitch.a -lpthread -ldl -lm -o collector-c

   Run:

     ./collector-c --id c1 --program demo
     ./collector-c --id collector-1 --endpoint https://localhost:7070 \
        --ca pki/ca.pem --cert pki/collector-1.pem --key pki/collector-1-key.pem \
        --state-file /tmp/c1.state

   It prints a line on every state change, with its cause, e.g.
   `[c1] demo: PAUSED (update) at generation 12 (reason: leak) by alice`, and every 2 s,
   per program, how many events it captured while its gate was open, e.g.
   `[c1] demo: collecting, 200 events captured`. With `--fail-pause MESSAGE` (or
   KILLSWITCH_DEMO_FAIL_PAUSE=MESSAGE in its environment) its pause hook fails with
   MESSAGE, which the acknowledgement carries to `killswitch status` (the gate closes
   anyway: pause always wins). SIGINT or SIGTERM stops it cleanly (exit 0). */

#define _POSIX_C_SOURCE 200809L

#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "killswitch.h"

#define MAX_PROGRAMS 16

static volatile sig_atomic_t stopping = 0;

/* The message the pause hook fails with, or NULL. */
static const char *fail_pause = NULL;

static void on_signal(int sig) {
    (void)sig;
    stopping = 1;
}

static const char *cause_name(ks_cause cause) {
    switch (cause) {
    case KS_CAUSE_UPDATE: return "update";
    case KS_CAUSE_LOST_CONTACT: return "lost contact";
    case KS_CAUSE_CONTACT_RESTORED: return "contact restored";
    case KS_CAUSE_STATE_FILE: return "state file";
    default: return "other";
    }
}

/* Prints one state change; `user` is the collector id. */
static void print_change(const char *id, const char *state, const ks_event *event) {
    printf("[%s] %.*s: %s (%s) at generation %llu", id, (int)event->program.len,
           event->program.data, state, cause_name(event->cause),
           (unsigned long long)event->generation);
    if (event->reason.len > 0) {
        printf(" (reason: %.*s)", (int)event->reason.len, event->reason.data);
    }
    if (event->actor.len > 0) {
        printf(" by %.*s", (int)event->actor.len, event->actor.data);
    }
    if (event->incident_id.len > 0) {
        printf(", incident %.*s", (int)event->incident_id.len, event->incident_id.data);
    }
    if (event->purge) {
        printf(", purge requested");
    }
    printf("\n");
    fflush(stdout);
}

static int32_t on_pause(void *user, const ks_event *event, ks_hook_result *result) {
    print_change((const char *)user, "PAUSED", event);
    if (event->purge) {
        /* Nothing is buffered in this demo: the purge is trivially done. */
        ks_hook_result_confirm_purge(result);
    }
    if (fail_pause != NULL && fail_pause[0] != '\0') {
        ks_hook_result_set_error(result, fail_pause);
        return 1;
    }
    return 0;
}

static int32_t on_resume(void *user, const ks_event *event, ks_hook_result *result) {
    (void)result;
    print_change((const char *)user, "RUNNING", event);
    return 0;
}

static void on_log(void *user, ks_log_level level, const char *message, size_t len) {
    (void)user;
    if (level <= KS_LOG_WARN) {
        fprintf(stderr, "killswitch: %.*s\n", (int)len, message);
    }
}

static int fail_with(const char *what, ks_result result) {
    char message[512];
    ks_last_error(message, sizeof message);
    fprintf(stderr, "%s failed (%d): %s\n", what, (int)result, message);
    return 1;
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    fail_pause = getenv("KILLSWITCH_DEMO_FAIL_PAUSE");
    const char *id = NULL, *ca = NULL, *cert = NULL, *key = NULL, *state_file = NULL;
    const char *programs[MAX_PROGRAMS];
    int program_count = 0;
    ks_options *options = ks_options_new();
    if (options == NULL) {
        return fail_with("ks_options_new", KS_PANIC);
    }
    int endpoints = 0;
    for (int i = 1; i < argc; i++) {
        const char *flag = argv[i];
        if (i + 1 >= argc) {
            fprintf(stderr, "%s needs a value\n", flag);
            return 2;
        }
        const char *value = argv[++i];
        ks_result r = KS_OK;
        if (strcmp(flag, "--endpoint") == 0) {
            r = ks_options_add_endpoint(options, value);
            endpoints++;
        } else if (strcmp(flag, "--id") == 0) {
            id = value;
            r = ks_options_set_collector_id(options, value);
        } else if (strcmp(flag, "--program") == 0) {
            if (program_count == MAX_PROGRAMS) {
                fprintf(stderr, "at most %d programs\n", MAX_PROGRAMS);
                return 2;
            }
            programs[program_count++] = value;
            r = ks_options_add_program(options, value);
        } else if (strcmp(flag, "--label") == 0) {
            char label[256];
            snprintf(label, sizeof label, "%s", value);
            char *eq = strchr(label, '=');
            if (eq == NULL) {
                fprintf(stderr, "--label takes KEY=VALUE\n");
                return 2;
            }
            *eq = '\0';
            r = ks_options_add_label(options, label, eq + 1);
        } else if (strcmp(flag, "--state-file") == 0) {
            state_file = value;
            r = ks_options_set_state_file(options, value);
        } else if (strcmp(flag, "--fail-pause") == 0) {
            fail_pause = value;
        } else if (strcmp(flag, "--ca") == 0) {
            ca = value;
        } else if (strcmp(flag, "--cert") == 0) {
            cert = value;
        } else if (strcmp(flag, "--key") == 0) {
            key = value;
        } else {
            fprintf(stderr, "unknown flag %s\n", flag);
            return 2;
        }
        if (r != KS_OK) {
            return fail_with(flag, r);
        }
    }
    if (id == NULL) {
        fprintf(stderr, "usage: %s --id ID [--program NAME]... [--endpoint URL]... "
                        "[--label K=V]... [--state-file PATH] [--ca F --cert F --key F] "
                        "[--fail-pause MESSAGE]\n",
                argv[0]);
        return 2;
    }
    if (endpoints == 0) {
        ks_options_add_endpoint(options, "http://127.0.0.1:7070");
    }
    if (program_count == 0) {
        programs[program_count++] = "demo";
        ks_options_add_program(options, "demo");
    }
    if (ca != NULL || cert != NULL || key != NULL) {
        ks_result r = ks_options_set_tls_files(options, ca, cert, key);
        if (r != KS_OK) {
            return fail_with("--ca/--cert/--key", r);
        }
    }
    (void)state_file;
    ks_set_logger(on_log, NULL, KS_LOG_WARN);
    ks_options_set_on_pause(options, on_pause, (void *)id);
    ks_options_set_on_resume(options, on_resume, (void *)id);

    ks_client *client = NULL;
    ks_result r = ks_client_start(options, &client);
    ks_options_free(options);
    if (r != KS_OK) {
        return fail_with("ks_client_start", r);
    }
    const ks_gate *gates[MAX_PROGRAMS];
    for (int p = 0; p < program_count; p++) {
        r = ks_client_gate(client, programs[p], &gates[p]);
        if (r != KS_OK) {
            ks_client_stop(client);
            return fail_with("ks_client_gate", r);
        }
    }

    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = on_signal;
    sigemptyset(&action.sa_mask);
    sigaction(SIGINT, &action, NULL);
    sigaction(SIGTERM, &action, NULL);
    printf("[%s] started\n", id);
    fflush(stdout);
    unsigned long long captured[MAX_PROGRAMS] = {0};
    double last_report = now_seconds();
    struct timespec tick = {0, 10 * 1000 * 1000};
    while (!stopping) {
        for (int p = 0; p < program_count; p++) {
            if (ks_gate_is_active(gates[p])) {
                captured[p]++; /* "capture" one event */
            }
        }
        nanosleep(&tick, NULL);
        if (now_seconds() - last_report >= 2.0) {
            for (int p = 0; p < program_count; p++) {
                printf("[%s] %s: %s, %llu events captured\n", id, programs[p],
                       ks_gate_is_active(gates[p]) ? "collecting" : "paused", captured[p]);
            }
            fflush(stdout);
            last_report = now_seconds();
        }
    }
    ks_client_stop(client);
    printf("[%s] stopped\n", id);
    return 0;
}
