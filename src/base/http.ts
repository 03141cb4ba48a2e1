// node:http, taken from Node's CommonJS module table rather than imported. An ESM import of a
// built-in makes Node build its ESM namespace by reading every export, and node:http's lazy
// WebSocket, CloseEvent and MessageEvent exports then load undici: 45 -> 59 MB RSS in a bare
// Node 24 process, 1-3 MB in the manager (bench/README.md), which never opens a WebSocket.
// Type-only imports of node:http are erased and stay as they are.
export const http = process.getBuiltinModule('node:http');
