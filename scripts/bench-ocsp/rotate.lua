-- wrk script: GET each path of $PATHS_FILE in turn (each thread starts elsewhere),
-- and print one machine-readable RESULT line at the end.
local paths = {}
for line in io.lines(os.getenv("PATHS_FILE")) do
  paths[#paths + 1] = line
end

local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("id", threads)
end

local i = 0
function init(args)
  i = ((id or 1) * 1009) % #paths
end

local headers = nil
if os.getenv("CONNECTION_CLOSE") == "1" then
  headers = { ["Connection"] = "close" }
end

function request()
  i = i % #paths + 1
  return wrk.format("GET", paths[i], headers)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%d duration_us=%d mean_us=%.1f p99_us=%.1f status_errors=%d socket_errors=%d\n",
    summary.requests, summary.duration, latency.mean, latency:percentile(99), e.status,
    e.connect + e.read + e.write + e.timeout))
end
