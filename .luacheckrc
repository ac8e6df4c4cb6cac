std = "lua54"
max_line_length = 120
files["tests"] = { std = "+busted", max_line_length = 140 }
exclude_files = { "build*/**", ".quarry/**" }
