"""The hardserver: one process owns the module and serves it to many client processes.

As on an nShield host, where the hardserver daemon owns the module and every application's PKCS#11
library talks to it, `softshield hardserver` loads our own in-process library
(build/libsoftshield-embedded.so) through cffi's ABI mode and answers the forwarding libraries on a
Unix domain socket: libsoftshield-pkcs11.so in every process it does not embed the module into (a
host that runs another Python, or one configured to), which also starts the server when none
listens, and the C-only libsoftshield-client.so (both built by pkcs11_shim.client_build).

- `protocol`: frames (versioned, bounded) and the payload reader/writer.
- `codec`: one call's arguments decoded into C memory and its outputs encoded, driven by the same
  per-function plan the client library was generated from.
- `layouts`: which mechanism-parameter members are pointers and which member gives each length (the
  client library's C tables are generated from it; the codec checks every parameter against it).
- `clients`: what each client process owns (sessions, logins), released when it goes away.
- `logins`: what a client that holds no login sees of a token logged in for others.
- `visibility`: which arguments are object handles (shared by the rules that hide objects), and
  session objects per application: another client's do not exist for a client.
- `server`: the socket, one thread per connection, start-up and clean shutdown.
- `network`: `--listen`, the mutual-TLS 1.3 listener for enrolled clients on other hosts, relayed to the
  socket; `peers`: who a network connection is and whether `[hs_clients]` admits it; `netconfig`: the
  nShield-syntax config file (`<kmdata>/config/config`); `rfs`: `--rfs`, the world's remote file system.
- `dispatch`: with several workers, the process that owns the socket and hands each client process
  to one worker process; `worker`: such a worker, a `server` whose connections come from it.
"""
