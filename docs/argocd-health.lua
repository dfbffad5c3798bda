-- Argo CD health of a ModelDeployment (modelrollout.dev). Argo CD runs it on gopher-lua (Lua 5.1);
-- tests/unit/test_argocd_health.py runs it on Lua 5.1 against sample statuses.
local hs = {}
local function condition(kind)
  if obj.status == nil or obj.status.conditions == nil then
    return nil
  end
  for _, c in ipairs(obj.status.conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

if obj.status == nil or obj.status.phase == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to report a status"
  return hs
end
local generation = obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and (observed == nil or observed < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to act on generation " .. tostring(generation)
  return hs
end

local phase = obj.status.phase
local message = obj.status.message or ""
local ready = condition("Ready")
if phase == "Paused" then
  -- A rollout waiting for a verb or a timed pause: Argo CD's state for a paused Rollout.
  hs.status = "Suspended"
elseif phase == "Failed" or phase == "RolledBack" or phase == "Degraded" then
  -- RolledBack: the stable version serves, but the desired version did not ship.
  hs.status = "Degraded"
elseif phase == "Healthy" then
  if ready ~= nil and ready.status ~= "True" then
    hs.status = "Progressing"
    message = ready.message or message
  else
    hs.status = "Healthy"
  end
else
  -- Pending, Progressing, Promoting
  hs.status = "Progressing"
end
if message == "" and ready ~= nil and ready.message ~= nil then
  message = ready.message
end
hs.message = phase .. (message ~= "" and (": " .. message) or "")
return hs
