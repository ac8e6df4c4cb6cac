-- Runs busted inside whatever host loads this file (quarry run, or lua5.4),
-- with the arguments in `arg`, as /usr/bin/busted does.
require "busted.runner" ({ standalone = false })
