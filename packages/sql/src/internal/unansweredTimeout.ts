import * as net from "node:net"

/**
 * A socket for `pg` that destroys itself when the server sent nothing for `millis` after it was
 * sent something: a failed-over primary or a dropped route neither answers nor resets, and `pg`
 * would wait on it for good (its `query_timeout` fails the query but keeps the connection, so the
 * next query waits behind it). Destroyed, the connection fails its query with an error, the pool
 * drops it and the next attempt opens a new one. A connection with nothing sent since the server's
 * last bytes (idle in the pool, or waiting for LISTEN's notifications) is never ended by it.
 *
 * Any byte back counts as the answer, so a reply cut off after its first chunk still waits. The
 * server goes on with a statement whose connection this closed until it notices the close (at once
 * when the FIN reaches it; on a route that stays dropped, only by its TCP keepalive or
 * `idle_in_transaction_session_timeout`), holding the locks it has.
 *
 * A connection attempt the server does not accept within `millis` (its SYNs dropped: a host gone, a
 * dropped route) is abandoned with an error as well; the kernel would retry it for about two minutes.
 *
 * Over TLS (`ssl` in the options `pg` passes) only the attempt is watched: the TLS socket `pg` puts on
 * top reads this one's bytes itself, so its `data` events stop and an answer could not be told from
 * silence.
 */
export const socket = (millis: number, options?: { readonly ssl?: unknown }): net.Socket => {
  const socket = new net.Socket()
  // `timeout` fires once nothing moved either way for `millis`, connecting included.
  socket.setTimeout(millis)
  // As pg decides whether to negotiate TLS.
  const tls = Boolean(options?.ssl)
  let answeredUpTo = 0
  if (tls) socket.once("connect", () => socket.setTimeout(0))
  else {
    socket.on("data", () => {
      answeredUpTo = socket.bytesWritten
    })
  }
  socket.on("timeout", () => {
    if (socket.connecting) {
      socket.destroy(
        new Error(`PostgreSQL did not accept the connection within ${millis} ms (PG_ANSWER_TIMEOUT): attempt abandoned`)
      )
      return
    }
    if (tls || socket.bytesWritten <= answeredUpTo) return
    // Ended (pg's `end()` sent Terminate, which has no answer): closed without an error, which
    // nobody might listen for any more (the LISTEN client's listener is removed before its end).
    if (socket.writableEnded) socket.destroy()
    else socket.destroy(new Error(`PostgreSQL sent no answer for ${millis} ms (PG_ANSWER_TIMEOUT): connection closed`))
  })
  return socket
}

/** `socket` as `PgClient`'s `stream` option: pg calls it with its connection's options. */
export const stream = (millis: number) => (options?: { readonly ssl?: unknown }): net.Socket => socket(millis, options)
