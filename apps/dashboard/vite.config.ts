import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';
import react from '@vitejs/plugin-react';

// TypeBox's TypeCompiler generates code with new Function, which the page's Content-Security-Policy
// (script-src 'self', no eval) forbids: the dashboard uses a drop-in that checks the very same
// schemas with TypeBox's interpreter (Value.Check / Value.Errors), so `oak validate`, the root and
// the editor still answer alike.
const typeboxCompiler = fileURLToPath(new URL('./src/lib/typebox-compiler.ts', import.meta.url));

export default defineConfig({
  root: fileURLToPath(new URL('.', import.meta.url)),
  base: '/',
  publicDir: false,
  plugins: [react()],
  resolve: { alias: [{ find: /^@sinclair\/typebox\/compiler$/, replacement: typeboxCompiler }] },
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    assetsDir: 'assets',
    sourcemap: false,
    target: 'es2022',
    reportCompressedSize: false,
    modulePreload: { polyfill: false },
  },
  logLevel: 'warn',
});
