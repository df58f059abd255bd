-- basis-ratelimit: decide several rules atomically, on the Redis server's clock.
--
-- KEYS     the state key of every rule, in order
-- ARGV     the time in µs (0: the server's TIME, as production always sends; tests pin it
--          to compare this script with the Rust algorithms), the number of groups, then
--          per group: its rule count and, per rule, four numbers: algorithm (1..5), limit,
--          period (µs), cost
-- returns  four integers per rule: allowed (0|1), remaining, reset (µs), retry after (µs)
--
-- A group is one decision: the rules of one request for one subject. With several rules
-- every one is evaluated first, and state is written only if all of them allow: a request
-- refused by one rule costs nothing under the others. Several groups in one call are
-- concurrent decisions coalesced by the client (see redis.rs). Each
-- algorithm mirrors its Rust twin in src/algorithm/. State other than the log is one
-- string of numbers written with SET … PX, so a decision is TIME + GET + SET.

local now = tonumber(ARGV[1])
if now == 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local floor, ceil, max, min = math.floor, math.ceil, math.max, math.min

-- Lua 5.1 turns large numbers into "1e+15" when converting to strings: format by hand.
local function int(x) return string.format('%.0f', x) end
-- Small integers (TTLs in ms) convert exactly; only timestamps need int().
local function ms(us) return max(1, ceil(us / 1000)) end

-- Reads up to three numbers stored as "a b c".
local function load(key)
  local s = redis.call('GET', key)
  if not s then return nil end
  local a, b, c = string.match(s, '^(%S+) ?(%S*) ?(%S*)$')
  return tonumber(a), tonumber(b), tonumber(c)
end

local function store(key, value, ttl_us) redis.call('SET', key, value, 'PX', ms(ttl_us)) end

-- Each returns: allowed (bool), remaining, reset (µs), retry (µs), writing state when
-- `commit` and allowed; with `commit` false nothing is written.
local function token_bucket(key, limit, period, cost, commit)
  local cap = limit * period
  local level, last = load(key)
  level, last = level or cap, last or now
  if now > last then level = min(cap, level + (now - last) * limit); last = now end
  local need = cost * period
  if cost > limit or need > level then
    local retry = period
    if cost <= limit then retry = ceil((need - level) / limit) end
    return false, floor(level / period), ceil((cap - level) / limit), retry
  end
  if commit then
    level = level - need
    store(key, int(level) .. ' ' .. int(last), ceil((cap - level) / limit))
  end
  return true, floor(level / period), ceil((cap - level) / limit), 0
end

local function gcra(key, limit, period, cost, commit)
  local T = max(1, floor(period / limit))
  local tau = T * limit
  local tat = max(tonumber(redis.call('GET', key)) or 0, now)
  local new_tat = tat + cost * T
  if new_tat - now > tau then
    local retry = period
    if cost <= limit then retry = new_tat - tau - now end
    return false, floor((tau - (tat - now)) / T), tat - now, retry
  end
  if commit then
    tat = new_tat
    store(key, int(tat), tat - now)
  end
  return true, floor((tau - (tat - now)) / T), tat - now, 0
end

local function fixed_window(key, limit, period, cost, commit)
  local sw, count = load(key)
  local w = max(floor(now / period), sw or 0) -- never reopen an older window
  if sw ~= w then count = 0 end
  local reset = (w + 1) * period - now
  if count + cost > limit then
    local retry = reset
    if cost > limit then retry = period end
    return false, limit - count, reset, retry
  end
  if commit then
    count = count + cost
    store(key, int(w) .. ' ' .. int(count), reset)
  end
  return true, limit - count, reset, 0
end

local function sliding_log(key, limit, period, cost, commit)
  -- One member per admitted unit, scored by its time; a unit counts while now < t + period.
  redis.call('ZREMRANGEBYSCORE', key, '-inf', int(now - period))
  local total = redis.call('ZCARD', key)
  if total + cost > limit then
    local retry = period
    if cost <= limit then
      local i = total + cost - limit - 1
      retry = tonumber(redis.call('ZRANGE', key, i, i, 'WITHSCORES')[2]) + period - now
    end
    local newest = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
    local reset = 0
    if newest[2] then reset = tonumber(newest[2]) + period - now end
    return false, limit - total, reset, retry
  end
  if commit then
    -- Within one microsecond the count only grows, so these member names are unique.
    for j = 0, cost - 1 do redis.call('ZADD', key, int(now), int(now) .. '-' .. (total + j)) end
    redis.call('PEXPIRE', key, ms(period))
    return true, limit - total - cost, period, 0
  end
  local newest = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
  local reset = 0
  if newest[2] then reset = tonumber(newest[2]) + period - now end
  return true, limit - total, reset, 0
end

local function sliding_window(key, limit, period, cost, commit)
  local sw, cur, prev = load(key)
  local w = max(floor(now / period), sw or 0) -- never reopen an older window
  if sw == nil then cur, prev = 0, 0
  elseif w == sw + 1 then prev, cur = cur, 0
  elseif w ~= sw then prev, cur = 0, 0 end
  local start = w * period
  local weighted = prev * (period - max(0, now - start))
  local room = limit * period - weighted -- in units × period
  local function reset(c)
    if c > 0 then return start + 2 * period - now elseif prev > 0 then return start + period - now end
    return 0
  end
  if (cur + cost) * period > room then
    local retry = period
    local function position(count, free)
      if count == 0 then return 0 end
      return period - min(period, floor(free * period / count))
    end
    if cost > limit then retry = period
    elseif cur + cost <= limit then retry = max(1, start + position(prev, limit - cur - cost) - now)
    else retry = start + period + position(cur, limit - cost) - now end
    return false, floor(max(0, room - cur * period) / period), reset(cur), retry
  end
  if commit then
    cur = cur + cost
    store(key, int(w) .. ' ' .. int(cur) .. ' ' .. int(prev), start + 2 * period - now)
  end
  return true, floor(max(0, room - cur * period) / period), reset(cur), 0
end

local algorithms = { token_bucket, gcra, fixed_window, sliding_log, sliding_window }

-- Rule at KEYS[k] with its four numbers from ARGV[a].
local function run(k, a, commit)
  return algorithms[tonumber(ARGV[a])](KEYS[k], tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]),
    tonumber(ARGV[a + 3]), commit)
end

local out = {}
local function emit(ok, remaining, reset, retry)
  out[#out + 1] = ok and 1 or 0
  out[#out + 1] = remaining
  out[#out + 1] = reset
  out[#out + 1] = retry
end

-- ARGV[2] is the number of groups (decisions); each group is its rule count n followed by
-- 4 numbers per rule, and owns the next n KEYS. Groups are decided one after the other,
-- each all or nothing: several rules are looked at first and committed only if all allow.
local k, a = 1, 3
for _ = 1, tonumber(ARGV[2]) do
  local n = tonumber(ARGV[a])
  a = a + 1
  if n == 1 then
    emit(run(k, a, true))
  else
    local all = true
    for i = 0, n - 1 do
      local ok = run(k + i, a + 4 * i, false)
      all = all and ok
    end
    for i = 0, n - 1 do emit(run(k + i, a + 4 * i, all)) end
  end
  k, a = k + n, a + 4 * n
end
return out
