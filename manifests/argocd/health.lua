-- Argo CD health check for sft.dev/v1alpha1 SFTDataPrep and SFTRun.
--
-- One script serves both kinds: they share the status contract (phase, observedGeneration,
-- kstatus conditions Ready/Reconciling/Stalled, message). Argo CD runs it with the live object
-- in `obj` and expects a table {status = ..., message = ...} back.
--
-- Order matters:
--   1. A status written for an older generation says nothing about the current spec, so it is
--      Progressing until the operator catches up (otherwise a re-synced spec would look Healthy
--      or Degraded from the previous run's result).
--   2. Failed, or Stalled=True, is Degraded: the run will not get better without a user fix.
--   3. Succeeded is Healthy.
--   4. Suspended (phase, or spec.suspend) is Suspended, so Argo CD shows it paused, not stuck.
--   5. Anything else (Pending, Running, Waiting, no status yet) is Progressing with the
--      operator's own words, so the Argo CD UI says what it is waiting for.
--
-- Written for Lua 5.1 (Argo CD runs gopher-lua) and for the libraries Argo CD gives a custom health
-- check from argocd-cm: base, table, package and a "safe" os (time and date only). No `string`, no
-- `math` (and so no string methods either: gopher-lua sets the string metatable only with the string
-- library). Built-in checks get every library, custom ones only these unless `useOpenLibs` is set;
-- this script needs none of the others, so it does not ask for them.

local hs = {}

local function condition(status, ctype)
  if status == nil or status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == ctype then
      return c
    end
  end
  return nil
end

-- Argo CD decodes JSON numbers as floats, and without the string library there is no "%d": build
-- the decimal digits by hand, so 3.0 prints as 3 in every Lua version (5.4 would print "3.0").
local DIGITS = {[0] = "0", "1", "2", "3", "4", "5", "6", "7", "8", "9"}

local function int(n)
  if type(n) ~= "number" then
    return tostring(n)
  end
  local sign = ""
  if n < 0 then
    sign = "-"
    n = -n
  end
  n = n - n % 1
  if n == 0 then
    return "0"
  end
  local digits = {}
  while n >= 1 do
    local d = n % 10
    table.insert(digits, 1, DIGITS[d])
    n = (n - d) / 10
  end
  return sign .. table.concat(digits)
end

local function nonempty(s)
  return s ~= nil and s ~= ""
end

-- The most specific human message the status carries, most specific first.
local function best_message(status, preferred)
  if preferred ~= nil and nonempty(preferred.message) then
    return preferred.message
  end
  if nonempty(status.message) then
    return status.message
  end
  for _, ctype in ipairs({"Stalled", "Reconciling", "Ready"}) do
    local c = condition(status, ctype)
    if c ~= nil and c.status == "True" and nonempty(c.message) then
      return c.message
    end
  end
  local ready = condition(status, "Ready")
  if ready ~= nil and nonempty(ready.message) then
    return ready.message
  end
  return nil
end

local kind = obj.kind or "resource"
local generation = nil
if obj.metadata ~= nil then
  generation = obj.metadata.generation
end
local status = obj.status

if status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the sft-operator to report the " .. kind .. " status"
  return hs
end

local observed = status.observedGeneration
if generation ~= nil and (observed == nil or observed < generation) then
  hs.status = "Progressing"
  if observed == nil then
    hs.message = "Waiting for the sft-operator to observe generation " .. int(generation)
  else
    hs.message = "Waiting for the sft-operator to observe generation " .. int(generation) ..
      " (status describes generation " .. int(observed) .. ")"
  end
  return hs
end

local phase = status.phase
local stalled = condition(status, "Stalled")

if phase == "Failed" then
  hs.status = "Degraded"
  hs.message = best_message(status, stalled) or (kind .. " failed")
  return hs
end

if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = best_message(status, stalled) or (kind .. " is stalled")
  return hs
end

if phase == "Succeeded" then
  hs.status = "Healthy"
  hs.message = best_message(status, condition(status, "Ready")) or (kind .. " succeeded")
  return hs
end

local suspended_spec = obj.spec ~= nil and obj.spec.suspend == true
if phase == "Suspended" or suspended_spec then
  hs.status = "Suspended"
  hs.message = best_message(status, nil) or (kind .. " is suspended")
  return hs
end

hs.status = "Progressing"
local text = best_message(status, condition(status, "Reconciling"))
if text == nil then
  if nonempty(phase) then
    text = kind .. " is " .. phase
  else
    text = "Waiting for the sft-operator to set a phase"
  end
end
hs.message = text
return hs
