-- basis-ratelimit: decide several rules atomically, on the Redis server's clock.
--
-- KEYS[i]  the state key of rule i (all keys of one call share a {hash tag})
-- ARGV     four numbers per rule: algorithm (1..5), limit, period (µs), cost
-- returns  four integers per rule: allowed (0|1), remaining, reset (µs), retry after (µs)
--
-- Every rule is evaluated first; state is written only if all of them allow, so a
-- request refused by one rule costs nothing under the others. Mirrors src/algorithm/.

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local floor, ceil, max, min = math.floor, math.ceil, math.max, math.min

-- Lua 5.1 turns large numbers into "1e+15" when converting to strings: format by hand.
local function int(x) return string.format('%.0f', x) end
local function expire(key, us) redis.call('PEXPIRE', key, int(max(1, ceil(us / 1000)))) end

local function token_bucket(key, limit, period, cost)
  local cap = limit * period
  local s = redis.call('HMGET', key, 'l', 't')
  local level, last = tonumber(s[1]) or cap, tonumber(s[2]) or now
  if now > last then level = min(cap, level + (now - last) * limit); last = now end
  local need = cost * period
  local p = { ok = cost <= limit and need <= level,
              rem = floor(level / period), reset = ceil((cap - level) / limit) }
  if p.ok then
    local after = level - need
    p.rem_after, p.reset_after = floor(after / period), ceil((cap - after) / limit)
    p.write = function()
      redis.call('HSET', key, 'l', int(after), 't', int(last))
      expire(key, p.reset_after)
    end
  elseif cost > limit then p.retry = period
  else p.retry = ceil((need - level) / limit) end
  return p
end

local function gcra(key, limit, period, cost)
  local T = max(1, floor(period / limit))
  local tau = T * limit
  local tat = max(tonumber(redis.call('GET', key)) or 0, now)
  local new_tat = tat + cost * T
  local p = { ok = new_tat - now <= tau, rem = floor((tau - (tat - now)) / T), reset = tat - now }
  if p.ok then
    p.rem_after, p.reset_after = floor((tau - (new_tat - now)) / T), new_tat - now
    p.write = function()
      redis.call('SET', key, int(new_tat))
      expire(key, new_tat - now)
    end
  elseif cost > limit then p.retry = period
  else p.retry = new_tat - tau - now end
  return p
end

local function fixed_window(key, limit, period, cost)
  local w = floor(now / period)
  local s = redis.call('HMGET', key, 'w', 'c')
  local count = 0
  if tonumber(s[1]) == w then count = tonumber(s[2]) or 0 end
  local reset = (w + 1) * period - now
  local p = { ok = count + cost <= limit, rem = limit - count, reset = reset }
  if p.ok then
    p.rem_after, p.reset_after = limit - count - cost, reset
    p.write = function()
      redis.call('HSET', key, 'w', int(w), 'c', int(count + cost))
      expire(key, reset)
    end
  elseif cost > limit then p.retry = period
  else p.retry = reset end
  return p
end

local function sliding_log(key, limit, period, cost)
  -- One member per admitted unit, scored by its time; a unit counts while now < t + period.
  redis.call('ZREMRANGEBYSCORE', key, '-inf', int(now - period))
  local total = redis.call('ZCARD', key)
  local newest = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
  local reset = 0
  if newest[2] then reset = tonumber(newest[2]) + period - now end
  local p = { ok = total + cost <= limit, rem = limit - total, reset = reset }
  if p.ok then
    p.rem_after, p.reset_after = limit - total - cost, period
    p.write = function()
      -- Within one microsecond the count only grows, so these names are unique.
      for j = 0, cost - 1 do redis.call('ZADD', key, int(now), int(now) .. '-' .. (total + j)) end
      expire(key, period)
    end
  elseif cost > limit then p.retry = period
  else
    local oldest = redis.call('ZRANGE', key, total + cost - limit - 1, total + cost - limit - 1, 'WITHSCORES')
    p.retry = tonumber(oldest[2]) + period - now
  end
  return p
end

local function sliding_window(key, limit, period, cost)
  local w = floor(now / period)
  local s = redis.call('HMGET', key, 'w', 'c', 'p')
  local sw, cur, prev = tonumber(s[1]), tonumber(s[2]) or 0, tonumber(s[3]) or 0
  if sw == nil then cur, prev = 0, 0
  elseif w == sw + 1 then prev, cur = cur, 0
  elseif w ~= sw then prev, cur = 0, 0 end
  local start = w * period
  local weighted = prev * (period - (now - start))
  local function used(c) return c * period + weighted end
  local function reset(c)
    if c > 0 then return start + 2 * period - now elseif prev > 0 then return start + period - now end
    return 0
  end
  local function position(count, room)
    if count == 0 then return 0 end
    return period - min(period, floor(room * period / count))
  end
  local p = { ok = used(cur + cost) <= limit * period,
              rem = floor(max(0, limit * period - used(cur)) / period), reset = reset(cur) }
  if p.ok then
    p.rem_after = floor(max(0, limit * period - used(cur + cost)) / period)
    p.reset_after = reset(cur + cost)
    p.write = function()
      redis.call('HSET', key, 'w', int(w), 'c', int(cur + cost), 'p', int(prev))
      expire(key, start + 2 * period - now)
    end
  elseif cost > limit then p.retry = period
  elseif cur + cost <= limit then p.retry = max(1, start + position(prev, limit - cur - cost) - now)
  else p.retry = start + period + position(cur, limit - cost) - now end
  return p
end

local algorithms = { token_bucket, gcra, fixed_window, sliding_log, sliding_window }

local plans, all = {}, true
for i = 1, #KEYS do
  local b = (i - 1) * 4
  local decide = algorithms[tonumber(ARGV[b + 1])]
  local p = decide(KEYS[i], tonumber(ARGV[b + 2]), tonumber(ARGV[b + 3]), tonumber(ARGV[b + 4]))
  plans[i] = p
  all = all and p.ok
end

local out = {}
for i = 1, #KEYS do
  local p = plans[i]
  if all then
    p.write()
    for _, v in ipairs({ 1, p.rem_after, p.reset_after, 0 }) do out[#out + 1] = v end
  else
    local ok = 0
    if p.ok then ok = 1 end
    for _, v in ipairs({ ok, p.rem, p.reset, p.retry or 0 }) do out[#out + 1] = v end
  end
end
return out
