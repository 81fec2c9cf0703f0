-- wrk_post.lua - POSTs one prediction request, over and over.
--
--   wrk -t2 -c16 -d10s -s bench/wrk_post.lua http://127.0.0.1:8000/predict/linear -- '[0.5]'
--   wrk -t2 -c4 -d10s -s bench/wrk_post.lua http://127.0.0.1:8000/predict/encoder \
--       -- --body '{"input_ids": [[1, 2]], "attention_mask": [[1, 1]]}'
--
-- The argument after -- is the JSON of the row (default [0.5]); the body sent
-- is {"X": ARG}, the request of a Flask /predict app (bench/flask_app.py), which
-- amaas-gateway's /predict/{name} takes too.  With --body JSON, the body is JSON
-- as it is (bench/flask_torch_app.py's requests).  At the end, prints one line
-- "JSON {...}" with the figures scripts/bench reads: requests, errors (connect,
-- read, write, timeout, non-2xx status), duration_s, requests_per_s and
-- latency_us {p50, p90, p99, max, mean}.

function init(args)
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  if args[1] == "--body" then
    wrk.body = args[2]
  else
    wrk.body = '{"X": ' .. (args[1] or "[0.5]") .. '}'
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  local errors = e.connect + e.read + e.write + e.timeout + e.status
  local seconds = summary.duration / 1e6
  io.write(string.format(
    'JSON {"requests": %d, "errors": %d, "duration_s": %.3f, "requests_per_s": %.1f, ' ..
    '"latency_us": {"p50": %d, "p90": %d, "p99": %d, "max": %d, "mean": %.1f}}\n',
    summary.requests, errors, seconds, (summary.requests - errors) / seconds,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean))
end
