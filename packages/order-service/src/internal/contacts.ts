import type { Ids } from "@kpipe/events"

// order-service keeps no customer profiles (the gateway only vouches for the user id), so each
// user's mailbox and number are derived from the id, on domains and numbers reserved for tests.
export const emailOf = (userId: Ids.UserId) => `user-${userId}@customers.kpipe.test`

export const phoneOf = (userId: Ids.UserId) => `+1555${String(userId).padStart(7, "0")}`
