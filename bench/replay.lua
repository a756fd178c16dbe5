-- Replays pre-signed Resend webhooks from requests.txt, one per request, round robin per thread.
local reqs = {}
local i = 0
function init(args)
  for line in io.lines(os.getenv("REQUESTS") or "requests.txt") do
    local id, ts, sig, body = line:match("([^\t]+)\t([^\t]+)\t([^\t]+)\t(.+)")
    reqs[#reqs + 1] = wrk.format("POST", "/webhooks/resend",
      {["svix-id"] = id, ["svix-timestamp"] = ts, ["svix-signature"] = sig, ["content-type"] = "application/json"}, body)
  end
  i = math.random(#reqs)
end
function request()
  i = i % #reqs + 1
  return reqs[i]
end
