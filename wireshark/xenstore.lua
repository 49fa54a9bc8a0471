-- XenStore in a xenlab capture (`xenlab up --pcap DIR`, DIR/xenstore.pcapng), for Wireshark
-- and tshark (checked with Debian bookworm's 4.0):
--
--   wireshark -X lua_script:wireshark/xenstore.lua DIR/xenstore.pcapng
--   tshark -X lua_script:wireshark/xenstore.lua -r DIR/xenstore.pcapng
--   tshark -X lua_script:wireshark/xenstore.lua -r DIR/xenstore.pcapng -Y 'xenstore.error' \
--          -T fields -e xenstore.domid -e xenstore.op -e xenstore.path -e xenstore.error
--
-- Each packet is one record on link type LINKTYPE_USER0 (147), as src/xenstore/capture.ts
-- writes it: a 12-byte xenlab header (version 1, direction, transport, domid, connection id),
-- then the XenStore message exactly as on the wire (Xen's io/xs_wire.h: type, req_id, tx_id,
-- len, all little-endian u32, then len bytes of payload). Requests and their replies are
-- matched by connection and req_id (xenstore.response_in, xenstore.response_to, xenstore.time).
--
-- The payload's parts are named by the message type: path, value, token, perm, entry, error,
-- arg (a domid, port, flag or CONTROL word), tx (the id TRANSACTION_START answers).

local xs = Proto("xenstore", "XenStore")

local TYPES = {
  [0] = "CONTROL", [1] = "DIRECTORY", [2] = "READ", [3] = "GET_PERMS", [4] = "WATCH",
  [5] = "UNWATCH", [6] = "TRANSACTION_START", [7] = "TRANSACTION_END", [8] = "INTRODUCE",
  [9] = "RELEASE", [10] = "GET_DOMAIN_PATH", [11] = "WRITE", [12] = "MKDIR", [13] = "RM",
  [14] = "SET_PERMS", [15] = "WATCH_EVENT", [16] = "ERROR", [17] = "IS_DOMAIN_INTRODUCED",
  [18] = "RESUME", [19] = "SET_TARGET", [20] = "RESTRICT", [21] = "RESET_WATCHES",
  [22] = "DIRECTORY_PART", [23] = "GET_FEATURE", [24] = "SET_FEATURE", [25] = "GET_QUOTA",
  [26] = "SET_QUOTA", [0xffff] = "INVALID",
}
local T = {}
for code, name in pairs(TYPES) do T[name] = code end

local DIRECTIONS = { [0] = "to xenstored (request)", [1] = "from xenstored (reply or event)" }
local TRANSPORTS = { [0] = "Unix socket", [1] = "shared ring" }

local f = xs.fields
f.version = ProtoField.uint8("xenstore.capture_version", "Capture record version")
f.dir = ProtoField.uint8("xenstore.dir", "Direction", base.DEC, DIRECTIONS)
f.transport = ProtoField.uint8("xenstore.transport", "Transport", base.DEC, TRANSPORTS)
f.domid = ProtoField.uint16("xenstore.domid", "Domain")
f.conn = ProtoField.uint32("xenstore.conn", "Connection", base.HEX)
f.type = ProtoField.uint32("xenstore.type", "Type", base.DEC, TYPES)
f.op = ProtoField.string("xenstore.op", "Type name")
f.req_id = ProtoField.uint32("xenstore.req_id", "Request id")
f.tx_id = ProtoField.uint32("xenstore.tx_id", "Transaction id")
f.len = ProtoField.uint32("xenstore.len", "Payload length")
f.path = ProtoField.string("xenstore.path", "Path")
f.value = ProtoField.string("xenstore.value", "Value")
f.token = ProtoField.string("xenstore.token", "Watch token")
f.perm = ProtoField.string("xenstore.perm", "Permission")
f.entry = ProtoField.string("xenstore.entry", "Entry")
f.error = ProtoField.string("xenstore.error", "Error")
f.arg = ProtoField.string("xenstore.arg", "Argument")
f.tx = ProtoField.string("xenstore.tx", "Transaction started")
f.result = ProtoField.string("xenstore.result", "Result")
f.response_in = ProtoField.framenum("xenstore.response_in", "Response in", base.NONE, frametype.RESPONSE)
f.response_to = ProtoField.framenum("xenstore.response_to", "Request in", base.NONE, frametype.REQUEST)
f.time = ProtoField.relative_time("xenstore.time", "Time since request")
f.request_op = ProtoField.string("xenstore.request_op", "Request type")

local e_short = ProtoExpert.new("xenstore.short", "Record shorter than its headers", expert.group.MALFORMED, expert.severity.ERROR)
local e_len = ProtoExpert.new("xenstore.len_mismatch", "len does not match the bytes captured", expert.group.MALFORMED, expert.severity.WARN)
local e_noreply = ProtoExpert.new("xenstore.error_reply", "XenStore error reply", expert.group.RESPONSE_CODE, expert.severity.NOTE)
xs.experts = { e_short, e_len, e_noreply }

-- First pass: requests waiting for their reply, by connection and req_id; then, by frame,
-- what each request or reply is matched with.
local pending, matched

function xs.init()
  pending = {}
  matched = {}
end

-- The NUL-separated strings of the payload as { offset, length } (a last part without a NUL
-- counts as well, as WRITE's value and READ's reply have none).
local function parts(tvb, off, len)
  local out = {}
  if len <= 0 then return out end
  local raw = tvb(off, len):raw()
  local start = 1
  while true do
    local z = string.find(raw, "\0", start, true)
    if not z then break end
    out[#out + 1] = { off + start - 1, z - start }
    start = z + 1
  end
  if start <= len then out[#out + 1] = { off + start - 1, len - start + 1 } end
  return out
end

-- A part as text; a NUL inside it (only a value can hold one) is shown as \0.
local function str(tvb, p)
  if p[2] == 0 then return "" end
  return (tvb(p[1], p[2]):raw():gsub("\0", "\\0"))
end

local function add(tree, field, tvb, p, label)
  local s = str(tvb, p)
  local r = tvb(p[1], p[2])
  if label then return tree:add(field, r, s, label .. ": " .. s) end
  return tree:add(field, r, s)
end

-- The bytes from `from` to `stop` as one part (a value may hold NULs).
local function span(from, stop)
  return { from, stop - from }
end

local ONE_PATH = { [T.DIRECTORY] = true, [T.READ] = true, [T.GET_PERMS] = true, [T.MKDIR] = true, [T.RM] = true }
local DOMID_ONLY = { [T.RELEASE] = true, [T.GET_DOMAIN_PATH] = true, [T.IS_DOMAIN_INTRODUCED] = true, [T.RESUME] = true }

-- Dissects a request's payload; returns a short summary for the Info column.
local function request(tree, tvb, ty, off, len)
  local ps = parts(tvb, off, len)
  if ONE_PATH[ty] then
    if ps[1] then add(tree, f.path, tvb, ps[1]); return str(tvb, ps[1]) end
  elseif ty == T.WRITE then
    -- path NUL value: the value is everything after the first NUL, NULs and all.
    if ps[1] then
      add(tree, f.path, tvb, ps[1])
      local vstart = ps[1][1] + ps[1][2] + 1
      local v = span(vstart, off + len)
      if v[2] >= 0 and vstart <= off + len then add(tree, f.value, tvb, v) end
      return str(tvb, ps[1]) .. " = " .. (v[2] > 0 and str(tvb, v) or "")
    end
  elseif ty == T.WATCH or ty == T.UNWATCH then
    if ps[1] then add(tree, f.path, tvb, ps[1]) end
    if ps[2] then add(tree, f.token, tvb, ps[2]) end
    if ps[1] then return str(tvb, ps[1]) .. (ps[2] and (" token " .. str(tvb, ps[2])) or "") end
  elseif ty == T.SET_PERMS then
    if ps[1] then add(tree, f.path, tvb, ps[1]) end
    local perms = {}
    for i = 2, #ps do add(tree, f.perm, tvb, ps[i]); perms[#perms + 1] = str(tvb, ps[i]) end
    if ps[1] then return str(tvb, ps[1]) .. " " .. table.concat(perms, ",") end
  elseif ty == T.DIRECTORY_PART then
    if ps[1] then add(tree, f.path, tvb, ps[1]) end
    if ps[2] then add(tree, f.arg, tvb, ps[2], "offset") end
    if ps[1] then return str(tvb, ps[1]) end
  elseif ty == T.INTRODUCE then
    local names = { "domid", "gfn", "port" }
    local s = {}
    for i, p in ipairs(ps) do add(tree, f.arg, tvb, p, names[i] or "arg"); s[#s + 1] = str(tvb, p) end
    return table.concat(s, " ")
  elseif DOMID_ONLY[ty] or ty == T.SET_TARGET then
    local names = { "domid", "target" }
    local s = {}
    for i, p in ipairs(ps) do add(tree, f.arg, tvb, p, names[i] or "arg"); s[#s + 1] = str(tvb, p) end
    return table.concat(s, " ")
  elseif ty == T.TRANSACTION_END then
    if ps[1] then add(tree, f.arg, tvb, ps[1], "commit"); return str(tvb, ps[1]) == "T" and "commit" or "abort" end
  elseif ty == T.TRANSACTION_START or ty == T.RESET_WATCHES then
    return ""
  else
    -- CONTROL and the feature and quota requests: words.
    local s = {}
    for _, p in ipairs(ps) do add(tree, f.arg, tvb, p); s[#s + 1] = str(tvb, p) end
    return table.concat(s, " ")
  end
  return ""
end

-- Dissects what xenstored sent; returns a short summary.
local function reply(tree, tvb, ty, off, len)
  local ps = parts(tvb, off, len)
  if ty == T.ERROR then
    if ps[1] then add(tree, f.error, tvb, ps[1]); return str(tvb, ps[1]) end
  elseif ty == T.WATCH_EVENT then
    if ps[1] then add(tree, f.path, tvb, ps[1]) end
    if ps[2] then add(tree, f.token, tvb, ps[2]) end
    if ps[1] then return str(tvb, ps[1]) .. (ps[2] and (" token " .. str(tvb, ps[2])) or "") end
  elseif ty == T.READ or ty == T.CONTROL or ty == T.GET_FEATURE or ty == T.GET_QUOTA then
    local v = span(off, off + len)
    add(tree, f.value, tvb, v)
    return str(tvb, v)
  elseif ty == T.DIRECTORY then
    local s = {}
    for _, p in ipairs(ps) do add(tree, f.entry, tvb, p); s[#s + 1] = str(tvb, p) end
    return table.concat(s, " ")
  elseif ty == T.DIRECTORY_PART then
    local s = {}
    if ps[1] then add(tree, f.arg, tvb, ps[1], "generation") end
    for i = 2, #ps do add(tree, f.entry, tvb, ps[i]); s[#s + 1] = str(tvb, ps[i]) end
    return table.concat(s, " ")
  elseif ty == T.GET_PERMS then
    local s = {}
    for _, p in ipairs(ps) do add(tree, f.perm, tvb, p); s[#s + 1] = str(tvb, p) end
    return table.concat(s, ",")
  elseif ty == T.TRANSACTION_START then
    if ps[1] then add(tree, f.tx, tvb, ps[1]); return "tx " .. str(tvb, ps[1]) end
  elseif ty == T.GET_DOMAIN_PATH then
    if ps[1] then add(tree, f.path, tvb, ps[1]); return str(tvb, ps[1]) end
  elseif ty == T.IS_DOMAIN_INTRODUCED then
    if ps[1] then add(tree, f.result, tvb, ps[1]); return str(tvb, ps[1]) end
  else
    if ps[1] then add(tree, f.result, tvb, ps[1]); return str(tvb, ps[1]) end
  end
  return ""
end

local function who(domid, transport, conn)
  if transport == 1 then return "dom" .. domid end
  return string.format("socket 0x%x", conn)
end

function xs.dissector(tvb, pinfo, root)
  pinfo.cols.protocol = "XenStore"
  local n = tvb:len()
  local tree = root:add(xs, tvb())
  if n < 28 then
    tree:add_proto_expert_info(e_short)
    return n
  end
  local version = tvb(0, 1):uint()
  local dir = tvb(1, 1):uint()
  local transport = tvb(2, 1):uint()
  local domid = tvb(4, 2):le_uint()
  local conn = tvb(8, 4):le_uint()
  tree:add(f.version, tvb(0, 1))
  tree:add(f.dir, tvb(1, 1))
  tree:add(f.transport, tvb(2, 1))
  tree:add_le(f.domid, tvb(4, 2))
  tree:add_le(f.conn, tvb(8, 4))
  if version ~= 1 then return n end

  local ty = tvb(12, 4):le_uint()
  local req_id = tvb(16, 4):le_uint()
  local tx_id = tvb(20, 4):le_uint()
  local len = tvb(24, 4):le_uint()
  local name = TYPES[ty] or ("TYPE" .. ty)
  tree:add_le(f.type, tvb(12, 4))
  tree:add(f.op, tvb(12, 4), name)
  tree:add_le(f.req_id, tvb(16, 4))
  tree:add_le(f.tx_id, tvb(20, 4))
  local len_item = tree:add_le(f.len, tvb(24, 4))
  local avail = n - 28
  if len ~= avail then len_item:add_proto_expert_info(e_len) end
  if len > avail then len = avail end

  local key = conn .. ":" .. req_id
  local from = who(domid, transport, conn)
  local summary
  local info
  if dir == 0 then
    summary = request(tree, tvb, ty, 28, len)
    if not pinfo.visited then
      pending[key] = { frame = pinfo.number, ts = pinfo.abs_ts, op = name, summary = summary }
    end
    local m = matched[pinfo.number]
    if m then tree:add(f.response_in, m.frame):set_generated() end
    info = string.format("%s > %s %s", from, name, summary)
  else
    summary = reply(tree, tvb, ty, 28, len)
    if ty ~= T.WATCH_EVENT then
      if not pinfo.visited then
        local q = pending[key]
        if q then
          pending[key] = nil
          matched[pinfo.number] = q
          matched[q.frame] = { frame = pinfo.number }
        end
      end
      local q = matched[pinfo.number]
      if q then
        tree:add(f.response_to, q.frame):set_generated()
        tree:add(f.request_op, q.op):set_generated()
        local d = pinfo.abs_ts - q.ts
        local secs = math.floor(d)
        tree:add(f.time, NSTime.new(secs, math.floor((d - secs) * 1e9 + 0.5))):set_generated()
      end
      if ty == T.ERROR then
        tree:add_proto_expert_info(e_noreply)
        info = string.format("%s < ERROR %s", from, summary)
        if q then info = info .. string.format(" (%s %s)", q.op, q.summary) end
      else
        info = string.format("%s < %s reply %s", from, name, summary)
      end
    else
      info = string.format("%s < WATCH_EVENT %s", from, summary)
    end
  end
  info = info .. string.format(" [req %d%s]", req_id, tx_id ~= 0 and (" tx " .. tx_id) or "")
  pinfo.cols.info = info
  pinfo.cols.src = dir == 0 and from or "xenstored"
  pinfo.cols.dst = dir == 0 and "xenstored" or from
  return n
end

-- Wireshark 4.2 renamed the table of link-layer encapsulations wtap_encaps.
local encaps = wtap_encaps or wtap
DissectorTable.get("wtap_encap"):add(encaps.USER0, xs)
