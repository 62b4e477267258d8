"""The command line's front end without click.

`fast` is the console entry point: it runs a few exact argv shapes (`range`, `port N`,
`namespaces`, `pressure`, `conns`, `--help`, each with `--json` where it has one) without
importing click, and hands every other command line to the click CLI (portscope.cli).
`views` holds those commands' bodies, which the click commands call too, so both paths
print the same bytes.
"""
