"""Policy: what a sandboxed command may do, as plain data.

`model` holds the value types, `native` and `srt` load files into them, `defaults` is the
built-in policy, `render` prints a policy back as TOML. Nothing here launches anything.
"""
