// The Socket.IO benchmark server on Node socket.io 4.8 (same protocol as
// crates/bench/examples/sio_switchboard_server.rs). Usage: node sio_node_server.js PORT
const path = require("path");
const { Server } = require(path.join(__dirname, "../interop/node_modules/socket.io"));
const port = Number(process.argv[2] || 7003);
const io = new Server(port, { transports: ["websocket", "polling"] });
io.on("connection", (s) => {
  s.on("join", (ack) => { s.join("bench"); ack(true); });
  s.on("echo", (v, ack) => ack(v));
  s.on("blast", ({ count, size }) => {
    const payload = "x".repeat(size);
    for (let i = 0; i < count; i++) io.to("bench").emit("tick", payload);
  });
});
console.log(port);
