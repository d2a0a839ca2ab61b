/* softshield client library: the mutual-TLS 1.3 transport to a network-attached module (tls://HOST:PORT).
 *
 * As nShield's client hardserver reaches a Connect on port 9004 over a channel authenticated both
 * ways, a connection here is TLS 1.3 (the system's OpenSSL) with:
 *   - the client's key and certificate from SOFTSHIELD_CLIENT_DIR, else <kmdata>/config/client/
 *     (key.pem, cert_<ESN>.pem: made by `softshield nethsmenroll`, the certificate issued by that module);
 *   - the module's KNETI hash pinned in <kmdata>/config/config, [nethsm_imports] (remote_ip,
 *     remote_port, keyhash, remote_esn), where nethsmenroll wrote it: the module's certificate is self-signed, so
 *     the pin is the trust; any other key fails the handshake ("pin mismatch", and the module logs
 *     the client's alert).
 * <kmdata> is NFAST_KMDATA (environment or cknfastrc), else $XDG_DATA_HOME/softshield/kmdata, else
 * ~/.local/share/softshield/kmdata, as emulator/paths.py resolves it. The frames are the same as on
 * the Unix socket; connection.c calls the four functions below when the address is tls://. */
#define _GNU_SOURCE
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "ss_client.h"

#define SS_TLS_PREFIX "tls://"
#define SS_TLS_DEFAULT_PORT "9004"
#define SS_HASH_HEX 40

struct ss_tls {
    SSL_CTX *ctx;
    SSL *ssl;
    int fd;
};

typedef struct ss_pin {
    char want[SS_HASH_HEX + 1];
    char seen[SS_HASH_HEX + 1];
    int mismatch;
} ss_pin;

int ss_tls_address(const char *addr)
{
    return strncmp(addr, SS_TLS_PREFIX, strlen(SS_TLS_PREFIX)) == 0;
}

/* ---- where the client's files are ------------------------------------------------------------ */

static void ss_kmdata_dir(char *out, size_t outlen)
{
    const char *xdg = getenv("XDG_DATA_HOME");
    const char *home = getenv("HOME");
    if (ss_config_value("NFAST_KMDATA", out, outlen) && out[0] != '\0')
        return;
    if (xdg != NULL && xdg[0] != '\0')
        snprintf(out, outlen, "%s/softshield/kmdata", xdg);
    else
        snprintf(out, outlen, "%s/.local/share/softshield/kmdata", home != NULL ? home : "");
}

static void ss_client_dir(char *out, size_t outlen)
{
    char kmdata[3800];
    if (ss_config_value("SOFTSHIELD_CLIENT_DIR", out, outlen) && out[0] != '\0')
        return;
    ss_kmdata_dir(kmdata, sizeof kmdata);
    snprintf(out, outlen, "%s/config/client", kmdata);
}

/* The keyhash of the [nethsm_imports] entry for host:port (nShield config syntax: `[section]`,
 * `field=value`, entries separated by a line of dashes or begun by a repeated field). */
typedef struct ss_import {
    char ip[256], port[16], keyhash[SS_HASH_HEX + 1], esn[32];
    int fields;
} ss_import;

static int ss_import_matches(const ss_import *e, const char *host, const char *port)
{
    const char *p = e->port[0] ? e->port : SS_TLS_DEFAULT_PORT;
    return e->fields && strcmp(e->ip, host) == 0 && strcmp(p, port) == 0 && strlen(e->keyhash) == SS_HASH_HEX;
}

static int ss_pinned_hash(const char *host, const char *port, char *out, char *esn, size_t esnlen)
{
    char kmdata[4096], path[4200], line[1024];
    ss_import e;
    int in_imports = 0, found = 0;
    FILE *f;
    ss_kmdata_dir(kmdata, sizeof kmdata);
    snprintf(path, sizeof path, "%s/config/config", kmdata);
    f = fopen(path, "r");
    if (f == NULL)
        return 0;
    memset(&e, 0, sizeof e);
    while (fgets(line, sizeof line, f) != NULL) {
        char *s = line, *end, *eq;
        while (*s == ' ' || *s == '\t')
            s++;
        end = s + strlen(s);
        while (end > s && (end[-1] == '\n' || end[-1] == '\r' || end[-1] == ' ' || end[-1] == '\t'))
            *--end = '\0';
        if (*s == '\0' || *s == '#')
            continue;
        if (*s == '[' || (s[0] == '-' && strspn(s, "-") == strlen(s))) {
            found = in_imports && ss_import_matches(&e, host, port);
            if (found)
                break;
            memset(&e, 0, sizeof e);
            if (*s == '[')
                in_imports = strcmp(s, "[nethsm_imports]") == 0;
            continue;
        }
        eq = strchr(s, '=');
        if (!in_imports || eq == NULL)
            continue;
        *eq = '\0';
        char *field = s, *value = eq + 1;
        char *slot = strcmp(field, "remote_ip") == 0 ? e.ip : strcmp(field, "remote_port") == 0 ? e.port
                   : strcmp(field, "keyhash") == 0 ? e.keyhash : strcmp(field, "remote_esn") == 0 ? e.esn : NULL;
        size_t cap = slot == e.ip ? sizeof e.ip : slot == e.port ? sizeof e.port
                   : slot == e.esn ? sizeof e.esn : sizeof e.keyhash;
        if (slot == NULL)
            continue;
        if (slot[0] != '\0') { /* a repeated field begins the next entry */
            found = in_imports && ss_import_matches(&e, host, port);
            if (found)
                break;
            memset(&e, 0, sizeof e);
        }
        snprintf(slot, cap, "%s", value);
        e.fields++;
    }
    if (!found)
        found = in_imports && ss_import_matches(&e, host, port);
    fclose(f);
    if (found) {
        memcpy(out, e.keyhash, SS_HASH_HEX + 1);
        snprintf(esn, esnlen, "%s", e.esn);
    }
    return found;
}

/* ---- the handshake ----------------------------------------------------------------------------- */

/* SHA-1 of the certificate's SubjectPublicKeyInfo, 40 hex digits: the key hash nethsmenroll pinned
 * (emulator/crypto/netid.py computes it the same way). */
static int ss_key_hash(X509 *cert, char *out)
{
    unsigned char *der = NULL, md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    int len = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(cert), &der);
    if (len <= 0)
        return -1;
    int ok = EVP_Digest(der, (size_t)len, md, &mdlen, EVP_sha1(), NULL);
    OPENSSL_free(der);
    if (!ok || mdlen * 2 != SS_HASH_HEX)
        return -1;
    for (unsigned i = 0; i < mdlen; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
    return 0;
}

/* The module's certificate is self-signed: OpenSSL's chain verdict is replaced by the pin check. */
static int ss_tls_verify(int preverify, X509_STORE_CTX *store)
{
    SSL *ssl = X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx());
    ss_pin *pin = ssl != NULL ? SSL_get_app_data(ssl) : NULL;
    X509 *cert = X509_STORE_CTX_get_current_cert(store);
    (void)preverify;
    if (X509_STORE_CTX_get_error_depth(store) != 0)
        return 1;
    if (pin == NULL || cert == NULL || ss_key_hash(cert, pin->seen) != 0 || strcmp(pin->seen, pin->want) != 0) {
        if (pin != NULL)
            pin->mismatch = 1;
        X509_STORE_CTX_set_error(store, X509_V_ERR_APPLICATION_VERIFICATION);
        return 0;
    }
    X509_STORE_CTX_set_error(store, X509_V_OK);
    return 1;
}

static void ss_tls_error(const char *addr, const char *what)
{
    char buf[256];
    unsigned long e = ERR_get_error();
    if (e != 0)
        ERR_error_string_n(e, buf, sizeof buf);
    else
        snprintf(buf, sizeof buf, "%s", errno ? strerror(errno) : "connection closed");
    fprintf(stderr, "softshield: %s%s: %s\n", addr, what, buf);
    ERR_clear_error();
}

static int ss_split(const char *addr, char *host, size_t hostlen, char *port, size_t portlen)
{
    const char *s = addr + strlen(SS_TLS_PREFIX), *colon;
    if (*s == '[') {
        const char *close = strchr(s, ']');
        if (close == NULL)
            return -1;
        snprintf(host, hostlen, "%.*s", (int)(close - s - 1), s + 1);
        colon = close[1] == ':' ? close + 1 : NULL;
    } else {
        colon = strrchr(s, ':');
        snprintf(host, hostlen, "%.*s", (int)(colon != NULL ? (size_t)(colon - s) : strlen(s)), s);
    }
    snprintf(port, portlen, "%s", colon != NULL && colon[1] ? colon + 1 : SS_TLS_DEFAULT_PORT);
    return host[0] ? 0 : -1;
}

static int ss_tcp_connect(const char *host, const char *port, int timeout_s)
{
    struct addrinfo hints, *res = NULL, *ai;
    struct timeval tv = {timeout_s, 0};
    int fd = -1, one = 1;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(host, port, &hints, &res) != 0)
        return -1;
    for (ai = res; ai != NULL; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0)
            continue;
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one); /* one small frame per call */
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
            break;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    return fd;
}

void ss_tls_close(struct ss_tls *t)
{
    /* No close_notify: after a fork the child drops its copy of the parent's connections, and a
     * record written from there would break the parent's session. The server reads the end of the
     * stream as the client's going. */
    if (t == NULL)
        return;
    if (t->ssl != NULL)
        SSL_free(t->ssl);
    if (t->ctx != NULL)
        SSL_CTX_free(t->ctx);
    if (t->fd >= 0)
        close(t->fd);
    free(t);
}

int ss_tls_open(const char *addr, int timeout_s, struct ss_tls **out)
{
    char host[256], port[16], dir[4096], cert[4200], key[4200], esn[32];
    ss_pin pin;
    struct ss_tls *t;
    *out = NULL;
    memset(&pin, 0, sizeof pin);
    if (ss_split(addr, host, sizeof host, port, sizeof port) != 0) {
        fprintf(stderr, "softshield: %s is not tls://HOST[:PORT]\n", addr);
        return -1;
    }
    if (!ss_pinned_hash(host, port, pin.want, esn, sizeof esn)) {
        char kmdata[4096];
        ss_kmdata_dir(kmdata, sizeof kmdata);
        fprintf(stderr, "softshield: not enrolled with %s:%s (no [nethsm_imports] entry in %s/config/config): "
                        "run softshield nethsmenroll\n", host, port, kmdata);
        return -1;
    }
    ss_client_dir(dir, sizeof dir);
    snprintf(cert, sizeof cert, "%s/cert_%s.pem", dir, esn);
    snprintf(key, sizeof key, "%s/key.pem", dir);
    t = calloc(1, sizeof *t);
    if (t == NULL)
        return -1;
    t->fd = -1;
    t->ctx = SSL_CTX_new(TLS_client_method());
    if (t->ctx == NULL || !SSL_CTX_set_min_proto_version(t->ctx, TLS1_3_VERSION) ||
        !SSL_CTX_set_max_proto_version(t->ctx, TLS1_3_VERSION)) {
        ss_tls_error(addr, ": cannot set up TLS 1.3");
        ss_tls_close(t);
        return -1;
    }
    if (SSL_CTX_use_certificate_file(t->ctx, cert, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_use_PrivateKey_file(t->ctx, key, SSL_FILETYPE_PEM) != 1 || SSL_CTX_check_private_key(t->ctx) != 1) {
        fprintf(stderr, "softshield: no usable client key and certificate from module %s in %s (key.pem, "
                        "cert_%s.pem): run softshield nethsmenroll\n", esn, dir, esn);
        ERR_clear_error();
        ss_tls_close(t);
        return -1;
    }
    SSL_CTX_set_verify(t->ctx, SSL_VERIFY_PEER, ss_tls_verify);
    t->fd = ss_tcp_connect(host, port, timeout_s);
    if (t->fd < 0) {
        ss_tls_close(t);
        return -1;
    }
    t->ssl = SSL_new(t->ctx);
    if (t->ssl == NULL || SSL_set_fd(t->ssl, t->fd) != 1) {
        ss_tls_error(addr, ": cannot set up TLS");
        ss_tls_close(t);
        return -1;
    }
    SSL_set_app_data(t->ssl, &pin);
    if (SSL_connect(t->ssl) != 1) {
        if (pin.mismatch)
            fprintf(stderr, "softshield: %s presented KNETI hash %s, not the pinned %s: pin mismatch, refused\n",
                    addr, pin.seen[0] ? pin.seen : "(none)", pin.want);
        else
            ss_tls_error(addr, ": TLS 1.3 handshake failed");
        ERR_clear_error();
        ss_tls_close(t);
        return -1;
    }
    SSL_set_app_data(t->ssl, NULL); /* `pin` is this frame's */
    *out = t;
    return t->fd;
}

/* ---- reading and writing ------------------------------------------------------------------------ */

/* SSL_write writes to the socket with write(2): a peer that went away would raise SIGPIPE in the
 * host. Block it for this thread around the write and swallow one we caused. */
int ss_tls_write_all(struct ss_tls *t, const unsigned char *p, size_t n)
{
    sigset_t pipe_set, old, pending;
    int rc = 0, had_pending;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
    sigpending(&pending);
    had_pending = sigismember(&pending, SIGPIPE);
    while (n > 0) {
        int w = SSL_write(t->ssl, p, n > 1u << 30 ? 1 << 30 : (int)n);
        if (w <= 0) {
            rc = -1;
            break;
        }
        p += w;
        n -= (size_t)w;
    }
    if (rc != 0 && !had_pending) {
        struct timespec zero = {0, 0};
        sigtimedwait(&pipe_set, NULL, &zero);
    }
    ERR_clear_error();
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rc;
}

int ss_tls_read_all(struct ss_tls *t, unsigned char *p, size_t n)
{
    while (n > 0) {
        int r = SSL_read(t->ssl, p, n > 1u << 30 ? 1 << 30 : (int)n);
        if (r <= 0) {
            int e = SSL_get_error(t->ssl, r);
            if (e == SSL_ERROR_SSL) { /* the module's alert, e.g. a client certificate it refused */
                char buf[256];
                ERR_error_string_n(ERR_get_error(), buf, sizeof buf);
                fprintf(stderr, "softshield: the network hardserver ended the connection: %s\n", buf);
            }
            ERR_clear_error();
            return -1;
        }
        p += r;
        n -= (size_t)r;
    }
    return 0;
}
