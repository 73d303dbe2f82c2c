-- Argo CD health check for torchship.dev ModelService (resource.customizations.health).
-- Healthy: the operator has seen the latest spec (status.observedGeneration equals
-- metadata.generation), the Ready condition is True (every replica serves) and no rollout is
-- under way (Progressing is not True).
-- Degraded: the Degraded condition is True for the latest spec (its message says why).
-- Suspended: a canary paused at a step (Progressing True, reason CanaryPaused or
-- AwaitingPromotion): it serves, and waits for its pause to end or for a person.
-- Progressing: anything else, including a rollout under way, no status yet and a spec the
-- operator has not seen.
local hs = {}

local function find(conditions, kind)
  if conditions == nil then
    return nil
  end
  for _, c in ipairs(conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

-- A condition computed for an older spec says nothing about the current one.
local function current(c, generation)
  return c ~= nil and (c.observedGeneration == nil or generation == nil or c.observedGeneration >= generation)
end

local function describe(c, fallback)
  if c == nil then
    return fallback
  end
  if c.message ~= nil and c.message ~= "" then
    return c.message
  end
  if c.reason ~= nil and c.reason ~= "" then
    return c.reason
  end
  return fallback
end

local generation = obj.metadata.generation
local status = obj.status
if status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to report status"
  return hs
end

if status.observedGeneration == nil or (generation ~= nil and status.observedGeneration < generation) then
  hs.status = "Progressing"
  if generation ~= nil then
    hs.message = "Waiting for the operator to observe generation " .. generation
  else
    hs.message = "Waiting for the operator to observe the latest spec"
  end
  return hs
end

local degraded = find(status.conditions, "Degraded")
if current(degraded, generation) and degraded.status == "True" then
  hs.status = "Degraded"
  hs.message = describe(degraded, "Degraded")
  return hs
end

local progressing = find(status.conditions, "Progressing")
if current(progressing, generation) and progressing.status == "True" then
  if progressing.reason == "CanaryPaused" or progressing.reason == "AwaitingPromotion" then
    hs.status = "Suspended"
  else
    hs.status = "Progressing"
  end
  hs.message = describe(progressing, "Progressing")
  return hs
end

local ready = find(status.conditions, "Ready")
if current(ready, generation) and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = describe(ready, "Ready")
  return hs
end

hs.status = "Progressing"
if current(ready, generation) then
  hs.message = describe(ready, "Waiting for the ModelService to become Ready")
else
  hs.message = "Waiting for the ModelService to become Ready"
end
return hs
