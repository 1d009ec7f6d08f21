-- wrk script for the join benchmark: every request joins the same existing
-- workspace (POST /v1/workspaces, fixed path) as a new client: a random v4
-- UUID per request, so each one registers a fresh claim (held by the
-- create grace, which bench.py sets short so claims do not pile up).
-- The path comes from the environment: BENCH_JOIN_PATH.

local path = os.getenv("BENCH_JOIN_PATH") or "/tmp/crush-bench-join"
-- the daemon's tcp bearer token (SPEC §7), from bench.py
local auth = "Authorization: Bearer " .. (os.getenv("BENCH_TOKEN") or "") .. "\r\n"
local random, format = math.random, string.format

function init(args)
   -- a different sequence per wrk thread (and per run)
   math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16) % 100000)
end

local function uuid4()
   -- 16-bit pieces: LuaJIT's %x is only safe on 32-bit values
   return format("%04x%04x-%04x-4%03x-%04x-%04x%04x%04x",
      random(0, 0xffff), random(0, 0xffff), random(0, 0xffff),
      random(0, 0xfff), random(0x8000, 0xbfff),
      random(0, 0xffff), random(0, 0xffff), random(0, 0xffff))
end

function request()
   local body = '{"path":"' .. path .. '","client_id":"' .. uuid4() .. '"}'
   return "POST /v1/workspaces HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n" .. auth ..
      "Content-Length: " .. #body .. "\r\n\r\n" .. body
end
