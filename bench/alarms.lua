-- wrk script: POST pre-generated bodies (one per line of the file given after --), each once in turn,
-- count replies that are not {"code": 0, ...}, and print the results as one JSON line.
-- Usage: wrk -t1 -c64 -d10s -s bench/alarms.lua http://127.0.0.1:PORT -- BODIES_FILE

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  local headers = { ["Content-Type"] = "application/json" }
  requests, count, index, not_ok, sample = {}, 0, 0, 0, ""
  for line in io.lines(args[1]) do
    count = count + 1
    requests[count] = wrk.format("POST", "/alarm_v2", headers, line)
  end
end

function request()
  index = index % count + 1
  return requests[index]
end

function response(status, headers, body)
  if status ~= 200 or not string.find(body, '^{"code":%s*0[,}]') then
    not_ok = not_ok + 1
    if sample == "" then sample = status .. " " .. string.sub(body, 1, 200) end
  end
end

function done(summary, latency, requests)
  local not_ok_total, bodies, sample_text = 0, 0, ""
  for _, thread in ipairs(threads) do
    not_ok_total = not_ok_total + thread:get("not_ok")
    bodies = bodies + thread:get("count")
    if sample_text == "" then sample_text = thread:get("sample") end
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH-JSON {"requests": %d, "duration_us": %d, "bytes": %d, "not_ok": %d, "bodies": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
    '"latency_us": {"mean": %.1f, "p50": %d, "p90": %d, "p99": %d, "max": %d}, "sample": %q}\n',
    summary.requests, summary.duration, summary.bytes, not_ok_total, bodies,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    sample_text))
end
