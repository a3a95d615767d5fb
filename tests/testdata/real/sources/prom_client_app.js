// A small Node.js application on prom-client whose /metrics was captured for promotel's tests
// (tests/testdata/real/prom-client). Default metrics plus an application counter and histogram,
// served the way prom-client's README shows: register.contentType and register.metrics(),
// whatever the request's Accept header says (prom-client does not negotiate).
'use strict';
const http = require('http');
const client = require('prom-client');

client.collectDefaultMetrics();
const requests = new client.Counter({
  name: 'app_http_requests_total',
  help: 'HTTP requests handled, by route and status.',
  labelNames: ['route', 'status'],
});
const latency = new client.Histogram({
  name: 'app_http_request_duration_seconds',
  help: 'HTTP request latency.',
  labelNames: ['route'],
  buckets: [0.01, 0.1, 0.5, 1, 5],
});
[['/api/users', '200', 0.02], ['/api/users', '200', 0.3], ['/api/orders', '200', 0.7],
 ['/api/orders', '500', 2.5], ['/api/users', '404', 0.004]].forEach(([route, status, v]) => {
  requests.inc({ route, status });
  latency.observe({ route }, v);
});

const port = Number(process.argv[2] || 19400);
http.createServer(async (req, res) => {
  if (req.url !== '/metrics') { res.writeHead(404); res.end(); return; }
  const body = await client.register.metrics();
  res.writeHead(200, { 'Content-Type': client.register.contentType });
  res.end(body);
}).listen(port, '127.0.0.1');
