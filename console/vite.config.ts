import { defineConfig } from "vite";

// The console is plain TypeScript: no framework, no inline scripts or styles
// (the gateway serves it under a Content-Security-Policy that forbids them).
export default defineConfig({
  build: {
    outDir: "dist",
    emptyOutDir: true,
    // No inline module-preload polyfill: modern browsers only.
    modulePreload: { polyfill: false },
    assetsInlineLimit: 0,
  },
});
