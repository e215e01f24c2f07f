import { defineConfig } from "@playwright/test";
import base from "./playwright.config.js";

// `npm run bench`: the console's speed in Chromium against a running install
// (not part of the tests: CRM_CONSOLE_URL, CRM_GATEWAY, CRM_API_KEY say which).
export default defineConfig({
  ...base,
  testDir: "bench",
  testMatch: "*.bench.ts",
  globalSetup: undefined,
  timeout: 600_000,
  use: { ...base.use, baseURL: process.env.CRM_CONSOLE_URL },
});
