--- quarry.cli.manual: what describes quarry outside itself: shell completion
-- scripts and the man page, both made from the parser so they never drift
-- from --help (the build writes them; `cmake --install` installs them).
local config = require "quarry.config"

local M = { commands = {} }
local commands = M.commands

local parser -- the whole command line, for the man page

function M.define(p)
  parser = p
  -- lua-argparse writes the bash, zsh and fish scripts itself
  p:add_complete_command({ name = "completion", description = "Print a shell completion script "
    .. "(bash: source <(quarry completion bash))." })
  p:command("manpage", "Print the man page (roff); the build installs it as quarry(1).")
    :hidden(true)
end

local function roff(s)
  -- a backslash is \e; a line starting with . or ' would be a request
  return (tostring(s):gsub("\\", "\\e"):gsub("\n([.'])", "\n\\&%1"):gsub("^([.'])", "\\&%1"))
end

-- Each command's --help as it prints, under its name; subcommands too.
local function sections(out, p, path)
  for _, c in ipairs(p._commands or {}) do -- argparse keeps a parser's commands in _commands
    if not c._hidden and c._name ~= "completion" then
      local name = path .. " " .. c._name
      out[#out + 1] = ".SS " .. roff(name)
      out[#out + 1] = ".nf"
      out[#out + 1] = roff(c:get_help())
      out[#out + 1] = ".fi"
      sections(out, c, name)
    end
  end
end

function commands.manpage(_, info)
  local out = {
    ('.TH QUARRY 1 "" "quarry %s" "User Commands"'):format(info.version or ""),
    ".SH NAME", "quarry \\- scriptable analytics for UK wind curtailment and the bitcoin it could have mined",
    ".SH SYNOPSIS", ".B quarry", "[\\fIoptions\\fR] \\fIcommand\\fR [\\fIargs\\fR]",
    ".SH DESCRIPTION",
    "quarry reads Elexon balancing data (curtailed wind energy per BM unit and settlement period) from "
      .. "PostgreSQL, computes the bitcoin each miner model could have mined with it, and answers reports "
      .. "through a cache shared by every process in Redis. Without DATABASE_URL and REDIS_URL it starts "
      .. "a private PostgreSQL and Redis of its own (see FILES).",
    ".SH COMMANDS",
  }
  sections(out, parser, "quarry")
  out[#out + 1] = ".SH ENVIRONMENT"
  for _, s in ipairs(config.settings) do
    out[#out + 1] = ".TP"
    out[#out + 1] = ".B " .. s.env
    out[#out + 1] = roff(s.doc .. (s.default ~= nil and (" (default: " .. tostring(s.default) .. ")") or ""))
  end
  for _, l in ipairs({
    ".SH EXIT STATUS", "0 success; 1 a runtime failure; 2 usage or bad input (nothing was changed); "
      .. "3 a service (PostgreSQL, Redis) unreachable; 130 interrupted.",
    ".SH FILES",
    ".TP", ".I $QUARRY_HOME", "The embedded services' data and sockets and the shell's history: .quarry in a "
      .. "checkout, else $XDG_STATE_HOME/quarry (~/.local/state/quarry).",
    ".TP", ".I <prefix>/share/quarry/plugins",
    "The shipped reports; QUARRY_PLUGIN_PATH (folders, colon-separated) adds more.",
    ".SH SEE ALSO", "psql(1), redis-cli(1); docs/SCRIPTING.md, docs/DATA.md and docs/OUTPUT.md in the "
      .. "source, for the Lua API, the data model and the output formats.",
  }) do out[#out + 1] = l end
  io.write(table.concat(out, "\n"), "\n")
  return 0
end

return M
