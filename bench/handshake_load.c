/*
 * handshake_load: a TLS handshake load client for bench/handshakes.sh.
 *
 * Opens a new TCP connection per handshake, TLS 1.3 only (no session resumption: no
 * tickets, no session cache), sends the next server name round-robin as SNI, and counts a
 * handshake whose certificate does not match that name (X509_check_host) as a failure.
 * Prints one line: handshakes failures seconds p50_us p99_us
 *
 * usage: handshake_load HOST PORT NAMES_FILE CONCURRENCY SECONDS
 *
 * TLS13_CIPHERSUITES (environment) sets the TLS 1.3 suites the client offers, in order
 * (OpenSSL's default offers TLS_AES_256_GCM_SHA384 first; browsers offer
 * TLS_AES_128_GCM_SHA256 first). The suite of the first handshake goes to stderr.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static char **names;
static size_t name_count;
static atomic_size_t next_name;
static atomic_long handshakes, failures;
static struct sockaddr_in target;
static SSL_CTX *ctx;
static double deadline;
static atomic_int cipher_reported;

typedef struct {
    double *latencies;
    size_t count, capacity;
} thread_result;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int one_handshake(void) {
    const char *name = names[atomic_fetch_add(&next_name, 1) % name_count];
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return 0;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct linger nolinger = {1, 0};  /* RST on close: no TIME_WAIT pile-up on loopback */
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &nolinger, sizeof nolinger);
    if (connect(fd, (struct sockaddr *)&target, sizeof target) != 0) { close(fd); return 0; }
    SSL *ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    SSL_set_tlsext_host_name(ssl, name);
    int ok = 0;
    if (SSL_connect(ssl) == 1) {
        if (atomic_exchange(&cipher_reported, 1) == 0) fprintf(stderr, "negotiated %s\n", SSL_get_cipher_name(ssl));
        X509 *cert = SSL_get1_peer_certificate(ssl);
        if (cert && X509_check_host(cert, name, 0, 0, NULL) == 1) ok = 1;
        X509_free(cert);
    }
    SSL_free(ssl);
    close(fd);
    return ok;
}

static void *worker(void *arg) {
    thread_result *result = arg;
    while (now() < deadline) {
        double start = now();
        int ok = one_handshake();
        double elapsed = now() - start;
        if (ok) {
            atomic_fetch_add(&handshakes, 1);
            if (result->count == result->capacity) {
                result->capacity = result->capacity ? result->capacity * 2 : 4096;
                result->latencies = realloc(result->latencies, result->capacity * sizeof(double));
            }
            result->latencies[result->count++] = elapsed;
        } else {
            atomic_fetch_add(&failures, 1);
        }
    }
    return NULL;
}

static int compare(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: %s HOST PORT NAMES_FILE CONCURRENCY SECONDS\n", argv[0]);
        return 2;
    }
    target.sin_family = AF_INET;
    target.sin_port = htons(atoi(argv[2]));
    inet_pton(AF_INET, argv[1], &target.sin_addr);
    FILE *file = fopen(argv[3], "r");
    if (!file) { perror(argv[3]); return 2; }
    char line[512];
    size_t capacity = 0;
    while (fgets(line, sizeof line, file)) {
        line[strcspn(line, "\r\n")] = 0;
        if (!*line) continue;
        if (name_count == capacity) { capacity = capacity ? capacity * 2 : 1024; names = realloc(names, capacity * sizeof(char *)); }
        names[name_count++] = strdup(line);
    }
    fclose(file);
    int concurrency = atoi(argv[4]);
    double seconds = atof(argv[5]);

    ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    /* Every server is measured on TLS 1.3 full handshakes: one that offers less fails here. */
    SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
    const char *suites = getenv("TLS13_CIPHERSUITES");
    if (suites && *suites && SSL_CTX_set_ciphersuites(ctx, suites) != 1) {
        fprintf(stderr, "TLS13_CIPHERSUITES not accepted: %s\n", suites);
        return 2;
    }

    deadline = now() + seconds;
    double started = now();
    pthread_t *threads = calloc(concurrency, sizeof(pthread_t));
    thread_result *results = calloc(concurrency, sizeof(thread_result));
    for (int i = 0; i < concurrency; i++) pthread_create(&threads[i], NULL, worker, &results[i]);
    for (int i = 0; i < concurrency; i++) pthread_join(threads[i], NULL);
    double elapsed = now() - started;

    size_t total = 0;
    for (int i = 0; i < concurrency; i++) total += results[i].count;
    double *all = malloc((total ? total : 1) * sizeof(double));
    size_t at = 0;
    for (int i = 0; i < concurrency; i++) {
        memcpy(all + at, results[i].latencies, results[i].count * sizeof(double));
        at += results[i].count;
    }
    qsort(all, total, sizeof(double), compare);
    double p50 = total ? all[total / 2] * 1e6 : 0, p99 = total ? all[(size_t)(total * 0.99)] * 1e6 : 0;
    printf("%ld %ld %.3f %.0f %.0f\n", atomic_load(&handshakes), atomic_load(&failures), elapsed, p50, p99);
    return 0;
}
