import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as Effect from "effect/Effect"

export interface Answer {
  readonly status: number
  /** The JSON body, `undefined` when empty. */
  readonly body: unknown
  /** The body's `_tag` (an HttpApi error's class), if it has one. */
  readonly tag: string | undefined
}

/**
 * A request the typed client cannot make: any method and path, any body as JSON text (malformed
 * too), through the `HttpClient` in context. The answer comes back as sent.
 */
export const request = (method: "GET" | "POST" | "PATCH" | "PUT" | "DELETE", path: string, body?: string) =>
  Effect.gen(function*() {
    const http = yield* HttpClient.HttpClient
    let request = HttpClientRequest.make(method)(path)
    if (body !== undefined) request = HttpClientRequest.bodyText(request, body, "application/json")
    const response = yield* http.execute(request)
    const text = yield* response.text
    const parsed: unknown = text === "" ? undefined : JSON.parse(text)
    const tag = typeof parsed === "object" && parsed !== null && "_tag" in parsed && typeof parsed._tag === "string"
      ? parsed._tag
      : undefined
    return { status: response.status, body: parsed, tag } satisfies Answer
  })
