// Independent OPC UA server (node-opcua) for edgegw interop tests.
// Usage: node server.js PORT WORKDIR [ITEMS]  -> prints "READY <port> <server-cert-der-path>" when listening.
// ITEMS > 0 adds ns=1;s=Bench.G<nnn>.Item<nnnnn> Doubles that all change once a second (edgegw bench).
// Binds 127.0.0.1 only; its PKI lives under WORKDIR (never $HOME/.config).
"use strict";
const path = require("path");
const fs = require("fs");
const {
  OPCUAServer, OPCUACertificateManager, Variant, DataType, StatusCodes, MessageSecurityMode, SecurityPolicy,
  nodesets, standardUnits,
} = require("node-opcua");

async function main() {
  const port = parseInt(process.argv[2], 10);
  const work = process.argv[3];
  fs.mkdirSync(work, { recursive: true });
  const serverCertificateManager = new OPCUACertificateManager({
    automaticallyAcceptUnknownCertificate: true, rootFolder: path.join(work, "pki"),
  });
  const userCertificateManager = new OPCUACertificateManager({
    automaticallyAcceptUnknownCertificate: true, rootFolder: path.join(work, "user_pki"),
  });
  await serverCertificateManager.initialize();
  await userCertificateManager.initialize();
  const server = new OPCUAServer({
    port, hostname: "127.0.0.1", alternateHostname: ["127.0.0.1"],
    serverCertificateManager, userCertificateManager,
    securityModes: [MessageSecurityMode.None, MessageSecurityMode.SignAndEncrypt],
    securityPolicies: [SecurityPolicy.None, SecurityPolicy.Basic256Sha256],
    allowAnonymous: true,
    nodeset_filename: [nodesets.standard],
    serverInfo: { applicationUri: "urn:edgegw:node-opcua:peer", productUri: "edgegw-peer" },
    buildInfo: { productName: "edgegw-node-opcua-peer" },
  });
  await server.initialize();
  const addressSpace = server.engine.addressSpace;
  const ns = addressSpace.getOwnNamespace();
  const kiln = ns.addFolder(addressSpace.rootFolder.objects, { browseName: "Kiln", nodeId: "s=Kiln" });
  const temp = ns.addVariable({ organizedBy: kiln, browseName: "Temperature", nodeId: "s=Kiln.Temperature",
    dataType: "Double", value: new Variant({ dataType: DataType.Double, value: 0 }) });
  const count = ns.addVariable({ organizedBy: kiln, browseName: "Count", nodeId: "s=Kiln.Count",
    dataType: "Int32", value: new Variant({ dataType: DataType.Int32, value: 0 }) });
  const probe = ns.addVariable({ organizedBy: kiln, browseName: "Probe", nodeId: "s=Kiln.Probe",
    dataType: "Double", value: new Variant({ dataType: DataType.Double, value: 1.0 }) });
  const name = ns.addVariable({ organizedBy: kiln, browseName: "Name", nodeId: "s=Kiln.Name",
    dataType: "String", value: new Variant({ dataType: DataType.String, value: "kiln-1" }) });
  ns.addVariable({ organizedBy: kiln, browseName: "Zones", nodeId: "s=Kiln.Zones", dataType: "Double",
    valueRank: 1, arrayDimensions: [3],
    value: new Variant({ dataType: DataType.Double, arrayType: 1, value: new Float64Array([800.5, 900.5, 1000.5]) }) });
  // nodes a test deletes at run time (command "delete <nodeId>" on stdin): a monitored node going away
  for (const n of ["Doomed1", "Doomed2"]) {
    ns.addVariable({ organizedBy: kiln, browseName: n, nodeId: `s=Kiln.${n}`, dataType: "Double",
      value: new Variant({ dataType: DataType.Double, value: 7 }) });
  }
  // an AnalogItem with an EURange (what a percent deadband is computed against), an InstrumentRange (the
  // transmitter's limits, wider; the values stay inside it) and EngineeringUnits: properties, which browse
  // must not list as points
  const level = ns.addAnalogDataItem({ organizedBy: kiln, browseName: "Level", nodeId: "s=Kiln.Level",
    dataType: "Double", engineeringUnitsRange: { low: 0, high: 100 }, instrumentRange: { low: -20, high: 120 },
    engineeringUnits: standardUnits.percent,
    value: new Variant({ dataType: DataType.Double, value: 0 }) });
  const items = parseInt(process.argv[4] || "0", 10);
  const bench = [];
  if (items > 0) {
    const root = ns.addFolder(addressSpace.rootFolder.objects, { browseName: "Bench", nodeId: "s=Bench" });
    let group = null;
    for (let i = 0; i < items; i++) {
      const g = String(Math.floor(i / 100)).padStart(3, "0");
      if (i % 100 === 0) {
        group = ns.addFolder(root, { browseName: `G${g}`, nodeId: `s=Bench.G${g}` });
      }
      const id = String(i).padStart(5, "0");
      bench.push(ns.addVariable({ organizedBy: group, browseName: `Item${id}`, nodeId: `s=Bench.G${g}.Item${id}`,
        dataType: "Double", value: new Variant({ dataType: DataType.Double, value: i }) }));
    }
    let t = 0;
    setInterval(() => {
      t += 1;
      for (let i = 0; i < bench.length; i++) {
        bench[i].setValueFromSource(new Variant({ dataType: DataType.Double, value: t * 100000 + i }));
      }
    }, 1000);
  }
  let tick = 0;
  const step = () => {
    tick += 1;
    temp.setValueFromSource(new Variant({ dataType: DataType.Double, value: 1000 + tick }));
    count.setValueFromSource(new Variant({ dataType: DataType.Int32, value: tick }));
    // the probe fails for 3 ticks out of every 10: a bad status with no usable value
    if (tick % 10 < 3) {
      probe.setValueFromSource(new Variant({ dataType: DataType.Double, value: 0 }), StatusCodes.BadSensorFailure);
    } else {
      probe.setValueFromSource(new Variant({ dataType: DataType.Double, value: tick / 10 }), StatusCodes.Good);
    }
    level.setValueFromSource(new Variant({ dataType: DataType.Double, value: tick % 100 }));
    name.setValueFromSource(new Variant({ dataType: DataType.String, value: "kiln-1" }));
  };
  setInterval(step, 200);
  // test control on stdin, one command a line; the answer "OK <command>" goes to stdout
  let pending = "";
  process.stdin.on("data", (chunk) => {
    pending += chunk.toString();
    let nl;
    while ((nl = pending.indexOf("\n")) >= 0) {
      const line = pending.slice(0, nl).trim();
      pending = pending.slice(nl + 1);
      const [cmd, arg] = line.split(/\s+/, 2);
      if (cmd === "delete") {
        const node = addressSpace.findNode(arg);
        if (node) { addressSpace.deleteNode(node); }
        process.stdout.write(`${node ? "OK" : "NOTFOUND"} ${line}\n`);
      }
    }
  });
  process.stdin.on("error", () => {});
  await server.start();
  const der = path.join(work, "server_cert.der");
  fs.writeFileSync(der, server.getCertificate());
  process.stdout.write(`READY ${port} ${der}\n`);
  const stop = async () => { await server.shutdown(100); process.exit(0); };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

main().catch((err) => { process.stderr.write(String(err && err.stack || err) + "\n"); process.exit(1); });
