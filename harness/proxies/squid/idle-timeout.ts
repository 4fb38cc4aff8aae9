/**
 * idleTimeoutSeconds N: four of squid's timers, each set to N (cf.data.pre / squid 5.7 source):
 *
 *  - `read_timeout`: after every read on either side of a tunnel (tunnel.cc keepGoingAfterRead)
 *    both sides' timers restart; when one expires tunnelTimeout closes both. That times plain
 *    CONNECT tunnels and spliced ones. It is also the *server-side* read timeout of every
 *    forwarded request (http.cc), bumped ones included: an origin that takes longer than that to
 *    answer (or stalls mid-body) is cut too (ERR_READ_TIMEOUT).
 *  - `client_idle_pconn_timeout`: how long squid waits for the next request on a persistent client
 *    connection (Http1Server idleTimeout) - a bumped connection after its first request.
 *  - `request_timeout`: how long squid waits for complete request headers; it is what times a
 *    bumped connection from its TLS handshake (client_side.cc resets it there) to its first request.
 *  - `request_start_timeout`: how long squid waits for the first byte; what times a CONNECT whose
 *    client has not sent its ClientHello yet on a bumping port (switchToHttps).
 *  (`client_lifetime` does not cut tunnels: it times a tunnel's client side only until its first
 *  read, and the server side runs on read_timeout from the start.)
 *
 * squid keeps time in whole seconds (squid_curtime) and a timer of T fires at the first second
 * boundary T seconds past the whole second it was set in: after between T - 1 and T seconds of
 * silence. Measured here with squid 5.7, each directive alone at T = 3: read_timeout cut a silent
 * plain tunnel after 2.26 s and a silent spliced one after 2.05 s and nothing else;
 * client_idle_pconn_timeout a bumped connection silent after one request (2.27 s); request_timeout
 * one silent after its handshake, before any request (2.79 s); request_start_timeout a silent
 * CONNECT on a bumping port (2.61 s). All four at T = 4 cut each of those after 3.26-4.08 s, and
 * traffic every 250 ms (bytes on a tunnel, a request on a bumped connection) kept each open for
 * 11 s. N is written as it is, as a customer's squid.conf says it: squid closes after between
 * N - 1 and N seconds of silence, never after more than N (test/squid-knobs.test.ts). The oracle
 * predicts from N; docs/proxies.md states the one-second window.
 */
export function idleTimeoutLines(n: number): string[] {
  return [
    `# idle timeout ${n} s: closes after between ${n - 1} and ${n} s of silence (squid counts whole seconds)`,
    `read_timeout ${n} seconds`,
    `client_idle_pconn_timeout ${n} seconds`,
    `request_timeout ${n} seconds`,
    `request_start_timeout ${n} seconds`,
  ];
}
