import { defineConfig } from "@playwright/test";

// End-to-end: Debian's Chromium (never a downloaded browser) against a real
// suite started by `crm up` (tests/suite.ts), one test at a time.
export default defineConfig({
  testDir: "tests",
  timeout: 60_000,
  expect: { timeout: 15_000 },
  workers: 1,
  retries: 0,
  reporter: [["list"]],
  globalSetup: "./tests/suite.ts",
  use: {
    baseURL: process.env.CRM_CONSOLE_URL,
    viewport: { width: 1280, height: 900 },
    screenshot: "only-on-failure",
    launchOptions: {
      executablePath: process.env.CRM_CHROMIUM ?? "/usr/bin/chromium",
      args: [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
      ],
    },
  },
});
