-- wrk script for `just bench`: each request places an order for the next customer id of this thread, with
-- that customer's bearer token (data file lines "id,token"; one order per customer, so each customer_stats
-- row is written by exactly that order's event).
local customers = {}
local product_a, product_b = nil, nil
local counter = 0
local thread_index, thread_count = 0, 1

function setup(thread)
  thread:set("index", thread_index)
  thread_index = thread_index + 1
end

function init(args)
  local path = args[1]
  local index = tonumber(wrk.thread:get("index"))
  local count = tonumber(args[2])
  local n = 0
  for line in io.lines(path) do
    if n == 0 then
      product_a, product_b = line:match("([^,]+),([^,]+)")
    elseif (n - 1) % count == index then
      local id, token = line:match("([^,]+),([^,]+)")
      customers[#customers + 1] = {id = id, token = token}
    end
    n = n + 1
  end
end

function request()
  counter = counter + 1
  local customer = customers[counter]
  if customer == nil then
    return wrk.format("GET", "/health")
  end
  local body = string.format(
    '{"customer_id":"%s","items":[{"product_id":"%s","quantity":1},{"product_id":"%s","quantity":2}]}',
    customer.id, product_a, product_b)
  local headers = {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. customer.token}
  return wrk.format("POST", "/api/orders", headers, body)
end

function done(summary, latency, requests)
  io.write(string.format("wrk: %d requests, %d errors (status >= 400: %d)\n", summary.requests,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status))
end
