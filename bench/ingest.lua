-- wrk script for bench/ingest.py: every request a new CloudEvent (unique ce-id, or unique ids
-- for every event of a batch), bodies cycled from the payload pool that payloads.py writes.
--
--   wrk -t1 -c64 -d10s -s bench/ingest.lua http://127.0.0.1:8080/events \
--       -- <binary|structured|batch> <pool.tsv> <api key> <id prefix> [events a batch]
--
-- done() prints one JSON line (prefixed "wrk-json ") with the counts and latency percentiles.

local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("thread_no", #threads)
end

local mode, prefix, batch
local items = {}
local counter = 0

function init(args)
  mode = args[1]
  local key = args[3]
  prefix = args[4] .. tostring(thread_no) .. "-"
  batch = tonumber(args[5] or "100")
  for line in io.lines(args[2]) do
    local ce_type, source, stamp, body = line:match("^([^\t]*)\t([^\t]*)\t([^\t]*)\t(.*)$")
    if mode == "binary" then
      local headers = {
        ["Content-Type"] = "application/json",
        ["ce-specversion"] = "1.0",
        ["ce-source"] = source,
        ["ce-type"] = ce_type,
        ["ce-time"] = stamp,
      }
      if key ~= "" then headers["Authorization"] = "Bearer " .. key end
      table.insert(items, { headers = headers, body = body })
    else
      -- The event split around its id: '{"specversion":"1.0","id":"' .. id .. tail
      table.insert(items, '","source":"' .. source .. '","type":"' .. ce_type .. '","time":"'
        .. stamp .. '","datacontenttype":"application/json","data":' .. body .. "}")
    end
  end
  if mode == "structured" then
    wrk.headers["Content-Type"] = "application/cloudevents+json"
  elseif mode == "batch" then
    wrk.headers["Content-Type"] = "application/cloudevents-batch+json"
  end
  if mode ~= "binary" then
    if key ~= "" then wrk.headers["Authorization"] = "Bearer " .. key end
  end
end

function request()
  counter = counter + 1
  if mode == "binary" then
    local item = items[counter % #items + 1]
    item.headers["ce-id"] = prefix .. counter
    return wrk.format("POST", nil, item.headers, item.body)
  end
  if mode == "structured" then
    return wrk.format("POST", nil, nil,
      '{"specversion":"1.0","id":"' .. prefix .. counter .. items[counter % #items + 1])
  end
  local parts = {}
  local start = counter * batch
  for i = 1, batch do
    parts[i] = '{"specversion":"1.0","id":"' .. prefix .. counter .. "-" .. i
      .. items[(start + i) % #items + 1]
  end
  return wrk.format("POST", nil, nil, "[" .. table.concat(parts, ",") .. "]")
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'wrk-json {"duration_us":%d,"requests":%d,"errors":{"connect":%d,"read":%d,"write":%d,'
      .. '"status":%d,"timeout":%d},"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d}\n',
    summary.duration, summary.requests, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
