import { defineConfig } from "vitest/config"
import projects from "./vitest.workspace.ts"

export default defineConfig({
  test: {
    globalSetup: ["./vitest.globalSetup.ts"],
    reporters: ["default", "./vitest.summary.ts"],
    projects
  }
})
