// Independent S7 server for edgegw interop tests: the original Snap7 C++ server through node-snap7.
// Usage: node server.js PORT.  Each stdin line "AREA INDEX HEX" (AREA: DB, M, I, Q) sets that area's
// bytes (registered the first time it is named) and is answered "ok"; "start" listens on
// 127.0.0.1:PORT and answers "ready PORT" (or "error TEXT").  EOF on stdin stops the server.
'use strict';
const snap7 = require('node-snap7');
const readline = require('readline');

const port = parseInt(process.argv[2], 10);
const server = new snap7.S7Server();
server.SetParam(server.LocalPort, port);
const codes = { DB: server.srvAreaDB, M: server.srvAreaMK, I: server.srvAreaPE, Q: server.srvAreaPA };
const registered = new Set();

const rl = readline.createInterface({ input: process.stdin });
rl.on('line', (line) => {
  const words = line.trim().split(/\s+/);
  if (words[0] === 'start') {
    if (server.StartTo('127.0.0.1') === false) {
      console.log('error ' + server.ErrorText(server.LastError ? server.LastError() : 0));
      process.exit(1);
    }
    console.log('ready ' + port);
    return;
  }
  const [area, index, hex] = words;
  const buf = Buffer.from(hex, 'hex');
  const key = area + ':' + index;
  // node-snap7 takes the DB number only for DBs: (code, number, buffer) there, (code, buffer) elsewhere
  const args = area === 'DB' ? [codes[area], parseInt(index, 10), buf] : [codes[area], buf];
  if (registered.has(key)) {
    server.SetArea(...args);
  } else {
    server.RegisterArea(...args);
    registered.add(key);
  }
  console.log('ok');
});
rl.on('close', () => {
  server.Stop();
  process.exit(0);
});
