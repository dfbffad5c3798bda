-- wrk script: POST one fixed body; optional pacing for a fixed offered load; results as one JSON line.
-- Environment: BODY_FILE (request body), RATE (total requests/s over all connections; 0 = as fast as
-- possible), CONNECTIONS (wrk -c, to split RATE per connection), RESULT_FILE (where done() appends).

local body
local pause_ms = 0

function init(args)
  local f = assert(io.open(os.getenv("BODY_FILE"), "rb"))
  body = f:read("*a")
  f:close()
  local rate = tonumber(os.getenv("RATE") or "0")
  local connections = tonumber(os.getenv("CONNECTIONS") or "1")
  if rate > 0 then
    -- Mean wait of each connection before its next request: closed loop with think time, so the
    -- achieved rate is slightly below RATE by the response time; the report shows the achieved rate.
    pause_ms = connections * 1000 / rate
  end
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.body = body
end

function delay()
  if pause_ms == 0 then
    return 0
  end
  -- Exponential think times make arrivals roughly Poisson; fixed ones would march the connections in
  -- lockstep and measure self-inflicted bursts instead of the server.
  return -math.log(1 - math.random()) * pause_ms
end

function done(summary, latency, requests)
  local e = summary.errors
  local out = assert(io.open(os.getenv("RESULT_FILE"), "a"))
  out:write(string.format(
    '{"requests": %d, "duration_us": %d, "connect_errors": %d, "read_errors": %d, "write_errors": %d, ' ..
    '"non_2xx": %d, "timeouts": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
  out:close()
end
